package main

import (
	"bufio"
	"fmt"
	"io/fs"
	"math/bits"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// logf writes a timestamped progress line to stderr.
func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s %s\n", time.Now().UTC().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}

// hist is a log-linear latency histogram: 16 sub-buckets per power of two
// of nanoseconds (at most ~6% error on a quantile), with the exact maximum.
// It is not safe for concurrent use: each goroutine keeps its own and they
// are merged.
type hist struct {
	counts [64 * 16]uint64
	n      uint64
	max    time.Duration
}

func bucketOf(d time.Duration) int {
	v := uint64(max(d, 1))
	e := bits.Len64(v) - 1 // 2^e <= v
	if e < 4 {
		return int(v) // exact below 16 ns
	}
	sub := (v >> (e - 4)) & 15
	return e*16 + int(sub)
}

// lowOf is the smallest duration in bucket b.
func lowOf(b int) time.Duration {
	if b < 64 {
		return time.Duration(b)
	}
	e, sub := b/16, b%16
	return time.Duration((uint64(16) + uint64(sub)) << (e - 4))
}

func (h *hist) add(d time.Duration) {
	h.counts[bucketOf(d)]++
	h.n++
	if d > h.max {
		h.max = d
	}
}

func (h *hist) merge(o *hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// quantile is the upper edge of the bucket holding quantile q (capped at max).
func (h *hist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q * float64(h.n))
	if rank >= h.n {
		rank = h.n - 1
	}
	var seen uint64
	for b, c := range h.counts {
		seen += c
		if seen > rank {
			return min(lowOf(b+1), h.max)
		}
	}
	return h.max
}

// over counts the samples of d or more (to the bucket: within ~6% of d).
func (h *hist) over(d time.Duration) uint64 {
	var c uint64
	for b := bucketOf(d); b < len(h.counts); b++ {
		c += h.counts[b]
	}
	return c
}

// exactQuantiles sorts the samples and returns the given quantiles.
func exactQuantiles(s []time.Duration, qs ...float64) []time.Duration {
	slices.Sort(s)
	out := make([]time.Duration, len(qs))
	if len(s) == 0 {
		return out
	}
	for i, q := range qs {
		out[i] = s[min(int(q*float64(len(s))), len(s)-1)]
	}
	return out
}

// vmRSS is this process's resident set size in bytes, from /proc/self/status.
func vmRSS() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb << 10
		}
	}
	return -1
}

// diskUsage is what du reports for dir (allocated blocks) and the sum of the
// files' apparent sizes.
func diskUsage(dir string) (used, apparent int64) {
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			used += st.Blocks * 512
		}
		if !d.IsDir() {
			apparent += fi.Size()
		}
		return nil
	})
	return used, apparent
}

// ticker calls f every period until stop is closed; it returns a function
// that stops it and waits.
func ticker(period time.Duration, f func()) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				f()
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func dur(d time.Duration) string {
	switch {
	case d < 10*time.Microsecond:
		return fmt.Sprintf("%.2f µs", float64(d)/1e3)
	case d < time.Millisecond:
		return fmt.Sprintf("%.0f µs", float64(d)/1e3)
	case d < 10*time.Second:
		return fmt.Sprintf("%.1f ms", float64(d)/1e6)
	default:
		return fmt.Sprintf("%.1f s", d.Seconds())
	}
}
