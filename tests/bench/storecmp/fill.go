package main

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

type fillResult struct {
	Reached  uint64
	Dur      time.Duration
	Total    float64 // tokens/s over the whole fill
	First    float64 // over the first 100k
	Last     float64 // over the last 100k
	TimedOut bool
	Errors   int64
	FirstErr string
}

// fill issues tokens 0..n-1 from conns goroutines, each waiting for its
// issuance to return as an HTTP handler would, until n or limit. expOf gives
// token i's expiry.
func fill(label string, e engine, n uint64, conns int, seed uint64, expOf func(i uint64, now int64) int64, limit time.Duration) fillResult {
	var next, done atomic.Uint64
	var errs atomic.Int64
	var firstErr atomic.Value
	var abort atomic.Bool
	const mark = 10000
	marks := make([]atomic.Int64, n/mark+2) // when each 10000th issuance returned
	start := time.Now()
	deadline := start.Add(limit)
	marks[0].Store(start.UnixNano())

	var lastDone uint64
	lastT := start
	stopTick := ticker(5*time.Second, func() {
		d, now := done.Load(), time.Now()
		logf("%s: %d/%d tokens, %.0f/s overall, %.0f/s last %.0fs", label, d, n,
			float64(d)/now.Sub(start).Seconds(), float64(d-lastDone)/now.Sub(lastT).Seconds(), now.Sub(lastT).Seconds())
		lastDone, lastT = d, now
	})
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var vb [256]byte
			for !abort.Load() && time.Now().Before(deadline) {
				i := next.Add(1) - 1
				if i >= n {
					return
				}
				h := hashOf(seed, i)
				now := time.Now().Unix()
				exp := expOf(i, now)
				if err := e.issue(&h, recordJSON(vb[:0], now, exp), exp); err != nil {
					if errs.Add(1) == 1 {
						firstErr.Store(err.Error())
					}
					if errs.Load() > 1000 {
						abort.Store(true)
					}
				}
				if d := done.Add(1); d%mark == 0 {
					marks[d/mark].Store(time.Now().UnixNano())
				}
			}
		}()
	}
	wg.Wait()
	stopTick()
	end := time.Now()
	r := fillResult{Reached: done.Load(), Dur: end.Sub(start), Errors: errs.Load()}
	r.TimedOut = r.Reached < n
	if s, ok := firstErr.Load().(string); ok {
		r.FirstErr = s
	}
	r.Total = float64(r.Reached) / r.Dur.Seconds()
	const win = 100000
	if r.Reached >= win {
		r.First = win / (time.Duration(marks[win/mark].Load() - start.UnixNano())).Seconds()
		k := (r.Reached - win + mark - 1) / mark // first mark inside the last 100k
		from := time.Unix(0, marks[k].Load())
		r.Last = float64(r.Reached-k*mark) / end.Sub(from).Seconds()
	} else {
		r.First, r.Last = r.Total, r.Total
	}
	logf("%s: done, %d tokens in %s (%.0f/s; first 100k %.0f/s, last 100k %.0f/s)%s", label, r.Reached, r.Dur.Round(time.Millisecond),
		r.Total, r.First, r.Last, map[bool]string{true: fmt.Sprintf(" STOPPED at the %s bound", limit), false: ""}[r.TimedOut])
	if r.Errors > 0 {
		logf("%s: %d issuance errors, first: %s", label, r.Errors, r.FirstErr)
	}
	return r
}

// window is the span of a sweep, in unix ns (0: not yet), against which
// each operation of the load is classed when it returns.
type window struct{ start, end atomic.Int64 }

// loadStats are the latencies of the load, before the sweep (baseline) and
// overlapping it.
type loadStats struct {
	baseIssue, sweepIssue, baseGet, sweepGet hist
	errs                                     int64
}

// getInterval paces each reader of the sweep's load (-sweep-get-interval):
// one Get per interval, 0 for back to back.
var getInterval time.Duration

// runLoad issues new tokens from conns goroutines and Gets random live fill
// tokens (0..liveN-1) from getters goroutines until stop is closed or limit.
func runLoad(e engine, conns, getters int, seed, liveN uint64, w *window, stop <-chan struct{}, limit time.Duration) *loadStats {
	var mu sync.Mutex
	var wg sync.WaitGroup
	out := &loadStats{}
	var nextTok atomic.Uint64
	deadline := time.Now().Add(limit)
	worker := func(id int, isGet bool) {
		defer wg.Done()
		var base, during hist
		var errs int64
		rng := newRand(seed, uint64(id)+1000)
		var vb, buf [256]byte
		next := time.Now()
		for time.Now().Before(deadline) && !closed(stop) {
			if isGet && getInterval > 0 {
				next = next.Add(getInterval)
				if d := time.Until(next); d > 0 {
					time.Sleep(d)
				} else if d < -time.Second {
					next = time.Now() // far behind (a long pause): do not burst
				}
			}
			var err error
			t0 := time.Now()
			if isGet {
				h := hashOf(seed, liveIndex(rng.Uint64(), liveN))
				var found bool
				_, found, err = e.get(&h, buf[:0])
				if err == nil && !found {
					err = fmt.Errorf("live token not found")
				}
			} else {
				h := hashOf(seed, loadBase+nextTok.Add(1))
				now := t0.Unix()
				exp := now + int64(tokenTTL/time.Second)
				err = e.issue(&h, recordJSON(vb[:0], now, exp), exp)
			}
			t1 := time.Now()
			if err != nil {
				errs++
			}
			s, en := w.start.Load(), w.end.Load()
			switch {
			case s != 0 && t1.UnixNano() >= s && (en == 0 || t0.UnixNano() <= en):
				during.add(t1.Sub(t0))
			case s == 0 || t1.UnixNano() < s:
				base.add(t1.Sub(t0))
			}
		}
		mu.Lock()
		defer mu.Unlock()
		out.errs += errs
		if isGet {
			out.baseGet.merge(&base)
			out.sweepGet.merge(&during)
		} else {
			out.baseIssue.merge(&base)
			out.sweepIssue.merge(&during)
		}
	}
	for i := range conns {
		wg.Add(1)
		go worker(i, false)
	}
	for i := range getters {
		wg.Add(1)
		go worker(conns+i, true)
	}
	wg.Wait()
	return out
}

func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
