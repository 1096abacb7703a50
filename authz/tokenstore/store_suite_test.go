package tokenstore

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// backend opens stores of one kind for the shared behavioural suite, so the
// file store and the Redis store are held to the same contract.
type backend struct {
	// space returns a new, empty storage: a directory, a Redis key prefix.
	space func(t *testing.T) string
	// open opens a store on space; opening the same space again sees the
	// same data (a restart, or another instance). The store is closed when t
	// ends.
	open func(t *testing.T, space string) Store
	// putRaw writes value under one of s's keys (e.g. "a:<hex>", without
	// any prefix), as something else sharing the storage might.
	putRaw func(t *testing.T, s Store, key, value string)
	// dump returns every key and value held in space, for at-rest checks.
	dump func(t *testing.T, space string) string
}

func rec(client string, ttl time.Duration) Record {
	now := time.Now()
	return Record{ClientID: client, Subject: "alice", Scope: "read", IssuedAt: now.Unix(), ExpiresAt: now.Add(ttl).Unix()}
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

func accept(*Record, *Issue) error { return nil }

// runStoreSuite runs every behavioural test of the Store contract on b.
func runStoreSuite(t *testing.T, b backend) {
	tests := []struct {
		name string
		run  func(t *testing.T, b backend)
	}{
		{"TakeCodeExactlyOnceUnderConcurrency", suiteTakeCodeExactlyOnce},
		{"TakeCodeKeepsTheRecord", suiteTakeCodeKeepsTheRecord},
		{"TakeCodeCheckFailureLeavesTheCode", suiteTakeCodeCheckFailure},
		{"RotateRefreshExactlyOnceAndReplayDetected", suiteRotateRefreshExactlyOnce},
		{"RotateCheckFailureLeavesTokenUsable", suiteRotateCheckFailure},
		{"RotationOffKeepsTheRefreshToken", suiteRotationOff},
		{"RevokeGrantEndsFamilyAndLaterIssues", suiteRevokeGrant},
		{"RevokeGrantFollowsRotations", suiteRevokeGrantFollowsRotations},
		{"IndexBySubjectAndClient", suiteIndexBySubjectAndClient},
		{"RegisteredClients", suiteClients},
		{"RevokeRefreshTakesItsAccessToken", suiteRevokeRefresh},
		{"RevokeAccess", suiteRevokeAccess},
		{"ExpiredTokenIsNotFound", suiteExpired},
		{"UnknownIsNotFound", suiteUnknown},
		{"GarbageInKeyIsNotFound", suiteGarbage},
		{"DurableAcrossReopenAndHashedAtRest", suiteDurable},
		{"SecretPersistsAndCanBeReplaced", suiteSecret},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, b) })
	}
}

func suiteTakeCodeExactlyOnce(t *testing.T, b backend) {
	s := b.open(t, b.space(t))
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
			_, gid, err := s.TakeCode(ctx, code, nil)
			switch {
			case err == nil:
				won.Add(1)
			case errors.Is(err, ErrReplayed) && gid == "g1":
				replayed.Add(1)
			default:
				t.Errorf("TakeCode: %v (gid %q)", err, gid)
			}
		}()
	}
	close(start)
	wg.Wait()
	if won.Load() != 1 || replayed.Load() != 49 {
		t.Fatalf("won=%d replayed=%d, want 1 and 49", won.Load(), replayed.Load())
	}
	if _, _, err := s.TakeCode(ctx, HashOf("never-issued"), nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown code: %v, want ErrNotFound", err)
	}
}

// suiteTakeCodeCheckFailure: a redemption the check refuses (another
// client's) does not burn the code, even when many race the rightful one.
func suiteTakeCodeCheckFailure(t *testing.T, b backend) {
	s := b.open(t, b.space(t))
	ctx := context.Background()
	code := HashOf("checked-code")
	r := rec("rightful", time.Minute)
	r.GrantID = "g-check"
	if err := s.SaveCode(ctx, code, r, time.Minute); err != nil {
		t.Fatal(err)
	}
	errOther := errors.New("another client")
	onlyFor := func(id string) CodeCheck {
		return func(rec *Record) error {
			if rec.ClientID != id {
				return errOther
			}
			return nil
		}
	}
	if _, _, err := s.TakeCode(ctx, code, onlyFor("attacker")); !errors.Is(err, errOther) {
		t.Fatalf("refused take: %v, want the check's error", err)
	}
	var won, refused, replayed atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			who := "attacker"
			if i%8 == 0 {
				who = "rightful"
			}
			got, _, err := s.TakeCode(ctx, code, onlyFor(who))
			switch {
			case err == nil && who == "rightful" && got.ClientID == "rightful":
				won.Add(1)
			case errors.Is(err, errOther) && who == "attacker":
				refused.Add(1)
			case errors.Is(err, ErrReplayed) || errors.Is(err, ErrNotFound):
				replayed.Add(1) // taken already: the rightful twin won
			default:
				t.Errorf("%s: TakeCode = %+v, %v", who, got, err)
			}
		}()
	}
	close(start)
	wg.Wait()
	if won.Load() != 1 {
		t.Fatalf("won=%d refused=%d gone=%d; want exactly one rightful redemption", won.Load(), refused.Load(), replayed.Load())
	}
}

func suiteTakeCodeKeepsTheRecord(t *testing.T, b backend) {
	s := b.open(t, b.space(t))
	ctx := context.Background()
	want := Record{
		ClientID: "c1", Subject: "alice", Scope: "openid read", RedirectURI: "https://app.example/cb",
		CodeChallenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", CodeChallengeMethod: "S256",
		Nonce: "n-0S6_WzA2Mj", AuthTime: 1700000000, GrantID: "g7",
		IssuedAt: time.Now().Unix(), ExpiresAt: time.Now().Add(time.Minute).Unix(),
	}
	if err := s.SaveCode(ctx, HashOf("c"), want, time.Minute); err != nil {
		t.Fatal(err)
	}
	got, _, err := s.TakeCode(ctx, HashOf("c"), nil)
	if err != nil || got != want {
		t.Fatalf("TakeCode = %+v, %v; want %+v", got, err, want)
	}
	// Without a grant there is no family to revoke: a second take is unknown.
	noGrant := want
	noGrant.GrantID = ""
	if err := s.SaveCode(ctx, HashOf("c2"), noGrant, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.TakeCode(ctx, HashOf("c2"), nil); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.TakeCode(ctx, HashOf("c2"), nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second take of a code without grant: %v, want ErrNotFound", err)
	}
}

func suiteRotateRefreshExactlyOnce(t *testing.T, b backend) {
	s := b.open(t, b.space(t))
	ctx := context.Background()
	if err := s.SaveTokens(ctx, issue("a0", "r0", "g1")); err != nil {
		t.Fatal(err)
	}
	before := time.Now().Add(-time.Second)
	var won, lost atomic.Int32
	var wg sync.WaitGroup
	var winner atomic.Int32
	start := make(chan struct{})
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, rev, replay, err := s.RotateRefresh(ctx, HashOf("r0"), accept, issue("a"+string(rune('A'+i)), "r"+string(rune('A'+i)), ""), false)
			switch {
			case err == nil:
				won.Add(1)
				winner.Store(int32(i))
				if len(rev.Access) != 1 || rev.Access[0] != HashOf("a0") {
					t.Errorf("rotation revoked %v, want the old access token", rev.Access)
				}
			case errors.Is(err, ErrReplayed):
				lost.Add(1)
				if replay == nil || replay.GrantID != "g1" || replay.RotatedAt.Before(before) || replay.RotatedAt.After(time.Now().Add(time.Second)) {
					t.Errorf("replay = %+v, want grant g1 rotated just now", replay)
				}
			default:
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
	if _, err := s.GetRefresh(ctx, HashOf("r0")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("old refresh token still valid after rotation: %v", err)
	}
	i := winner.Load()
	na, nr := "a"+string(rune('A'+i)), "r"+string(rune('A'+i))
	a, err := s.GetAccess(ctx, HashOf(na))
	if err != nil || a.GrantID != "g1" || a.RefreshHash != HashOf(nr).String() {
		t.Fatalf("new access token = %+v, %v; want it in family g1, linked to its refresh token", a, err)
	}
	r, err := s.GetRefresh(ctx, HashOf(nr))
	if err != nil || r.GrantID != "g1" || r.AccessHash != HashOf(na).String() {
		t.Fatalf("new refresh token = %+v, %v; want it in family g1, linked to its access token", r, err)
	}
}

func suiteRotateCheckFailure(t *testing.T, b backend) {
	s := b.open(t, b.space(t))
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
	if _, err := s.GetAccess(ctx, HashOf("a0")); err != nil {
		t.Fatalf("access token lost after a refused rotation: %v", err)
	}
	if _, err := s.GetAccess(ctx, HashOf("a1")); !errors.Is(err, ErrNotFound) {
		t.Fatal("a refused rotation stored a new access token")
	}
}

func suiteRotationOff(t *testing.T, b backend) {
	s := b.open(t, b.space(t))
	ctx := context.Background()
	if err := s.SaveTokens(ctx, issue("a0", "r0", "g1")); err != nil {
		t.Fatal(err)
	}
	for i, next := range []string{"a1", "a2"} {
		iss := issue(next, "r0", "")
		_, rev, _, err := s.RotateRefresh(ctx, HashOf("r0"), accept, iss, true)
		if err != nil {
			t.Fatalf("refresh %d with rotation off: %v", i+1, err)
		}
		prev := []string{"a0", "a1"}[i]
		if len(rev.Access) != 1 || rev.Access[0] != HashOf(prev) {
			t.Fatalf("refresh %d revoked %v, want %s", i+1, rev.Access, prev)
		}
		if _, err := s.GetAccess(ctx, HashOf(prev)); !errors.Is(err, ErrNotFound) {
			t.Fatalf("%s still valid after refresh: %v", prev, err)
		}
		r, err := s.GetRefresh(ctx, HashOf("r0"))
		if err != nil || r.AccessHash != HashOf(next).String() {
			t.Fatalf("refresh token after refresh %d = %+v, %v; want it kept and linked to %s", i+1, r, err, next)
		}
	}
	if _, err := s.RevokeGrant(ctx, "g1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetAccess(ctx, HashOf("a2")); !errors.Is(err, ErrNotFound) {
		t.Fatal("the latest access token survived RevokeGrant")
	}
	if _, err := s.GetRefresh(ctx, HashOf("r0")); !errors.Is(err, ErrNotFound) {
		t.Fatal("the kept refresh token survived RevokeGrant")
	}
}

func suiteRevokeGrant(t *testing.T, b backend) {
	s := b.open(t, b.space(t))
	ctx := context.Background()
	if err := s.SaveTokens(ctx, issue("a0", "r0", "g1")); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveTokens(ctx, issue("other", "other-r", "g2")); err != nil {
		t.Fatal(err)
	}
	rev, err := s.RevokeGrant(ctx, "g1")
	if err != nil || len(rev.Access) != 1 || rev.Access[0] != HashOf("a0") {
		t.Fatalf("RevokeGrant = %v, %v", rev, err)
	}
	if _, err := s.GetAccess(ctx, HashOf("a0")); !errors.Is(err, ErrNotFound) {
		t.Fatal("a0 survived RevokeGrant")
	}
	if _, err := s.GetRefresh(ctx, HashOf("r0")); !errors.Is(err, ErrNotFound) {
		t.Fatal("refresh token survived RevokeGrant")
	}
	if _, err := s.GetAccess(ctx, HashOf("other")); err != nil {
		t.Fatalf("another family's token went with it: %v", err)
	}
	// A redemption that raced the replay stores into a revoked family: born revoked.
	if err := s.SaveTokens(ctx, issue("a9", "r9", "g1")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetAccess(ctx, HashOf("a9")); !errors.Is(err, ErrNotFound) {
		t.Fatal("a token issued into a revoked family is valid")
	}
	if _, err := s.GetRefresh(ctx, HashOf("r9")); !errors.Is(err, ErrNotFound) {
		t.Fatal("a refresh token issued into a revoked family is valid")
	}
	// Revoking twice, or an unknown family, is no error.
	if _, err := s.RevokeGrant(ctx, "g1"); err != nil {
		t.Fatal(err)
	}
	if rev, err := s.RevokeGrant(ctx, "never"); err != nil || len(rev.Access) != 0 {
		t.Fatalf("unknown family: %v, %v", rev, err)
	}
}

func suiteRevokeGrantFollowsRotations(t *testing.T, b backend) {
	s := b.open(t, b.space(t))
	ctx := context.Background()
	if err := s.SaveTokens(ctx, issue("a0", "r0", "g1")); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := s.RotateRefresh(ctx, HashOf("r0"), accept, issue("a1", "r1", ""), false); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := s.RotateRefresh(ctx, HashOf("r1"), accept, issue("a2", "r2", ""), false); err != nil {
		t.Fatal(err)
	}
	// r0 comes back: the family (now a2/r2) is what must end.
	_, _, replay, err := s.RotateRefresh(ctx, HashOf("r0"), accept, issue("a3", "r3", ""), false)
	if !errors.Is(err, ErrReplayed) || replay == nil || replay.GrantID != "g1" {
		t.Fatalf("replayed r0: %v, %+v", err, replay)
	}
	rev, err := s.RevokeGrant(ctx, replay.GrantID)
	if err != nil || len(rev.Access) != 1 || rev.Access[0] != HashOf("a2") {
		t.Fatalf("RevokeGrant = %v, %v; want exactly a2 (a0 and a1 were revoked by their rotations)", rev.Access, err)
	}
	for _, a := range []string{"a0", "a1", "a2", "a3"} {
		if _, err := s.GetAccess(ctx, HashOf(a)); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s is valid after its family was revoked", a)
		}
	}
	if _, err := s.GetRefresh(ctx, HashOf("r2")); !errors.Is(err, ErrNotFound) {
		t.Error("r2 is valid after its family was revoked")
	}
}

func suiteRevokeRefresh(t *testing.T, b backend) {
	s := b.open(t, b.space(t))
	ctx := context.Background()
	if err := s.SaveTokens(ctx, issue("a0", "r0", "g1")); err != nil {
		t.Fatal(err)
	}
	rev, err := s.RevokeRefresh(ctx, HashOf("r0"))
	if err != nil || len(rev.Access) != 1 || rev.Access[0] != HashOf("a0") {
		t.Fatalf("RevokeRefresh = %v, %v; want a0", rev, err)
	}
	if _, err := s.GetAccess(ctx, HashOf("a0")); !errors.Is(err, ErrNotFound) {
		t.Fatal("access token survived the revocation of its refresh token (RFC 7009 §2.1)")
	}
	if _, err := s.GetRefresh(ctx, HashOf("r0")); !errors.Is(err, ErrNotFound) {
		t.Fatal("revoked refresh token still valid")
	}
	if rev, err := s.RevokeRefresh(ctx, HashOf("r0")); err != nil || len(rev.Access) != 0 {
		t.Fatalf("second revocation: %v, %v", rev, err)
	}
}

func suiteRevokeAccess(t *testing.T, b backend) {
	s := b.open(t, b.space(t))
	ctx := context.Background()
	if err := s.SaveTokens(ctx, issue("a0", "r0", "g1")); err != nil {
		t.Fatal(err)
	}
	rev, err := s.RevokeAccess(ctx, HashOf("a0"))
	if err != nil || len(rev.Access) != 1 || rev.Access[0] != HashOf("a0") {
		t.Fatalf("RevokeAccess = %v, %v", rev, err)
	}
	if _, err := s.GetAccess(ctx, HashOf("a0")); !errors.Is(err, ErrNotFound) {
		t.Fatal("revoked access token still valid")
	}
	if _, err := s.GetRefresh(ctx, HashOf("r0")); err != nil {
		t.Fatalf("revoking the access token took the refresh token: %v", err)
	}
}

func suiteExpired(t *testing.T, b backend) {
	s := b.open(t, b.space(t))
	ctx := context.Background()
	iss := issue("a0", "r0", "")
	iss.AccessRecord.ExpiresAt = time.Now().Add(-time.Second).Unix()
	iss.RefreshRecord.ExpiresAt = time.Now().Add(-time.Second).Unix()
	if err := s.SaveTokens(ctx, iss); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetAccess(ctx, HashOf("a0")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expired token: %v, want ErrNotFound", err)
	}
	if _, err := s.GetRefresh(ctx, HashOf("r0")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("expired refresh token: %v, want ErrNotFound", err)
	}
	if _, _, _, err := s.RotateRefresh(ctx, HashOf("r0"), accept, issue("a1", "r1", ""), false); !errors.Is(err, ErrNotFound) {
		t.Fatalf("rotating an expired refresh token: %v, want ErrNotFound", err)
	}
}

func suiteUnknown(t *testing.T, b backend) {
	s := b.open(t, b.space(t))
	ctx := context.Background()
	if _, err := s.GetAccess(ctx, HashOf("nope")); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetAccess: %v", err)
	}
	if _, err := s.GetRefresh(ctx, HashOf("nope")); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetRefresh: %v", err)
	}
	if _, _, _, err := s.RotateRefresh(ctx, HashOf("nope"), accept, issue("a1", "r1", ""), false); !errors.Is(err, ErrNotFound) {
		t.Errorf("RotateRefresh: %v", err)
	}
	if _, _, err := s.TakeCode(ctx, HashOf("nope"), nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("TakeCode: %v", err)
	}
}

func suiteGarbage(t *testing.T, b backend) {
	sp := b.space(t)
	s := b.open(t, sp)
	ctx := context.Background()
	for _, v := range []string{"{not json", "", "42", `"a string"`, "[1,2]", "\x00\xff binary"} {
		h := HashOf("x" + v)
		b.putRaw(t, s, prefixAccess+h.String(), v)
		b.putRaw(t, s, prefixRefresh+h.String(), v)
		b.putRaw(t, s, prefixCode+h.String(), v)
		if _, err := s.GetAccess(ctx, h); !errors.Is(err, ErrNotFound) {
			t.Errorf("garbage %q as an access record: %v, want ErrNotFound", v, err)
		}
		if _, err := s.GetRefresh(ctx, h); !errors.Is(err, ErrNotFound) {
			t.Errorf("garbage %q as a refresh record: %v, want ErrNotFound", v, err)
		}
		if _, _, _, err := s.RotateRefresh(ctx, h, accept, issue("ga", "gr", ""), false); !errors.Is(err, ErrNotFound) {
			t.Errorf("rotating garbage %q: %v, want ErrNotFound", v, err)
		}
		if _, _, err := s.TakeCode(ctx, h, nil); !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrReplayed) {
			t.Errorf("taking garbage %q as a code: %v, want ErrNotFound", v, err)
		}
		if _, err := s.RevokeRefresh(ctx, h); err != nil {
			t.Errorf("revoking garbage %q: %v", v, err)
		}
	}
	// Garbage in a family does not stop issuance or revocation.
	b.putRaw(t, s, prefixFamily+"gx", "{not a family")
	if err := s.SaveTokens(ctx, issue("fa", "fr", "gx")); err != nil {
		t.Fatalf("issuing into a garbage family: %v", err)
	}
	if _, err := s.RevokeGrant(ctx, "gx"); err != nil {
		t.Fatalf("revoking a garbage family: %v", err)
	}
	if _, err := s.GetAccess(ctx, HashOf("fa")); !errors.Is(err, ErrNotFound) {
		t.Errorf("token of a revoked family still valid: %v", err)
	}
}

func suiteDurable(t *testing.T, b backend) {
	sp := b.space(t)
	ctx := context.Background()
	s := b.open(t, sp)
	access, refresh := "plain-access-token-value-1234567890", "plain-refresh-token-value-0987654321"
	code := "plain-code-value-1122334455"
	if err := s.SaveTokens(ctx, issue(access, refresh, "g1")); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveCode(ctx, HashOf(code), rec("c1", time.Minute), time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	raw := b.dump(t, sp)
	for _, v := range []string{access, refresh, code} {
		if strings.Contains(raw, v) {
			t.Fatalf("%q is stored in plain text", v)
		}
	}
	if !strings.Contains(raw, HashOf(access).String()) {
		t.Fatal("the access token's hash is not in the store")
	}
	s = b.open(t, sp)
	if r, err := s.GetAccess(ctx, HashOf(access)); err != nil || r.ClientID != "c1" {
		t.Fatalf("after reopen: %+v, %v", r, err)
	}
	if _, _, _, err := s.RotateRefresh(ctx, HashOf(refresh), accept, issue("a1", "r1", ""), false); err != nil {
		t.Fatalf("rotating after reopen: %v", err)
	}
}

func suiteSecret(t *testing.T, b backend) {
	sp := b.space(t)
	ctx := context.Background()
	s := b.open(t, sp)
	gen := func() ([]byte, error) { return []byte("k1"), nil }
	a, err := s.Secret(ctx, "session", gen)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = b.open(t, sp)
	other := func() ([]byte, error) { return []byte("other"), nil }
	got, _ := s.Secret(ctx, "session", other)
	if string(a) != "k1" || string(got) != "k1" {
		t.Fatalf("secret changed across reopen: %q then %q", a, got)
	}
	if err := s.SetSecret(ctx, "session", []byte("k2")); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Secret(ctx, "session", other); string(got) != "k2" {
		t.Fatalf("after SetSecret: %q, want k2", got)
	}
	failing := errors.New("no entropy")
	if _, err := s.Secret(ctx, "fresh", func() ([]byte, error) { return nil, failing }); !errors.Is(err, failing) {
		t.Fatalf("gen error: %v", err)
	}
}
