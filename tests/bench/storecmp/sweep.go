package main

import (
	"fmt"
	"os"
	"time"
)

// Load during a sweep, as the brief sets it: issuers and readers.
const (
	sweepIssuers  = 32
	sweepGetters  = 4
	baselineWait  = 3 * time.Second
	afterSweep    = 500 * time.Millisecond
	buntExpiryMax = 2 * time.Minute // after the expiry moment
)

type sweepResult struct {
	Removed  int
	Expected int
	Dur      time.Duration
	Load     *loadStats
	Note     string
	Err      string
	Fill     *fillResult // buntdb's own fill for its expiry
	Extra    map[string]float64
}

// sweepIndexed reopens the store the fill left (10% of it expired), starts
// the load, and after a baseline runs the engine's sweep of the expiry index.
func sweepIndexed(name string, e engine, dir string, reached, seed uint64, limit time.Duration) (r sweepResult) {
	r.Expected = int(reached / 10)
	if err := e.open(dir); err != nil {
		r.Err = "reopen: " + err.Error()
		return r
	}
	defer e.close()
	w := &window{}
	stop := make(chan struct{})
	done := make(chan *loadStats)
	go func() { done <- runLoad(e, sweepIssuers, sweepGetters, seed, reached, w, stop, limit+time.Minute) }()
	logf("%s sweep: load of %d issuers and %d readers, baseline %s", name, sweepIssuers, sweepGetters, baselineWait)
	time.Sleep(baselineWait)
	t0 := time.Now()
	w.start.Store(t0.UnixNano())
	logf("%s sweep: sweeping %d expired tokens", name, r.Expected)
	removed, err := e.sweep(t0.Unix(), t0.Add(limit))
	t1 := time.Now()
	w.end.Store(t1.UnixNano())
	r.Removed, r.Dur = removed, t1.Sub(t0)
	if err != nil {
		r.Err = "sweep: " + err.Error()
	}
	if removed < r.Expected {
		r.Note = fmt.Sprintf("sweep stopped at the %s bound", limit)
	}
	time.Sleep(afterSweep)
	close(stop)
	r.Load = <-done
	r.Extra = e.extra()
	logf("%s sweep: removed %d in %s", name, removed, r.Dur.Round(time.Millisecond))
	return r
}

// sweepBunt measures buntdb's own background expiry, which deletes every
// expired key in one write transaction each second. buntdb expires by the
// clock, so it gets its own fill of n tokens in which every 10th expires at
// one moment T, set after the expected end of the fill (from the main
// fill's duration); the load starts before T.
func sweepBunt(n uint64, conns int, seed uint64, dir string, mainFill time.Duration, fillLimit, limit time.Duration) (r sweepResult) {
	e := &buntEngine{}
	w := &window{}
	e.win = w
	if err := e.open(dir); err != nil {
		r.Err = "open: " + err.Error()
		return r
	}
	defer os.RemoveAll(dir)
	defer e.close()
	budget := min(mainFill*13/10+10*time.Second, fillLimit+10*time.Second)
	expAt := time.Now().Add(budget).Unix() + 1
	logf("buntdb sweep: own fill of %d tokens, every 10th expiring at %s", n, time.Unix(expAt, 0).UTC().Format("15:04:05"))
	f := fill("buntdb sweep fill", e, n, conns, seed, func(i uint64, now int64) int64 {
		if shortLived(i) {
			return expAt
		}
		return now + int64(tokenTTL/time.Second)
	}, fillLimit)
	r.Fill = &f
	r.Expected = int(f.Reached / 10)
	if early := e.expired.Load(); early > 0 {
		r.Note = fmt.Sprintf("%d of %d expired during the fill, before the load", early, r.Expected)
	}
	if wait := time.Until(time.Unix(expAt, 0).Add(-baselineWait)); wait > 0 {
		logf("buntdb sweep: waiting %s for the expiry moment", wait.Round(time.Millisecond))
		time.Sleep(wait)
	}
	stop := make(chan struct{})
	done := make(chan *loadStats)
	go func() {
		done <- runLoad(e, sweepIssuers, sweepGetters, seed, f.Reached, w, stop, baselineWait+buntExpiryMax+time.Minute)
	}()
	logf("buntdb sweep: load of %d issuers and %d readers started", sweepIssuers, sweepGetters)
	bound := time.Unix(expAt, 0).Add(buntExpiryMax)
	for int(e.expired.Load()) < r.Expected && time.Now().Before(bound) {
		time.Sleep(5 * time.Millisecond)
	}
	e.waitIdle() // the pass's transaction has ended
	t1 := time.Now()
	w.end.Store(t1.UnixNano())
	r.Removed = int(e.expired.Load())
	if first := e.firstExp.Load(); first != 0 {
		r.Dur = t1.Sub(time.Unix(0, first))
	}
	if r.Removed < r.Expected {
		r.Note += fmt.Sprintf("; expiry incomplete at the %s bound", buntExpiryMax)
	}
	time.Sleep(afterSweep)
	close(stop)
	r.Load = <-done
	r.Extra = e.extra()
	logf("buntdb sweep: buntdb expired %d in %s (first expiry to end of pass)", r.Removed, r.Dur.Round(time.Millisecond))
	return r
}
