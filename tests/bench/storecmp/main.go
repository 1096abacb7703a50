// Command storecmp compares three embedded key-value engines (buntdb, bbolt,
// pebble) as the token store's backend, on the issuance of client_credentials
// access tokens, so that the choice of engine rests on measurements.
//
// Each engine holds what the store needs per token: the record (the JSON of
// a tokenstore.Record, under a prefix byte and the token's SHA-256; buntdb
// under "a:"+hex as today's FileStore), an expiry index (bbolt and pebble;
// buntdb expires by its native TTL) and an index by client (bbolt, pebble: a
// key; buntdb: an index on the record's cid, as file_admin.go). Every engine
// makes the same promise: an issuance returns once its record survives kill
// -9 of the process (buntdb: write(2) of its log, fsync every second; bbolt:
// db.Batch, an fsync per batch; pebble: Commit(pebble.Sync), the WAL groups
// concurrent syncs). -conns goroutines issue concurrently, like wrk -c32 on
// the token endpoint.
//
// For each engine, one after another on the same workload, it measures:
//
//   - fill: tokens/s over n issuances, over the first and the last 100k;
//   - disk: du of the store after a clean close, per token;
//   - restart, in a fresh child process (-phase=open): open to the first
//     successful Get of a known key; VmRSS after open and after the lookups,
//     minus the child's VmRSS before opening;
//   - lookup: Get latency of random existing keys (p50, p99) and of absent
//     keys, one goroutine, in that child;
//   - sweep: with 10% of the tokens expired, the engine's sweep (bbolt,
//     pebble: the expiry index walked in chunks of 1000, a write transaction
//     each; buntdb: its own background expiry, on a separate fill whose 10%
//     expire at one moment) while 32 goroutines issue and 4 Get; its
//     duration and the p99 and max latency of issuances and Gets during it
//     and, for comparison, over the 3 s of the same load before it. The
//     issuers run back to back (wrk -c32); each reader does one Get per
//     -sweep-get-interval (1 ms: 4000 Gets/s), so that the readers do not
//     saturate the 2 cores themselves.
//
// Settings: buntdb as today's FileStore (SyncPolicy EverySecond,
// AutoShrinkPercentage 100, AutoShrinkMinSize 8 MiB, its group commit of up
// to 256 issuances per Update). bbolt: defaults but NoFreelistSync and the
// map freelist (so open scans the file for free pages), db.Batch with its
// default MaxBatchSize 1000 and MaxBatchDelay 10 ms (-bbolt-max-batch
// changes the size). pebble: a 64 MiB block cache, 32 MiB memtables, a
// 10-bit bloom filter on every level, then EnsureDefaults. The record is
// that of a client_credentials token (cid and sub "bench", scope "read
// write", 24 h); in the bbolt and pebble fills every 10th one has already
// expired, for the sweep. A Get copies the record out but does not decode
// the JSON (the same cost for every engine).
//
// Progress lines go to stderr with timestamps, figures and a markdown
// summary to stdout. Every phase is bounded in count and time. Run:
//
//	go run ./tests/bench/storecmp -engines buntdb,bbolt,pebble -n 1000000
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"time"
)

func main() {
	engines := flag.String("engines", "buntdb,bbolt,pebble", "comma-separated engines to measure, in order")
	n := flag.Uint64("n", 1000000, "tokens to fill per engine")
	dir := flag.String("dir", "", "work directory (default: a temp dir, removed afterwards); each engine's store is removed once measured unless -keep")
	conns := flag.Int("conns", 32, "concurrent issuers during the fill")
	keep := flag.Bool("keep", false, "keep each engine's store")
	seed := flag.Uint64("seed", 1, "seed of the tokens")
	lookups := flag.Int("lookups", 200000, "Gets of existing (and of absent) keys in the restarted child")
	fillLimit := flag.Duration("fill-limit", 15*time.Minute, "bound of one fill; the fill stops there and the rest runs on what it reached")
	fillLimits := flag.String("fill-limits", "", "per-engine fill bounds overriding -fill-limit, as engine=duration,... (bbolt=5m)")
	sweepLimit := flag.Duration("sweep-limit", 10*time.Minute, "bound of one sweep")
	flag.DurationVar(&getInterval, "sweep-get-interval", time.Millisecond, "pace of each of the 4 readers during the sweep (0: back to back, which saturates the CPU)")
	flag.IntVar(&boltMaxBatch, "bbolt-max-batch", 0, "bbolt DB.MaxBatchSize (0: bbolt's default, 1000)")
	phase := flag.String("phase", "", "internal: open runs the restart child")
	flag.Parse()

	if *phase == "open" {
		childMain(*engines, *dir, *n, *seed, *lookups)
		return
	}
	work := *dir
	if work == "" {
		d, err := os.MkdirTemp("", "storecmp-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		work = d
		defer os.RemoveAll(d)
	}
	var results []*engineResult
	for _, name := range strings.Split(*engines, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		limit := *fillLimit
		for _, kv := range strings.Split(*fillLimits, ",") {
			if k, v, ok := strings.Cut(kv, "="); ok && strings.TrimSpace(k) == name {
				d, err := time.ParseDuration(strings.TrimSpace(v))
				if err != nil {
					fmt.Fprintln(os.Stderr, "-fill-limits:", err)
					os.Exit(2)
				}
				limit = d
			}
		}
		r := measure(name, filepath.Join(work, name), *n, *conns, *seed, *lookups, limit, *sweepLimit)
		if !*keep {
			os.RemoveAll(filepath.Join(work, name))
		}
		results = append(results, r)
	}
	summary(os.Stdout, *n, *conns, results)
}

type engineResult struct {
	Name      string
	Err       string
	Fill      fillResult
	ValueLen  int
	DiskUsed  int64
	DiskApp   int64
	Open      openResult
	Sweep     sweepResult
	FillExtra map[string]float64
}

func measure(name, dir string, n uint64, conns int, seed uint64, lookups int, fillLimit, sweepLimit time.Duration) *engineResult {
	r := &engineResult{Name: name}
	r.ValueLen = len(recordJSON(nil, time.Now().Unix(), time.Now().Add(tokenTTL).Unix()))
	e, err := newEngine(name)
	if err == nil {
		err = e.open(dir)
	}
	if err != nil {
		r.Err = err.Error()
		logf("%s: %v", name, err)
		return r
	}
	logf("%s: filling %d tokens from %d goroutines into %s (record %d bytes)", name, n, conns, dir, r.ValueLen)
	_, selfExpiring := e.(*buntEngine)
	r.Fill = fill(name+" fill", e, n, conns, seed, func(i uint64, now int64) int64 {
		if shortLived(i) && !selfExpiring {
			return now - 60 // expired by the sweep; buntdb gets its own fill for that
		}
		return now + int64(tokenTTL/time.Second)
	}, fillLimit)
	r.FillExtra = e.extra()
	t := time.Now()
	if err := e.close(); err != nil {
		r.Err = "close: " + err.Error()
	}
	logf("%s: closed in %s", name, time.Since(t).Round(time.Millisecond))
	freeMem() // the child must not share the machine with this heap's garbage
	r.DiskUsed, r.DiskApp = diskUsage(dir)
	reached := r.Fill.Reached
	per := func(b int64) float64 { return float64(b) / float64(max(reached, 1)) }
	out("%s fill: %.0f tokens/s over %d tokens (%s)%s; first 100k %.0f/s; last 100k %.0f/s; errors %d",
		name, r.Fill.Total, reached, r.Fill.Dur.Round(time.Millisecond), stoppedNote(r.Fill), r.Fill.First, r.Fill.Last, r.Fill.Errors)
	out("%s fill engine figures: %s", name, fmtExtra(r.FillExtra))
	out("%s disk: %d bytes (du) = %.1f bytes/token; apparent %d bytes = %.1f bytes/token", name, r.DiskUsed, per(r.DiskUsed), r.DiskApp, per(r.DiskApp))

	r.Open = runChild(name, dir, reached, seed, lookups, 20*time.Minute)
	if r.Open.Err != "" {
		out("%s restart: ERROR %s", name, r.Open.Err)
	}
	o := r.Open
	out("%s restart: open to first Get %s", name, o.Restart.Round(time.Microsecond))
	out("%s memory: child VmRSS before open %s; +%s after open (%.0f B/token); +%s after %d Gets (%.0f B/token); +%s after GC+FreeOSMemory (%.0f B/token)",
		name, mib(o.RSSBefore), mib(o.RSSOpen), per(o.RSSOpen), mib(o.RSSGets), o.Lookups, per(o.RSSGets), mib(o.RSSFreed), per(o.RSSFreed))
	if name == "pebble" {
		c := int64(o.Extra["block_cache_bytes"])
		out("%s memory: block cache in use %s (bound %s); after Gets minus cache in use +%s (%.0f B/token)",
			name, mib(c), mib(pebbleCacheSize), mib(o.RSSGets-c), per(o.RSSGets-c))
	}
	out("%s lookup: existing keys p50 %s p99 %s max %s (%d/%d found); absent keys p50 %s p99 %s",
		name, dur(o.HitP50), dur(o.HitP99), dur(o.HitMax), o.Hits, o.Lookups, dur(o.MissP50), dur(o.MissP99))
	out("%s child engine figures: %s", name, fmtExtra(o.Extra))

	if name == "buntdb" {
		r.Sweep = sweepBunt(n, conns, seed, dir+"-sweep", r.Fill.Dur, fillLimit, sweepLimit)
	} else {
		e2, _ := newEngine(name)
		r.Sweep = sweepIndexed(name, e2, dir, reached, seed, sweepLimit)
	}
	freeMem()
	s := r.Sweep
	if s.Err != "" {
		out("%s sweep: ERROR %s", name, s.Err)
	}
	if s.Fill != nil {
		out("%s sweep fill: %.0f tokens/s over %d tokens%s", name, s.Fill.Total, s.Fill.Reached, stoppedNote(*s.Fill))
	}
	out("%s sweep: removed %d of %d expired in %s%s", name, s.Removed, s.Expected, s.Dur.Round(time.Millisecond), noteOf(s.Note))
	if l := s.Load; l != nil {
		out("%s sweep: issuance before sweep p50 %s p99 %s max %s (%d); during sweep p50 %s p99 %s max %s (%d)", name,
			dur(l.baseIssue.quantile(0.5)), dur(l.baseIssue.quantile(0.99)), dur(l.baseIssue.max), l.baseIssue.n,
			dur(l.sweepIssue.quantile(0.5)), dur(l.sweepIssue.quantile(0.99)), dur(l.sweepIssue.max), l.sweepIssue.n)
		out("%s sweep: Get before sweep p50 %s p99 %s max %s (%d); during sweep p50 %s p99 %s max %s (%d); load errors %d", name,
			dur(l.baseGet.quantile(0.5)), dur(l.baseGet.quantile(0.99)), dur(l.baseGet.max), l.baseGet.n,
			dur(l.sweepGet.quantile(0.5)), dur(l.sweepGet.quantile(0.99)), dur(l.sweepGet.max), l.sweepGet.n, l.errs)
		out("%s sweep: ops of 50 ms or more: issuances %d before, %d during; Gets %d before, %d during", name,
			l.baseIssue.over(goal), l.sweepIssue.over(goal), l.baseGet.over(goal), l.sweepGet.over(goal))
	}
	out("%s sweep engine figures: %s", name, fmtExtra(s.Extra))
	return r
}

func stoppedNote(f fillResult) string {
	if f.TimedOut {
		return " STOPPED at the time bound"
	}
	return ""
}

func noteOf(s string) string {
	if s == "" {
		return ""
	}
	return " (" + strings.TrimPrefix(s, "; ") + ")"
}

// out prints a figure line to stdout, timestamped like the progress lines.
func out(format string, args ...any) {
	fmt.Printf("%s RESULT %s\n", time.Now().UTC().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

func freeMem() {
	runtime.GC()
	debug.FreeOSMemory()
	logf("parent VmRSS %s", mib(vmRSS()))
}
