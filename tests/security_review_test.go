package tests

// The outside security review of 2026-12-01 (issue 11): one test per finding, named after it,
// each doing what the reviewer did against the real binary.

import (
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/oauth2"
)

// TestFinding1_LowerCaseMethodCannotBypassMethodScopes: with `scope DELETE admin` and `scope *
// read`, a read token sent with `delete` (which Werkzeug, Django and PHP frameworks run as
// DELETE) fell through to the * line and reached the upstream. Every spelling that is not the
// upper-case method is now refused before the upstream, and the upper-case one is checked
// against its own line.
func TestFinding1_LowerCaseMethodCannotBypassMethodScopes(t *testing.T) {
	t.Parallel()
	g := startGuardGate(t, guardOpts{})
	read := g.ccToken(t, "read")
	for _, m := range []string{"delete", "Delete", "dELETE", "DELETe", "post", "Post", "put", "patch", "get", "Get", "head", "options"} {
		r := g.do(t, apiCall{Method: m, Path: "/star/orders/1", Bearer: read})
		if r.Echo != nil {
			t.Errorf("%s with a read token reached the upstream as %q", m, r.Echo.Method)
			continue
		}
		if m == "head" { // a HEAD-like answer has no body to read the code from
			if r.Status != http.StatusBadRequest {
				t.Errorf("%s: %s, want 400", m, r)
			}
			continue
		}
		r.mustDeny(t, denial{Status: http.StatusBadRequest, Code: "invalid_request"})
	}
	g.do(t, apiCall{Method: "DELETE", Path: "/star/orders/1", Bearer: read}).mustDeny(t, denial{Status: http.StatusForbidden, Code: "insufficient_scope", Scope: "admin"})
	if e := g.do(t, apiCall{Method: "GET", Path: "/star/orders/1", Bearer: read}).mustPass(t); e.Method != "GET" {
		t.Errorf("upstream saw %q", e.Method)
	}
	admin := g.ccToken(t, "admin read")
	if e := g.do(t, apiCall{Method: "DELETE", Path: "/star/orders/1", Bearer: admin}).mustPass(t); e.Method != "DELETE" {
		t.Errorf("upstream saw %q", e.Method)
	}
}

// TestFinding4_ConnectionHeaderCannotStripIdentity: reverse_proxy drops every header the
// request's Connection header names, so `Connection: X-Auth-Subject` removed the caller's
// identity on its way upstream. The identity headers, default and header_up, always arrive.
func TestFinding4_ConnectionHeaderCannotStripIdentity(t *testing.T) {
	t.Parallel()
	g := startGuardGate(t, guardOpts{})
	read := g.ccToken(t, "read")
	for _, conn := range [][]string{
		{"X-Auth-Subject, X-Auth-Scope, X-Auth-Client-Id"},
		{"x-auth-subject,x-auth-scope", "X-AUTH-CLIENT-ID"},
		{"keep-alive, X-Auth-Subject"},
		{" ,X-Auth-Subject , "},
	} {
		e := g.do(t, apiCall{Path: "/rw/orders", Bearer: read, Header: http.Header{"Connection": conn}}).mustPass(t)
		for name, want := range map[string]string{"X-Auth-Subject": g.svc.ID, "X-Auth-Client-Id": g.svc.ID, "X-Auth-Scope": "read"} {
			if got := e.Header.Get(name); got != want {
				t.Errorf("Connection: %q: upstream got %s %q, want %q", conn, name, got, want)
			}
		}
	}
	e := g.do(t, apiCall{Path: "/hdr/x", Bearer: read, Header: http.Header{"Connection": {"X-User, X-Who, X-Auth-Subject"}}}).mustPass(t)
	if e.Header.Get("X-User") != g.svc.ID || e.Header.Get("X-Who") != g.svc.ID+" as "+g.svc.ID || e.Header.Get("X-Auth-Subject") != g.svc.ID {
		t.Errorf("header_up identity headers lost through Connection: %v", e.Header)
	}
	// Connection still works for what it is for: a header of the caller's own that it names
	// is dropped as a hop-by-hop header.
	e = g.do(t, apiCall{Path: "/rw/orders", Bearer: read, Header: http.Header{"Connection": {"X-Hop"}, "X-Hop": {"1"}}}).mustPass(t)
	if e.Header.Get("X-Hop") != "" {
		t.Errorf("a hop-by-hop header named in Connection reached the upstream")
	}
}

// setCookies are the response's cookies by name.
func setCookies(h http.Header) map[string]*http.Cookie {
	out := map[string]*http.Cookie{}
	for _, c := range (&http.Response{Header: h}).Cookies() {
		out[c.Name] = c
	}
	return out
}

// TestFinding5_SecureCookiesBehindTLSTerminator: with an https issuer and Caddy on plain http
// behind a TLS-terminating load balancer (the README's two-instance topology), the session and
// CSRF cookies had no Secure flag. They are now Secure, __Host- prefixed, path /, whatever the
// connection; with an http issuer (this test's own control) nothing changes.
func TestFinding5_SecureCookiesBehindTLSTerminator(t *testing.T) {
	t.Parallel()
	web := clientSpec{ID: "web", Secret: randomSecret("web-"), Grants: "authorization_code", RedirectURIs: webCB, Scopes: "read"}
	al := alice()
	spec := gateSpec{Clients: []clientSpec{web}, Users: []userSpec{al}}
	behindTLS := startGateWith(t, spec, siteOptions{BasePath: "/o", Issuer: "https://auth.example.test"})
	plain := startGate(t, spec)

	csrfRe := regexp.MustCompile(`name="csrf_token" value="([^"]+)"`)
	login := func(in *instance) (page, session map[string]*http.Cookie) {
		t.Helper()
		authz := in.url("/authorize?" + authParams(web.ID, webCB, "code", "read", "s1").Encode())
		resp, err := in.http.Get(authz)
		if err != nil {
			t.Fatal(err)
		}
		body := readAll(t, resp)
		page = setCookies(resp.Header)
		m := csrfRe.FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("no CSRF field on the login page: %s", body)
		}
		// The load balancer's browser would send the cookies back over https; send them by hand.
		req, _ := http.NewRequest(http.MethodPost, authz, strings.NewReader(url.Values{
			"csrf_token": {m[1]}, "action": {"login"}, "username": {al.Name}, "password": {al.Password},
		}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for _, c := range page {
			req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
		}
		resp, err = in.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("login answered %d, want 303", resp.StatusCode)
		}
		return page, setCookies(resp.Header)
	}

	page, sess := login(behindTLS)
	for name, jar := range map[string]map[string]*http.Cookie{"__Host-oauth2gate_csrf": page, "__Host-oauth2gate_session": sess} {
		c := jar[name]
		if c == nil {
			t.Errorf("https issuer: no %s cookie among %v", name, keys(jar))
			continue
		}
		if !c.Secure || !c.HttpOnly || c.Path != "/" || c.Domain != "" || c.SameSite != http.SameSiteLaxMode {
			t.Errorf("https issuer: %s = %+v; want Secure, HttpOnly, Path=/, no Domain, SameSite=Lax", name, c)
		}
	}
	page, sess = login(plain)
	for name, jar := range map[string]map[string]*http.Cookie{"oauth2gate_csrf": page, "oauth2gate_session": sess} {
		if c := jar[name]; c == nil || c.Secure {
			t.Errorf("http issuer over http: %s = %+v; want the cookie, not Secure (a browser would drop it)", name, c)
		}
	}
}

// TestFinding6_ClientAndUserShareNoSubject: a client named like a user got, for its own
// client_credentials token, the user's claims at /userinfo and X-Auth-Subject upstream. Such a
// configuration is now refused by `caddy validate` with a message naming the clash, and
// userinfo refuses any token that was not issued for a user.
func TestFinding6_ClientAndUserShareNoSubject(t *testing.T) {
	t.Parallel()
	home := t.TempDir()
	file := filepath.Join(home, "Caddyfile")
	conf := `{
	admin off
	oauth2 {
		store file ` + filepath.Join(home, "store") + `
		client alice {
			secret ` + hashSecret(t, "s3cret-client") + `
			grants client_credentials
			scopes openid email
		}
		user alice ` + hashSecret(t, "s3cret-user") + ` {
			claim email alice@example.com
		}
	}
}
`
	if err := os.WriteFile(file, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr, err := caddyCLI(t, home, "validate", "--config", file, "--adapter", "caddyfile")
	if err == nil {
		t.Fatalf("caddy validate accepted a client and a user both named alice")
	}
	if !strings.Contains(strings.ReplaceAll(stderr, `\"`, `"`), `client "alice" has the same name as user "alice"`) {
		t.Errorf("caddy validate's message does not name the clash:\n%s", stderr)
	}

	svc := clientSpec{ID: "svc", Secret: randomSecret("svc-"), Grants: "client_credentials", Scopes: "openid email"}
	in := startGate(t, gateSpec{Clients: []clientSpec{svc}, Users: []userSpec{alice()}})
	tok := in.token(t, tokenCall{Form: form("grant_type", "client_credentials", "scope", "openid email"), Basic: basic(svc.ID, svc.Secret)}).mustToken(t)
	req, _ := http.NewRequest(http.MethodGet, in.url("/userinfo"), nil)
	req.Header.Set("Authorization", "Bearer "+tok.Access)
	resp, err := in.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Errorf("userinfo with a client_credentials token: %d %q %s; want 401 invalid_token", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
	}
}

// TestFindingMinor_AnotherClientCannotBurnACode: the code was taken before the client was
// checked, so any client (even a public one, which needs no secret) could burn another's code by
// presenting it. Now only a redemption that may succeed consumes the code: another client, a
// wrong redirect_uri or a wrong PKCE verifier leave it for its rightful client.
func TestFindingMinor_AnotherClientCannotBurnACode(t *testing.T) {
	t.Parallel()
	web := clientSpec{ID: "web", Secret: randomSecret("web-"), Grants: "authorization_code refresh_token", RedirectURIs: webCB + " " + webOther, Scopes: "read"}
	other := clientSpec{ID: "other", Secret: randomSecret("other-"), Grants: "authorization_code", RedirectURIs: webCB, Scopes: "read"}
	spa := clientSpec{ID: "spa", Grants: "authorization_code", RedirectURIs: webCB, Scopes: "read"}
	al := alice()
	in := startGate(t, gateSpec{Clients: []clientSpec{web, other, spa}, Users: []userSpec{al}})
	b := in.newBrowser(t)
	v := oauth2.GenerateVerifier()
	params := withPKCE(authParams(web.ID, webCB, "code", "read", "burn"), oauth2.S256ChallengeFromVerifier(v))
	code := mustCode(t, b.authorize(params, al.Name, al.Password, "allow"), webCB, "burn")
	exchange := func(auth *basicAuth, extra ...string) *reply {
		f := form("grant_type", "authorization_code", "code", code)
		for i := 0; i+1 < len(extra); i += 2 {
			f.Set(extra[i], extra[i+1])
		}
		return in.token(t, tokenCall{Form: f, Basic: auth})
	}
	attempts := []struct {
		name string
		r    func() *reply
	}{
		{"another confidential client", func() *reply {
			return exchange(basic(other.ID, other.Secret), "redirect_uri", webCB, "code_verifier", v)
		}},
		{"a public client", func() *reply { return exchange(nil, "client_id", spa.ID, "redirect_uri", webCB, "code_verifier", v) }},
		{"the client at another redirect_uri", func() *reply {
			return exchange(basic(web.ID, web.Secret), "redirect_uri", webOther, "code_verifier", v)
		}},
		{"the client with a wrong verifier", func() *reply {
			return exchange(basic(web.ID, web.Secret), "redirect_uri", webCB, "code_verifier", oauth2.GenerateVerifier())
		}},
		{"the client without a verifier", func() *reply { return exchange(basic(web.ID, web.Secret), "redirect_uri", webCB) }},
	}
	for _, a := range attempts {
		a.r().mustError(t, outcome{http.StatusBadRequest, "invalid_grant"})
	}
	tok := exchange(basic(web.ID, web.Secret), "redirect_uri", webCB, "code_verifier", v).mustToken(t)
	if tok.Refresh == "" {
		t.Error("the rightful exchange gave no refresh token")
	}
	// Once redeemed, the code is spent for everyone, and a replay still revokes its tokens.
	exchange(basic(web.ID, web.Secret), "redirect_uri", webCB, "code_verifier", v).mustError(t, outcome{http.StatusBadRequest, "invalid_grant"})
	in.token(t, tokenCall{Form: form("grant_type", "refresh_token", "refresh_token", tok.Refresh), Basic: basic(web.ID, web.Secret)}).mustError(t, outcome{http.StatusBadRequest, "invalid_grant"})
}

// TestFindingMinor_RefreshTokenOfAnotherClientSaysNothing: "the refresh token was issued to
// another client" told the caller the token is valid. It now reads exactly like an unknown token.
func TestFindingMinor_RefreshTokenOfAnotherClientSaysNothing(t *testing.T) {
	t.Parallel()
	app := clientSpec{ID: "app", Secret: randomSecret("app-"), Grants: "password refresh_token", Scopes: "read"}
	thief := clientSpec{ID: "thief", Secret: randomSecret("thief-"), Grants: "refresh_token password", Scopes: "read"}
	al := alice()
	in := startGate(t, gateSpec{Clients: []clientSpec{app, thief}, Users: []userSpec{al}})
	tok := in.token(t, tokenCall{Form: form("grant_type", "password", "username", al.Name, "password", al.Password), Basic: basic(app.ID, app.Secret)}).mustToken(t)
	stolen := in.token(t, tokenCall{Form: form("grant_type", "refresh_token", "refresh_token", tok.Refresh), Basic: basic(thief.ID, thief.Secret)})
	unknown := in.token(t, tokenCall{Form: form("grant_type", "refresh_token", "refresh_token", randomSecret("none-")), Basic: basic(thief.ID, thief.Secret)})
	stolen.mustError(t, outcome{http.StatusBadRequest, "invalid_grant"})
	unknown.mustError(t, outcome{http.StatusBadRequest, "invalid_grant"})
	if string(stolen.Body) != string(unknown.Body) {
		t.Errorf("another client's refresh token answers %s, an unknown one %s: the difference tells the thief the token is live", stolen.Body, unknown.Body)
	}
	// The refusal did not spend the token.
	in.token(t, tokenCall{Form: form("grant_type", "refresh_token", "refresh_token", tok.Refresh), Basic: basic(app.ID, app.Secret)}).mustToken(t)
}

// TestFindingMinor_CodeVerifierNeverLogged: with allow_get_token_request, a code exchange in the
// URL left its code_verifier in the access log.
func TestFindingMinor_CodeVerifierNeverLogged(t *testing.T) {
	t.Parallel()
	spa := clientSpec{ID: "spa", Grants: "authorization_code", RedirectURIs: webCB, Scopes: "read"}
	al := alice()
	in := startGateWith(t, gateSpec{Settings: "allow_get_token_request", Clients: []clientSpec{spa}, Users: []userSpec{al}},
		siteOptions{BasePath: "/o", SiteExtra: "log"})
	b := in.newBrowser(t)
	v := oauth2.GenerateVerifier()
	in.remember("code_verifier", v)
	code := mustCode(t, b.authorize(withPKCE(authParams(spa.ID, webCB, "code", "read", "cv"), oauth2.S256ChallengeFromVerifier(v)), al.Name, al.Password, "allow"), webCB, "cv")
	q := url.Values{"grant_type": {"authorization_code"}, "client_id": {spa.ID}, "code": {code}, "redirect_uri": {webCB}, "code_verifier": {v}}
	in.token(t, tokenCall{Method: http.MethodGet, Query: q.Encode()}).mustToken(t)
	secWaitForLog(t, in, "/sec-log-marker")
	in.assertLogClean(t, in.log.String())
}

// readAll reads and closes a response body (at most 1 MiB).
func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
