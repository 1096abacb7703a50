package tests

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
)

// adminDo calls the admin endpoint and returns the status and the body.
func adminDo(t *testing.T, in *instance, method, path, body string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, fmt.Sprintf("http://127.0.0.1:%d%s", in.adminPort, path), rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 500 {
		t.Errorf("%s %s answered %d %s: never a 5xx", method, path, resp.StatusCode, b)
	}
	return resp.StatusCode, b
}

type registeredClient struct {
	ClientID     string   `json:"client_id"`
	ClientSecret string   `json:"client_secret"`
	Grants       []string `json:"grants"`
	Scopes       []string `json:"scopes"`
	RedirectURIs []string `json:"redirect_uris"`
	Public       bool     `json:"public"`
	Source       string   `json:"source"`
}

func register(t *testing.T, in *instance, body string) registeredClient {
	t.Helper()
	status, b := adminDo(t, in, http.MethodPost, "/oauth2/clients", body)
	if status != http.StatusCreated {
		t.Fatalf("register %s: %d %s", body, status, b)
	}
	var rc registeredClient
	if err := json.Unmarshal(b, &rc); err != nil {
		t.Fatal(err)
	}
	in.remember("registered client secret", rc.ClientSecret)
	return rc
}

type adminGrant struct {
	ClientID  string `json:"client_id"`
	Subject   string `json:"subject"`
	Scope     string `json:"scope"`
	IssuedAt  int64  `json:"issued_at"`
	ExpiresAt int64  `json:"expires_at"`
}

func grantsOf(t *testing.T, in *instance, query string) []adminGrant {
	t.Helper()
	status, b := adminDo(t, in, http.MethodGet, "/oauth2/grants?"+query, "")
	if status != http.StatusOK {
		t.Fatalf("grants %s: %d %s", query, status, b)
	}
	var out struct {
		Grants []adminGrant `json:"grants"`
	}
	if err := json.Unmarshal(b, &out); err != nil || out.Grants == nil {
		t.Fatalf("grants answer %s: %v", b, err)
	}
	return out.Grants
}

func adminRevoke(t *testing.T, in *instance, body string) int {
	t.Helper()
	status, b := adminDo(t, in, http.MethodPost, "/oauth2/revoke", body)
	if status != http.StatusOK {
		t.Fatalf("revoke %s: %d %s", body, status, b)
	}
	var out struct {
		Revoked *int `json:"revoked"`
	}
	if err := json.Unmarshal(b, &out); err != nil || out.Revoked == nil {
		t.Fatalf("revoke answer %s: %v", b, err)
	}
	return *out.Revoked
}

// TestAdminRegisteredClientLifecycle: a client registered through the admin
// API gets tokens on the next request, survives kill -9 and a restart, and
// once deleted its token is refused by the guard on the next request.
func TestAdminRegisteredClientLifecycle(t *testing.T) {
	g := startGuardGate(t, guardOpts{})
	rc := register(t, g.in, `{"grants":["client_credentials"],"scopes":["read","write"],"name":"Batch job"}`)
	if rc.ClientID == "" || rc.ClientSecret == "" || rc.Public || rc.Source != "registered" {
		t.Fatalf("registration answer %+v: want a generated id and secret", rc)
	}
	tok := g.in.token(t, tokenCall{Form: form("grant_type", "client_credentials", "scope", "read"), Basic: basic(rc.ClientID, rc.ClientSecret)}).mustToken(t)
	g.do(t, apiCall{Path: "/any/x", Bearer: tok.Access}).mustPass(t)
	// a wrong secret is refused
	if r := g.in.token(t, tokenCall{Form: form("grant_type", "client_credentials"), Basic: basic(rc.ClientID, "wrong-"+randomSecret(""))}); r.Status != http.StatusUnauthorized {
		t.Fatalf("wrong secret of a registered client: %s", r)
	}

	status, b := adminDo(t, g.in, http.MethodGet, "/oauth2/clients", "")
	if status != http.StatusOK || strings.Contains(string(b), rc.ClientSecret) || strings.Contains(string(b), "$2a$") {
		t.Fatalf("client list %d %s: want 200 without secrets or hashes", status, b)
	}
	for _, want := range []string{`"client_id":"svc"`, `"client_id":"` + rc.ClientID + `"`, `"source":"config"`, `"source":"registered"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("client list lacks %s: %s", want, b)
		}
	}

	g.in.kill()
	g.in.start()
	g.do(t, apiCall{Path: "/any/x", Bearer: tok.Access}).mustPass(t)
	tok2 := g.in.token(t, tokenCall{Form: form("grant_type", "client_credentials"), Basic: basic(rc.ClientID, rc.ClientSecret)}).mustToken(t)

	if status, b := adminDo(t, g.in, http.MethodDelete, "/oauth2/clients/"+rc.ClientID, ""); status != http.StatusNoContent {
		t.Fatalf("delete: %d %s", status, b)
	}
	for _, a := range []string{tok.Access, tok2.Access} {
		g.do(t, apiCall{Path: "/any/x", Bearer: a}).mustDeny(t, denial{Status: http.StatusUnauthorized, Code: "invalid_token"})
	}
	if r := g.in.token(t, tokenCall{Form: form("grant_type", "client_credentials"), Basic: basic(rc.ClientID, rc.ClientSecret)}); r.Status != http.StatusUnauthorized {
		t.Fatalf("a deleted client still gets tokens: %s", r)
	}
	if status, _ := adminDo(t, g.in, http.MethodDelete, "/oauth2/clients/"+rc.ClientID, ""); status != http.StatusNotFound {
		t.Fatalf("deleting again: %d, want 404", status)
	}
	if status, b := adminDo(t, g.in, http.MethodDelete, "/oauth2/clients/svc", ""); status != http.StatusConflict || !strings.Contains(string(b), `"error"`) {
		t.Fatalf("deleting a Caddyfile client: %d %s, want 409 with a JSON error", status, b)
	}
}

// TestAdminRevokeBySubject: revoking alice ends both her grants (every access
// and refresh token) at once and leaves bob's untouched; grants lists them
// before and nothing after, and never a token.
func TestAdminRevokeBySubject(t *testing.T) {
	g := startGuardGate(t, guardOpts{})
	p1 := g.pwToken(t, "read")
	p2 := g.pwToken(t, "read write")
	cc := g.ccToken(t, "read")
	grants := grantsOf(t, g.in, "subject=alice")
	if len(grants) != 2 {
		t.Fatalf("alice has %d grants, want 2: %+v", len(grants), grants)
	}
	for _, gr := range grants {
		if gr.ClientID != "app" || gr.Subject != "alice" || gr.IssuedAt == 0 || gr.ExpiresAt <= gr.IssuedAt {
			t.Errorf("grant %+v", gr)
		}
	}
	_, raw := adminDo(t, g.in, http.MethodGet, "/oauth2/grants?subject=alice", "")
	for _, tok := range []string{p1.Access, p1.Refresh, p2.Access, p2.Refresh} {
		if strings.Contains(string(raw), tok) {
			t.Fatalf("grants answer holds a token")
		}
	}
	if n := adminRevoke(t, g.in, `{"subject":"alice"}`); n != 4 {
		t.Fatalf("revoked %d tokens, want 4 (two access, two refresh)", n)
	}
	for _, a := range []string{p1.Access, p2.Access} {
		g.do(t, apiCall{Path: "/any/x", Bearer: a}).mustDeny(t, denial{Status: http.StatusUnauthorized, Code: "invalid_token"})
	}
	for _, rt := range []string{p1.Refresh, p2.Refresh} {
		if r := g.in.token(t, g.refreshCall(rt)); r.Status != http.StatusBadRequest || r.str("error") != "invalid_grant" {
			t.Fatalf("a revoked refresh token: %s", r)
		}
	}
	g.do(t, apiCall{Path: "/any/x", Bearer: cc}).mustPass(t) // svc's own token: untouched
	if gr := grantsOf(t, g.in, "subject=alice"); len(gr) != 0 {
		t.Fatalf("alice still has grants: %+v", gr)
	}
	if gr := grantsOf(t, g.in, "client_id=svc"); len(gr) != 1 {
		t.Fatalf("svc's grants: %+v, want its one token", gr)
	}
}

// TestAdminBadInput: every malformed admin request gets a 400 (or 404/405)
// with a JSON error, never a 500.
func TestAdminBadInput(t *testing.T) {
	g := startGuardGate(t, guardOpts{})
	cases := []struct {
		name, method, path, body string
		status                   int
	}{
		{"unknown field", "POST", "/oauth2/clients", `{"grants":["client_credentials"],"secret":"x"}`, 400},
		{"relative redirect URI", "POST", "/oauth2/clients", `{"grants":["authorization_code"],"redirect_uris":["/cb"]}`, 400},
		{"redirect URI with fragment", "POST", "/oauth2/clients", `{"grants":["authorization_code"],"redirect_uris":["https://a.example/cb#x"]}`, 400},
		{"javascript: redirect URI", "POST", "/oauth2/clients", `{"grants":["authorization_code"],"redirect_uris":["javascript://example.com/%0aalert(document.domain)"]}`, 400},
		{"JavaScript: redirect URI", "POST", "/oauth2/clients", `{"grants":["authorization_code"],"redirect_uris":["JavaScript://example.com/%0aalert(1)"]}`, 400},
		{"data: redirect URI", "POST", "/oauth2/clients", `{"grants":["authorization_code"],"redirect_uris":["data://x/text/html,<script>alert(1)</script>"]}`, 400},
		{"https redirect URI without a host", "POST", "/oauth2/clients", `{"grants":["authorization_code"],"redirect_uris":["https:/cb"]}`, 400},
		{"unknown grant", "POST", "/oauth2/clients", `{"grants":["magic"]}`, 400},
		{"duplicate of a Caddyfile client", "POST", "/oauth2/clients", `{"client_id":"svc","grants":["client_credentials"]}`, 400},
		{"client id of a user", "POST", "/oauth2/clients", `{"client_id":"alice","grants":["client_credentials"]}`, 400},
		{"public with client_credentials", "POST", "/oauth2/clients", `{"public":true,"grants":["client_credentials"]}`, 400},
		{"bad client id", "POST", "/oauth2/clients", `{"client_id":"a b/c","grants":["client_credentials"]}`, 400},
		{"not JSON", "POST", "/oauth2/clients", `grants=client_credentials`, 400},
		{"two JSON values", "POST", "/oauth2/clients", `{"grants":["client_credentials"]}{}`, 400},
		{"grants not an array", "POST", "/oauth2/clients", `{"grants":"client_credentials"}`, 400},
		{"body over the limit", "POST", "/oauth2/clients", `{"name":"` + strings.Repeat("x", 70<<10) + `"}`, 400},
		{"bad scope", "POST", "/oauth2/clients", `{"grants":["client_credentials"],"scopes":["a\"b"]}`, 400},
		{"revoke without selector", "POST", "/oauth2/revoke", `{}`, 400},
		{"revoke unknown field", "POST", "/oauth2/revoke", `{"user":"alice"}`, 400},
		{"grants without selector", "GET", "/oauth2/grants", ``, 400},
		{"grants unknown parameter", "GET", "/oauth2/grants?user=alice", ``, 400},
		{"grants repeated parameter", "GET", "/oauth2/grants?subject=a&subject=b", ``, 400},
		{"wrong method", "PUT", "/oauth2/clients", `{}`, 405},
		{"delete unknown", "DELETE", "/oauth2/clients/nobody", ``, 404},
	}
	for _, c := range cases {
		status, b := adminDo(t, g.in, c.method, c.path, c.body)
		var e struct {
			Error string `json:"error"`
		}
		if status != c.status || json.Unmarshal(b, &e) != nil || e.Error == "" {
			t.Errorf("%s: %d %s, want %d with a JSON error", c.name, status, b, c.status)
		}
	}
	register(t, g.in, `{"client_id":"dup","grants":["client_credentials"]}`)
	if status, _ := adminDo(t, g.in, "POST", "/oauth2/clients", `{"client_id":"dup","grants":["client_credentials"]}`); status != 400 {
		t.Errorf("duplicate registration: %d, want 400", status)
	}
}

// TestAdminRegisteredClientCannotShadowAUser: a client's own tokens name it
// as their subject, so no client may carry a user's name (RFC 9700 §4.15),
// whatever the case (an upstream may compare names without it), and in
// either order: a registration under a user's name is refused, and so is a
// reload that adds a user under a registered client's name (the running
// configuration keeps serving).
func TestAdminRegisteredClientCannotShadowAUser(t *testing.T) {
	g := startGuardGate(t, guardOpts{})
	for _, id := range []string{"alice", "ALICE", "Alice"} {
		status, b := adminDo(t, g.in, http.MethodPost, "/oauth2/clients", `{"client_id":"`+id+`","grants":["client_credentials"]}`)
		if status != http.StatusBadRequest || !strings.Contains(string(b), `"error"`) {
			t.Errorf("registering client %s beside user alice: %d %s, want 400 with a JSON error", id, status, b)
		}
	}
	rc := register(t, g.in, `{"client_id":"carol","grants":["client_credentials"],"scopes":["read"]}`)
	conf, err := os.ReadFile(g.in.file)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"carol", "Carol"} {
		edited := strings.Replace(string(conf), "\toauth2 {\n", "\toauth2 {\n\t\tuser "+name+" "+hashSecret(t, "carol-"+randomSecret(""))+"\n", 1)
		if edited == string(conf) {
			t.Fatal("the test's Caddyfile has no oauth2 block to edit")
		}
		if err := os.WriteFile(g.in.file, []byte(edited), 0o600); err != nil {
			t.Fatal(err)
		}
		_, stderr, err := caddyCLI(t, g.in.home, "reload", "--config", g.in.file, "--adapter", "caddyfile", "--address", fmt.Sprintf("127.0.0.1:%d", g.in.adminPort))
		if err == nil {
			t.Fatalf("a reload adding user %s beside registered client carol was accepted", name)
		}
		if msg := strings.ReplaceAll(stderr, `\`, ``); !strings.Contains(msg, `user "`+name+`" has the name of registered client "carol"`) {
			t.Errorf("the refused reload does not name the clash:\n%s", stderr)
		}
	}
	if err := os.WriteFile(g.in.file, conf, 0o600); err != nil {
		t.Fatal(err)
	}
	tok := g.in.token(t, tokenCall{Form: form("grant_type", "client_credentials", "scope", "read"), Basic: basic(rc.ClientID, rc.ClientSecret)}).mustToken(t)
	g.do(t, apiCall{Path: "/any/x", Bearer: tok.Access}).mustPass(t)
}
