package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

func fmtExtra(m map[string]float64) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(&b, "%s=%.4g ", k, m[k])
	}
	return strings.TrimSpace(b.String())
}

// goal is the longest pause of issuance or lookup allowed during a sweep.
const goal = 50 * time.Millisecond

// summary prints the markdown table: one row per figure, one column per engine.
func summary(w io.Writer, n uint64, conns int, rs []*engineResult) {
	fmt.Fprintf(w, "\n## storecmp summary: n=%d, %d issuers, %s\n\n", n, conns, time.Now().UTC().Format(time.RFC3339))
	row := func(label string, f func(r *engineResult) string) {
		cells := []string{label}
		for _, r := range rs {
			if r.Err != "" && r.Fill.Reached == 0 {
				cells = append(cells, "error: "+r.Err)
				continue
			}
			cells = append(cells, f(r))
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}
	head := []string{"figure"}
	sep := []string{"---"}
	for _, r := range rs {
		head, sep = append(head, r.Name), append(sep, "---:")
	}
	fmt.Fprintf(w, "| %s |\n| %s |\n", strings.Join(head, " | "), strings.Join(sep, " | "))
	per := func(r *engineResult, b int64) string {
		return fmt.Sprintf("%.0f B", float64(b)/float64(max(r.Fill.Reached, 1)))
	}
	row("tokens filled", func(r *engineResult) string {
		s := fmt.Sprintf("%d", r.Fill.Reached)
		if r.Fill.TimedOut {
			s += fmt.Sprintf(" (stopped at bound after %s)", r.Fill.Dur.Round(time.Second))
		}
		return s
	})
	row("record (value) size", func(r *engineResult) string { return fmt.Sprintf("%d B", r.ValueLen) })
	row("fill, whole (tokens/s)", func(r *engineResult) string { return fmt.Sprintf("%.0f", r.Fill.Total) })
	row("fill, first 100k (tokens/s)", func(r *engineResult) string { return fmt.Sprintf("%.0f", r.Fill.First) })
	row("fill, last 100k (tokens/s)", func(r *engineResult) string { return fmt.Sprintf("%.0f", r.Fill.Last) })
	row("fill duration", func(r *engineResult) string { return r.Fill.Dur.Round(time.Millisecond).String() })
	row("disk after close, du", func(r *engineResult) string { return mib(r.DiskUsed) })
	row("disk per token, du", func(r *engineResult) string { return per(r, r.DiskUsed) })
	row("restart: open to first Get", func(r *engineResult) string { return errOr(r.Open.Err, dur(r.Open.Restart)) })
	row("VmRSS +after open", func(r *engineResult) string { return mib(r.Open.RSSOpen) })
	row("VmRSS +after 200k Gets", func(r *engineResult) string { return mib(r.Open.RSSGets) })
	row("VmRSS +after Gets, per token", func(r *engineResult) string { return per(r, r.Open.RSSGets) })
	row("VmRSS +after Gets and GC, per token", func(r *engineResult) string { return per(r, r.Open.RSSFreed) })
	row("… minus pebble block cache in use, per token", func(r *engineResult) string {
		if r.Name != "pebble" {
			return "–"
		}
		c := int64(r.Open.Extra["block_cache_bytes"])
		return fmt.Sprintf("%s (cache %s)", per(r, r.Open.RSSGets-c), mib(c))
	})
	row("Get existing p50", func(r *engineResult) string { return dur(r.Open.HitP50) })
	row("Get existing p99", func(r *engineResult) string { return dur(r.Open.HitP99) })
	row("Get absent p50", func(r *engineResult) string { return dur(r.Open.MissP50) })
	row("sweep: removed / expired", func(r *engineResult) string {
		return fmt.Sprintf("%d / %d", r.Sweep.Removed, r.Sweep.Expected)
	})
	row("sweep duration", func(r *engineResult) string { return errOr(r.Sweep.Err, dur(r.Sweep.Dur)) })
	ld := func(f func(l *loadStats) string) func(r *engineResult) string {
		return func(r *engineResult) string {
			if r.Sweep.Load == nil {
				return "–"
			}
			return f(r.Sweep.Load)
		}
	}
	row("issuance p99 / max, before sweep", ld(func(l *loadStats) string { return pm(&l.baseIssue) }))
	row("issuance p99 / max, during sweep", ld(func(l *loadStats) string { return pm(&l.sweepIssue) }))
	row("Get p99 / max, before sweep", ld(func(l *loadStats) string { return pm(&l.baseGet) }))
	row("Get p99 / max, during sweep", ld(func(l *loadStats) string { return pm(&l.sweepGet) }))
	row("issuances / Gets during sweep", ld(func(l *loadStats) string {
		return fmt.Sprintf("%d / %d", l.sweepIssue.n, l.sweepGet.n)
	}))
	row("ops ≥ 50 ms before / during sweep (issuances, Gets)", ld(func(l *loadStats) string {
		return fmt.Sprintf("%d, %d / %d, %d", l.baseIssue.over(goal), l.baseGet.over(goal), l.sweepIssue.over(goal), l.sweepGet.over(goal))
	}))
	row("no pause > 50 ms during sweep", ld(func(l *loadStats) string {
		if l.sweepIssue.n == 0 && l.sweepGet.n == 0 {
			return "no op overlapped"
		}
		if l.sweepIssue.max <= goal && l.sweepGet.max <= goal {
			return "met"
		}
		return "NOT met"
	}))
	var notes []string
	for _, r := range rs {
		if r.Sweep.Note != "" {
			notes = append(notes, r.Name+": "+strings.TrimPrefix(r.Sweep.Note, "; "))
		}
		if r.Err != "" {
			notes = append(notes, r.Name+": "+r.Err)
		}
	}
	if len(notes) > 0 {
		fmt.Fprintf(w, "\nNotes: %s\n", strings.Join(notes, "; "))
	}
}

func pm(h *hist) string {
	if h.n == 0 {
		return "–"
	}
	return dur(h.quantile(0.99)) + " / " + dur(h.max)
}

func errOr(err, s string) string {
	if err != "" {
		return "error: " + err
	}
	return s
}
