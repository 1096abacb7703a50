package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/oauth2gate/oauth2gate/authz/tokenstore"
)

// pebbleCacheSize is the block cache bound (configured, allocated on demand).
const pebbleCacheSize = 64 << 20

// pebbleEngine writes each issuance as one batch committed with
// pebble.Sync: the WAL groups the syncs of concurrent commits.
type pebbleEngine struct {
	db *pebble.DB

	stalls     atomic.Int64
	stallNanos atomic.Int64
	stallFrom  atomic.Int64
	flushes    atomic.Int64
	compacts   atomic.Int64
}

func (e *pebbleEngine) open(dir string) error {
	c := pebble.NewCache(pebbleCacheSize)
	defer c.Unref()
	opts := &pebble.Options{
		Cache:        c,
		MemTableSize: 32 << 20,
		EventListener: &pebble.EventListener{
			WriteStallBegin: func(pebble.WriteStallBeginInfo) {
				e.stalls.Add(1)
				e.stallFrom.Store(time.Now().UnixNano())
			},
			WriteStallEnd: func() {
				if from := e.stallFrom.Swap(0); from != 0 {
					e.stallNanos.Add(time.Now().UnixNano() - from)
				}
			},
			FlushEnd:      func(pebble.FlushInfo) { e.flushes.Add(1) },
			CompactionEnd: func(pebble.CompactionInfo) { e.compacts.Add(1) },
		},
	}
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	opts.EnsureDefaults()
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return err
	}
	e.db = db
	return nil
}

func (e *pebbleEngine) issue(h *tokenstore.Hash, val []byte, exp int64) error {
	var kb, eb, cb [64]byte
	tk := accessKey(kb[:0], h)
	b := e.db.NewBatch()
	defer b.Close()
	_ = b.Set(tk, val, nil)
	_ = b.Set(expiryKey(eb[:0], exp, tk), nil, nil)
	_ = b.Set(clientKey(cb[:0], clientID, tk), nil, nil)
	return b.Commit(pebble.Sync)
}

func (e *pebbleEngine) get(h *tokenstore.Hash, buf []byte) ([]byte, bool, error) {
	var kb [64]byte
	v, closer, err := e.db.Get(accessKey(kb[:0], h))
	if errors.Is(err, pebble.ErrNotFound) {
		return buf[:0], false, nil
	} else if err != nil {
		return buf[:0], false, err
	}
	out := append(buf[:0], v...)
	return out, true, closer.Close()
}

func (e *pebbleEngine) sweep(now int64, deadline time.Time) (int, error) {
	upTo := binary.BigEndian.AppendUint64([]byte{pfxExpiry}, uint64(now+1)) // exclusive
	start := []byte{pfxExpiry}
	removed := 0
	keys := make([][]byte, 0, sweepChunk)
	var val []byte
	for time.Now().Before(deadline) {
		keys = keys[:0]
		it, err := e.db.NewIter(&pebble.IterOptions{LowerBound: start, UpperBound: upTo})
		if err != nil {
			return removed, err
		}
		for ok := it.First(); ok && len(keys) < sweepChunk; ok = it.Next() {
			keys = append(keys, bytes.Clone(it.Key()))
		}
		if err := it.Close(); err != nil {
			return removed, err
		}
		if len(keys) == 0 {
			return removed, nil
		}
		b := e.db.NewBatch()
		var cb [128]byte
		for _, ek := range keys {
			tk := ek[9:]
			v, closer, err := e.db.Get(tk)
			if err == nil {
				val = append(val[:0], v...)
				_ = closer.Close()
				_ = b.Delete(clientKey(cb[:0], string(cidOf(val)), tk), nil)
				_ = b.Delete(tk, nil)
			} else if !errors.Is(err, pebble.ErrNotFound) {
				b.Close()
				return removed, err
			}
			_ = b.Delete(ek, nil)
		}
		err = b.Commit(pebble.Sync)
		b.Close()
		if err != nil {
			return removed, err
		}
		removed += len(keys)
		start = append(keys[len(keys)-1], 0)
	}
	return removed, nil
}

func (e *pebbleEngine) extra() map[string]float64 {
	m := e.db.Metrics()
	return map[string]float64{
		"write_stalls":         float64(e.stalls.Load()),
		"write_stall_ms":       float64(e.stallNanos.Load()) / 1e6,
		"flushes":              float64(e.flushes.Load()),
		"compactions":          float64(e.compacts.Load()),
		"block_cache_bytes":    float64(m.BlockCache.Size),
		"memtable_bytes":       float64(m.MemTable.Size),
		"l0_sublevels":         float64(m.Levels[0].Sublevels),
		"read_amp":             float64(m.ReadAmp()),
		"block_cache_hit_rate": float64(m.BlockCache.Hits) / max(float64(m.BlockCache.Hits+m.BlockCache.Misses), 1),
	}
}

func (e *pebbleEngine) close() error { return e.db.Close() }
