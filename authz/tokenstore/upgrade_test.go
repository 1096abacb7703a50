package tokenstore

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// copyFixture puts testdata/upgrade/tokens.db, written by the buntdb
// FileStore of earlier releases (testdata/upgrade/gen), into a new store
// directory.
func copyFixture(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "upgrade", LegacyFileName))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, LegacyFileName), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestUpgradeFromBuntdb: a store directory holding only the buntdb
// tokens.db of earlier releases opens with everything in it: live tokens
// and codes with their records, the replay marks of a redeemed code and of
// a rotated-out refresh token (whose replay still revokes the family), a
// revoked family (still born revoked), secrets, registered clients, the
// admin API's indexes; an expired token stays expired. The old file is set
// aside, a second open converts nothing, and the log names no token.
func TestUpgradeFromBuntdb(t *testing.T) {
	dir := copyFixture(t)
	core, logs := observer.New(zap.InfoLevel)
	s, err := OpenFile(dir, FileOptions{ReplayWindow: time.Hour, Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	ctx := context.Background()

	if _, err := os.Stat(filepath.Join(dir, LegacyFileName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("tokens.db is still where it was: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, LegacyFileName+MigratedSuffix)); err != nil {
		t.Fatalf("the old file was not set aside: %v", err)
	}
	converted := logs.FilterMessage("token store converted from buntdb").All()
	if len(converted) != 1 {
		t.Fatalf("the conversion was logged %d times", len(converted))
	}
	for _, e := range logs.All() {
		for _, f := range e.Context {
			if strings.Contains(f.String, "fixture-") {
				t.Fatalf("the log names a token: %s %v", e.Message, f)
			}
		}
	}

	a, err := s.GetAccess(ctx, HashOf("fixture-access-alice"))
	if err != nil || a.ClientID != "web" || a.Subject != "alice" || a.Scope != "read" || a.GrantID != "g-alice" || a.AuthTime == 0 {
		t.Fatalf("alice's access token after the upgrade: %+v, %v", a, err)
	}
	if r, err := s.GetRefresh(ctx, HashOf("fixture-refresh-alice")); err != nil || r.Scope != "openid read" || r.AccessHash != HashOf("fixture-access-alice").String() {
		t.Fatalf("alice's refresh token after the upgrade: %+v, %v", r, err)
	}
	if a, err := s.GetAccess(ctx, HashOf("fixture-access-svc")); err != nil || a.ClientID != "svc" || a.Scope != "read write" {
		t.Fatalf("the client_credentials token after the upgrade: %+v, %v", a, err)
	}
	if _, err := s.GetAccess(ctx, HashOf("fixture-access-expired")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("an expired token is back: %v", err)
	}
	for _, gone := range []string{"fixture-access-carol", "fixture-access-alice-0"} {
		if _, err := s.GetAccess(ctx, HashOf(gone)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("%s, revoked before the upgrade, is back: %v", gone, err)
		}
	}
	// The admin API's indexes were built.
	if toks, err := s.Tokens(ctx, Match{Subject: "alice"}); err != nil || len(toks) != 2 {
		t.Fatalf("alice's tokens by the index: %d, %v; want her access and refresh token", len(toks), err)
	}
	if toks, err := s.Tokens(ctx, Match{ClientID: "svc"}); err != nil || len(toks) != 1 {
		t.Fatalf("svc's tokens by the index: %d, %v", len(toks), err)
	}
	// Secrets and clients.
	for name, want := range map[string]string{"session_key": "v1:fixture-sealed-session-key", "signing_keys": "v1:fixture-sealed-signing-keys"} {
		got, err := s.Secret(ctx, name, func() ([]byte, error) { return []byte("new"), nil })
		if err != nil || string(got) != want {
			t.Fatalf("secret %s after the upgrade: %q, %v (a new secret logs everyone out)", name, got, err)
		}
	}
	if doc, err := s.GetClient(ctx, "dyn"); err != nil || !strings.Contains(string(doc), "dyn.example") {
		t.Fatalf("the registered client after the upgrade: %q, %v", doc, err)
	}
	// The live code is redeemed once; the redeemed one is a replay of alice's family.
	if rec, _, err := s.TakeCode(ctx, HashOf("fixture-code-live"), nil); err != nil || rec.Subject != "bob" || rec.RedirectURI != "https://app.example/cb" {
		t.Fatalf("taking the live code: %+v, %v", rec, err)
	}
	if _, gid, err := s.TakeCode(ctx, HashOf("fixture-code-used"), nil); !errors.Is(err, ErrReplayed) || gid != "g-alice" {
		t.Fatalf("the code redeemed before the upgrade: %q, %v; want a replay of g-alice", gid, err)
	}
	// A revoked family stays revoked: an issuance into it is born revoked.
	if err := s.SaveTokens(ctx, issue("late-carol", "", "g-carol")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetAccess(ctx, HashOf("late-carol")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a token issued into a family revoked before the upgrade is live: %v", err)
	}
	// The refresh token rotated out before the upgrade is a replay of alice's family, and
	// revoking that family takes her current tokens.
	_, _, replay, err := s.RotateRefresh(ctx, HashOf("fixture-refresh-alice-0"), accept, issue("n1", "n2", ""), false)
	if !errors.Is(err, ErrReplayed) || replay == nil || replay.GrantID != "g-alice" || replay.RotatedAt.IsZero() {
		t.Fatalf("replaying the refresh token rotated out before the upgrade: %+v, %v", replay, err)
	}
	rev, err := s.RevokeGrant(ctx, replay.GrantID)
	if err != nil || len(rev.Access) != 1 || rev.Access[0] != HashOf("fixture-access-alice") {
		t.Fatalf("revoking alice's family: %+v, %v", rev, err)
	}
	if _, err := s.GetRefresh(ctx, HashOf("fixture-refresh-alice")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("alice's refresh token outlived her family's revocation: %v", err)
	}

	// A second start converts nothing and keeps what the first one changed.
	s.Close()
	core2, logs2 := observer.New(zap.InfoLevel)
	s, err = OpenFile(dir, FileOptions{ReplayWindow: time.Hour, Logger: zap.New(core2)})
	if err != nil {
		t.Fatal(err)
	}
	if n := logs2.FilterMessage("token store converted from buntdb").Len(); n != 0 {
		t.Fatal("the second start converted again")
	}
	if _, err := s.GetAccess(ctx, HashOf("fixture-access-svc")); err != nil {
		t.Fatalf("after the second start: %v", err)
	}
	if _, err := s.GetAccess(ctx, HashOf("fixture-access-alice")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a token revoked after the upgrade is back after a restart: %v", err)
	}
}

// TestUpgradeCutShortIsDoneAgain: a conversion that did not finish (the
// process died before its last batch) leaves no mark, so the next start
// converts again from the old file, which is still where it was.
func TestUpgradeCutShortIsDoneAgain(t *testing.T) {
	dir := copyFixture(t)
	s := openTest(t, dir)
	// Undo the end of the conversion: the mark gone, the file back in place.
	if err := s.db.Delete(metaUpgraded, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RevokeAccess(context.Background(), HashOf("fixture-access-svc")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := os.Rename(filepath.Join(dir, LegacyFileName+MigratedSuffix), filepath.Join(dir, LegacyFileName)); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir)
	defer s.Close()
	if _, err := s.GetAccess(context.Background(), HashOf("fixture-access-svc")); err != nil {
		t.Fatalf("the conversion was not done again: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, LegacyFileName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("tokens.db is still where it was: %v", err)
	}
}
