package tokenstore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.uber.org/zap"
)

// The journal is how the file store keeps its promise without an fsync per
// answer. Every write is appended to the journal with one write(2) before
// it is committed to pebble (without waiting for pebble's log), so when the
// caller is answered the write is in the kernel: a kill -9 of Caddy loses
// nothing. Once a second pebble's own log is fsynced and the journal
// segments it covers are deleted, so a power cut loses at most the last
// second, as the buntdb store of earlier releases did. An fsync per answer
// (pebble's Sync) measured 0.5–0.8x buntdb's issuance on this machine's
// disk (BENCHMARKS.md); the journal keeps the rate of a write(2).
//
// A segment is a run of records: 4 bytes of length, 4 of CRC-32C, then a
// pebble batch (its Repr). At open every segment left is applied again, in
// order: re-applying a run of sets and deletes that pebble may partly hold
// already ends in the same state, since each key's last write wins.
type journal struct {
	dir string
	seq int
	f   *os.File
	buf []byte
	// dirty: something was appended since the last sync.
	dirty bool
}

const journalDirName = "tokens.journal"

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// journalSegments lists the segments in dir, oldest first.
func journalSegments(dir string) ([]int, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var seqs []int
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".log")
		if n, err := strconv.Atoi(name); ok && err == nil {
			seqs = append(seqs, n)
		}
	}
	slices.Sort(seqs)
	return seqs, nil
}

func segmentPath(dir string, seq int) string {
	return filepath.Join(dir, fmt.Sprintf("%09d.log", seq))
}

// recoverJournal applies what the journal in dir holds to db, fsyncs db's
// log, and returns an open journal with a new, empty segment.
func recoverJournal(dir string, db *pebble.DB, log *zap.Logger) (*journal, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	seqs, err := journalSegments(dir)
	if err != nil {
		return nil, err
	}
	applied := 0
	for _, seq := range seqs {
		n, err := replaySegment(segmentPath(dir, seq), db)
		if err != nil {
			return nil, fmt.Errorf("replaying %s: %w", segmentPath(dir, seq), err)
		}
		applied += n
	}
	if len(seqs) > 0 {
		if err := db.LogData(nil, pebble.Sync); err != nil {
			return nil, err
		}
		if applied > 0 {
			log.Info("token store journal replayed", zap.Int("writes", applied), zap.Int("segments", len(seqs)))
		}
	}
	next := 1
	if len(seqs) > 0 {
		next = seqs[len(seqs)-1] + 1
	}
	j := &journal{dir: dir, seq: next}
	if err := j.open(); err != nil {
		return nil, err
	}
	for _, seq := range seqs {
		_ = os.Remove(segmentPath(dir, seq))
	}
	return j, nil
}

// replaySegment applies every whole record of one segment; a record cut
// short (the write a crash interrupted, never answered) ends it.
func replaySegment(path string, db *pebble.DB) (int, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	n := 0
	for len(raw) >= 8 {
		size := binary.LittleEndian.Uint32(raw)
		want := binary.LittleEndian.Uint32(raw[4:]) // a CRC, against torn writes: no secret
		if uint64(len(raw)-8) < uint64(size) {
			break
		}
		rec := raw[8 : 8+size]
		raw = raw[8+size:]
		if got := crc32.Checksum(rec, crcTable); got != want {
			break
		}
		b := db.NewBatch()
		if err := b.SetRepr(slices.Clone(rec)); err != nil {
			b.Close()
			break
		}
		if err := db.Apply(b, pebble.NoSync); err != nil {
			b.Close()
			return n, err
		}
		b.Close()
		n++
	}
	return n, nil
}

func (j *journal) open() error {
	f, err := os.OpenFile(segmentPath(j.dir, j.seq), os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	j.f = f
	return nil
}

// append writes one batch with one write(2); called under the writer lock.
func (j *journal) append(repr []byte) error {
	j.buf = binary.LittleEndian.AppendUint32(j.buf[:0], uint32(len(repr)))
	j.buf = binary.LittleEndian.AppendUint32(j.buf, crc32.Checksum(repr, crcTable))
	j.buf = append(j.buf, repr...)
	if _, err := j.f.Write(j.buf); err != nil {
		// A record cut short (a full disk) would end the replay of its
		// segment there: what follows goes to a new segment.
		_ = j.f.Close()
		j.seq++
		if oerr := j.open(); oerr != nil {
			return errors.Join(err, oerr)
		}
		return err
	}
	j.dirty = true
	if cap(j.buf) > 1<<20 {
		j.buf = nil // a large revocation: do not keep its buffer
	}
	return nil
}

// rotate starts a new segment and returns the one it ended (0 when nothing
// was appended since the last rotation); called under the writer lock.
func (j *journal) rotate() (int, error) {
	if !j.dirty {
		return 0, nil
	}
	old := j.seq
	if err := j.f.Close(); err != nil {
		return 0, err
	}
	j.seq++
	j.dirty = false
	return old, j.open()
}

// syncer fsyncs pebble's log once a second and drops the journal segments
// the fsync covers.
func (s *FileStore) syncer() {
	defer close(s.syncOut)
	t := time.NewTicker(s.syncEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		if err := s.enter(s.syncJournal); err != nil && !errors.Is(err, ErrClosed) {
			s.log.Error("token store sync", zap.Error(err))
		}
	}
}

// syncJournal ends the current segment, fsyncs pebble's log (which holds
// every batch committed before, so every batch in the segments ended), and
// deletes the ended segments.
func (s *FileStore) syncJournal() error {
	s.mu.Lock()
	ended, err := s.journal.rotate()
	s.mu.Unlock()
	if err != nil || ended == 0 {
		return err
	}
	if err := s.db.LogData(nil, pebble.Sync); err != nil {
		return err
	}
	seqs, err := journalSegments(s.journal.dir)
	if err != nil {
		return err
	}
	for _, seq := range seqs {
		if seq <= ended {
			if err := os.Remove(segmentPath(s.journal.dir, seq)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
	}
	return nil
}

// closeJournal syncs and removes the journal at Close: pebble is flushed
// after it, so nothing is left to replay.
func (s *FileStore) closeJournal() error {
	if err := s.db.LogData(nil, pebble.Sync); err != nil {
		return err
	}
	if err := s.journal.f.Close(); err != nil {
		return err
	}
	seqs, err := journalSegments(s.journal.dir)
	for _, seq := range seqs {
		_ = os.Remove(segmentPath(s.journal.dir, seq))
	}
	return err
}
