package tests

import (
	"fmt"
	"os"
	"testing"
)

// TestTrustOnlyCaddyWithALateServer: a Caddy whose oauth2 block has only a
// trust block (no client, no user, no store) starts as a guard alone; an
// oauth2_server later in the config starts this server's side when it is
// provisioned, after a guard on an earlier route was. That guard accepts the
// tokens of the server started after it (a client registered through the
// admin API) as well as the trusted issuer's, and refuses a made-up one.
func TestTrustOnlyCaddyWithALateServer(t *testing.T) {
	svcA := clientSpec{ID: "svc-a", Secret: randomSecret("svca-"), Grants: "client_credentials", Scopes: "read"}
	a := startGate(t, gateSpec{Settings: "access_token {\n\tformat jwt\n}", Clients: []clientSpec{svcA}})
	gate := newInstance(t)
	upstream := startEchoUpstream(t)
	// The guard's handle has the longer path, so Caddy provisions it first.
	cfg := "{\n" + gate.globalOptions() + fmt.Sprintf(`	oauth2 {
		issuer %[1]s
		trust %[2]s {
			audience %[2]s
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
`, gate.base, a.base, upstream)
	if err := os.WriteFile(gate.file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gate.cleanup)
	gate.basePath = "/oauth2"
	gate.start()
	g := &guardGate{in: gate, api: gate.base}

	rc := register(t, gate, `{"grants":["client_credentials"],"scopes":["read"]}`)
	own := gate.token(t, tokenCall{Form: form("grant_type", "client_credentials", "scope", "read"), Basic: basic(rc.ClientID, rc.ClientSecret)}).mustToken(t)
	g.do(t, apiCall{Path: "/guarded-api/x", Bearer: own.Access}).mustPass(t)

	theirs := a.token(t, tokenCall{Form: form("grant_type", "client_credentials", "scope", "read"), Basic: basic(svcA.ID, svcA.Secret)}).mustToken(t)
	g.do(t, apiCall{Path: "/guarded-api/x", Bearer: theirs.Access}).mustPass(t)

	g.do(t, apiCall{Path: "/guarded-api/x", Bearer: randomSecret("made-up-")}).mustDeny(t, denial{Status: 401, Code: "invalid_token"})
}
