// Command gen writes the upgrade fixture tokens.db with the buntdb FileStore
// of commit 67d8a08 (the last one whose embedded store was buntdb). It cannot
// run against later code, whose store is pebble; to write the file again:
//
//	git worktree add /tmp/old 67d8a08
//	cp -r authz/tokenstore/testdata/upgrade/gen /tmp/old/authz/tokenstore/testdata/upgrade/
//	cd /tmp/old && go run ./authz/tokenstore/testdata/upgrade/gen -dir "$OLDPWD/authz/tokenstore/testdata/upgrade"
//
// The tokens it stores are listed in upgrade_test.go, which reads the file.
package main

import (
	"context"
	"flag"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/oauth2gate/oauth2gate/authz/tokenstore"
)

func main() {
	dir := flag.String("dir", ".", "directory to write tokens.db into")
	flag.Parse()
	tmp, err := os.MkdirTemp("", "fixture")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	long := 70 * 365 * 24 * time.Hour // until about 2096: the fixture's tokens stay live
	st, err := tokenstore.OpenFile(tmp, tokenstore.FileOptions{ReplayWindow: long})
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	now := time.Now()
	rec := func(client, sub, scope, gid string) tokenstore.Record {
		return tokenstore.Record{ClientID: client, Subject: sub, Scope: scope, GrantID: gid, AuthTime: now.Unix()}
	}
	must := func(err error) {
		if err != nil {
			log.Fatal(err)
		}
	}
	// alice's grant: a code, redeemed; its first refresh token rotated out.
	code := rec("web", "alice", "openid read", "g-alice")
	code.RedirectURI, code.CodeChallenge, code.CodeChallengeMethod, code.Nonce = "https://app.example/cb", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", "S256", "n-0S6_WzA2Mj"
	code.IssuedAt, code.ExpiresAt = now.Unix(), now.Add(long).Unix()
	must(st.SaveCode(ctx, tokenstore.HashOf("fixture-code-used"), code, long))
	if _, _, err := st.TakeCode(ctx, tokenstore.HashOf("fixture-code-used"), nil); err != nil {
		log.Fatal(err)
	}
	must(st.SaveTokens(ctx, tokenstore.NewIssue("fixture-access-alice-0", rec("web", "alice", "openid read", "g-alice"),
		"fixture-refresh-alice-0", rec("web", "alice", "openid read", "g-alice"), now, long, long)))
	iss := tokenstore.NewIssue("fixture-access-alice", rec("web", "alice", "read", ""), "fixture-refresh-alice", rec("web", "alice", "openid read", ""), now, long, long)
	if _, _, _, err := st.RotateRefresh(ctx, tokenstore.HashOf("fixture-refresh-alice-0"), func(old *tokenstore.Record, _ *tokenstore.Issue) error { return nil }, iss, false); err != nil {
		log.Fatal(err)
	}
	// A live code, not yet redeemed.
	live := rec("web", "bob", "openid", "g-bob")
	live.RedirectURI, live.IssuedAt, live.ExpiresAt = "https://app.example/cb", now.Unix(), now.Add(long).Unix()
	must(st.SaveCode(ctx, tokenstore.HashOf("fixture-code-live"), live, long))
	// A client_credentials token, outside any family.
	must(st.SaveTokens(ctx, tokenstore.NewIssue("fixture-access-svc", rec("svc", "", "read write", ""), "", tokenstore.Record{}, now, long, 0)))
	// A family revoked (a replay): its tokens are gone, later issues into it are born revoked.
	must(st.SaveTokens(ctx, tokenstore.NewIssue("fixture-access-carol", rec("web", "carol", "read", "g-carol"), "fixture-refresh-carol", rec("web", "carol", "read", "g-carol"), now, long, long)))
	if _, err := st.RevokeGrant(ctx, "g-carol"); err != nil {
		log.Fatal(err)
	}
	// A token that expired already.
	must(st.SaveTokens(ctx, tokenstore.NewIssue("fixture-access-expired", rec("svc", "", "read", ""), "", tokenstore.Record{}, now.Add(-2*time.Hour), time.Hour, 0)))
	// Secrets and a client registered through the admin API.
	must(st.SetSecret(ctx, "session_key", []byte("v1:fixture-sealed-session-key")))
	must(st.SetSecret(ctx, "signing_keys", []byte("v1:fixture-sealed-signing-keys")))
	must(st.SaveClient(ctx, "dyn", []byte(`{"client_id":"dyn","redirect_uris":["https://dyn.example/cb"]}`)))
	must(st.Close())
	raw, err := os.ReadFile(filepath.Join(tmp, "tokens.db"))
	if err != nil {
		log.Fatal(err)
	}
	must(os.WriteFile(filepath.Join(*dir, "tokens.db"), raw, 0o600))
	log.Printf("wrote %d bytes", len(raw))
}
