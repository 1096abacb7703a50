package tokenstore

import (
	"bytes"
	"errors"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.uber.org/zap"
)

// sweepChunk bounds one batch of the sweep: the writer lock is held for one
// chunk at a time (about a millisecond), so neither the token endpoint nor a
// revocation waits behind a sweep of a million expired tokens.
const sweepChunk = 128

// sweepPause is the sweep's rest between chunks.
const sweepPause = time.Millisecond

// sweepRescan is how far behind its cursor each sweep starts (a clock set
// back a little); every sweepFullEvery the sweep starts from the beginning.
const (
	sweepRescan    = 2
	sweepFullEvery = time.Hour
)

// sweeper deletes expired entries every sweepEvery, through the expiry
// index: 'e' + expiry second + key, so what expired is a prefix of the
// index, read from a cursor; the index holds no live entries before it.
func (s *FileStore) sweeper() {
	defer close(s.sweepOut)
	t := time.NewTicker(s.sweepEvery)
	defer t.Stop()
	var from int64
	lastFull := time.Now()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		if time.Since(lastFull) > sweepFullEvery {
			from, lastFull = 0, time.Now()
		}
		next, err := s.sweep(from)
		if err != nil {
			if !errors.Is(err, ErrClosed) {
				s.log.Warn("token store sweep", zap.Error(err))
			}
			continue
		}
		from = max(0, next-sweepRescan)
	}
}

// sweep deletes every entry whose expiry second is in [from, now] and
// returns now+1, where the next sweep may start.
func (s *FileStore) sweep(from int64) (int64, error) {
	// now is read under the writer lock: a write that comes later reads a
	// later clock, so its expiry entries are at now+1 or after.
	s.mu.Lock()
	now := s.now().Unix()
	s.mu.Unlock()
	lo, hi := ekey(from, nil), ekey(now+1, nil)
	for {
		select {
		case <-s.stop:
			return 0, ErrClosed
		default:
		}
		var items []sweepItem
		var last []byte
		err := s.enter(func() error {
			it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
			if err != nil {
				return err
			}
			n := 0
			for ok := it.First(); ok && n < sweepChunk; ok = it.Next() {
				last = bytes.Clone(it.Key())
				n++
			}
			if err := it.Close(); err != nil || n == 0 {
				return err
			}
			items, err = s.sweepPlan(lo, append(bytes.Clone(last), 0), now)
			return err
		})
		if err != nil || last == nil {
			return now + 1, err
		}
		if err := s.enter(func() error { return s.sweepApply(items, now) }); err != nil {
			return now + 1, err
		}
		if len(items) < sweepChunk {
			return now + 1, nil
		}
		lo = append(last, 0) // just after the last one
		// Between chunks, the writers first: a sweep of a million expired
		// tokens takes seconds and the token endpoint no extra wait.
		select {
		case <-s.stop:
			return 0, ErrClosed
		case <-time.After(sweepPause):
		}
	}
}

// sweepItem is one expiry index entry and what goes with it: the entry
// itself, and when the key it names has expired, that key and its index
// entries.
type sweepItem struct {
	e, k []byte
	ix   [][]byte
	// recheck: the key may have been written again with a later expiry
	// meanwhile (a family gains members), so it is read again under the lock.
	recheck bool
}

// sweepPlan reads, without the writer lock, the expiry entries in [lo, hi)
// and the keys they name, and decides what to delete.
func (s *FileStore) sweepPlan(lo, hi []byte, now int64) ([]sweepItem, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return nil, err
	}
	var items []sweepItem
	for ok := it.First(); ok; ok = it.Next() {
		item := sweepItem{e: bytes.Clone(it.Key())}
		items = append(items, item)
		if len(item.e) < 10 {
			continue
		}
		k := item.e[9:]
		v, closer, err := s.db.Get(k)
		if errors.Is(err, pebble.ErrNotFound) {
			continue
		} else if err != nil {
			it.Close()
			return nil, err
		}
		exp, payload, ok := splitValue(v)
		if ok && live(exp, now) {
			closer.Close()
			continue // written again with a later expiry: only the entry goes
		}
		item = sweepItem{e: item.e, k: k, recheck: k[0] == prefixFamily[0]}
		if ok && (k[0] == prefixAccess[0] || k[0] == prefixRefresh[0]) {
			if rec, err := decodeRecord(payload); err == nil {
				if rec.Subject != "" {
					item.ix = append(item.ix, ixkey(kindSubject, rec.Subject, k))
				}
				item.ix = append(item.ix, ixkey(kindClient, rec.ClientID, k))
			}
		}
		closer.Close()
		items[len(items)-1] = item
	}
	return items, it.Close()
}

// sweepApply deletes what sweepPlan found, in one batch under the writer
// lock: deletes only (a family is read again), so the lock is held for
// about a microsecond an entry. Not fsynced: a sweep lost to a crash is done
// again.
func (s *FileStore) sweepApply(items []sweepItem, now int64) error {
	s.mu.Lock()
	start := time.Now()
	b := s.db.NewBatch()
	var err error
	swept := 0
	for _, item := range items {
		if item.k != nil && item.recheck {
			if _, _, gerr := get(s.db, item.k, now); gerr == nil {
				item.k, item.ix = nil, nil // alive again
			}
		}
		if item.k != nil {
			swept++
			for _, k := range append(item.ix, item.k) {
				if err = b.Delete(k, nil); err != nil {
					break
				}
			}
		}
		if err == nil {
			err = b.Delete(item.e, nil)
		}
		if err != nil {
			break
		}
	}
	if err == nil {
		err = b.Commit(pebble.NoSync)
	}
	held := time.Since(start)
	s.mu.Unlock()
	b.Close()
	for {
		old := s.sweepHold.Load()
		if int64(held) <= old || s.sweepHold.CompareAndSwap(old, int64(held)) {
			break
		}
	}
	if err == nil {
		s.swept.Add(int64(swept))
	}
	return err
}
