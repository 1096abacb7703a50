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
const sweepChunk = 512

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
		var batch [][]byte
		err := s.enter(func() error {
			it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
			if err != nil {
				return err
			}
			for ok := it.First(); ok && len(batch) < sweepChunk; ok = it.Next() {
				batch = append(batch, bytes.Clone(it.Key()))
			}
			return it.Close()
		})
		if err != nil || len(batch) == 0 {
			return now + 1, err
		}
		err = s.enter(func() error {
			return s.write(func(w *batchWriter) error {
				for _, e := range batch {
					if err := w.sweepOne(e); err != nil {
						return err
					}
				}
				return nil
			}, false) // a sweep lost to a crash is done again
		})
		if err != nil {
			return now + 1, err
		}
		if len(batch) < sweepChunk {
			return now + 1, nil
		}
		lo = append(batch[len(batch)-1], 0) // just after the last one
	}
}

// sweepOne handles one expiry index entry: the entry goes, and the key it
// names goes too unless it was written again with a later expiry.
func (w *batchWriter) sweepOne(e []byte) error {
	if len(e) < 10 {
		return w.del(e)
	}
	k := e[9:]
	v, closer, err := w.b.Get(k)
	if err == nil {
		exp, _, ok := splitValue(v)
		closer.Close()
		if !ok || !live(exp, w.now) {
			if k[0] == prefixAccess[0] || k[0] == prefixRefresh[0] {
				err = w.delToken(k)
			} else {
				err = w.del(k)
			}
			if err != nil {
				return err
			}
			w.s.swept.Add(1)
		}
	} else if !errors.Is(err, pebble.ErrNotFound) {
		return err
	}
	return w.del(e)
}
