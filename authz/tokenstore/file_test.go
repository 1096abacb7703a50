package tokenstore

import (
	"context"
	"errors"
	"github.com/tidwall/buntdb"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func openTest(t *testing.T, dir string) *FileStore {
	t.Helper()
	s, err := OpenFile(dir, FileOptions{ReplayWindow: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func rec(client string, ttl time.Duration) Record {
	now := time.Now()
	return Record{ClientID: client, Subject: "alice", Scope: "read", IssuedAt: now.Unix(), ExpiresAt: now.Add(ttl).Unix()}
}

func TestTakeCodeExactlyOnceUnderConcurrency(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	ctx := context.Background()
	code := HashOf("the-code")
	r := rec("c1", time.Minute)
	r.GrantID = "g1"
	if err := s.SaveCode(ctx, code, r, time.Minute); err != nil {
		t.Fatal(err)
	}
	var won, replayed atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, gid, err := s.TakeCode(ctx, code)
			switch {
			case err == nil:
				won.Add(1)
			case errors.Is(err, ErrReplayed) && gid == "g1":
				replayed.Add(1)
			default:
				t.Errorf("TakeCode: %v", err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if won.Load() != 1 || replayed.Load() != 49 {
		t.Fatalf("won=%d replayed=%d, want 1 and 49", won.Load(), replayed.Load())
	}
	if _, _, err := s.TakeCode(ctx, HashOf("never-issued")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown code: %v, want ErrNotFound", err)
	}
}

func issue(access, refresh string, gid string) Issue {
	iss := Issue{Access: HashOf(access), AccessRecord: rec("c1", time.Hour)}
	iss.AccessRecord.GrantID = gid
	if refresh != "" {
		iss.Refresh = HashOf(refresh)
		iss.RefreshRecord = rec("c1", 24*time.Hour)
		iss.RefreshRecord.GrantID = gid
	}
	return iss
}

func TestRotateRefreshExactlyOnceAndReplayDetected(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	ctx := context.Background()
	if err := s.SaveTokens(ctx, issue("a0", "r0", "g1")); err != nil {
		t.Fatal(err)
	}
	ok := func(*Record, *Issue) error { return nil }
	var won, lost atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, _, _, err := s.RotateRefresh(ctx, HashOf("r0"), ok, issue("a"+string(rune('A'+i)), "r"+string(rune('A'+i)), ""), false)
			if err == nil {
				won.Add(1)
			} else if errors.Is(err, ErrReplayed) {
				lost.Add(1)
			} else {
				t.Errorf("RotateRefresh: %v", err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if won.Load() != 1 || lost.Load() != 49 {
		t.Fatalf("won=%d replayed=%d, want 1 and 49", won.Load(), lost.Load())
	}
	if _, err := s.GetAccess(ctx, HashOf("a0")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("old access token still valid after rotation: %v", err)
	}
}

func TestRotateCheckFailureLeavesTokenUsable(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	ctx := context.Background()
	if err := s.SaveTokens(ctx, issue("a0", "r0", "g1")); err != nil {
		t.Fatal(err)
	}
	refuse := errors.New("other client")
	_, _, _, err := s.RotateRefresh(ctx, HashOf("r0"), func(*Record, *Issue) error { return refuse }, issue("a1", "r1", ""), false)
	if !errors.Is(err, refuse) {
		t.Fatalf("err = %v, want the check's error", err)
	}
	if _, err := s.GetRefresh(ctx, HashOf("r0")); err != nil {
		t.Fatalf("refresh token lost after a refused rotation: %v", err)
	}
	if _, err := s.GetAccess(ctx, HashOf("a1")); !errors.Is(err, ErrNotFound) {
		t.Fatal("a refused rotation stored a new access token")
	}
}

func TestRevokeGrantEndsFamilyAndLaterIssues(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	ctx := context.Background()
	if err := s.SaveTokens(ctx, issue("a0", "r0", "g1")); err != nil {
		t.Fatal(err)
	}
	rev, err := s.RevokeGrant(ctx, "g1")
	if err != nil || len(rev.Access) != 1 || rev.Access[0] != HashOf("a0") {
		t.Fatalf("RevokeGrant = %v, %v", rev, err)
	}
	for _, tok := range []string{"a0"} {
		if _, err := s.GetAccess(ctx, HashOf(tok)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("%s survived RevokeGrant", tok)
		}
	}
	if _, err := s.GetRefresh(ctx, HashOf("r0")); !errors.Is(err, ErrNotFound) {
		t.Fatal("refresh token survived RevokeGrant")
	}
	// A redemption that raced the replay stores into a revoked family: born revoked.
	if err := s.SaveTokens(ctx, issue("a9", "r9", "g1")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetAccess(ctx, HashOf("a9")); !errors.Is(err, ErrNotFound) {
		t.Fatal("a token issued into a revoked family is valid")
	}
}

func TestDurableAcrossReopenAndHashedAtRest(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s := openTest(t, dir)
	access, refresh := "plain-access-token-value-1234567890", "plain-refresh-token-value-0987654321"
	if err := s.SaveTokens(ctx, issue(access, refresh, "g1")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "tokens.db"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), access) || strings.Contains(string(raw), refresh) {
		t.Fatal("a token is stored in plain text")
	}
	if !strings.Contains(string(raw), HashOf(access).String()) {
		t.Fatal("the access token's hash is not in the file")
	}
	s = openTest(t, dir)
	defer s.Close()
	if r, err := s.GetAccess(ctx, HashOf(access)); err != nil || r.ClientID != "c1" {
		t.Fatalf("after reopen: %+v, %v", r, err)
	}
}

func TestExpiredTokenIsNotFound(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	ctx := context.Background()
	iss := issue("a0", "", "")
	iss.AccessRecord.ExpiresAt = time.Now().Add(-time.Second).Unix()
	if err := s.SaveTokens(ctx, iss); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetAccess(ctx, HashOf("a0")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expired token: %v, want ErrNotFound", err)
	}
}

func TestGarbageInKeyIsNotFound(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	h := HashOf("x")
	if err := s.db.Update(func(tx *buntdb.Tx) error {
		_, _, err := tx.Set(key(prefixAccess, h), "{not json", nil)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetAccess(context.Background(), h); !errors.Is(err, ErrNotFound) {
		t.Fatalf("garbage record: %v, want ErrNotFound", err)
	}
}

func TestSecretPersists(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	s := openTest(t, dir)
	gen := func() ([]byte, error) { return []byte("k1"), nil }
	a, err := s.Secret(ctx, "session", gen)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openTest(t, dir)
	defer s.Close()
	b, _ := s.Secret(ctx, "session", func() ([]byte, error) { return []byte("other"), nil })
	if string(a) != "k1" || string(b) != "k1" {
		t.Fatalf("secret changed across reopen: %q then %q", a, b)
	}
}

func TestExpiredEntriesAreSweptFromTheFile(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	ctx := context.Background()
	iss := issue("short-lived", "", "")
	iss.AccessRecord.ExpiresAt = time.Now().Add(time.Second).Unix()
	if err := s.SaveTokens(ctx, iss); err != nil {
		t.Fatal(err)
	}
	k := key(prefixAccess, HashOf("short-lived"))
	present := func() bool {
		found := false
		_ = s.db.View(func(tx *buntdb.Tx) error {
			_, err := tx.Get(k, true) // true: see expired items still held
			found = err == nil
			return nil
		})
		return found
	}
	if !present() {
		t.Fatal("token not stored")
	}
	// buntdb's background sweep runs every second.
	deadline := time.Now().Add(5 * time.Second)
	for present() && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if present() {
		t.Fatal("an expired token was not swept within 5s")
	}
}
