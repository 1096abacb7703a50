package tokenstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

func openTest(t *testing.T, dir string) *FileStore {
	t.Helper()
	s, err := OpenFile(dir, FileOptions{ReplayWindow: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// storeKey turns a key as the suite spells it ("a:<hex>", "g:<id>") into
// the file store's.
func storeKey(k string) []byte {
	prefix, rest := k[:2], k[2:]
	switch prefix {
	case prefixCode, prefixUsedCode, prefixAccess, prefixRefresh, prefixRotatedOut:
		if h, ok := parseHash(rest); ok {
			return hkey(prefix, h)
		}
	}
	return nkey(prefix, rest)
}

// sharedFile is one open FileStore handed to every opener of its directory
// until all have closed it, as Caddy's store pool does across a reload: a
// directory is one engine's (pebble locks it), so "another instance" of
// the suite is another handle on the same open store.
type sharedFile struct {
	*FileStore
	dir    string
	closed bool
}

var (
	sharedMu    sync.Mutex
	sharedStore = map[string]*FileStore{}
	sharedRefs  = map[string]int{}
)

func openShared(t *testing.T, dir string) *sharedFile {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	s := sharedStore[dir]
	if s == nil {
		s = openTest(t, dir)
		sharedStore[dir] = s
	}
	sharedRefs[dir]++
	return &sharedFile{FileStore: s, dir: dir}
}

func (h *sharedFile) Close() error {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if h.closed {
		return nil
	}
	h.closed = true
	if sharedRefs[h.dir]--; sharedRefs[h.dir] > 0 {
		return nil
	}
	delete(sharedStore, h.dir)
	return h.FileStore.Close()
}

// fileBackend runs the shared suite on the file store: a space is a directory.
func fileBackend() backend {
	return backend{
		space: func(t *testing.T) string { return t.TempDir() },
		open: func(t *testing.T, dir string) Store {
			s := openShared(t, dir)
			t.Cleanup(func() { s.Close() })
			return s
		},
		putRaw: func(t *testing.T, s Store, key, value string) {
			if err := s.(*sharedFile).db.Set(storeKey(key), []byte(value), pebble.Sync); err != nil {
				t.Fatal(err)
			}
		},
		dump: func(t *testing.T, dir string) string {
			raw, err := DumpFile(dir)
			if err != nil {
				t.Fatal(err)
			}
			return string(raw)
		},
	}
}

func TestFileStore(t *testing.T) { runStoreSuite(t, fileBackend()) }

// present reports whether k is held at all (expired or not).
func present(t *testing.T, s *FileStore, k []byte) bool {
	t.Helper()
	_, closer, err := s.db.Get(k)
	if err == nil {
		closer.Close()
		return true
	}
	if !errors.Is(err, pebble.ErrNotFound) {
		t.Fatal(err)
	}
	return false
}

// waitFor polls cond until it holds or the bound passes.
func waitFor(t *testing.T, bound time.Duration, cond func() bool) bool {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// TestExpiredEntriesAreSwept: an expired token, its index entries, its
// family's replay marks and an expired code leave the store by the sweep;
// the live token beside them stays.
func TestExpiredEntriesAreSwept(t *testing.T) {
	s, err := OpenFile(t.TempDir(), FileOptions{ReplayWindow: time.Second, sweepEvery: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	short := issue("short-lived", "short-refresh", "g-short")
	short.AccessRecord.ExpiresAt = time.Now().Add(time.Second).Unix()
	short.RefreshRecord.ExpiresAt = time.Now().Add(time.Second).Unix()
	if err := s.SaveTokens(ctx, short); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveTokens(ctx, issue("long-lived", "", "")); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveCode(ctx, HashOf("code"), rec("c1", time.Second), time.Second); err != nil {
		t.Fatal(err)
	}
	gone := [][]byte{
		hkey(prefixAccess, HashOf("short-lived")), hkey(prefixRefresh, HashOf("short-refresh")),
		nkey(prefixFamily, "g-short"), hkey(prefixCode, HashOf("code")),
		ixkey(kindSubject, "alice", hkey(prefixAccess, HashOf("short-lived"))),
		ixkey(kindClient, "c1", hkey(prefixRefresh, HashOf("short-refresh"))),
	}
	for _, k := range gone {
		if !present(t, s, k) {
			t.Fatalf("%s not stored", keyText(k))
		}
	}
	if !waitFor(t, 10*time.Second, func() bool {
		for _, k := range gone {
			if present(t, s, k) {
				return false
			}
		}
		return true
	}) {
		raw, _ := s.dumpOpen()
		t.Fatalf("expired entries were not swept within 10 s:\n%s", raw)
	}
	if _, err := s.GetAccess(ctx, HashOf("long-lived")); err != nil {
		t.Fatalf("the live token went with the sweep: %v", err)
	}
	if !present(t, s, ixkey(kindSubject, "alice", hkey(prefixAccess, HashOf("long-lived")))) {
		t.Fatal("the live token's index entry went with the sweep")
	}
	if n := s.count([]byte{kindExpiry}); n != 1 {
		t.Fatalf("%d expiry index entries left, want the live token's only", n)
	}
}

// count is how many keys start with prefix.
func (s *FileStore) count(prefix []byte) int {
	n := 0
	_ = s.scan(prefix, func(_, _ []byte) bool { n++; return true })
	return n
}

func (s *FileStore) dumpOpen() (string, error) {
	var b strings.Builder
	err := s.scan(nil, func(k, v []byte) bool {
		b.WriteString(keyText(k) + "\t" + string(v) + "\n")
		return true
	})
	return b.String(), err
}

// TestSweptStoreStaysSmall: tokens issued and expired over and over leave
// a store whose files stay bounded (the sweep deletes, pebble's compactions
// drop what was deleted), far below what was ever written.
func TestSweptStoreStaysSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("writes about 60 MB")
	}
	dir := t.TempDir()
	s, err := OpenFile(dir, FileOptions{memTableSize: 1 << 20, sweepEvery: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	const rounds, per, workers = 8, 12000, 16
	written := 0
	var sizes []int64
	for r := range rounds {
		exp := time.Now().Add(time.Second).Unix()
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range per / workers {
					iss := Issue{Access: HashOf(fmt.Sprintf("t-%d-%d-%d", r, w, i)),
						AccessRecord: Record{ClientID: "app", Subject: "user", Scope: "read", IssuedAt: exp - 1, ExpiresAt: exp}}
					if err := s.SaveTokens(ctx, iss); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		written += per * (33 + len((&Record{ClientID: "app", Subject: "user", Scope: "read", IssuedAt: exp - 1, ExpiresAt: exp}).AppendJSON(nil)))
		if !waitFor(t, 20*time.Second, func() bool { return s.count([]byte{prefixAccess[0]}) == 0 }) {
			t.Fatalf("round %d: %d tokens not swept", r, s.count([]byte{prefixAccess[0]}))
		}
		if err := s.db.Flush(); err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, dirSize(t, filepath.Join(dir, DirName)))
	}
	last := sizes[len(sizes)-1]
	t.Logf("wrote %d bytes of records; store directory after each round: %v", written, sizes)
	if last > int64(written)/3 {
		t.Fatalf("the store holds %d bytes after %d bytes of records were written and expired: it grows", last, written)
	}
}

func dirSize(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if errors.Is(err, os.ErrNotExist) {
			return nil // a compaction removed it meanwhile
		}
		if err == nil && !fi.IsDir() {
			n += fi.Size()
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestRecordAppendJSONMatchesEncodingJSON(t *testing.T) {
	recs := []Record{
		{ClientID: "c", IssuedAt: 1, ExpiresAt: 2},
		{ClientID: "c\"1", Subject: "ali\\ce\n", Scope: "read write", RedirectURI: "https://a/cb?x=<y>", CodeChallenge: "abc",
			CodeChallengeMethod: "S256", Nonce: "n\x00", AuthTime: 5, GrantID: "g", IssuedAt: 3, ExpiresAt: 4, AccessHash: "ah", RefreshHash: "rh"},
	}
	for _, r := range recs {
		var a, b Record
		if err := json.Unmarshal(r.AppendJSON(nil), &a); err != nil {
			t.Fatalf("%s: %v", r.AppendJSON(nil), err)
		}
		want, _ := json.Marshal(r)
		_ = json.Unmarshal(want, &b)
		if a != b {
			t.Fatalf("AppendJSON round-trips to %+v, encoding/json to %+v", a, b)
		}
	}
}

// openBeforeKill opens a store in dir whose pebble log is never fsynced by
// the once-a-second sync, and copies the engine's files, as they are before
// any write, into crashed: the worst case of a kill -9, where pebble's log
// wrote none of what follows. killNow adds the journal as it is then.
func openBeforeKill(t *testing.T) (s *FileStore, dir, crashed string) {
	t.Helper()
	dir, crashed = t.TempDir(), t.TempDir()
	s, err := OpenFile(dir, FileOptions{ReplayWindow: time.Hour, syncEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := os.CopyFS(filepath.Join(crashed, DirName), os.DirFS(filepath.Join(dir, DirName))); err != nil {
		t.Fatal(err)
	}
	return s, dir, crashed
}

func killNow(t *testing.T, dir, crashed string) {
	t.Helper()
	if err := os.CopyFS(filepath.Join(crashed, journalDirName), os.DirFS(filepath.Join(dir, journalDirName))); err != nil {
		t.Fatal(err)
	}
}

// TestKilledStoreLosesNothing: a store directory as a kill -9 may leave it
// (the store was never closed, and pebble's own log, fsynced once a second,
// holds none of the last writes) opens with every write that was answered:
// issuances, a rotation, a revocation, a taken code, all from the journal.
func TestKilledStoreLosesNothing(t *testing.T) {
	s, dir, crashed := openBeforeKill(t)
	ctx := t.Context()
	const workers, per = 8, 200
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				if err := s.SaveTokens(ctx, issue(fmt.Sprintf("k-%d-%d", w, i), "", "")); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := s.SaveTokens(ctx, issue("fam-a", "fam-r", "g-k")); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := s.RotateRefresh(ctx, HashOf("fam-r"), accept, issue("fam-a2", "fam-r2", ""), false); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RevokeAccess(ctx, HashOf("k-0-0")); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveCode(ctx, HashOf("code-k"), rec("c1", time.Minute), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.TakeCode(ctx, HashOf("code-k"), nil); err != nil {
		t.Fatal(err)
	}
	// The kill: the journal as it is now, the store still open.
	killNow(t, dir, crashed)
	c := openTest(t, crashed)
	defer c.Close()
	for w := range workers {
		for i := range per {
			_, err := c.GetAccess(ctx, HashOf(fmt.Sprintf("k-%d-%d", w, i)))
			if w == 0 && i == 0 {
				if !errors.Is(err, ErrNotFound) {
					t.Fatalf("the revoked token is back after the kill: %v", err)
				}
			} else if err != nil {
				t.Fatalf("token k-%d-%d was lost by the kill: %v", w, i, err)
			}
		}
	}
	if _, err := c.GetAccess(ctx, HashOf("fam-a2")); err != nil {
		t.Fatalf("the rotation's new access token was lost: %v", err)
	}
	if _, _, _, err := c.RotateRefresh(ctx, HashOf("fam-r"), accept, issue("x", "y", ""), false); !errors.Is(err, ErrReplayed) {
		t.Fatalf("the rotated-out refresh token after the kill: %v, want a replay", err)
	}
	if _, _, err := c.TakeCode(ctx, HashOf("code-k"), nil); !errors.Is(err, ErrReplayed) && !errors.Is(err, ErrNotFound) {
		t.Fatalf("the taken code can be taken again after the kill: %v", err)
	}
}

// TestJournalTornRecord: a record cut short (a write a crash or a full disk
// interrupted, never answered) ends its segment's replay, and the records of
// the next segment are still applied: after a failed append the journal
// goes on in a new segment.
func TestJournalTornRecord(t *testing.T) {
	s, dir, crashed := openBeforeKill(t)
	ctx := t.Context()
	if err := s.SaveTokens(ctx, issue("before-tear", "", "")); err != nil {
		t.Fatal(err)
	}
	s.mu.Lock()
	// A header that promises 4 KiB, and 10 bytes of it; then, as after a failed append, a new segment.
	if _, err := s.journal.f.Write([]byte{0, 16, 0, 0, 1, 2, 3, 4, 'p', 'a', 'r', 't', 'i', 'a', 'l', '-', '-', '-'}); err != nil {
		t.Fatal(err)
	}
	s.journal.dirty = true
	_, err := s.journal.rotate()
	s.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SaveTokens(ctx, issue("after-tear", "", "")); err != nil {
		t.Fatal(err)
	}
	killNow(t, dir, crashed)
	c := openTest(t, crashed)
	defer c.Close()
	for _, tok := range []string{"before-tear", "after-tear"} {
		if _, err := c.GetAccess(ctx, HashOf(tok)); err != nil {
			t.Fatalf("%s was lost: %v", tok, err)
		}
	}
	if seqs, _ := journalSegments(filepath.Join(crashed, journalDirName)); len(seqs) != 1 {
		t.Fatalf("after the replay the journal has %d segments, want one new one", len(seqs))
	}
}
