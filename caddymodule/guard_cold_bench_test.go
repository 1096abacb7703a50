//go:build unix

package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// cpuTime is the CPU time this process has used, every goroutine included.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkGuardHandlerCold is the same with 20,000 tokens and 256 KiB of
// other memory touched between requests, as the rest of a proxied request
// does in a real process: the guard's data is then rarely in a CPU cache.
// The sub-benchmark "other" is that memory traffic alone, to subtract.
// cpu-ns/op is the process's CPU time per request, so it includes the work
// ristretto's policy goroutine does for each lookup on the other core.
func BenchmarkGuardHandlerCold(b *testing.B) {
	f := newGuardFixture(b)
	const n = 20000
	reqs, auth := f.warmRequests(b, n)
	w := httptest.NewRecorder()
	other := make([]byte, 256<<10)
	touch := func(i int) {
		for j := (i * 64) % 4096; j < len(other); j += 4096 {
			other[j]++
		}
	}
	b.Run("other", func(b *testing.B) {
		t0 := cpuTime()
		for i := 0; i < b.N; i++ {
			touch(i)
		}
		b.ReportMetric(float64(cpuTime()-t0)/float64(b.N), "cpu-ns/op")
	})
	b.Run("guard", func(b *testing.B) {
		passed := 0
		next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { passed++; return nil })
		b.ReportAllocs()
		t0 := cpuTime()
		for i := 0; i < b.N; i++ {
			touch(i)
			r := reqs[(i*7919)%n]
			r.Header["Authorization"] = auth[(i*7919)%n]
			if err := f.guard.ServeHTTP(w, r, next); err != nil {
				b.Fatal(err)
			}
		}
		f.cache.Wait() // ristretto's policy goroutine has done its share
		b.ReportMetric(float64(cpuTime()-t0)/float64(b.N), "cpu-ns/op")
		if passed != b.N {
			b.Fatalf("%d of %d requests passed", passed, b.N)
		}
	})
}
