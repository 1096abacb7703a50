package tests

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// adminGet reads an admin API path of the instance.
func adminGet(t *testing.T, in *instance, path string) []byte {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", in.adminPort, path))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return b
}

var goroutineTotal = regexp.MustCompile(`goroutine profile: total (\d+)`)

// footprint is Caddy's goroutine count and live heap after a forced GC.
func footprint(t *testing.T, in *instance) (int, uint64) {
	t.Helper()
	adminGet(t, in, "/debug/pprof/heap?gc=1") // runs runtime.GC first
	var vars struct {
		Memstats struct{ HeapAlloc uint64 } `json:"memstats"`
	}
	if err := json.Unmarshal(adminGet(t, in, "/debug/vars"), &vars); err != nil {
		t.Fatal(err)
	}
	m := goroutineTotal.FindSubmatch(adminGet(t, in, "/debug/pprof/goroutine?debug=1"))
	if m == nil {
		t.Fatal("no goroutine count from the admin API")
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n, vars.Memstats.HeapAlloc
}

// TestNoGrowthAfter100kBadTokens sends 100,000 requests with random bad
// tokens (unknown, malformed, oversized) to a guarded route and checks that
// Caddy's goroutines and live heap do not grow.
func TestNoGrowthAfter100kBadTokens(t *testing.T) {
	t.Parallel()
	g := startGuardGate(t, guardOpts{})
	burst := func(n int) {
		var next atomic.Int64
		var bad atomic.Int64
		var wg sync.WaitGroup
		deadline := time.Now().Add(60 * time.Second)
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var b [32]byte
				for next.Add(1) <= int64(n) && time.Now().Before(deadline) {
					_, _ = rand.Read(b[:])
					tok := base64.RawURLEncoding.EncodeToString(b[:])
					switch b[0] % 4 {
					case 1:
						tok = tok[:10] + " " + tok[10:]
					case 2:
						tok = tok + string([]byte{0xff, 0xfe})
					case 3:
						tok = tok + tok + tok + tok
					}
					r, err := g.send(apiCall{Path: "/rw/x", Bearer: tok})
					if err != nil || r.Status != 401 && r.Status != 400 {
						bad.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		if next.Load() <= int64(n) {
			t.Fatalf("only %d of %d requests sent in time", next.Load()-1, n)
		}
		if bad.Load() > 0 {
			t.Fatalf("%d requests with bad tokens got neither 400 nor 401", bad.Load())
		}
	}
	burst(10_000) // warm up: connections, pools, caches
	g0, h0 := footprint(t, g.in)
	burst(100_000)
	g1, h1 := footprint(t, g.in)
	t.Logf("after 100k bad-token requests: goroutines %d -> %d, live heap %.1f MiB -> %.1f MiB", g0, g1, float64(h0)/(1<<20), float64(h1)/(1<<20))
	if g1 > g0+8 {
		t.Errorf("goroutines grew from %d to %d", g0, g1)
	}
	if h1 > h0+8<<20 {
		t.Errorf("live heap grew from %d to %d bytes", h0, h1)
	}
}
