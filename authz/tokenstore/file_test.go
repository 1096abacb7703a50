package tokenstore

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tidwall/buntdb"
)

func openTest(t *testing.T, dir string) *FileStore {
	t.Helper()
	s, err := OpenFile(dir, FileOptions{ReplayWindow: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// fileBackend runs the shared suite on the file store: a space is a directory.
func fileBackend() backend {
	return backend{
		space: func(t *testing.T) string { return t.TempDir() },
		open: func(t *testing.T, dir string) Store {
			s := openTest(t, dir)
			t.Cleanup(func() { s.Close() })
			return s
		},
		putRaw: func(t *testing.T, s Store, key, value string) {
			if err := s.(*FileStore).db.Update(func(tx *buntdb.Tx) error {
				_, _, err := tx.Set(key, value, nil)
				return err
			}); err != nil {
				t.Fatal(err)
			}
		},
		dump: func(t *testing.T, dir string) string {
			raw, err := os.ReadFile(filepath.Join(dir, "tokens.db"))
			if err != nil {
				t.Fatal(err)
			}
			return string(raw)
		},
	}
}

func TestFileStore(t *testing.T) { runStoreSuite(t, fileBackend()) }

func TestExpiredEntriesAreSweptFromTheFile(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	ctx := t.Context()
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
