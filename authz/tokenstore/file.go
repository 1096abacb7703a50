package tokenstore

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tidwall/buntdb"
)

// FileStore is the embedded durable store: a buntdb append-only file.
//
// Why buntdb and not bbolt: every commit is one append of a few hundred bytes
// to the file with write(2), so the record is in the kernel's page cache
// before the client sees its token and survives a kill -9 of Caddy; the file
// is fsynced once a second, so a power cut can lose at most the last second.
// bbolt rewrites at least two 4 KiB pages per transaction and fsyncs each one;
// measured here that bounds it to a few thousand issuances a second, well
// below the goal of the token endpoint. buntdb also expires keys by itself
// (the sweep) and compacts the file when it has doubled, so it does not grow
// without bound, and its single writer makes take-and-delete atomic. It is
// what go-oauth2's own file store uses, so it adds no dependency.
type FileStore struct {
	db     *buntdb.DB
	replay *replayWindow
	now    func() time.Time

	// Issuances are group-committed: one writer goroutine applies every
	// issuance waiting at that moment in one transaction, one append to the
	// file, and answers each caller only after its record is written.
	issues    chan *pendingIssue
	stop      chan struct{}
	writerOut chan struct{}
}

type pendingIssue struct {
	iss  Issue
	done chan error
}

var pendingPool = sync.Pool{New: func() any { return &pendingIssue{done: make(chan error, 1)} }}

// maxGroup bounds one group commit.
const maxGroup = 256

// FileOptions tune a FileStore.
type FileOptions struct {
	// ReplayWindow is how long a used code or rotated-out refresh token is
	// remembered so that its replay can revoke its family. Set it to the
	// refresh token lifetime.
	ReplayWindow time.Duration
}

// OpenFile opens (creating if needed) the store file tokens.db in dir.
func OpenFile(dir string, opts FileOptions) (*FileStore, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("creating store directory: %w", err)
	}
	path := filepath.Join(dir, "tokens.db")
	// buntdb creates its file world-readable; the hashes are not secrets, but
	// grant structure and subjects are nobody else's business.
	if f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600); err == nil {
		f.Close()
	}
	db, err := buntdb.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	if err := db.SetConfig(buntdb.Config{
		SyncPolicy:           buntdb.EverySecond,
		AutoShrinkPercentage: 100,
		AutoShrinkMinSize:    8 << 20,
	}); err != nil {
		db.Close()
		return nil, err
	}
	s := &FileStore{
		db: db, replay: newReplayWindow(opts.ReplayWindow), now: time.Now,
		issues: make(chan *pendingIssue, maxGroup), stop: make(chan struct{}), writerOut: make(chan struct{}),
	}
	if err := s.createIndexes(); err != nil {
		db.Close()
		return nil, fmt.Errorf("indexing %s: %w", path, err)
	}
	go s.writer()
	return s, nil
}

func (s *FileStore) writer() {
	defer close(s.writerOut)
	batch := make([]*pendingIssue, 0, maxGroup)
	for {
		select {
		case <-s.stop:
			return
		case p := <-s.issues:
			batch = append(batch[:0], p)
		drain:
			for len(batch) < maxGroup {
				select {
				case p := <-s.issues:
					batch = append(batch, p)
				default:
					break drain
				}
			}
			err := s.db.Update(func(tx *buntdb.Tx) error {
				for _, p := range batch {
					if err := s.saveTokens(tx, p.iss, nil); err != nil {
						return err
					}
				}
				return nil
			})
			for _, p := range batch {
				p.done <- err
			}
		}
	}
}

const (
	prefixCode       = "c:"
	prefixUsedCode   = "u:"
	prefixAccess     = "a:"
	prefixRefresh    = "r:"
	prefixRotatedOut = "x:"
	prefixFamily     = "g:"
	prefixSecret     = "s:"
)

func key(prefix string, h Hash) string { return prefix + h.String() }

// family is the live membership of a grant family.
type family struct {
	Access  []string `json:"a,omitempty"`
	Refresh []string `json:"r,omitempty"`
	// Revoked marks a family ended by a replay: tokens that a concurrent
	// redemption issues into it afterwards are born revoked.
	Revoked bool `json:"x,omitempty"`
}

func (s *FileStore) ttlUntil(exp int64) time.Duration {
	d := time.Unix(exp, 0).Sub(s.now())
	if d < time.Second {
		d = time.Second
	}
	return d
}

func setJSON(tx *buntdb.Tx, k string, v any, ttl time.Duration) error {
	var b []byte
	if rec, ok := v.(*Record); ok {
		b = rec.AppendJSON(make([]byte, 0, 192))
	} else {
		var err error
		if b, err = json.Marshal(v); err != nil {
			return err
		}
	}
	_, _, err := tx.Set(k, string(b), &buntdb.SetOptions{Expires: true, TTL: ttl})
	return err
}

func getRecord(tx *buntdb.Tx, k string) (Record, error) {
	var rec Record
	v, err := tx.Get(k)
	if errors.Is(err, buntdb.ErrNotFound) {
		return rec, ErrNotFound
	} else if err != nil {
		return rec, err
	}
	if err := json.Unmarshal([]byte(v), &rec); err != nil {
		// Something else wrote into our key: treat it as no token.
		return rec, ErrNotFound
	}
	return rec, nil
}

// del removes k; a missing key is what we wanted, and any other error
// surfaces when the transaction commits.
func del(tx *buntdb.Tx, k string) { _, _ = tx.Delete(k) }

// SaveCode implements CodeStore.
func (s *FileStore) SaveCode(_ context.Context, code Hash, rec Record, ttl time.Duration) error {
	return s.db.Update(func(tx *buntdb.Tx) error {
		return setJSON(tx, key(prefixCode, code), &rec, ttl)
	})
}

// TakeCode implements CodeStore: the read and the delete are one transaction
// under buntdb's single writer lock.
func (s *FileStore) TakeCode(_ context.Context, code Hash, check CodeCheck) (Record, string, error) {
	var rec Record
	var replayed string
	err := s.db.Update(func(tx *buntdb.Tx) error {
		var err error
		rec, err = getRecord(tx, key(prefixCode, code))
		if errors.Is(err, ErrNotFound) {
			if gid, gerr := tx.Get(key(prefixUsedCode, code)); gerr == nil {
				replayed = gid
				return ErrReplayed
			}
			return ErrNotFound
		} else if err != nil {
			return err
		}
		if check != nil {
			if err := check(&rec); err != nil {
				return err // rolled back: the code stays
			}
		}
		del(tx, key(prefixCode, code))
		if rec.GrantID != "" {
			_, _, err = tx.Set(key(prefixUsedCode, code), rec.GrantID, &buntdb.SetOptions{Expires: true, TTL: s.replay.get()})
		}
		return err
	})
	return rec, replayed, err
}

// ErrClosed is returned after Close.
var ErrClosed = errors.New("token store closed")

// SaveTokens implements AccessStore; it returns once the issuance is in the file.
func (s *FileStore) SaveTokens(ctx context.Context, iss Issue) error {
	p := pendingPool.Get().(*pendingIssue)
	p.iss = iss
	select {
	case s.issues <- p:
	case <-s.stop:
		return ErrClosed
	}
	// The writer always answers a queued issuance, even on shutdown: wait for it.
	select {
	case err := <-p.done:
		p.iss = Issue{}
		pendingPool.Put(p)
		return err
	case <-s.writerOut:
		return ErrClosed
	}
}

func (s *FileStore) saveTokens(tx *buntdb.Tx, iss Issue, drop *family) error {
	if !iss.Refresh.IsZero() {
		iss.AccessRecord.RefreshHash = iss.Refresh.String()
		iss.RefreshRecord.AccessHash = iss.Access.String()
	}
	if err := setJSON(tx, key(prefixAccess, iss.Access), &iss.AccessRecord, s.ttlUntil(iss.AccessRecord.ExpiresAt)); err != nil {
		return err
	}
	if !iss.Refresh.IsZero() {
		if err := setJSON(tx, key(prefixRefresh, iss.Refresh), &iss.RefreshRecord, s.ttlUntil(iss.RefreshRecord.ExpiresAt)); err != nil {
			return err
		}
	}
	gid := iss.AccessRecord.GrantID
	if gid == "" {
		return nil
	}
	var fam family
	if v, err := tx.Get(prefixFamily + gid); err == nil {
		_ = json.Unmarshal([]byte(v), &fam)
	}
	if fam.Revoked {
		del(tx, key(prefixAccess, iss.Access))
		if !iss.Refresh.IsZero() {
			del(tx, key(prefixRefresh, iss.Refresh))
		}
		return nil
	}
	if drop != nil {
		fam.Access = without(fam.Access, drop.Access)
		fam.Refresh = without(fam.Refresh, drop.Refresh)
	}
	fam.Access = append(fam.Access, iss.Access.String())
	exp := iss.AccessRecord.ExpiresAt
	if !iss.Refresh.IsZero() {
		if r := iss.Refresh.String(); !slices.Contains(fam.Refresh, r) {
			fam.Refresh = append(fam.Refresh, r)
		}
		exp = max(exp, iss.RefreshRecord.ExpiresAt)
	}
	ttl := s.ttlUntil(exp)
	if old, err := tx.TTL(prefixFamily + gid); err == nil && old > ttl {
		ttl = old
	}
	return setJSON(tx, prefixFamily+gid, &fam, ttl)
}

func without(list, drop []string) []string {
	out := list[:0]
	for _, x := range list {
		if !slices.Contains(drop, x) {
			out = append(out, x)
		}
	}
	return out
}

func (s *FileStore) get(k string) (Record, error) {
	var rec Record
	err := s.db.View(func(tx *buntdb.Tx) error {
		var err error
		rec, err = getRecord(tx, k)
		return err
	})
	if err == nil && rec.ExpiresAt <= s.now().Unix() {
		return rec, ErrNotFound
	}
	return rec, err
}

// GetAccess implements AccessStore.
func (s *FileStore) GetAccess(_ context.Context, access Hash) (Record, error) {
	return s.get(key(prefixAccess, access))
}

// GetRefresh implements RefreshStore.
func (s *FileStore) GetRefresh(_ context.Context, refresh Hash) (Record, error) {
	return s.get(key(prefixRefresh, refresh))
}

// RotateRefresh implements RefreshStore.
func (s *FileStore) RotateRefresh(_ context.Context, old Hash, check RotateCheck, iss Issue, keepRefresh bool) (Record, Revoked, *Replay, error) {
	var rec Record
	var rev Revoked
	var replayed *Replay
	err := s.db.Update(func(tx *buntdb.Tx) error {
		var err error
		rec, err = getRecord(tx, key(prefixRefresh, old))
		if errors.Is(err, ErrNotFound) {
			if v, gerr := tx.Get(key(prefixRotatedOut, old)); gerr == nil {
				replayed = parseReplay(v)
				return ErrReplayed
			}
			return ErrNotFound
		} else if err != nil {
			return err
		}
		if rec.ExpiresAt <= s.now().Unix() {
			return ErrNotFound
		}
		if err := check(&rec, &iss); err != nil {
			return err
		}
		drop := &family{}
		if rec.AccessHash != "" {
			if h, ok := parseHash(rec.AccessHash); ok {
				rev.Access = append(rev.Access, h)
			}
			del(tx, prefixAccess+rec.AccessHash)
			drop.Access = append(drop.Access, rec.AccessHash)
		}
		if !keepRefresh {
			del(tx, key(prefixRefresh, old))
			drop.Refresh = append(drop.Refresh, old.String())
			if rec.GrantID != "" {
				if _, _, err := tx.Set(key(prefixRotatedOut, old), formatReplay(rec.GrantID, s.now()), &buntdb.SetOptions{Expires: true, TTL: s.ttlUntil(rec.ExpiresAt)}); err != nil {
					return err
				}
			}
		} else {
			iss.RefreshRecord = rec
		}
		iss.AccessRecord.GrantID = rec.GrantID
		iss.RefreshRecord.GrantID = rec.GrantID
		return s.saveTokens(tx, iss, drop)
	})
	return rec, rev, replayed, err
}

// formatReplay and parseReplay keep a rotated-out refresh token's family and
// rotation time (unix milliseconds) as "gid|ms".
func formatReplay(gid string, at time.Time) string {
	return gid + "|" + strconv.FormatInt(at.UnixMilli(), 10)
}

func parseReplay(v string) *Replay {
	gid, ms, _ := strings.Cut(v, "|")
	n, _ := strconv.ParseInt(ms, 10, 64)
	return &Replay{GrantID: gid, RotatedAt: time.UnixMilli(n)}
}

func parseHash(s string) (Hash, bool) {
	var h Hash
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(h) {
		return h, false
	}
	copy(h[:], b)
	return h, true
}

// RevokeAccess implements AccessStore.
func (s *FileStore) RevokeAccess(_ context.Context, access Hash) (Revoked, error) {
	err := s.db.Update(func(tx *buntdb.Tx) error {
		del(tx, key(prefixAccess, access))
		return nil
	})
	return Revoked{Access: []Hash{access}}, err
}

// RevokeRefresh implements RefreshStore; the access token issued with the
// refresh token goes too (RFC 7009 §2.1).
func (s *FileStore) RevokeRefresh(_ context.Context, refresh Hash) (Revoked, error) {
	var rev Revoked
	err := s.db.Update(func(tx *buntdb.Tx) error {
		rec, err := getRecord(tx, key(prefixRefresh, refresh))
		if errors.Is(err, ErrNotFound) {
			return nil
		} else if err != nil {
			return err
		}
		del(tx, key(prefixRefresh, refresh))
		if h, ok := parseHash(rec.AccessHash); ok {
			del(tx, key(prefixAccess, h))
			rev.Access = append(rev.Access, h)
		}
		return nil
	})
	return rev, err
}

// RevokeGrant implements Store.
func (s *FileStore) RevokeGrant(_ context.Context, grantID string) (Revoked, error) {
	var rev Revoked
	err := s.db.Update(func(tx *buntdb.Tx) error {
		var fam family
		v, err := tx.Get(prefixFamily + grantID)
		if err == nil {
			_ = json.Unmarshal([]byte(v), &fam)
		} else if !errors.Is(err, buntdb.ErrNotFound) {
			return err
		}
		for _, a := range fam.Access {
			del(tx, prefixAccess+a)
			if h, ok := parseHash(a); ok {
				rev.Access = append(rev.Access, h)
			}
		}
		for _, r := range fam.Refresh {
			del(tx, prefixRefresh+r)
		}
		return setJSON(tx, prefixFamily+grantID, &family{Revoked: true}, s.replay.get())
	})
	return rev, err
}

// Secret implements Store.
func (s *FileStore) Secret(_ context.Context, name string, gen func() ([]byte, error)) ([]byte, error) {
	var out []byte
	err := s.db.Update(func(tx *buntdb.Tx) error {
		if v, err := tx.Get(prefixSecret + name); err == nil {
			b, derr := hex.DecodeString(v)
			if derr == nil && len(b) > 0 {
				out = b
				return nil
			}
		}
		b, err := gen()
		if err != nil {
			return err
		}
		out = b
		_, _, err = tx.Set(prefixSecret+name, hex.EncodeToString(b), nil)
		return err
	})
	return out, err
}

// SetSecret implements Store.
func (s *FileStore) SetSecret(_ context.Context, name string, value []byte) error {
	return s.db.Update(func(tx *buntdb.Tx) error {
		_, _, err := tx.Set(prefixSecret+name, hex.EncodeToString(value), nil)
		return err
	})
}

// SetReplayWindow changes the replay window of the open store.
func (s *FileStore) SetReplayWindow(d time.Duration) { s.replay.set(d) }

// Close stops the writer, then flushes and closes the file.
func (s *FileStore) Close() error {
	select {
	case <-s.stop:
		return nil
	default:
	}
	close(s.stop)
	<-s.writerOut
	return s.db.Close()
}

var _ Store = (*FileStore)(nil)
