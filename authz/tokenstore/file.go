package tokenstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"go.uber.org/zap"
)

// FileStore is the embedded durable store: a pebble LSM tree (the engine of
// CockroachDB) in the directory tokens.pebble of the store directory.
//
// Why pebble and not buntdb or bbolt, on the measurements in BENCHMARKS.md
// ("Embedded store", tests/bench/storecmp and tests/bench/store10m.sh):
// buntdb, the store of earlier releases, holds every record in memory and
// replays its whole log when it opens, so ten million live tokens cost
// several GB and most of a minute during which Caddy does not listen. bbolt
// opens at once, but a commit rewrites the B+tree pages it touches and
// fsyncs them, and random keys (token hashes are random) make that a
// handful of pages per issuance. pebble appends each commit to its
// write-ahead log and sorts in the background: opening replays only the
// last memtable's log, memory is the block cache and memtables (both
// bounded, below), and a lookup is a few bloom-filtered block reads.
//
// The promises of the store: every write a caller is answered for is in
// the kernel first (one write(2) to the journal, file_journal.go), so a
// kill -9 of Caddy loses nothing a client got, and pebble's log is fsynced
// every second, so a power cut loses at most the last second (the promise
// of the buntdb store before it);
// every read-modify-write (taking a code, rotating a refresh token,
// revoking a family) runs under one writer lock and commits before the lock
// is released, so of many concurrent redemptions exactly one wins; expired
// entries are found through an expiry index and deleted a chunk at a time,
// so a sweep never holds the writer lock for long; pebble's compactions drop
// what was deleted, so the files do not grow without bound.
//
// Layout: every key starts with its kind's byte (keys.go); tokens, codes and
// their replay marks are followed by the 32-byte hash, the rest by a name.
// Every value starts with its expiry, 8 bytes of unix seconds (0: none).
// Beside the entries: 'e' + expiry + key (the expiry index), 'S' + subject
// and 'C' + client id, 0, kind, hash (the admin API's indexes).
type FileStore struct {
	db     *pebble.DB
	replay *replayWindow
	now    func() time.Time
	log    *zap.Logger

	// mu is the single writer lock: every write is built and committed
	// under it (reads are not).
	mu sync.Mutex
	// life guards against use after Close: every operation holds it for
	// reading, Close for writing.
	life   sync.RWMutex
	closed bool

	sweepEvery time.Duration
	swept      atomic.Int64
	sweepHold  atomic.Int64 // the longest the sweep held the writer lock, ns
	stop       chan struct{}
	stopOnce   sync.Once
	sweepOut   chan struct{}

	journal   *journal
	syncEvery time.Duration
	syncOut   chan struct{}
}

// FileOptions tune a FileStore.
type FileOptions struct {
	// ReplayWindow is how long a used code or rotated-out refresh token is
	// remembered so that its replay can revoke its family. Set it to the
	// refresh token lifetime.
	ReplayWindow time.Duration
	// Logger receives pebble's warnings and errors and the upgrade's report
	// (nil: none).
	Logger *zap.Logger

	// memTableSize, sweepEvery and syncEvery are for tests (0: the defaults).
	memTableSize uint64
	sweepEvery   time.Duration
	syncEvery    time.Duration
}

// The engine's memory: the block cache and the memtables are pebble's only
// memory that may grow, and both are bounded here; neither grows with the
// number of live tokens (BENCHMARKS.md).
const (
	blockCacheSize = 128 << 20
	// The memtable is also what a start replays from the write-ahead log
	// after a crash (after a clean Close it is flushed first): 8 MiB
	// replays in a fraction of a second, where 32 MiB took a second.
	memTableSize = 8 << 20
)

// DirName is the directory of the store inside the store directory;
// LegacyFileName is the buntdb file of earlier releases, converted on the
// first start (file_upgrade.go).
const (
	DirName        = "tokens.pebble"
	LegacyFileName = "tokens.db"
)

// OpenFile opens (creating if needed) the store in dir/tokens.pebble. A
// tokens.db of the buntdb store of earlier releases found there is
// converted first, so nobody is logged out by an upgrade.
func OpenFile(dir string, opts FileOptions) (*FileStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating store directory: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = zap.NewNop()
	}
	db, err := openPebble(filepath.Join(dir, DirName), opts, log, false)
	if err != nil {
		return nil, err
	}
	s := &FileStore{
		db: db, replay: newReplayWindow(opts.ReplayWindow), now: time.Now, log: log,
		sweepEvery: opts.sweepEvery, stop: make(chan struct{}), sweepOut: make(chan struct{}), syncOut: make(chan struct{}),
	}
	if s.sweepEvery <= 0 {
		s.sweepEvery = time.Second
	}
	if s.syncEvery = opts.syncEvery; s.syncEvery <= 0 {
		s.syncEvery = time.Second
	}
	if s.journal, err = recoverJournal(filepath.Join(dir, journalDirName), db, log); err != nil {
		db.Close()
		return nil, fmt.Errorf("token store journal: %w", err)
	}
	if err := s.upgrade(dir); err != nil {
		s.journal.f.Close()
		db.Close()
		return nil, err
	}
	go s.sweeper()
	go s.syncer()
	return s, nil
}

func openPebble(path string, opts FileOptions, log *zap.Logger, readOnly bool) (*pebble.DB, error) {
	if !readOnly {
		// pebble creates its files with the process's umask; the hashes are
		// not secrets, but grant structure and subjects are nobody else's
		// business.
		if err := os.MkdirAll(path, 0o700); err != nil {
			return nil, fmt.Errorf("creating %s: %w", path, err)
		}
		_ = os.Chmod(path, 0o700)
	}
	cache := pebble.NewCache(blockCacheSize)
	defer cache.Unref()
	po := &pebble.Options{
		Cache:        cache,
		MemTableSize: memTableSize,
		// Up to four memtables waiting for their flush before writes
		// wait: a burst (a sweep's deletes, a fill) does not stall issuance.
		MemTableStopWritesThreshold: 4,
		Logger:                      pebbleLogger{log},
		ReadOnly:                    readOnly,
	}
	if opts.memTableSize > 0 {
		po.MemTableSize = opts.memTableSize
	}
	// Bloom filters on every level: a lookup reads the one block that
	// holds its key, or none when the token is unknown.
	po.Levels[0].FilterPolicy = bloom.FilterPolicy(10)
	po.EnsureDefaults()
	db, err := pebble.Open(path, po)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	return db, nil
}

// pebbleLogger passes pebble's warnings and errors to the store's logger;
// its informational lines (compactions, flushes) are dropped. Fatalf is
// called when pebble cannot go on (a corrupted file, a failed log write)
// and must not return: it is logged and the process exits, as pebble's own
// logger does, rather than writing on from an unknown state.
type pebbleLogger struct{ l *zap.Logger }

func (p pebbleLogger) Infof(string, ...any) {}
func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error("token store engine", zap.String("detail", fmt.Sprintf(format, args...)))
}
func (p pebbleLogger) Fatalf(format string, args ...any) {
	p.l.Error("token store engine: fatal, exiting", zap.String("detail", fmt.Sprintf(format, args...)))
	_ = p.l.Sync()
	os.Exit(1)
}

// hkey is the key of a hashed entry (a token, a code, their replay marks).
func hkey(prefix string, h Hash) []byte {
	k := make([]byte, 1+len(h))
	k[0] = prefix[0]
	copy(k[1:], h[:])
	return k
}

// nkey is the key of a named entry (a family, a secret, a client).
func nkey(prefix, name string) []byte {
	return append([]byte{prefix[0]}, name...)
}

// Index keys: the expiry index and the admin API's by subject and client.
const (
	kindExpiry  = 'e'
	kindSubject = 'S'
	kindClient  = 'C'
	kindMeta    = 'm'
)

func ekey(at int64, k []byte) []byte {
	e := make([]byte, 9, 9+len(k))
	e[0] = kindExpiry
	binary.BigEndian.PutUint64(e[1:], uint64(at))
	return append(e, k...)
}

// ixkey is an index entry: kind, value (subject or client id), 0, then the
// token's own key (its kind byte and hash).
func ixkey(kind byte, val string, tokenKey []byte) []byte {
	k := make([]byte, 0, 2+len(val)+len(tokenKey))
	k = append(k, kind)
	k = append(k, val...)
	k = append(k, 0)
	return append(k, tokenKey...)
}

// value is an entry's stored form: expiry (unix seconds, 0 for none), then
// the payload.
func value(exp int64, payload []byte) []byte {
	v := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint64(v, uint64(exp))
	return append(v, payload...)
}

// splitValue returns a stored value's expiry and payload; ok is false for
// anything this store did not write (garbage is no entry).
func splitValue(v []byte) (exp int64, payload []byte, ok bool) {
	if len(v) < 8 {
		return 0, nil, false
	}
	e := binary.BigEndian.Uint64(v)
	if e > 1<<62 {
		return 0, nil, false
	}
	return int64(e), v[8:], true
}

// live reports whether an entry with expiry exp is live at now.
func live(exp, now int64) bool { return exp == 0 || exp > now }

// get reads the live payload at k; a missing, expired or foreign value is
// ErrNotFound. The payload is a copy.
func get(r pebble.Reader, k []byte, now int64) ([]byte, int64, error) {
	v, closer, err := r.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, 0, ErrNotFound
	} else if err != nil {
		return nil, 0, err
	}
	defer closer.Close()
	exp, payload, ok := splitValue(v)
	if !ok || !live(exp, now) {
		return nil, 0, ErrNotFound
	}
	return append([]byte(nil), payload...), exp, nil
}

// enter runs f unless the store is closed.
func (s *FileStore) enter(f func() error) error {
	s.life.RLock()
	defer s.life.RUnlock()
	if s.closed {
		return ErrClosed
	}
	return f()
}

// update runs fn on one batch under the writer lock, journals it and
// commits it: the commit is made (and visible) under the lock, so the next
// writer reads what this one wrote, and nothing is answered before its
// journal record is written.
func (s *FileStore) update(fn func(w *batchWriter) error) error {
	return s.enter(func() error { return s.write(fn, true, true) })
}

// updateBlind is update for a write that reads nothing (an issuance
// outside any family): its batch keeps no index of its own writes.
func (s *FileStore) updateBlind(fn func(w *batchWriter) error) error {
	return s.enter(func() error { return s.write(fn, true, false) })
}

func (s *FileStore) write(fn func(w *batchWriter) error, durable, indexed bool) error {
	s.mu.Lock()
	b := s.db.NewBatch()
	if indexed {
		b = s.db.NewIndexedBatch()
	}
	w := &batchWriter{b: b, now: s.now().Unix(), s: s}
	err := fn(w)
	if err == nil && !b.Empty() {
		if durable {
			// In the journal (in the kernel) before it is anywhere else:
			// file_journal.go.
			err = s.journal.append(b.Repr())
		}
		if err == nil {
			err = b.Commit(pebble.NoSync)
		}
	}
	s.mu.Unlock()
	b.Close()
	return err
}

// batchWriter is one write: its batch and the time it runs at.
type batchWriter struct {
	b   *pebble.Batch
	now int64
	s   *FileStore
}

// put sets k to payload with expiry exp (0: none) and indexes the expiry.
func (w *batchWriter) put(k []byte, exp int64, payload []byte) error {
	if err := w.b.Set(k, value(exp, payload), nil); err != nil {
		return err
	}
	if exp != 0 {
		// Never behind the sweep's cursor (file_sweep.go), even when exp
		// has passed already.
		return w.b.Set(ekey(max(exp, w.now+1), k), nil, nil)
	}
	return nil
}

// get reads through the batch (its own writes, then the committed state).
func (w *batchWriter) get(k []byte) ([]byte, int64, error) { return get(w.b, k, w.now) }

// del removes k; its expiry index entry is left to the sweep, which finds
// nothing there and drops it.
func (w *batchWriter) del(k []byte) error { return w.b.Delete(k, nil) }

// view reads the committed state.
func (s *FileStore) view(k []byte) ([]byte, int64, error) {
	var payload []byte
	var exp int64
	err := s.enter(func() error {
		var err error
		payload, exp, err = get(s.db, k, s.now().Unix())
		return err
	})
	return payload, exp, err
}

// Swept is how many expired entries (codes, tokens, replay marks,
// families) the sweep has deleted since the store opened.
func (s *FileStore) Swept() int64 { return s.swept.Load() }

// SweepHold is the longest the sweep has held the writer lock in one chunk
// (every write waits at most that long for it).
func (s *FileStore) SweepHold() time.Duration { return time.Duration(s.sweepHold.Load()) }

// CompactionDebt is pebble's estimate of the bytes its compactions have
// yet to rewrite, and how many compactions are running. A store just filled
// in bulk has much of it, and its lookups cost more until it is paid.
func (s *FileStore) CompactionDebt() (uint64, int64) {
	m := s.db.Metrics()
	return m.Compact.EstimatedDebt, m.Compact.NumInProgress
}

// CompactAll compacts the whole store now: what pebble's background
// compactions do over time, at once (after a bulk load, a benchmark's fill).
func (s *FileStore) CompactAll(ctx context.Context) error {
	return s.enter(func() error { return s.db.Compact(ctx, []byte{0}, []byte{0xff}, true) })
}

// SetReplayWindow changes the replay window of the open store.
func (s *FileStore) SetReplayWindow(d time.Duration) { s.replay.set(d) }

// Close stops the sweep, waits for operations under way, and closes the
// engine (every acknowledged write is on disk already).
func (s *FileStore) Close() error {
	s.stopOnce.Do(func() { close(s.stop) })
	<-s.sweepOut
	<-s.syncOut
	s.life.Lock()
	defer s.life.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	jerr := s.closeJournal()
	// Flushed, so that the next start has no log to replay.
	ferr := s.db.Flush()
	if err := s.db.Close(); err != nil {
		return err
	}
	return errors.Join(jerr, ferr)
}

var _ Store = (*FileStore)(nil)
