package tests

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"sync/atomic"
	"testing"
)

// TestTrustOnlyCaddyWithALateServer: a Caddy whose oauth2 block has only
// trust blocks (no client, no user, no store) starts as a guard alone; an
// oauth2_server later in the config starts this server's side when it is
// provisioned, after a guard on an earlier route was. That guard accepts the
// tokens of the server started after it (a client registered through the
// admin API) itself, and never sends them to the trusted issuer that
// introspects (here one that would answer with an identity of its choosing);
// the other trusted issuer's JWTs pass too.
func TestTrustOnlyCaddyWithALateServer(t *testing.T) {
	svcA := clientSpec{ID: "svc-a", Secret: randomSecret("svca-"), Grants: "client_credentials", Scopes: "read"}
	a := startGate(t, gateSpec{Settings: "access_token {\n\tformat jwt\n}", Clients: []clientSpec{svcA}})
	var introspected atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		introspected.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"active":true,"sub":"chosen-by-the-other-idp","scope":"read"}`))
	}))
	t.Cleanup(other.Close)
	gate := newInstance(t)
	upstream := startEchoUpstream(t)
	// The guard's handle has the longer path, so Caddy provisions it first.
	cfg := "{\n" + gate.globalOptions() + fmt.Sprintf(`	oauth2 {
		issuer %[1]s
		trust %[2]s {
			audience %[2]s
		}
		trust %[4]s {
			introspection %[4]s/introspect {
				client_id gate
				client_secret gate-secret
			}
		}
	}
}

%[1]s {
	handle /guarded-api/* {
		oauth2_guard read
		reverse_proxy %[3]s
	}
	handle {
		oauth2_server
	}
}
`, gate.base, a.base, upstream, other.URL)
	if err := os.WriteFile(gate.file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gate.cleanup)
	gate.basePath = "/oauth2"
	gate.start()
	g := &guardGate{in: gate, api: gate.base}

	rc := register(t, gate, `{"grants":["client_credentials"],"scopes":["read"]}`)
	own := gate.token(t, tokenCall{Form: form("grant_type", "client_credentials", "scope", "read"), Basic: basic(rc.ClientID, rc.ClientSecret)}).mustToken(t)
	if got := g.do(t, apiCall{Path: "/guarded-api/x", Bearer: own.Access}).mustPass(t).Header.Get("X-Auth-Subject"); got != rc.ClientID {
		t.Fatalf("this server's token reached the upstream as %q, want %q", got, rc.ClientID)
	}
	if n := introspected.Load(); n != 0 {
		t.Fatalf("this server's token was sent %d times to another issuer's introspection endpoint", n)
	}

	theirs := a.token(t, tokenCall{Form: form("grant_type", "client_credentials", "scope", "read"), Basic: basic(svcA.ID, svcA.Secret)}).mustToken(t)
	g.do(t, apiCall{Path: "/guarded-api/x", Bearer: theirs.Access}).mustPass(t)

	// A token this server does not know is the introspecting issuer's to judge.
	g.do(t, apiCall{Path: "/guarded-api/x", Bearer: randomSecret("made-up-")})
	if n := introspected.Load(); n != 1 {
		t.Fatalf("a token unknown here was introspected %d times, want 1", n)
	}
}
