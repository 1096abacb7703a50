// Command store10m builds a file store of many live tokens directly through
// the store API (tokenstore.OpenFile and SaveTokens, as the token endpoint
// calls them, each call answered after its fsync) and measures it; the
// script tests/bench/store10m.sh runs it, then runs the real Caddy on the
// store it built.
//
//	store10m -phase fill   -dir D -n 10000000 -sample S   fill, print the rate and bytes per token
//	store10m -phase lookup -dir D -sample S               open, first answer, lookups, resident memory
//	store10m -phase sweep  -dir D -expired 1000000        issue and lookup while a sweep runs
//
// Tokens are client_credentials access tokens as Caddy issues them: 43
// URL-safe characters of 256 random bits, client "bench", scope "read
// write", 24 hours. The sample file keeps -sample-n of them, one a line,
// for the lookups and for wrk against the real Caddy.
package main

import (
	"bufio"
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oauth2gate/oauth2gate/authz/tokenstore"
)

var (
	phase   = flag.String("phase", "fill", "fill, lookup or sweep")
	dir     = flag.String("dir", "", "store directory")
	n       = flag.Int("n", 1_000_000, "fill: live tokens to store")
	sample  = flag.String("sample", "", "file of sampled tokens (written by fill, read by lookup)")
	sampleN = flag.Int("sample-n", 100_000, "fill: how many tokens to sample")
	conns   = flag.Int("conns", 256, "concurrent callers of SaveTokens")
	expired = flag.Int("expired", 1_000_000, "sweep: tokens that expire at once")
	rate    = flag.Int("rate", 8000, "sweep: issuances a second during the sweep, from 32 callers (the token endpoint's full rate through Caddy here, run.sh)")
	bound   = flag.Duration("bound", 30*time.Minute, "give up after this long")
	cpuProf = flag.String("cpuprofile", "", "write a CPU profile of the phase here")
	compact = flag.Bool("compact", true, "fill: compact the whole store after the fill")
)

func main() {
	flag.Parse()
	if *dir == "" {
		fail("-dir is required")
	}
	time.AfterFunc(*bound, func() { fail("took longer than -bound %s", *bound) })
	if *cpuProf != "" {
		f, err := os.Create(*cpuProf)
		if err != nil {
			fail("%v", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fail("%v", err)
		}
		defer pprof.StopCPUProfile()
	}
	switch *phase {
	case "fill":
		fill()
	case "lookup":
		lookup()
	case "sweep":
		sweep()
	default:
		fail("unknown -phase %q", *phase)
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "store10m: "+format+"\n", args...)
	os.Exit(1)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

// token makes a token as Caddy's (authz/generate.go): 32 random bytes in
// base64url. The bytes come from a fast generator: these are not secrets.
func token(r *rand.ChaCha8) string {
	var b [32]byte
	_, _ = r.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// seed is a fresh seed for a token generator: every generator of every
// phase its own, so no two ever make the same tokens (a fixed or
// clock-derived seed once made a phase overwrite tokens of another).
func seed() [32]byte {
	var b [32]byte
	_, _ = crand.Read(b[:])
	return b
}

func issueOf(tok string, iat time.Time, ttl time.Duration) tokenstore.Issue {
	return tokenstore.NewIssue(tok, tokenstore.Record{ClientID: "bench", Scope: "read write"}, "", tokenstore.Record{}, iat, ttl, 0)
}

func open() *tokenstore.FileStore {
	st, err := tokenstore.OpenFile(*dir, tokenstore.FileOptions{})
	if err != nil {
		fail("%v", err)
	}
	return st
}

// issueMany saves count tokens from conns goroutines; keep sees every
// token (from many goroutines) and says whether to sample it.
func issueMany(st *tokenstore.FileStore, count int, ttl time.Duration, keep func(i int, tok string)) time.Duration {
	ctx := context.Background()
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range *conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.NewChaCha8(seed())
			for {
				i := int(next.Add(1)) - 1
				if i >= count {
					return
				}
				tok := token(r)
				if err := st.SaveTokens(ctx, issueOf(tok, time.Now(), ttl)); err != nil {
					fail("SaveTokens: %v", err)
				}
				if keep != nil {
					keep(i, tok)
				}
				if (i+1)%1_000_000 == 0 {
					logf("%d tokens, %.0f tokens/s so far", i+1, float64(i+1)/time.Since(start).Seconds())
				}
			}
		}()
	}
	wg.Wait()
	return time.Since(start)
}

func fill() {
	if *sample == "" {
		fail("-sample is required")
	}
	st := open()
	every := max(1, *n / *sampleN)
	var mu sync.Mutex
	var kept []string
	took := issueMany(st, *n, 24*time.Hour, func(i int, tok string) {
		if i%every == 0 {
			mu.Lock()
			kept = append(kept, tok)
			mu.Unlock()
		}
	})
	if *compact {
		// A store that grew over days at the token endpoint's rate has had
		// its compactions as it went; one filled in two minutes owes them.
		t0 := time.Now()
		if err := st.CompactAll(context.Background()); err != nil {
			fail("compact: %v", err)
		}
		fmt.Printf("compact: the whole store compacted in %.1f s (what the engine does in the background as a store grows)\n", time.Since(t0).Seconds())
	}
	if err := st.Close(); err != nil {
		fail("close: %v", err)
	}
	if err := os.WriteFile(*sample, []byte(strings.Join(kept, "\n")+"\n"), 0o600); err != nil {
		fail("%v", err)
	}
	size := du(filepath.Join(*dir, tokenstore.DirName))
	fmt.Printf("fill: %d tokens in %.1f s: %.0f tokens/s (%d callers)\n", *n, took.Seconds(), float64(*n)/took.Seconds(), *conns)
	fmt.Printf("file: %d bytes, %.1f bytes per token\n", size, float64(size)/float64(*n))
}

func du(path string) int64 {
	var total int64
	_ = filepath.Walk(path, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			total += fi.Size()
		}
		return nil
	})
	return total
}

func readSample() []string {
	f, err := os.Open(*sample)
	if err != nil {
		fail("%v", err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if t := strings.TrimSpace(sc.Text()); t != "" {
			out = append(out, t)
		}
	}
	return out
}

// rss is the process's resident memory in bytes (VmRSS).
func rss() int64 {
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

func pct(d []time.Duration, p float64) time.Duration {
	slices.Sort(d)
	return d[min(len(d)-1, int(float64(len(d))*p))]
}

// lookup runs in a fresh process: how long until the store answers, then
// what a lookup that misses the gateway's cache costs (HashOf and
// GetAccess, as the guard's store verifier calls them), and the memory.
func lookup() {
	toks := readSample()
	if len(toks) == 0 {
		fail("empty sample")
	}
	ctx := context.Background()
	before := rss()
	start := time.Now()
	st := open()
	if _, err := st.GetAccess(ctx, tokenstore.HashOf(toks[0])); err != nil {
		fail("the first sampled token is not found: %v", err)
	}
	first := time.Since(start)
	opened := rss()
	fmt.Printf("open: first answer %.1f ms after opening began\n", float64(first.Microseconds())/1000)
	r := rand.New(rand.NewPCG(1, 2))
	r.Shuffle(len(toks), func(i, j int) { toks[i], toks[j] = toks[j], toks[i] })
	// The first half right after the start (the engine's index and filter
	// blocks still on disk), the second half once they are in its block
	// cache, as in a Caddy that has run for a while: the data block of each
	// of those tokens has not been read before (the first half touched
	// other blocks, but for chance neighbours).
	measure := func(toks []string) []time.Duration {
		lat := make([]time.Duration, 0, len(toks))
		for _, tok := range toks {
			t0 := time.Now()
			_, err := st.GetAccess(ctx, tokenstore.HashOf(tok))
			lat = append(lat, time.Since(t0))
			if err != nil {
				fail("a sampled token is not found: %v", err)
			}
		}
		return lat
	}
	cold := measure(toks[:len(toks)/2])
	debt, running := st.CompactionDebt()
	fmt.Printf("lookup: %d live tokens right after the start: p50 %.1f µs, p99 %.1f µs (compaction debt %d MB, %d running)\n",
		len(cold), us(pct(cold, 0.5)), us(pct(cold, 0.99)), debt>>20, running)
	// A store filled in bulk owes its compactions; one that grew as a
	// token endpoint fills it has paid them as it went. Wait (bounded).
	// pebble's debt estimate need not reach zero (levels a little over
	// their targets), so: until no compaction has run for 3 s.
	waited := time.Now()
	for idle := 0; idle < 3; {
		if time.Since(waited) > 10*time.Minute {
			fmt.Printf("lookup: the compactions were still under way after 10 minutes\n")
			break
		}
		time.Sleep(time.Second)
		if debt, running = st.CompactionDebt(); running == 0 {
			idle++
		} else {
			idle = 0
		}
	}
	fmt.Printf("lookup: the engine's compactions of the fill done %.0f s after the start (debt left %d MB)\n", time.Since(waited).Seconds(), debt>>20)
	lat := measure(toks[len(toks)/2:])
	absent := make([]time.Duration, 0, 20000)
	cr := rand.NewChaCha8(seed())
	for range 20000 {
		tok := token(cr)
		t0 := time.Now()
		_, err := st.GetAccess(ctx, tokenstore.HashOf(tok))
		absent = append(absent, time.Since(t0))
		if err == nil {
			fail("a random token was found")
		}
	}
	after := rss()
	fmt.Printf("lookup: %d other live tokens, the engine's index warm: p50 %.1f µs, p99 %.1f µs; %d absent: p50 %.1f µs\n",
		len(lat), us(pct(lat, 0.5)), us(pct(lat, 0.99)), len(absent), us(pct(absent, 0.5)))
	fmt.Printf("rss: before open %d MB, after open %d MB, after lookups %d MB\n", before>>20, opened>>20, after>>20)
	if err := st.Close(); err != nil {
		fail("close: %v", err)
	}
}

func us(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1000 }

// sweep: -expired tokens that all expire a few seconds from now are added to
// the store, then, while the store's own sweep deletes them, 32 callers
// issue at -rate a second in all and 4 look up a token each a millisecond;
// the longest wait of each is the sweep's pause.
func sweep() {
	st := open()
	defer st.Close()
	ctx := context.Background()
	// They expire a while after they are in, so that the load first runs
	// without a sweep: its pauses then are the baseline.
	short := 10*time.Second + time.Duration(*expired/20000)*time.Second
	logf("adding %d tokens that expire in %s", *expired, short)
	took := issueMany(st, *expired, short, nil)
	logf("added in %.1f s", took.Seconds())
	swept0 := st.Swept()
	var sweeping atomic.Bool
	var stop atomic.Bool
	var mu sync.Mutex
	var issueLat, getLat, issueBase, getBase []time.Duration
	var wg sync.WaitGroup
	toks := make(chan string, 4096)
	done := make(chan struct{})
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.NewChaCha8(seed())
			var mine, base []time.Duration
			tick := time.NewTicker(time.Duration(32 * float64(time.Second) / float64(*rate)))
			defer tick.Stop()
			for !stop.Load() {
				<-tick.C
				tok := token(r)
				t0 := time.Now()
				during := sweeping.Load()
				if err := st.SaveTokens(ctx, issueOf(tok, time.Now(), time.Hour)); err != nil {
					fail("SaveTokens: %v", err)
				}
				if during {
					mine = append(mine, time.Since(t0))
				} else {
					base = append(base, time.Since(t0))
				}
				select {
				case toks <- tok:
				default:
				}
			}
			mu.Lock()
			issueLat = append(issueLat, mine...)
			issueBase = append(issueBase, base...)
			mu.Unlock()
		}()
	}
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine, base []time.Duration
			tick := time.NewTicker(time.Millisecond)
			defer tick.Stop()
			for {
				var tok string
				<-tick.C
				select {
				case tok = <-toks:
				case <-done:
					mu.Lock()
					getLat = append(getLat, mine...)
					getBase = append(getBase, base...)
					mu.Unlock()
					return
				}
				t0 := time.Now()
				during := sweeping.Load()
				if _, err := st.GetAccess(ctx, tokenstore.HashOf(tok)); err != nil {
					fail("GetAccess: %v", err)
				}
				if during {
					mine = append(mine, time.Since(t0))
				} else {
					base = append(base, time.Since(t0))
				}
			}
		}()
	}
	// The load runs until the sweep has deleted every short-lived token
	// (three entries each: the token, its client index entry, its expiry
	// entry are counted as one swept token).
	start := time.Now()
	var began, ended time.Time
	deadline := start.Add(5*time.Minute + short)
	_ = start
	for time.Now().Before(deadline) {
		swept := st.Swept() - swept0
		if began.IsZero() && swept > 0 {
			began = time.Now()
			sweeping.Store(true)
		}
		if swept >= int64(*expired) {
			ended = time.Now()
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop.Store(true)
	close(done)
	wg.Wait()
	if ended.IsZero() {
		fail("the sweep did not finish within 5 minutes (%d of %d swept)", st.Swept()-swept0, *expired)
	}
	fmt.Printf("sweep: %d expired tokens deleted in %.1f s while %d issuances and %d lookups ran; the sweep held the writer lock at most %.2f ms at a time\n",
		*expired, ended.Sub(began).Seconds(), len(issueLat), len(getLat), us(st.SweepHold())/1000)
	for _, p := range []struct {
		name       string
		issue, get []time.Duration
	}{{"before the sweep", issueBase, getBase}, {"during the sweep", issueLat, getLat}} {
		if len(p.issue) == 0 || len(p.get) == 0 {
			continue
		}
		fmt.Printf("sweep: %s: issuance p50 %.0f µs, p99 %.1f ms, max %.1f ms; lookup p50 %.1f µs, p99 %.0f µs, max %.1f ms\n", p.name,
			us(pct(p.issue, 0.5)), us(pct(p.issue, 0.99))/1000, us(pct(p.issue, 1))/1000,
			us(pct(p.get, 0.5)), us(pct(p.get, 0.99)), us(pct(p.get, 1))/1000)
	}
}
