package tokenstore

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// issueFor is an issuance of subject through client, in family gid ("" for
// none), with a refresh token when refresh is set.
func issueFor(subject, client, gid string, refresh bool) Issue {
	now := time.Now()
	r := Record{ClientID: client, Subject: subject, Scope: "read", GrantID: gid, IssuedAt: now.Unix(), ExpiresAt: now.Add(time.Hour).Unix()}
	iss := Issue{Access: HashOf(randomish()), AccessRecord: r}
	if refresh {
		iss.Refresh = HashOf(randomish())
		iss.RefreshRecord = r
		iss.RefreshRecord.ExpiresAt = now.Add(24 * time.Hour).Unix()
	}
	return iss
}

var counter int

func randomish() string { counter++; return fmt.Sprintf("tok-%d-%d", time.Now().UnixNano(), counter) }

// suiteIndexBySubjectAndClient: the store finds a subject's and a client's
// live tokens (and only theirs, matched exactly), through rotations; revoking
// by subject ends the subject's grants and tokens and nothing of another
// user, and counts the tokens; revoking by client the same.
func suiteIndexBySubjectAndClient(t *testing.T, b backend) {
	ctx := context.Background()
	s := b.open(t, b.space(t))
	a1 := issueFor("alice", "web", "g-a1", true)
	a2 := issueFor("alice", "app", "g-a2", true)
	a3 := issueFor("alice", "app", "", false) // outside any family
	bob := issueFor("bob", "app", "g-b", true)
	al := issueFor("Alice", "web", "g-A", true)    // another subject, by case
	odd := issueFor(`al"ice\`, `we"b\`, "", false) // quotes and backslashes in the indexed fields
	for _, iss := range []Issue{a1, a2, a3, bob, al, odd} {
		if err := s.SaveTokens(ctx, iss); err != nil {
			t.Fatal(err)
		}
	}
	// a rotation moves a2's family to new tokens; the index follows
	next := issueFor("alice", "app", "", true)
	_, _, _, err := s.RotateRefresh(ctx, a2.Refresh, func(old *Record, iss *Issue) error {
		iss.Access, iss.AccessRecord = next.Access, next.AccessRecord
		iss.RefreshRecord = next.RefreshRecord
		return nil
	}, Issue{Refresh: next.Refresh}, false)
	if err != nil {
		t.Fatal(err)
	}
	toks, err := s.Tokens(ctx, Match{Subject: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if len(toks) != 5 { // a1 pair, a2's new pair, a3
		t.Fatalf("alice has %d live tokens, want 5: %+v", len(toks), toks)
	}
	for _, tk := range toks {
		if tk.Record.Subject != "alice" {
			t.Fatalf("a token of %q listed for alice", tk.Record.Subject)
		}
		if tk.Hash == a2.Access || tk.Hash == a2.Refresh {
			t.Fatalf("a rotated-out token is listed")
		}
	}
	if toks, _ := s.Tokens(ctx, Match{Subject: `al"ice\`}); len(toks) != 1 || toks[0].Hash != odd.Access {
		t.Fatalf("the subject with a quote and a backslash: %+v", toks)
	}
	if toks, _ := s.Tokens(ctx, Match{ClientID: `we"b\`}); len(toks) != 1 {
		t.Fatalf("the client with a quote and a backslash: %+v", toks)
	}
	grants, err := Grants(ctx, s, Match{Subject: "alice"})
	if err != nil || len(grants) != 3 {
		t.Fatalf("alice's grants: %v %+v, want 3", err, grants)
	}
	if toks, _ := s.Tokens(ctx, Match{Subject: "alice", ClientID: "web"}); len(toks) != 2 {
		t.Fatalf("alice through web: %d tokens, want 2", len(toks))
	}
	if toks, _ := s.Tokens(ctx, Match{ClientID: "app"}); len(toks) != 5 {
		t.Fatalf("client app: %d tokens, want 5", len(toks))
	}

	rev, n, err := RevokeMatching(ctx, s, Match{Subject: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if n != 5 || len(rev.Access) < 3 {
		t.Fatalf("revoked %d tokens (%d access hashes), want 5 (3 access)", n, len(rev.Access))
	}
	for _, h := range []Hash{a1.Access, next.Access, a3.Access} {
		if _, err := s.GetAccess(ctx, h); !errors.Is(err, ErrNotFound) {
			t.Fatalf("an access token of alice outlived the revocation: %v", err)
		}
	}
	for _, h := range []Hash{a1.Refresh, next.Refresh} {
		if _, err := s.GetRefresh(ctx, h); !errors.Is(err, ErrNotFound) {
			t.Fatalf("a refresh token of alice outlived the revocation: %v", err)
		}
	}
	for _, iss := range []Issue{bob, al} {
		if _, err := s.GetAccess(ctx, iss.Access); err != nil {
			t.Fatalf("another user's token was revoked: %v", err)
		}
	}
	if toks, _ := s.Tokens(ctx, Match{Subject: "alice"}); len(toks) != 0 {
		t.Fatalf("alice still has %d tokens", len(toks))
	}
	// A family revoked this way stays revoked: a late issuance into it is born dead.
	late := issueFor("alice", "web", "g-a1", false)
	if err := s.SaveTokens(ctx, late); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetAccess(ctx, late.Access); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a token issued into a revoked grant lives: %v", err)
	}
	if _, n, _ := RevokeMatching(ctx, s, Match{ClientID: "app"}); n != 2 {
		t.Fatalf("revoking client app: %d tokens, want bob's 2", n)
	}
	if _, n, _ := RevokeMatching(ctx, s, Match{}); n != 0 {
		t.Fatalf("an empty match revoked %d tokens", n)
	}
}

// suiteClients: registered clients are kept, read, listed and deleted; an id
// registers once; a store opened on the same storage (a restart, another
// instance) sees them.
func suiteClients(t *testing.T, b backend) {
	ctx := context.Background()
	space := b.space(t)
	s := b.open(t, space)
	if err := s.SaveClient(ctx, "c1", []byte(`{"a":1}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveClient(ctx, "c1", []byte(`{"a":2}`)); !errors.Is(err, ErrExists) {
		t.Fatalf("second registration of an id: %v, want ErrExists", err)
	}
	other := b.open(t, space)
	if doc, err := other.GetClient(ctx, "c1"); err != nil || string(doc) != `{"a":1}` {
		t.Fatalf("another instance reads %q, %v", doc, err)
	}
	all, err := s.Clients(ctx)
	if err != nil || len(all) != 1 || string(all["c1"]) != `{"a":1}` {
		t.Fatalf("clients: %v %v", all, err)
	}
	if err := s.DeleteClient(ctx, "c1"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteClient(ctx, "c1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleting twice: %v", err)
	}
	if _, err := s.GetClient(ctx, "c1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a deleted client is still read: %v", err)
	}
	// a store opened now (a restart, another instance) no longer has it
	if _, err := b.open(t, space).GetClient(ctx, "c1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a deleted client is read after a reopen: %v", err)
	}
}
