package tests

import (
	"net/http"
	"strings"
	"testing"

	"github.com/oauth2gate/oauth2gate/internal/proclog"
)

// TestServerAccessLogRedactsQuerySecrets: with Caddy's access log on, the
// seed-style userinfo call (?access_token=) and, with allow_get_token_request,
// a token request in the URL (client_secret, password, code) leave no secret
// in the log; the entry is still written, with the values redacted.
func TestServerAccessLogRedactsQuerySecrets(t *testing.T) {
	t.Parallel()
	app := clientSpec{ID: "app", Secret: "app-secret-in-url", Grants: "password client_credentials", Scopes: "openid email"}
	in := startGateWith(t, gateSpec{
		Settings: "allow_get_token_request",
		Clients:  []clientSpec{app},
		Users:    []userSpec{{Name: "alice", Password: "alice-password-in-url", Claims: [][2]string{{"email", "alice@example.com"}}}},
	}, siteOptions{BasePath: "/o", SiteExtra: "log"})
	q := "grant_type=password&client_id=app&client_secret=app-secret-in-url&username=alice&password=alice-password-in-url&scope=openid%20email"
	r := in.token(t, tokenCall{Method: http.MethodGet, Query: q})
	tok := r.mustToken(t)
	resp, err := in.http.Get(in.url("/userinfo?access_token=" + tok.Access))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("userinfo with ?access_token=: %d", resp.StatusCode)
	}
	in.remember("access token in URL", tok.Access)
	in.stop() // flush the log
	log := in.log.String()
	if !strings.Contains(log, "access_token=REDACTED") || !strings.Contains(log, "client_secret=REDACTED") {
		t.Fatalf("the access log lost the entries instead of redacting them:\n%s", proclog.Tail(log, 4000))
	}
	// assertLogClean (at cleanup) fails the test if any secret is in the log.
}
