package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/oauth2gate/oauth2gate/authz/tokenstore"
)

func newRand(seed, stream uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, stream)) }

// openResult is what the child process measured.
type openResult struct {
	Restart time.Duration // start of open to the first successful Get
	// VmRSS of the child before opening, and the increase after open, after
	// the lookups, and after the lookups and a forced GC returning freed
	// heap to the OS.
	RSSBefore, RSSOpen, RSSGets, RSSFreed int64
	HitP50, HitP99, HitMax                time.Duration
	MissP50, MissP99                      time.Duration
	Hits, Lookups                         int
	Extra                                 map[string]float64
	Err                                   string
}

// runChild re-executes this program with -phase=open on dir and returns
// what it measured.
func runChild(name, dir string, n, seed uint64, lookups int, limit time.Duration) openResult {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-phase=open", "-engines="+name, "-dir="+dir,
		"-n="+strconv.FormatUint(n, 10), "-seed="+strconv.FormatUint(seed, 10), "-lookups="+strconv.Itoa(lookups),
		"-bbolt-max-batch="+strconv.Itoa(boltMaxBatch))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, os.Stderr
	logf("%s restart: child %s -phase=open", name, os.Args[0])
	var r openResult
	if err := cmd.Run(); err != nil {
		r.Err = fmt.Sprintf("child: %v", err)
		return r
	}
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		r.Err = fmt.Sprintf("child output %q: %v", out.String(), err)
	}
	return r
}

// childMain is the -phase=open process: open the store left by the fill,
// time open to the first Get, then memory and lookups.
func childMain(name, dir string, n, seed uint64, lookups int) {
	r := childMeasure(name, dir, n, seed, lookups)
	_ = json.NewEncoder(os.Stdout).Encode(&r)
}

func childMeasure(name, dir string, n, seed uint64, lookups int) (r openResult) {
	e, err := newEngine(name)
	if err != nil {
		r.Err = err.Error()
		return r
	}
	// The keys are made before the baseline, so their memory is not counted.
	rng := newRand(seed, 7)
	hits := make([]tokenstore.Hash, lookups)
	for i := range hits {
		hits[i] = hashOf(seed, liveIndex(rng.Uint64(), n))
	}
	misses := make([]tokenstore.Hash, lookups)
	for i := range misses {
		misses[i] = hashOf(seed, absentBase+uint64(i))
	}
	known := hashOf(seed, 0)
	lat := make([]time.Duration, lookups)
	buf := make([]byte, 0, 256)
	runtime.GC()
	debug.FreeOSMemory()
	r.RSSBefore = vmRSS()

	logf("%s restart: opening %s", name, dir)
	t0 := time.Now()
	if err := e.open(dir); err != nil {
		r.Err = "open: " + err.Error()
		return r
	}
	defer e.close()
	for try := 0; ; try++ {
		_, found, err := e.get(&known, buf)
		if err == nil && found {
			break
		}
		if try == 100 {
			r.Err = fmt.Sprintf("known key not found after open (err %v)", err)
			return r
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.Restart = time.Since(t0)
	r.RSSOpen = vmRSS() - r.RSSBefore
	logf("%s restart: open to first Get %s, VmRSS +%s", name, r.Restart.Round(time.Millisecond), mib(r.RSSOpen))

	r.Lookups = lookups
	for i := range hits {
		t := time.Now()
		_, found, err := e.get(&hits[i], buf)
		lat[i] = time.Since(t)
		if err == nil && found {
			r.Hits++
		}
	}
	q := exactQuantiles(lat, 0.5, 0.99, 1)
	r.HitP50, r.HitP99, r.HitMax = q[0], q[1], q[2]
	r.RSSGets = vmRSS() - r.RSSBefore
	runtime.GC()
	debug.FreeOSMemory()
	r.RSSFreed = vmRSS() - r.RSSBefore
	logf("%s lookups: %d/%d found, p50 %s p99 %s; VmRSS +%s (+%s after GC)", name, r.Hits, lookups, dur(r.HitP50), dur(r.HitP99), mib(r.RSSGets), mib(r.RSSFreed))

	for i := range misses {
		t := time.Now()
		_, found, err := e.get(&misses[i], buf)
		lat[i] = time.Since(t)
		if err != nil || found {
			r.Err = fmt.Sprintf("absent key: found=%v err=%v", found, err)
		}
	}
	q = exactQuantiles(lat, 0.5, 0.99)
	r.MissP50, r.MissP99 = q[0], q[1]
	r.Extra = e.extra()
	logf("%s absent lookups: p50 %s p99 %s", name, dur(r.MissP50), dur(r.MissP99))
	return r
}
