package tests

// The RFC 9700 checklist of issue 6, item 1: one test per promise, each named after the RFC
// section it answers and what it proves. Everything runs against the real binary on loopback,
// through the harness of instance_test.go, gateconfig_test.go, tokenclient_test.go and
// browser_test.go; helpers of this file start with "sec".

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io"
	"io/fs"
	"math/bits"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oauth2gate/oauth2gate/authz/tokenstore"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/oauth2"
)

// Redirect URIs the clients of this file register. They are never dialled: the browser stops at
// the redirect to the client.
const (
	secAppCB  = "https://app.example.com:8443/oauth/cb"
	secAppCBQ = "https://app.example.com:8443/oauth/cb?tenant=a"
	secLoopCB = "http://127.0.0.1:1/sec/cb"
	secLoop2  = "http://127.0.0.1:1/sec/cb2"
	secSpaCB  = "http://127.0.0.1:1/sec/spa"
)

// ---------------------------------------------------------------------------------------------
// helpers

// secTransportFrom is a transport whose connections leave from the loopback address ip
// (127.0.0.2, …), so the server sees another remote IP than the harness's 127.0.0.1.
func secTransportFrom(t *testing.T, ip string) *http.Transport {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	tr := &http.Transport{Proxy: nil, DialContext: d.DialContext, MaxIdleConnsPerHost: 8, IdleConnTimeout: 30 * time.Second}
	t.Cleanup(tr.CloseIdleConnections)
	return tr
}

// secBrowserFrom is a browser (cookie jar, no redirects followed) whose requests come from ip.
func secBrowserFrom(t *testing.T, in *instance, ip string) *browser {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, in: in, c: &http.Client{
		Transport:     secTransportFrom(t, ip),
		Jar:           jar,
		Timeout:       requestTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// secSendFrom is in.token through another HTTP client (e.g. one from secTransportFrom).
func secSendFrom(t *testing.T, in *instance, hc *http.Client, c tokenCall) *reply {
	t.Helper()
	r, err := in.sendVia(hc, c)
	if err != nil {
		t.Fatalf("token request %s: %v", c.Path, err)
	}
	if r.Status >= 500 {
		t.Errorf("%s answered %s: never a 5xx for client input", in.url(cmp.Or(c.Path, "/token")), r)
	}
	return r
}

// secHTTPClient is a plain client (no redirects followed) over tr.
func secHTTPClient(tr http.RoundTripper) *http.Client {
	return &http.Client{Transport: tr, Timeout: requestTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// secIntrospect asks /introspect about tok as the confidential client rs and reports "active".
func secIntrospect(t *testing.T, in *instance, rs clientSpec, tok string) bool {
	t.Helper()
	r := in.token(t, tokenCall{Path: "/introspect", Form: form("token", tok), Basic: basic(rs.ID, rs.Secret)})
	if r.Status != http.StatusOK || r.JSON == nil {
		t.Fatalf("introspection: want 200 JSON, got %s", r)
	}
	active, ok := r.JSON["active"].(bool)
	if !ok {
		t.Fatalf("introspection: no boolean active in %s", r)
	}
	return active
}

// secCode runs an authorization request in browser b (logged in or not) and returns the code.
func secCode(t *testing.T, b *browser, params url.Values, user userSpec) string {
	t.Helper()
	b.t = t
	res := b.authorize(params, user.Name, user.Password, "allow")
	return mustCode(t, res, params.Get("redirect_uri"), params.Get("state"))
}

// secRetryAfter asserts a 429 with a Retry-After of a positive whole number of seconds, at
// most limit.
func secRetryAfter(t *testing.T, what string, status int, h http.Header, limit int) {
	t.Helper()
	if status != http.StatusTooManyRequests {
		t.Errorf("%s: status %d, want 429 Too Many Requests", what, status)
		return
	}
	ra := h.Get("Retry-After")
	n, err := strconv.Atoi(ra)
	if err != nil || n < 1 || n > limit {
		t.Errorf("%s: Retry-After = %q, want whole seconds in [1, %d]", what, ra, limit)
	}
}

// secWaitForLog makes a request whose access-log line marks that every earlier request's line
// has been written, and waits for it.
func secWaitForLog(t *testing.T, in *instance, marker string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		if resp, err := in.http.Get(in.base + marker); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		if strings.Contains(in.log.String(), marker) {
			time.Sleep(100 * time.Millisecond)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("access log line of %s never appeared", marker)
}

// secGoFiles lists the non-test Go files of the implementation (authz, its subpackages, and
// caddymodule).
func secGoFiles(t *testing.T) []string {
	t.Helper()
	var files []string
	for _, dir := range []string{"authz", "caddymodule"} {
		err := filepath.WalkDir(filepath.Join(repoRoot, dir), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !d.IsDir() && strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") {
				files = append(files, p)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(files) < 10 {
		t.Fatalf("found only %d implementation files under authz/ and caddymodule/", len(files))
	}
	return files
}

// ---------------------------------------------------------------------------------------------
// RFC 9700 §4.1.3: exact redirect URI matching.

// TestRFC9700_4_1_3_RedirectURIExactMatch proves the authorization endpoint compares
// redirect_uri with the registered values by exact string matching: no prefix, suffix,
// subdomain, parent-domain, path-traversal, port, scheme, userinfo, query or case variant is
// accepted, and an unregistered redirect_uri is never redirected to, not even to report another
// error (RFC 6749 §3.1.2.4, §4.1.2.1), whether or not the browser is logged in, and not when the
// consent form is posted to an action whose redirect_uri was swapped.
func TestRFC9700_4_1_3_RedirectURIExactMatch(t *testing.T) {
	t.Parallel()
	app := clientSpec{ID: "app", Secret: randomSecret("app-"), Grants: "authorization_code implicit",
		RedirectURIs: secAppCB + " " + secAppCBQ, Scopes: "read"}
	loop := clientSpec{ID: "loop", Grants: "authorization_code implicit", RedirectURIs: secLoopCB, Scopes: "read"}
	al := alice()
	in := startGate(t, gateSpec{Clients: []clientSpec{app, loop}, Users: []userSpec{al}})
	v := oauth2.GenerateVerifier()
	pkce := oauth2.S256ChallengeFromVerifier(v)

	// The registered URIs work: the baseline the variants are measured against.
	t.Run("registered URIs are accepted", func(t *testing.T) {
		b := in.newBrowser(t)
		for _, cb := range []string{secAppCB, secAppCBQ} {
			res := b.authorize(authParams(app.ID, cb, "code", "read", "ok"), al.Name, al.Password, "allow")
			mustCode(t, res, cb, "ok")
			if cb == secAppCBQ && res.Redirect.Query().Get("tenant") != "a" {
				t.Errorf("registered query component lost: %s", res.Redirect)
			}
		}
		res := b.authorize(withPKCE(authParams(loop.ID, secLoopCB, "code", "read", "ok"), pkce), al.Name, al.Password, "allow")
		mustCode(t, res, secLoopCB, "ok")
	})

	variants := []struct{ name, clientID, uri string }{
		// prefix and suffix
		{"prefix of the path", app.ID, "https://app.example.com:8443/oauth/c"},
		{"parent path", app.ID, "https://app.example.com:8443/oauth/"},
		{"origin only", app.ID, "https://app.example.com:8443"},
		{"suffix on the path", app.ID, secAppCB + "x"},
		{"trailing slash", app.ID, secAppCB + "/"},
		{"sub-path", app.ID, secAppCB + "/evil"},
		{"added query", app.ID, secAppCB + "?next=https://evil.example"},
		{"other value of a registered query", app.ID, "https://app.example.com:8443/oauth/cb?tenant=b"},
		{"registered query plus more", app.ID, secAppCBQ + "&x=1"},
		{"empty query", app.ID, secAppCB + "?"},
		{"fragment", app.ID, secAppCB + "#frag"},
		{"encoded slash suffix", app.ID, secAppCB + "%2F..%2F..%2Fevil"},
		// subdomain and other hosts
		{"subdomain", app.ID, "https://evil.app.example.com:8443/oauth/cb"},
		{"parent domain", app.ID, "https://example.com:8443/oauth/cb"},
		{"registered host as a prefix", app.ID, "https://app.example.com.evil.example:8443/oauth/cb"},
		{"host with trailing dot", app.ID, "https://app.example.com.:8443/oauth/cb"},
		{"upper-case host", app.ID, "https://APP.example.com:8443/oauth/cb"},
		{"userinfo pointing elsewhere", app.ID, "https://app.example.com:8443@evil.example/oauth/cb"},
		{"userinfo before the host", app.ID, "https://evil.example@app.example.com:8443/oauth/cb"},
		{"backslash trick", app.ID, `https://evil.example\@app.example.com:8443/oauth/cb`},
		// path traversal
		{"dot-dot out of the path", app.ID, secAppCB + "/../../evil"},
		{"dot-dot back into the path", app.ID, "https://app.example.com:8443/evil/../oauth/cb"},
		{"dot segment", app.ID, "https://app.example.com:8443/oauth/./cb"},
		{"encoded dot-dot", app.ID, "https://app.example.com:8443/oauth/%2e%2e/oauth/cb"},
		{"double slash", app.ID, "https://app.example.com:8443//oauth/cb"},
		{"upper-case path", app.ID, "https://app.example.com:8443/OAUTH/CB"},
		{"percent-encoded path", app.ID, "https://app.example.com:8443/oauth/%63b"},
		// port
		{"default port", app.ID, "https://app.example.com/oauth/cb"},
		{"explicit 443", app.ID, "https://app.example.com:443/oauth/cb"},
		{"other port", app.ID, "https://app.example.com:8444/oauth/cb"},
		{"leading-zero port", app.ID, "https://app.example.com:08443/oauth/cb"},
		{"loopback other port", loop.ID, "http://127.0.0.1:2/sec/cb"},
		{"loopback no port", loop.ID, "http://127.0.0.1/sec/cb"},
		{"loopback as localhost", loop.ID, "http://localhost:1/sec/cb"},
		// scheme
		{"http instead of https", app.ID, "http://app.example.com:8443/oauth/cb"},
		{"upper-case scheme", app.ID, "HTTPS://app.example.com:8443/oauth/cb"},
		{"https instead of http", loop.ID, "https://127.0.0.1:1/sec/cb"},
		{"javascript scheme", app.ID, "javascript:alert(1)//app.example.com:8443/oauth/cb"},
		{"data scheme", app.ID, "data:text/html,<script>alert(1)</script>"},
		// whitespace and other clients
		{"leading space", app.ID, " " + secAppCB},
		{"trailing space", app.ID, secAppCB + " "},
		{"another client's URI", app.ID, secLoopCB},
		{"relative URI", app.ID, "/oauth/cb"},
	}
	check := func(t *testing.T, b *browser, what string, params url.Values) {
		t.Helper()
		p := b.get(in.url("/authorize") + "?" + params.Encode())
		if loc := p.Header.Get("Location"); loc != "" {
			t.Errorf("%s: redirected to %s", what, loc)
		}
		if p.Status != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400 (an error page, no redirect)", what, p.Status)
		}
		if ct := p.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
			t.Errorf("%s: Content-Type %q, want an HTML error page", what, ct)
		}
		for _, f := range p.Forms {
			if f.hasInput("password") {
				t.Errorf("%s: a login form was shown for an unregistered redirect_uri", what)
			}
		}
	}
	for _, loggedIn := range []bool{false, true} {
		name := "fresh browser"
		if loggedIn {
			name = "logged-in browser"
		}
		t.Run("unregistered variants/"+name, func(t *testing.T) {
			b := in.newBrowser(t)
			if loggedIn {
				mustCode(t, b.authorize(authParams(app.ID, secAppCB, "code", "read", "li"), al.Name, al.Password, "allow"), secAppCB, "li")
			}
			for _, tc := range variants {
				for _, rt := range []string{"code", "token"} {
					params := authParams(tc.clientID, tc.uri, rt, "read", "s1")
					if tc.clientID == loop.ID && rt == "code" {
						params = withPKCE(params, pkce)
					}
					check(t, b, fmt.Sprintf("%s (%q, response_type=%s)", tc.name, tc.uri, rt), params)
				}
			}
		})
	}

	// An unregistered redirect_uri together with an error that would otherwise be redirected to
	// the client: the error is shown on a page, never sent to the unregistered URI.
	evil := "https://evil.example/oauth/cb"
	withErrors := []struct {
		name   string
		params url.Values
	}{
		{"unsupported response_type", authParams(app.ID, evil, "foo", "read", "e1")},
		{"missing response_type", authParams(app.ID, evil, "", "read", "e2")},
		{"invalid scope", authParams(app.ID, evil, "code", "admin", "e3")},
		{"public client without PKCE", authParams(loop.ID, "http://127.0.0.1:1/sec/cb/x", "code", "read", "e4")},
		{"prompt=none without a session", func() url.Values {
			v := authParams(app.ID, evil, "code", "read", "e5")
			v.Set("prompt", "none")
			return v
		}()},
		{"request object", func() url.Values {
			v := authParams(app.ID, evil, "code", "read", "e6")
			v.Set("request", "eyJhbGciOiJub25lIn0.e30.")
			return v
		}()},
		{"repeated parameter", func() url.Values {
			v := authParams(app.ID, evil, "code", "read", "e7")
			v.Add("scope", "read")
			return v
		}()},
		{"unknown client", authParams("nobody", evil, "code", "read", "e8")},
		{"two registered, none given", authParams(app.ID, "", "code", "read", "e9")},
	}
	for _, loggedIn := range []bool{false, true} {
		name := "fresh browser"
		if loggedIn {
			name = "logged-in browser"
		}
		t.Run("errors never go to an unregistered URI/"+name, func(t *testing.T) {
			b := in.newBrowser(t)
			if loggedIn {
				mustCode(t, b.authorize(authParams(app.ID, secAppCB, "code", "read", "li"), al.Name, al.Password, "allow"), secAppCB, "li")
			}
			for _, tc := range withErrors {
				check(t, b, tc.name, tc.params)
			}
		})
	}

	t.Run("consent posted to an action with a swapped redirect_uri", func(t *testing.T) {
		b := in.newBrowser(t)
		params := authParams(app.ID, secAppCB, "code", "read", "sw")
		p := b.login(params, al.Name, al.Password)
		f, ok := p.consentForm()
		if !ok {
			t.Fatalf("no consent form: %s", p)
		}
		action := *f.Action
		q := action.Query()
		if q.Get("redirect_uri") != secAppCB {
			t.Skipf("consent action carries no redirect_uri to swap: %s", f.Action)
		}
		q.Set("redirect_uri", evil)
		action.RawQuery = q.Encode()
		vals := cloneValues(f.Hidden)
		vals.Set("decision", "allow")
		cp := b.post(p, &action, vals)
		if loc := cp.Header.Get("Location"); loc != "" {
			t.Errorf("consent with a swapped redirect_uri redirected to %s", loc)
		}
		if cp.Status != http.StatusBadRequest {
			t.Errorf("consent with a swapped redirect_uri: status %d, want 400", cp.Status)
		}
	})
}

// ---------------------------------------------------------------------------------------------
// RFC 9700 §2.1.1 and RFC 7636: PKCE.

// TestRFC9700_2_1_1_PKCERequiredForPublicClients proves a public client gets no code without a
// code_challenge (the error goes to its registered redirect URI), and a code issued with one is
// redeemed only with the matching code_verifier: a missing or wrong verifier is invalid_grant.
// Such a refusal does not spend the code (issue 11: whoever knows a public client's id could
// otherwise burn its user's code); the rightful verifier still redeems it, once.
func TestRFC9700_2_1_1_PKCERequiredForPublicClients(t *testing.T) {
	t.Parallel()
	spa := clientSpec{ID: "spa", Grants: "authorization_code refresh_token", RedirectURIs: secSpaCB, Scopes: "read", SkipConsent: true}
	al := alice()
	in := startGate(t, gateSpec{Clients: []clientSpec{spa}, Users: []userSpec{al}})
	b := in.newBrowser(t)
	exchange := func(t *testing.T, code, verifier string) *reply {
		t.Helper()
		f := form("grant_type", "authorization_code", "code", code, "redirect_uri", secSpaCB, "client_id", spa.ID)
		if verifier != "" {
			f.Set("code_verifier", verifier)
		}
		return in.token(t, tokenCall{Form: f})
	}

	t.Run("no code_challenge: no code, invalid_request to the client", func(t *testing.T) {
		b.t = t
		res := b.authorize(authParams(spa.ID, secSpaCB, "code", "read", "np"), al.Name, al.Password, "allow")
		mustRedirectError(t, res, secSpaCB, "invalid_request", "np")
	})
	t.Run("code_challenge_method without code_challenge: no code", func(t *testing.T) {
		b.t = t
		p := authParams(spa.ID, secSpaCB, "code", "read", "nm")
		p.Set("code_challenge_method", "S256")
		mustRedirectError(t, b.authorize(p, al.Name, al.Password, "allow"), secSpaCB, "invalid_request", "nm")
	})
	t.Run("empty code_challenge: no code", func(t *testing.T) {
		b.t = t
		p := authParams(spa.ID, secSpaCB, "code", "read", "ne")
		p.Set("code_challenge", "")
		p.Set("code_challenge_method", "S256")
		mustRedirectError(t, b.authorize(p, al.Name, al.Password, "allow"), secSpaCB, "invalid_request", "ne")
	})
	t.Run("S256: the verifier redeems the code", func(t *testing.T) {
		v := oauth2.GenerateVerifier()
		code := secCode(t, b, withPKCE(authParams(spa.ID, secSpaCB, "code", "read", "ok"), oauth2.S256ChallengeFromVerifier(v)), al)
		exchange(t, code, v).mustToken(t)
	})
	t.Run("missing code_verifier is refused and leaves the code to its verifier", func(t *testing.T) {
		v := oauth2.GenerateVerifier()
		code := secCode(t, b, withPKCE(authParams(spa.ID, secSpaCB, "code", "read", "mv"), oauth2.S256ChallengeFromVerifier(v)), al)
		exchange(t, code, "").mustError(t, outcome{400, "invalid_grant"}, outcome{400, "invalid_request"})
		exchange(t, code, v).mustToken(t)
		exchange(t, code, v).mustError(t, outcome{400, "invalid_grant"})
	})
	t.Run("wrong code_verifier is refused", func(t *testing.T) {
		v := oauth2.GenerateVerifier()
		code := secCode(t, b, withPKCE(authParams(spa.ID, secSpaCB, "code", "read", "wv"), oauth2.S256ChallengeFromVerifier(v)), al)
		exchange(t, code, oauth2.GenerateVerifier()).mustError(t, outcome{400, "invalid_grant"})
	})
	t.Run("a public client cannot present a client_secret instead", func(t *testing.T) {
		v := oauth2.GenerateVerifier()
		code := secCode(t, b, withPKCE(authParams(spa.ID, secSpaCB, "code", "read", "cs"), oauth2.S256ChallengeFromVerifier(v)), al)
		r := in.token(t, tokenCall{Form: form("grant_type", "authorization_code", "code", code, "redirect_uri", secSpaCB,
			"client_id", spa.ID, "client_secret", randomSecret("made-up-"))})
		r.mustError(t, outcome{401, "invalid_client"}, outcome{400, "invalid_request"}, outcome{400, "invalid_grant"})
	})
}

// TestRFC7636_NoDowngradeFromS256 proves a code bound to an S256 challenge cannot be redeemed by
// a downgrade: not with the challenge itself as a "plain" verifier, not by naming
// code_challenge_method=plain at the token endpoint, not with a verifier whose S256 is the
// challenge's plain form; and (RFC 9700 §4.8.2, PKCE downgrade) a code issued without a
// challenge is not redeemed when a code_verifier is presented. With `pkce_plain off` the plain
// method, named or implied, is refused at the authorization endpoint.
func TestRFC7636_NoDowngradeFromS256(t *testing.T) {
	t.Parallel()
	web := clientSpec{ID: "web", Secret: randomSecret("web-"), Grants: "authorization_code", RedirectURIs: secLoopCB, Scopes: "read", SkipConsent: true}
	al := alice()
	in := startGate(t, gateSpec{Settings: "pkce_plain off", Clients: []clientSpec{web}, Users: []userSpec{al}})
	auth := basic(web.ID, web.Secret)
	b := in.newBrowser(t)
	exchange := func(t *testing.T, code string, extra ...string) *reply {
		t.Helper()
		f := form("grant_type", "authorization_code", "code", code, "redirect_uri", secLoopCB)
		for i := 0; i+1 < len(extra); i += 2 {
			f.Set(extra[i], extra[i+1])
		}
		return in.token(t, tokenCall{Form: f, Basic: auth})
	}
	s256Code := func(t *testing.T, v string) string {
		t.Helper()
		return secCode(t, b, withPKCE(authParams(web.ID, secLoopCB, "code", "read", "d"), oauth2.S256ChallengeFromVerifier(v)), al)
	}

	t.Run("the challenge sent as the verifier", func(t *testing.T) {
		v := oauth2.GenerateVerifier()
		code := s256Code(t, v)
		exchange(t, code, "code_verifier", oauth2.S256ChallengeFromVerifier(v)).mustError(t, outcome{400, "invalid_grant"})
	})
	t.Run("code_challenge_method=plain named at the token endpoint", func(t *testing.T) {
		v := oauth2.GenerateVerifier()
		code := s256Code(t, v)
		c := oauth2.S256ChallengeFromVerifier(v)
		exchange(t, code, "code_verifier", c, "code_challenge_method", "plain").mustError(t, outcome{400, "invalid_grant"}, outcome{400, "invalid_request"})
	})
	t.Run("a code_challenge re-sent at the token endpoint changes nothing", func(t *testing.T) {
		v := oauth2.GenerateVerifier()
		code := s256Code(t, v)
		other := oauth2.GenerateVerifier()
		exchange(t, code, "code_verifier", other, "code_challenge", other, "code_challenge_method", "plain").mustError(t, outcome{400, "invalid_grant"}, outcome{400, "invalid_request"})
	})
	t.Run("S256 with the right verifier works", func(t *testing.T) {
		v := oauth2.GenerateVerifier()
		exchange(t, s256Code(t, v), "code_verifier", v).mustToken(t)
	})
	t.Run("RFC 9700 4.8.2: code_verifier for a code issued without a challenge", func(t *testing.T) {
		code := secCode(t, b, authParams(web.ID, secLoopCB, "code", "read", "nc"), al)
		exchange(t, code, "code_verifier", oauth2.GenerateVerifier()).mustError(t, outcome{400, "invalid_grant"})
	})
	for _, method := range []string{"plain", ""} {
		t.Run(fmt.Sprintf("pkce_plain off refuses method %q", method), func(t *testing.T) {
			b.t = t
			p := authParams(web.ID, secLoopCB, "code", "read", "pl")
			p.Set("code_challenge", oauth2.GenerateVerifier())
			if method != "" {
				p.Set("code_challenge_method", method)
			}
			mustRedirectError(t, b.authorize(p, al.Name, al.Password, "allow"), secLoopCB, "invalid_request", "pl")
		})
	}
	t.Run("lower-case s256 is not S256", func(t *testing.T) {
		b.t = t
		p := withPKCE(authParams(web.ID, secLoopCB, "code", "read", "lc"), oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier()))
		p.Set("code_challenge_method", "s256")
		mustRedirectError(t, b.authorize(p, al.Name, al.Password, "allow"), secLoopCB, "invalid_request", "lc")
	})
}

// ---------------------------------------------------------------------------------------------
// RFC 6749 §4.1.2, §10.5: authorization codes.

// TestRFC6749_4_1_2_CodeSingleUseShortLivedBoundToClientAndRedirectURI proves a code is
// redeemed once (a second redemption and 20 racing ones get one success at most), dies after
// code_ttl (and code_ttl may not exceed RFC 6749's 10 minutes), and is redeemed only by the
// client it was issued to with the redirect_uri it was issued for.
func TestRFC6749_4_1_2_CodeSingleUseShortLivedBoundToClientAndRedirectURI(t *testing.T) {
	t.Parallel()
	web := clientSpec{ID: "web", Secret: randomSecret("web-"), Grants: "authorization_code", RedirectURIs: secLoopCB + " " + secLoop2, Scopes: "read", SkipConsent: true}
	web2 := clientSpec{ID: "web2", Secret: randomSecret("web2-"), Grants: "authorization_code", RedirectURIs: secLoopCB, Scopes: "read", SkipConsent: true}
	spa := clientSpec{ID: "spa", Grants: "authorization_code", RedirectURIs: secLoopCB, Scopes: "read", SkipConsent: true}
	al := alice()
	in := startGate(t, gateSpec{Settings: "code_ttl 3s", Clients: []clientSpec{web, web2, spa}, Users: []userSpec{al}})
	auth := basic(web.ID, web.Secret)
	b := in.newBrowser(t)
	code := func(t *testing.T, redirect string) string {
		t.Helper()
		return secCode(t, b, authParams(web.ID, redirect, "code", "read", "c"), al)
	}
	exchange := func(t *testing.T, c tokenCall) *reply { t.Helper(); return in.token(t, c) }
	call := func(code, redirect string, a *basicAuth, extra ...string) tokenCall {
		f := form("grant_type", "authorization_code", "code", code)
		if redirect != "" {
			f.Set("redirect_uri", redirect)
		}
		for i := 0; i+1 < len(extra); i += 2 {
			f.Set(extra[i], extra[i+1])
		}
		return tokenCall{Form: f, Basic: a}
	}

	// Taken first, redeemed last: it waits out code_ttl while the other cases run.
	stale := code(t, secLoopCB)
	staleAt := time.Now()

	t.Run("single use", func(t *testing.T) {
		c := code(t, secLoopCB)
		exchange(t, call(c, secLoopCB, auth)).mustToken(t)
		exchange(t, call(c, secLoopCB, auth)).mustError(t, outcome{400, "invalid_grant"})
	})
	t.Run("single use under a race of 20", func(t *testing.T) {
		c := code(t, secLoopCB)
		replies, errs := race(20, func(int) (*reply, error) { return in.send(call(c, secLoopCB, auth)) })
		mustExactlyOneWinner(t, replies, errs)
	})
	t.Run("bound to the client: another confidential client", func(t *testing.T) {
		exchange(t, call(code(t, secLoopCB), secLoopCB, basic(web2.ID, web2.Secret))).mustError(t, outcome{400, "invalid_grant"})
	})
	t.Run("bound to the client: a public client naming itself", func(t *testing.T) {
		exchange(t, call(code(t, secLoopCB), secLoopCB, nil, "client_id", spa.ID, "code_verifier", oauth2.GenerateVerifier())).
			mustError(t, outcome{400, "invalid_grant"})
	})
	t.Run("bound to the client: its client_id without its secret", func(t *testing.T) {
		exchange(t, call(code(t, secLoopCB), secLoopCB, nil, "client_id", web.ID)).mustError(t, outcome{401, "invalid_client"})
	})
	t.Run("bound to the redirect_uri: the client's other registered URI", func(t *testing.T) {
		exchange(t, call(code(t, secLoopCB), secLoop2, auth)).mustError(t, outcome{400, "invalid_grant"})
	})
	t.Run("bound to the redirect_uri: omitted at the token endpoint", func(t *testing.T) {
		exchange(t, call(code(t, secLoopCB), "", auth)).mustError(t, outcome{400, "invalid_grant"}, outcome{400, "invalid_request"})
	})
	t.Run("bound to the redirect_uri: an unregistered URI", func(t *testing.T) {
		exchange(t, call(code(t, secLoopCB), secLoopCB+"/x", auth)).mustError(t, outcome{400, "invalid_grant"})
	})
	t.Run("bound to the redirect_uri: the right one works", func(t *testing.T) {
		exchange(t, call(code(t, secLoop2), secLoop2, auth)).mustToken(t)
	})
	t.Run("short-lived: dead after code_ttl", func(t *testing.T) {
		time.Sleep(time.Until(staleAt.Add(4500 * time.Millisecond)))
		exchange(t, call(stale, secLoopCB, auth)).mustError(t, outcome{400, "invalid_grant"})
	})
	t.Run("short-lived: code_ttl above 10 minutes is refused", func(t *testing.T) {
		home := t.TempDir()
		cf := filepath.Join(home, "Caddyfile")
		body := fmt.Sprintf("{\n\tadmin off\n\tpersist_config off\n\toauth2 {\n\t\tissuer http://127.0.0.1:1\n\t\tstore file %s\n\t\tcode_ttl 11m\n\t}\n}\n\nhttp://127.0.0.1:1 {\n\toauth2_server /o\n}\n",
			filepath.Join(home, "store"))
		if err := os.WriteFile(cf, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		stdout, stderr, err := caddyCLI(t, home, "validate", "--config", cf, "--adapter", "caddyfile")
		if err == nil {
			t.Errorf("caddy validate accepted code_ttl 11m:\n%s%s", stdout, stderr)
		} else if !strings.Contains(stdout+stderr, "code_ttl") {
			t.Errorf("code_ttl 11m refused without naming code_ttl:\n%s%s", stdout, stderr)
		}
	})
}

// TestRFC6749_10_5_CodeReuseRevokesIssuedTokens proves that presenting a redeemed code again is
// refused and revokes every token issued from it: the access and refresh tokens of the first
// redemption and those obtained since by refreshing them, while other grants survive; and when
// redemptions race, the one that wins gets tokens that the others' reuse revokes.
func TestRFC6749_10_5_CodeReuseRevokesIssuedTokens(t *testing.T) {
	t.Parallel()
	web := clientSpec{ID: "web", Secret: randomSecret("web-"), Grants: "authorization_code refresh_token", RedirectURIs: secLoopCB, Scopes: "read", SkipConsent: true}
	rs := clientSpec{ID: "rs", Secret: randomSecret("rs-"), Grants: "client_credentials"}
	al := alice()
	in := startGate(t, gateSpec{Clients: []clientSpec{web, rs}, Users: []userSpec{al}})
	auth := basic(web.ID, web.Secret)
	b := in.newBrowser(t)
	redeem := func(t *testing.T, code string) *reply {
		t.Helper()
		return in.token(t, tokenCall{Form: form("grant_type", "authorization_code", "code", code, "redirect_uri", secLoopCB), Basic: auth})
	}
	refresh := func(t *testing.T, rt string) *reply {
		t.Helper()
		return in.token(t, tokenCall{Form: form("grant_type", "refresh_token", "refresh_token", rt), Basic: auth})
	}

	// A bystander grant of the same user and client must survive.
	other := redeem(t, secCode(t, b, authParams(web.ID, secLoopCB, "code", "read", "o"), al)).mustToken(t)

	code := secCode(t, b, authParams(web.ID, secLoopCB, "code", "read", "r"), al)
	first := redeem(t, code).mustToken(t)
	if first.Refresh == "" {
		t.Fatal("no refresh_token from the code")
	}
	second := refresh(t, first.Refresh).mustToken(t)
	if !secIntrospect(t, in, rs, first.Access) && !secIntrospect(t, in, rs, second.Access) {
		t.Fatal("no token of the grant is active before the replay")
	}

	redeem(t, code).mustError(t, outcome{400, "invalid_grant"})

	for what, tok := range map[string]string{"first access token": first.Access, "access token after refresh": second.Access,
		"refresh token after refresh": second.Refresh, "first refresh token": first.Refresh} {
		if secIntrospect(t, in, rs, tok) {
			t.Errorf("%s is still active after the code was replayed", what)
		}
	}
	refresh(t, second.Refresh).mustError(t, outcome{400, "invalid_grant"})
	if !secIntrospect(t, in, rs, other.Access) {
		t.Errorf("another grant's access token was revoked by the replay of an unrelated code")
	}
	refresh(t, other.Refresh).mustToken(t)

	// An attacker racing the client with a stolen code: one redemption wins, the others are a
	// reuse, so the winner's tokens are revoked too, whichever of them the attacker got.
	t.Run("racing redemptions revoke the winner's tokens", func(t *testing.T) {
		for round := range 5 {
			code := secCode(t, b, authParams(web.ID, secLoopCB, "code", "read", "race"), al)
			replies, errs := race(4, func(int) (*reply, error) {
				return in.send(tokenCall{Form: form("grant_type", "authorization_code", "code", code, "redirect_uri", secLoopCB), Basic: auth})
			})
			w := mustExactlyOneWinner(t, replies, errs)
			if w == nil {
				t.FailNow()
			}
			won := w.mustToken(t)
			if secIntrospect(t, in, rs, won.Access) {
				t.Errorf("round %d: the winning redemption's access token is active although the code was used 4 times", round)
			}
			refresh(t, won.Refresh).mustError(t, outcome{400, "invalid_grant"})
		}
	})
}

// ---------------------------------------------------------------------------------------------
// RFC 9700 §4.14: refresh tokens.

// TestRFC9700_4_14_2_RefreshRotationAndReuseDetection proves every refresh returns a new refresh
// token and a new access token and ends the old refresh token; presenting a rotated-out refresh
// token is refused and revokes the whole family (the current refresh token and its access
// token); of concurrent uses of one refresh token exactly one wins, and the losers' reuse ends
// the family too.
func TestRFC9700_4_14_2_RefreshRotationAndReuseDetection(t *testing.T) {
	t.Parallel()
	app := clientSpec{ID: "app", Secret: randomSecret("app-"), Grants: "password refresh_token", Scopes: "read write"}
	rs := clientSpec{ID: "rs", Secret: randomSecret("rs-"), Grants: "client_credentials"}
	al := alice()
	in := startGate(t, gateSpec{Clients: []clientSpec{app, rs}, Users: []userSpec{al}})
	auth := basic(app.ID, app.Secret)
	pair := func(t *testing.T) issued {
		t.Helper()
		tok := in.token(t, tokenCall{Form: form("grant_type", "password", "username", al.Name, "password", al.Password, "scope", "read write"), Basic: auth}).mustToken(t)
		if tok.Refresh == "" {
			t.Fatal("no refresh_token")
		}
		return tok
	}
	refreshCall := func(rt string) tokenCall {
		return tokenCall{Form: form("grant_type", "refresh_token", "refresh_token", rt), Basic: auth}
	}

	t.Run("rotation and sequential reuse", func(t *testing.T) {
		a := pair(t)
		bb := in.token(t, refreshCall(a.Refresh)).mustToken(t)
		if bb.Refresh == "" || bb.Refresh == a.Refresh {
			t.Fatalf("refresh did not rotate the refresh token (old %.8s…, new %.8s…)", a.Refresh, bb.Refresh)
		}
		if bb.Access == a.Access {
			t.Fatalf("refresh returned the same access token")
		}
		if secIntrospect(t, in, rs, a.Refresh) {
			t.Errorf("the rotated-out refresh token is still active")
		}
		c := in.token(t, refreshCall(bb.Refresh)).mustToken(t)
		if !secIntrospect(t, in, rs, c.Access) || !secIntrospect(t, in, rs, c.Refresh) {
			t.Fatalf("the current pair is not active before the reuse")
		}
		// An attacker replays a refresh token the client has since rotated.
		in.token(t, refreshCall(a.Refresh)).mustError(t, outcome{400, "invalid_grant"})
		if secIntrospect(t, in, rs, c.Access) {
			t.Errorf("after reuse of a rotated-out refresh token, the family's access token is still active")
		}
		if secIntrospect(t, in, rs, c.Refresh) {
			t.Errorf("after reuse of a rotated-out refresh token, the family's refresh token is still active")
		}
		in.token(t, refreshCall(c.Refresh)).mustError(t, outcome{400, "invalid_grant"})
		in.token(t, refreshCall(bb.Refresh)).mustError(t, outcome{400, "invalid_grant"})
	})

	t.Run("reuse of the token just rotated out", func(t *testing.T) {
		a := pair(t)
		bb := in.token(t, refreshCall(a.Refresh)).mustToken(t)
		in.token(t, refreshCall(a.Refresh)).mustError(t, outcome{400, "invalid_grant"})
		in.token(t, refreshCall(bb.Refresh)).mustError(t, outcome{400, "invalid_grant"})
		if secIntrospect(t, in, rs, bb.Access) {
			t.Errorf("the successor's access token survived the reuse")
		}
	})

	t.Run("10 concurrent uses: one winner, then the family is gone", func(t *testing.T) {
		a := pair(t)
		replies, errs := race(10, func(int) (*reply, error) { return in.send(refreshCall(a.Refresh)) })
		w := mustExactlyOneWinner(t, replies, errs)
		if w == nil {
			t.FailNow()
		}
		won := w.mustToken(t)
		in.token(t, refreshCall(won.Refresh)).mustError(t, outcome{400, "invalid_grant"})
		if secIntrospect(t, in, rs, won.Access) {
			t.Errorf("the winner's access token survived the losers' reuse")
		}
	})

	t.Run("other families are untouched", func(t *testing.T) {
		keep := pair(t)
		victim := pair(t)
		in.token(t, refreshCall(victim.Refresh)).mustToken(t)
		in.token(t, refreshCall(victim.Refresh)).mustError(t, outcome{400, "invalid_grant"})
		in.token(t, refreshCall(keep.Refresh)).mustToken(t)
	})
}

// TestRFC9700_4_14_RefreshTokenBoundToClient proves a refresh token is honoured only for the
// client it was issued to: another confidential client, a public client naming the owner's
// client_id without its secret, the owner without authentication and a public client naming
// another public client are refused; the failed attempts issue nothing.
func TestRFC9700_4_14_RefreshTokenBoundToClient(t *testing.T) {
	t.Parallel()
	app := clientSpec{ID: "app", Secret: randomSecret("app-"), Grants: "password refresh_token", Scopes: "read"}
	app2 := clientSpec{ID: "app2", Secret: randomSecret("app2-"), Grants: "password refresh_token", Scopes: "read"}
	spa := clientSpec{ID: "spa", Grants: "authorization_code refresh_token", RedirectURIs: secSpaCB, Scopes: "read", SkipConsent: true}
	spa2 := clientSpec{ID: "spa2", Grants: "authorization_code refresh_token", RedirectURIs: secSpaCB, Scopes: "read", SkipConsent: true}
	al := alice()
	in := startGate(t, gateSpec{Clients: []clientSpec{app, app2, spa, spa2}, Users: []userSpec{al}})
	rt := func(extra ...string) url.Values {
		return form(append([]string{"grant_type", "refresh_token"}, extra...)...)
	}

	tok := in.token(t, tokenCall{Form: form("grant_type", "password", "username", al.Name, "password", al.Password), Basic: basic(app.ID, app.Secret)}).mustToken(t)
	v := oauth2.GenerateVerifier()
	code := secCode(t, in.newBrowser(t), withPKCE(authParams(spa.ID, secSpaCB, "code", "read", "s"), oauth2.S256ChallengeFromVerifier(v)), al)
	spaTok := in.token(t, tokenCall{Form: form("grant_type", "authorization_code", "code", code, "redirect_uri", secSpaCB, "client_id", spa.ID, "code_verifier", v)}).mustToken(t)
	if tok.Refresh == "" || spaTok.Refresh == "" {
		t.Fatal("no refresh tokens to test with")
	}

	t.Run("another confidential client", func(t *testing.T) {
		in.token(t, tokenCall{Form: rt("refresh_token", tok.Refresh), Basic: basic(app2.ID, app2.Secret)}).mustError(t, outcome{400, "invalid_grant"})
	})
	t.Run("a public client", func(t *testing.T) {
		in.token(t, tokenCall{Form: rt("refresh_token", tok.Refresh, "client_id", spa.ID)}).mustError(t, outcome{400, "invalid_grant"})
	})
	t.Run("the owner's client_id without its secret", func(t *testing.T) {
		in.token(t, tokenCall{Form: rt("refresh_token", tok.Refresh, "client_id", app.ID)}).mustError(t, outcome{401, "invalid_client"})
	})
	t.Run("no client authentication at all", func(t *testing.T) {
		in.token(t, tokenCall{Form: rt("refresh_token", tok.Refresh)}).mustError(t, outcome{401, "invalid_client"}, outcome{400, "invalid_request"})
	})
	t.Run("the owner's client_id with a wrong secret", func(t *testing.T) {
		in.token(t, tokenCall{Form: rt("refresh_token", tok.Refresh), Basic: basic(app.ID, "wrong-"+app.Secret)}).mustError(t, outcome{401, "invalid_client"})
	})
	t.Run("a public client's token presented by another public client", func(t *testing.T) {
		in.token(t, tokenCall{Form: rt("refresh_token", spaTok.Refresh, "client_id", spa2.ID)}).mustError(t, outcome{400, "invalid_grant"})
	})
	t.Run("a public client's token presented by a confidential client", func(t *testing.T) {
		in.token(t, tokenCall{Form: rt("refresh_token", spaTok.Refresh), Basic: basic(app.ID, app.Secret)}).mustError(t, outcome{400, "invalid_grant"})
	})
	t.Run("the owners still refresh", func(t *testing.T) {
		in.token(t, tokenCall{Form: rt("refresh_token", tok.Refresh), Basic: basic(app.ID, app.Secret)}).mustToken(t)
		in.token(t, tokenCall{Form: rt("refresh_token", spaTok.Refresh, "client_id", spa.ID)}).mustToken(t)
	})
}

// ---------------------------------------------------------------------------------------------
// RFC 6749 §4.1.2: state.

// TestRFC6749_4_1_2_StateReturnedUnchanged proves state comes back byte for byte — with
// reserved, percent, Unicode, HTML and quote characters and 600 bytes long — on a code redirect
// (through the login and consent pages), an implicit redirect (fragment), a denial, an error
// redirect in the query and one in the fragment; and a request without state gets none back.
func TestRFC6749_4_1_2_StateReturnedUnchanged(t *testing.T) {
	t.Parallel()
	web := clientSpec{ID: "web", Secret: randomSecret("web-"), Grants: "authorization_code", RedirectURIs: secAppCBQ, Scopes: "read"}
	spa := clientSpec{ID: "spa", Grants: "implicit", RedirectURIs: secSpaCB, Scopes: "read"}
	al := alice()
	in := startGate(t, gateSpec{Clients: []clientSpec{web, spa}, Users: []userSpec{al}})
	states := []string{
		`a/b?c=d&e=f#g %20%2B+ä€😀 <script>"'` + "`" + `\ ` + randomSecret(""),
		"%41%2526%%25zz" + randomSecret(""),
		strings.Repeat("xY9-._~", 80)[:560] + randomSecret(""),
		"state=with=equals&and=ampersands",
	}
	for i, state := range states {
		t.Run(fmt.Sprintf("state %d", i), func(t *testing.T) {
			b := in.newBrowser(t)
			res := b.authorize(authParams(web.ID, secAppCBQ, "code", "read", state), al.Name, al.Password, "allow")
			if !res.SawLogin || !res.SawConsent {
				t.Errorf("want the login and consent pages on the way, saw login=%v consent=%v", res.SawLogin, res.SawConsent)
			}
			mustCode(t, res, secAppCBQ, state)
			if got := res.Redirect.Query()["state"]; len(got) != 1 {
				t.Errorf("state appears %d times in %s", len(got), res.Redirect)
			}
			if res.Redirect.Query().Get("tenant") != "a" {
				t.Errorf("the registered query was lost: %s", res.Redirect)
			}

			mustRedirectError(t, b.authorize(authParams(web.ID, secAppCBQ, "code", "read", state), al.Name, al.Password, "deny"), secAppCBQ, "access_denied", state)
			mustRedirectError(t, b.authorize(authParams(web.ID, secAppCBQ, "code", "admin", state), al.Name, al.Password, "allow"), secAppCBQ, "invalid_scope", state)

			imp := b.authorize(authParams(spa.ID, secSpaCB, "token", "read", state), al.Name, al.Password, "allow")
			if imp.Redirect == nil {
				t.Fatal("no implicit redirect")
			}
			fv := fragmentValues(imp.Redirect)
			if fv.Get("access_token") == "" {
				t.Fatalf("implicit redirect without a token: %s", imp.Redirect)
			}
			if fv.Get("state") != state {
				t.Errorf("implicit state = %q, want %q", fv.Get("state"), state)
			}
			mustRedirectError(t, b.authorize(authParams(spa.ID, secSpaCB, "token", "admin", state), al.Name, al.Password, "allow"), secSpaCB, "invalid_scope", state)
		})
	}
	t.Run("no state sent, none returned", func(t *testing.T) {
		b := in.newBrowser(t)
		res := b.authorize(authParams(web.ID, secAppCBQ, "code", "read", ""), al.Name, al.Password, "allow")
		mustCode(t, res, secAppCBQ, "")
		if res.Redirect.Query().Has("state") {
			t.Errorf("a state parameter appeared: %s", res.Redirect)
		}
	})
}

// ---------------------------------------------------------------------------------------------
// RFC 9700 §4.7, §4.16: the login and consent pages.

// TestRFC9700_4_7_CSRFTokensOnLoginAndConsent proves the login and consent forms are POST forms
// carrying an anti-CSRF token bound to the browser: a post without it, with a forged one, with
// another browser's, or from a browser without the CSRF cookie is refused with 403 and neither
// logs in nor redirects with a code; consent cannot be given by GET; the genuine forms work.
func TestRFC9700_4_7_CSRFTokensOnLoginAndConsent(t *testing.T) {
	t.Parallel()
	web := clientSpec{ID: "web", Secret: randomSecret("web-"), Grants: "authorization_code", RedirectURIs: secLoopCB, Scopes: "read"}
	al, bo := alice(), bob()
	in := startGate(t, gateSpec{Clients: []clientSpec{web}, Users: []userSpec{al, bo}})
	params := authParams(web.ID, secLoopCB, "code", "read", "csrf")
	authorizeURL := in.url("/authorize") + "?" + params.Encode()

	loginForm := func(t *testing.T, b *browser) (*page, htmlForm, string) {
		t.Helper()
		b.t = t
		p := b.get(authorizeURL)
		f, ok := p.loginForm()
		if !ok {
			t.Fatalf("no login form: %s", p)
		}
		if f.Method != http.MethodPost {
			t.Errorf("login form method %q, want POST", f.Method)
		}
		field, ok := csrfField(f, params)
		if !ok {
			t.Fatalf("the login form has no anti-CSRF input; hidden inputs %v", f.Hidden)
		}
		if len(f.Hidden.Get(field)) < 22 {
			t.Errorf("the login form's CSRF token %q is shorter than 128 bits", f.Hidden.Get(field))
		}
		return p, f, field
	}
	loggedIn := func(b *browser) bool {
		p := b.get(authorizeURL)
		_, ok := p.consentForm()
		return ok
	}
	refusedLogin := func(t *testing.T, b *browser, p *page, f htmlForm, v url.Values, what string) {
		t.Helper()
		v.Set("username", al.Name)
		v.Set("password", al.Password)
		in.remember("password", al.Password)
		lp := b.post(p, f.Action, v)
		if lp.Status != http.StatusForbidden {
			t.Errorf("login %s: status %d, want 403", what, lp.Status)
		}
		if loc := lp.Header.Get("Location"); loc != "" {
			t.Errorf("login %s redirected to %s", what, loc)
		}
		for _, c := range liveCookies(lp.Header) {
			if strings.Contains(strings.ToLower(c.Name), "session") {
				t.Errorf("login %s set a session cookie %s", what, c.Name)
			}
		}
		if loggedIn(b) {
			t.Errorf("login %s logged the browser in", what)
		}
	}

	t.Run("login/genuine form works", func(t *testing.T) {
		b := in.newBrowser(t)
		p, _, _ := loginForm(t, b)
		if lp := b.submitLogin(p, al.Name, al.Password); lp.Status != http.StatusSeeOther {
			t.Fatalf("genuine login: want 303, got %s", lp)
		}
		if !loggedIn(b) {
			t.Errorf("genuine login did not log in")
		}
	})
	t.Run("login/missing token", func(t *testing.T) {
		b := in.newBrowser(t)
		p, f, field := loginForm(t, b)
		v := cloneValues(f.Hidden)
		v.Del(field)
		refusedLogin(t, b, p, f, v, "without the CSRF token")
	})
	t.Run("login/forged token", func(t *testing.T) {
		b := in.newBrowser(t)
		p, f, field := loginForm(t, b)
		v := cloneValues(f.Hidden)
		v.Set(field, randomSecret("forged-"))
		refusedLogin(t, b, p, f, v, "with a forged CSRF token")
	})
	t.Run("login/another browser's token", func(t *testing.T) {
		attacker := in.newBrowser(t)
		_, af, field := loginForm(t, attacker)
		b := in.newBrowser(t)
		p, f, _ := loginForm(t, b)
		v := cloneValues(f.Hidden)
		v.Set(field, af.Hidden.Get(field))
		refusedLogin(t, b, p, f, v, "with another browser's CSRF token")
	})
	t.Run("login/cross-site post from a browser without the CSRF cookie", func(t *testing.T) {
		attacker := in.newBrowser(t)
		_, af, _ := loginForm(t, attacker)
		victim := in.newBrowser(t)
		refusedLogin(t, victim, nil, af, cloneValues(af.Hidden), "replayed into a browser without the cookie")
	})

	consentPage := func(t *testing.T, b *browser, u userSpec) (*page, htmlForm, string) {
		t.Helper()
		b.t = t
		p := b.login(params, u.Name, u.Password)
		f, ok := p.consentForm()
		if !ok {
			t.Fatalf("no consent form: %s", p)
		}
		if f.Method != http.MethodPost {
			t.Errorf("consent form method %q, want POST", f.Method)
		}
		field, ok := csrfField(f, params)
		if !ok {
			t.Fatalf("the consent form has no anti-CSRF input; hidden inputs %v", f.Hidden)
		}
		return p, f, field
	}
	refusedConsent := func(t *testing.T, b *browser, p *page, f htmlForm, v url.Values, what string) {
		t.Helper()
		v.Set("decision", "allow")
		cp := b.post(p, f.Action, v)
		if cp.Status != http.StatusForbidden {
			t.Errorf("consent %s: status %d, want 403", what, cp.Status)
		}
		if loc := cp.Header.Get("Location"); loc != "" {
			t.Errorf("consent %s redirected to %s", what, loc)
		}
	}
	t.Run("consent/genuine form works", func(t *testing.T) {
		b := in.newBrowser(t)
		p, _, _ := consentPage(t, b, al)
		res := b.submitConsent(p, "allow")
		if loc := res.location(); loc == nil || loc.Query().Get("code") == "" {
			t.Errorf("genuine consent gave no code: %s", res)
		}
	})
	t.Run("consent/missing token", func(t *testing.T) {
		b := in.newBrowser(t)
		p, f, field := consentPage(t, b, al)
		v := cloneValues(f.Hidden)
		v.Del(field)
		refusedConsent(t, b, p, f, v, "without the CSRF token")
	})
	t.Run("consent/forged token", func(t *testing.T) {
		b := in.newBrowser(t)
		p, f, field := consentPage(t, b, al)
		v := cloneValues(f.Hidden)
		v.Set(field, randomSecret("forged-"))
		refusedConsent(t, b, p, f, v, "with a forged CSRF token")
	})
	t.Run("consent/another user's token", func(t *testing.T) {
		attacker := in.newBrowser(t)
		_, af, field := consentPage(t, attacker, bo)
		victim := in.newBrowser(t)
		p, f, _ := consentPage(t, victim, al)
		v := cloneValues(f.Hidden)
		v.Set(field, af.Hidden.Get(field))
		refusedConsent(t, victim, p, f, v, "with another user's CSRF token")
	})
	t.Run("consent/cannot be given by GET", func(t *testing.T) {
		b := in.newBrowser(t)
		_, f, _ := consentPage(t, b, al)
		u := *f.Action
		q := u.Query()
		for k, vs := range f.Hidden {
			q[k] = vs
		}
		q.Set("decision", "allow")
		u.RawQuery = q.Encode()
		p := b.get(u.String())
		if loc := p.location(); loc != nil && loc.Query().Get("code") != "" {
			t.Errorf("a GET with decision=allow produced a code: %s", loc)
		}
	})
}

// TestRFC9700_4_16_ClickjackingProtection proves every HTML page of the authorization endpoint
// — login, login after a failure, consent, the CSRF refusal, the error page and the 429 login
// page — forbids framing with Content-Security-Policy frame-ancestors 'none' and X-Frame-Options
// DENY.
func TestRFC9700_4_16_ClickjackingProtection(t *testing.T) {
	t.Parallel()
	web := clientSpec{ID: "web", Secret: randomSecret("web-"), Grants: "authorization_code", RedirectURIs: secLoopCB, Scopes: "read"}
	al := alice()
	in := startGate(t, gateSpec{Settings: "failure_limit 2 1m", Clients: []clientSpec{web}, Users: []userSpec{al}})
	params := authParams(web.ID, secLoopCB, "code", "read", "cj")
	check := func(t *testing.T, what string, p *page) {
		t.Helper()
		csp := strings.Join(p.Header.Values("Content-Security-Policy"), ", ")
		if !regexp.MustCompile(`(^|;|,)\s*frame-ancestors\s+'none'\s*(;|,|$)`).MatchString(csp) {
			t.Errorf("%s: Content-Security-Policy = %q, want frame-ancestors 'none'", what, csp)
		}
		if xfo := p.Header.Values("X-Frame-Options"); len(xfo) != 1 || !strings.EqualFold(strings.TrimSpace(xfo[0]), "DENY") {
			t.Errorf("%s: X-Frame-Options = %q, want DENY", what, xfo)
		}
		if ct := p.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
			t.Errorf("%s: Content-Type %q, want an HTML page (status %d)", what, ct, p.Status)
		}
	}

	b := in.newBrowser(t)
	login := b.get(in.url("/authorize") + "?" + params.Encode())
	if _, ok := login.loginForm(); !ok {
		t.Fatalf("no login page: %s", login)
	}
	check(t, "login page", login)
	consent := b.login(params, al.Name, al.Password)
	if _, ok := consent.consentForm(); !ok {
		t.Fatalf("no consent page: %s", consent)
	}
	check(t, "consent page", consent)
	f, _ := consent.consentForm()
	v := cloneValues(f.Hidden)
	if field, ok := csrfField(f, params); ok {
		v.Del(field)
	}
	v.Set("decision", "allow")
	check(t, "CSRF refusal page", b.post(consent, f.Action, v))
	check(t, "error page (unknown client)", b.get(in.url("/authorize")+"?"+authParams("nobody", secLoopCB, "code", "read", "x").Encode()))
	check(t, "error page (unregistered redirect_uri)", b.get(in.url("/authorize")+"?"+authParams(web.ID, "https://evil.example/", "code", "read", "x").Encode()))

	// Failures come last: they spend this IP's failure budget (failure_limit 2 1m).
	fresh := in.newBrowser(t)
	p := fresh.get(in.url("/authorize") + "?" + params.Encode())
	failed := fresh.submitLogin(p, al.Name, "wrong-"+al.Password)
	check(t, "login page after a failed login", failed)
	failed = fresh.submitLogin(failed, al.Name, "wrong-"+al.Password)
	limited := fresh.submitLogin(failed, al.Name, "wrong-"+al.Password)
	if limited.Status != http.StatusTooManyRequests {
		t.Errorf("third failed login with failure_limit 2: status %d, want 429", limited.Status)
	}
	check(t, "429 login page", limited)
}

// ---------------------------------------------------------------------------------------------
// RFC 6749 §5.1: Cache-Control: no-store.

// TestRFC6749_5_1_NoStoreOnEveryTokenResponse proves Cache-Control: no-store (and Pragma:
// no-cache on JSON answers) on every response that carries a token or code or answers a token
// request: client_credentials, password, authorization_code and refresh_token grants,
// introspection (active and inactive), revocation, token endpoint errors (400, 401, 405), and the
// redirects that carry a code or an implicit access token.
func TestRFC6749_5_1_NoStoreOnEveryTokenResponse(t *testing.T) {
	t.Parallel()
	web := clientSpec{ID: "web", Secret: randomSecret("web-"), Grants: "authorization_code refresh_token password client_credentials",
		RedirectURIs: secLoopCB, Scopes: "openid read", SkipConsent: true}
	spa := clientSpec{ID: "spa", Grants: "implicit", RedirectURIs: secSpaCB, Scopes: "read", SkipConsent: true}
	al := alice()
	in := startGate(t, gateSpec{Clients: []clientSpec{web, spa}, Users: []userSpec{al}})
	auth := basic(web.ID, web.Secret)
	noStore := func(t *testing.T, what string, h http.Header, pragma bool) {
		t.Helper()
		cc := strings.ToLower(strings.Join(h.Values("Cache-Control"), ","))
		if !strings.Contains(cc, "no-store") {
			t.Errorf("%s: Cache-Control = %q, want no-store", what, cc)
		}
		if pragma && !strings.EqualFold(h.Get("Pragma"), "no-cache") {
			t.Errorf("%s: Pragma = %q, want no-cache", what, h.Get("Pragma"))
		}
	}
	jsonReply := func(t *testing.T, what string, r *reply, status int) {
		t.Helper()
		if r.Status != status {
			t.Errorf("%s: status %d, want %d (%s)", what, r.Status, status, r)
		}
		noStore(t, what, r.Header, true)
	}

	cc := in.token(t, tokenCall{Form: form("grant_type", "client_credentials", "scope", "read"), Basic: auth})
	jsonReply(t, "client_credentials", cc, 200)
	pw := in.token(t, tokenCall{Form: form("grant_type", "password", "username", al.Name, "password", al.Password, "scope", "openid read"), Basic: auth})
	jsonReply(t, "password grant", pw, 200)
	rf := in.token(t, tokenCall{Form: form("grant_type", "refresh_token", "refresh_token", pw.str("refresh_token")), Basic: auth})
	jsonReply(t, "refresh_token grant", rf, 200)

	b := in.newBrowser(t)
	p := b.get(in.url("/authorize") + "?" + authParams(web.ID, secLoopCB, "code", "openid read", "ns").Encode())
	lp := b.submitLogin(p, al.Name, al.Password)
	codeRedirect := b.get(lp.location().String())
	loc := codeRedirect.location()
	if loc == nil || loc.Query().Get("code") == "" {
		t.Fatalf("no code redirect: %s", codeRedirect)
	}
	noStore(t, "redirect carrying a code", codeRedirect.Header, false)
	ac := in.token(t, tokenCall{Form: form("grant_type", "authorization_code", "code", loc.Query().Get("code"), "redirect_uri", secLoopCB), Basic: auth})
	jsonReply(t, "authorization_code grant (with id_token)", ac, 200)

	imp := b.get(in.url("/authorize") + "?" + authParams(spa.ID, secSpaCB, "token", "read", "ns").Encode())
	if l := imp.location(); l == nil || fragmentValues(l).Get("access_token") == "" {
		t.Fatalf("no implicit redirect: %s", imp)
	}
	noStore(t, "implicit redirect carrying an access token", imp.Header, false)

	in.remember("access_token", cc.str("access_token"))
	jsonReply(t, "introspection (active)", in.token(t, tokenCall{Path: "/introspect", Form: form("token", rf.str("access_token")), Basic: auth}), 200)
	jsonReply(t, "introspection (refresh token)", in.token(t, tokenCall{Path: "/introspect", Form: form("token", rf.str("refresh_token"), "token_type_hint", "refresh_token"), Basic: auth}), 200)
	jsonReply(t, "introspection (inactive)", in.token(t, tokenCall{Path: "/introspect", Form: form("token", randomSecret("unknown-")), Basic: auth}), 200)
	rv := in.token(t, tokenCall{Path: "/revoke", Form: form("token", cc.str("access_token")), Basic: auth})
	if rv.Status != 200 {
		t.Errorf("revocation: status %d", rv.Status)
	}
	noStore(t, "revocation", rv.Header, false)

	jsonReply(t, "invalid_grant error", in.token(t, tokenCall{Form: form("grant_type", "refresh_token", "refresh_token", randomSecret("bogus-")), Basic: auth}), 400)
	jsonReply(t, "unsupported_grant_type error", in.token(t, tokenCall{Form: form("grant_type", "urn:nope"), Basic: auth}), 400)
	jsonReply(t, "invalid_client error", in.token(t, tokenCall{Form: form("grant_type", "client_credentials"), Basic: basic(web.ID, "wrong-"+web.Secret)}), 401)
	jsonReply(t, "introspection error", in.token(t, tokenCall{Path: "/introspect", Form: form("token", "x"), Basic: basic(web.ID, "wrong-"+web.Secret)}), 401)
	jsonReply(t, "method not allowed", in.token(t, tokenCall{Method: http.MethodPut, Form: form("grant_type", "client_credentials"), Basic: auth}), 405)
}

// ---------------------------------------------------------------------------------------------
// RFC 9700 §2.1.2, §2.4: implicit and password grants.

// TestRFC9700_2_1_2_ImplicitAndPasswordOnlyForClientsThatListThem proves response_type=token is
// answered with unauthorized_client (and no token) for a client whose grants do not list
// implicit, and grant_type=password with unauthorized_client (and no token, even with the right
// password) for a client whose grants do not list password — including clients without a grants
// line, whose defaults list neither; clients that list them get tokens.
func TestRFC9700_2_1_2_ImplicitAndPasswordOnlyForClientsThatListThem(t *testing.T) {
	t.Parallel()
	dflt := clientSpec{ID: "dflt", Secret: randomSecret("dflt-"), RedirectURIs: secLoopCB, Scopes: "read", SkipConsent: true}
	codeOnly := clientSpec{ID: "codeonly", Secret: randomSecret("co-"), Grants: "authorization_code refresh_token client_credentials", RedirectURIs: secLoopCB, Scopes: "read", SkipConsent: true}
	pubCode := clientSpec{ID: "pubcode", Grants: "authorization_code", RedirectURIs: secSpaCB, Scopes: "read", SkipConsent: true}
	imp := clientSpec{ID: "imp", Grants: "implicit", RedirectURIs: secSpaCB, Scopes: "read", SkipConsent: true}
	pw := clientSpec{ID: "pw", Secret: randomSecret("pw-"), Grants: "password", Scopes: "read"}
	al := alice()
	in := startGate(t, gateSpec{Clients: []clientSpec{dflt, codeOnly, pubCode, imp, pw}, Users: []userSpec{al}})
	b := in.newBrowser(t)

	for _, c := range []clientSpec{dflt, codeOnly, pubCode} {
		t.Run("implicit refused for "+c.ID, func(t *testing.T) {
			b.t = t
			cb := strings.Fields(c.RedirectURIs)[0]
			res := b.authorize(authParams(c.ID, cb, "token", "read", "i"), al.Name, al.Password, "allow")
			mustRedirectError(t, res, cb, "unauthorized_client", "i")
		})
	}
	t.Run("implicit works for the client listing it", func(t *testing.T) {
		b.t = t
		res := b.authorize(authParams(imp.ID, secSpaCB, "token", "read", "i"), al.Name, al.Password, "allow")
		if res.Redirect == nil || fragmentValues(res.Redirect).Get("access_token") == "" {
			t.Fatalf("no implicit token for a client listing implicit: %v", res.Redirect)
		}
	})
	pwForm := func(extra ...string) url.Values {
		return form(append([]string{"grant_type", "password", "username", al.Name, "password", al.Password}, extra...)...)
	}
	for _, c := range []clientSpec{dflt, codeOnly} {
		t.Run("password refused for "+c.ID, func(t *testing.T) {
			in.token(t, tokenCall{Form: pwForm(), Basic: basic(c.ID, c.Secret)}).mustError(t, outcome{400, "unauthorized_client"})
		})
	}
	t.Run("password refused for a public client", func(t *testing.T) {
		in.token(t, tokenCall{Form: pwForm("client_id", pubCode.ID)}).mustError(t, outcome{400, "unauthorized_client"})
	})
	t.Run("password refused for an implicit-only client", func(t *testing.T) {
		in.token(t, tokenCall{Form: pwForm("client_id", imp.ID)}).mustError(t, outcome{400, "unauthorized_client"})
	})
	t.Run("password works for the client listing it", func(t *testing.T) {
		in.token(t, tokenCall{Form: pwForm(), Basic: basic(pw.ID, pw.Secret)}).mustToken(t)
	})
	t.Run("the password client gets no code or implicit token", func(t *testing.T) {
		b.t = t
		// pw has no redirect URI: the answer is an error page, never a redirect.
		for _, rt := range []string{"code", "token"} {
			p := b.get(in.url("/authorize") + "?" + authParams(pw.ID, secLoopCB, rt, "read", "x").Encode())
			if loc := p.Header.Get("Location"); loc != "" {
				t.Errorf("response_type=%s for the password-only client redirected to %s", rt, loc)
			}
		}
	})
}

// ---------------------------------------------------------------------------------------------
// RFC 6749 §2.3.1: constant-time secret comparison.

// secSecretish names identifiers that hold secrets, their hashes or MACs.
var secSecretish = regexp.MustCompile(`(?i)secret|passw|plaintext|verifier|hmac|^mac|mac$|digest|sum$|hash`)

// secBadComparisons lists == and != comparisons where one side names a secret (and the other is
// not "", nil, a length or a zero value) in the Go source src.
func secBadComparisons(fset *token.FileSet, name string, src any) ([]string, error) {
	f, err := parser.ParseFile(fset, name, src, 0)
	if err != nil {
		return nil, err
	}
	var nameOf func(e ast.Expr) string
	nameOf = func(e ast.Expr) string {
		switch x := e.(type) {
		case *ast.Ident:
			return x.Name
		case *ast.SelectorExpr:
			return x.Sel.Name
		case *ast.CallExpr:
			if id, ok := x.Fun.(*ast.Ident); ok && (id.Name == "string" || id.Name == "len") && len(x.Args) == 1 {
				if id.Name == "len" {
					return ""
				}
				return nameOf(x.Args[0])
			}
			return nameOf(x.Fun)
		case *ast.IndexExpr:
			return nameOf(x.X)
		case *ast.StarExpr:
			return nameOf(x.X)
		case *ast.ParenExpr:
			return nameOf(x.X)
		case *ast.SliceExpr:
			return nameOf(x.X)
		}
		return ""
	}
	trivial := func(e ast.Expr) bool {
		switch x := e.(type) {
		case *ast.BasicLit:
			return x.Value == `""` || x.Kind == token.INT
		case *ast.Ident:
			return x.Name == "nil" || x.Name == "true" || x.Name == "false"
		case *ast.CompositeLit:
			return len(x.Elts) == 0
		case *ast.CallExpr:
			if id, ok := x.Fun.(*ast.Ident); ok && id.Name == "len" {
				return true
			}
		}
		return false
	}
	var out []string
	ast.Inspect(f, func(n ast.Node) bool {
		be, ok := n.(*ast.BinaryExpr)
		if !ok || (be.Op != token.EQL && be.Op != token.NEQ) || trivial(be.X) || trivial(be.Y) {
			return true
		}
		if l, r := nameOf(be.X), nameOf(be.Y); secSecretish.MatchString(l) || secSecretish.MatchString(r) {
			out = append(out, fmt.Sprintf("%s: %s %s %s", fset.Position(be.Pos()), l, be.Op, r))
		}
		return true
	})
	return out, nil
}

// secMedian is the median of ds.
func secMedian(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

// TestRFC6749_2_3_1_ConstantTimeSecretComparison proves, in the source, that no == or != compares
// a secret anywhere in authz/ or caddymodule/ (a detector that finds planted mistakes); and, on the
// wire, that a wrong secret of a known client and any secret of an unknown client both pay a
// full hash (as do a wrong password and an unknown user), so neither the secret nor the
// existence of a client or user can be learned from timing.
func TestRFC6749_2_3_1_ConstantTimeSecretComparison(t *testing.T) {
	t.Parallel()

	t.Run("source", func(t *testing.T) {
		// The detector itself must catch the classic mistakes.
		probe := `package p
func f(secret, s string, c struct{ Secret string }, mac, sum []byte) bool {
	if secret != c.Secret { return false }
	if s == c.GetSecret() { return true }
	if string(mac) == string(sum) { return true }
	return secret == "" || len(mac) == 0
}`
		found, err := secBadComparisons(token.NewFileSet(), "probe.go", probe)
		if err != nil {
			t.Fatal(err)
		}
		if len(found) != 3 {
			t.Fatalf("the comparison detector found %d of 3 planted comparisons: %v", len(found), found)
		}

		fset := token.NewFileSet()
		for _, f := range secGoFiles(t) {
			bad, err := secBadComparisons(fset, f, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range bad {
				t.Errorf("non-constant-time comparison of a secret: %s", strings.TrimPrefix(b, repoRoot+"/"))
			}
		}
	})

	t.Run("timing", func(t *testing.T) {
		// Secrets hashed at bcrypt's default cost, the cost of the dummy hash unknown clients and
		// users are checked against, so both paths cost the same and far more than no hash.
		secret, password := randomSecret("svc-"), randomSecret("pw-")
		hash := func(s string) string {
			h, err := bcrypt.GenerateFromPassword([]byte(s), bcrypt.DefaultCost)
			if err != nil {
				t.Fatal(err)
			}
			return string(h)
		}
		body := fmt.Sprintf("failure_limit off\nclient svc {\n\tsecret %s\n\tgrants client_credentials password\n}\nuser alice %s\n", hash(secret), hash(password))
		in := startCaddy(t, body)
		in.remember("client secret", secret)
		in.remember("user password", password)

		type probe struct {
			name string
			call tokenCall
			want int
		}
		wrongSecret := probe{"wrong secret of a known client", tokenCall{Form: form("grant_type", "client_credentials"), Basic: basic("svc", "wrong-"+secret)}, 401}
		unknownClient := probe{"unknown client", tokenCall{Form: form("grant_type", "client_credentials"), Basic: basic("nosuchclient", "wrong-"+secret)}, 401}
		noHash := probe{"no client at all (no hash is due)", tokenCall{Form: form("grant_type", "client_credentials")}, 401}
		wrongPassword := probe{"wrong password of a known user", tokenCall{Form: form("grant_type", "password", "username", "alice", "password", "wrong-"+password), Basic: basic("svc", secret)}, 400}
		unknownUser := probe{"unknown user", tokenCall{Form: form("grant_type", "password", "username", "nosuchuser", "password", "wrong-"+password), Basic: basic("svc", secret)}, 400}
		probes := []probe{noHash, wrongSecret, unknownClient, wrongPassword, unknownUser}

		// Warm up: the dummy hash is made on first use, the client's secret is memoised after
		// its first success (the password probes authenticate svc with the right secret).
		for _, p := range probes {
			in.token(t, p.call)
		}
		const rounds = 9
		times := make(map[string][]time.Duration)
		for range rounds {
			for _, p := range probes { // interleaved, so load on the machine hits every probe alike
				start := time.Now()
				r := in.token(t, p.call)
				times[p.name] = append(times[p.name], time.Since(start))
				if r.Status != p.want {
					t.Fatalf("%s: status %d, want %d (%s)", p.name, r.Status, p.want, r)
				}
			}
		}
		base := secMedian(times[noHash.name])
		for _, pair := range [][2]probe{{wrongSecret, unknownClient}, {wrongPassword, unknownUser}} {
			a, b := secMedian(times[pair[0].name]), secMedian(times[pair[1].name])
			t.Logf("median: %s %v, %s %v, %s %v", noHash.name, base, pair[0].name, a, pair[1].name, b)
			for i, m := range []time.Duration{a, b} {
				// A bcrypt at cost 10 takes tens of milliseconds; an answer without one, well
				// under a millisecond plus the loopback round trip.
				if m < 4*base || m-base < 5*time.Millisecond {
					t.Errorf("%s answers in %v (median), about as fast as a request that checks no hash (%v): it does not pay a hash",
						pair[i].name, m, base)
				}
			}
			if ratio := float64(max(a, b)) / float64(min(a, b)); ratio > 3 {
				t.Errorf("%s (%v) and %s (%v) differ by a factor %.1f: timing tells them apart", pair[0].name, a, pair[1].name, b, ratio)
			}
		}
	})
}

// ---------------------------------------------------------------------------------------------
// RFC 6749 §10.10: token entropy.

// TestRFC6749_10_10_TokensHave128BitsFromCryptoRand proves access tokens, refresh tokens and
// codes are at least 22 base64url characters (128 bits), 10,000 access tokens are all distinct
// and their bits are balanced (no fixed or counter-like bits), and the implementation draws
// them from crypto/rand: no file of authz/ or caddymodule/ imports math/rand.
func TestRFC6749_10_10_TokensHave128BitsFromCryptoRand(t *testing.T) {
	t.Parallel()

	t.Run("source uses crypto/rand only", func(t *testing.T) {
		fset := token.NewFileSet()
		cryptoRandRead := false
		for _, f := range secGoFiles(t) {
			af, err := parser.ParseFile(fset, f, nil, parser.ImportsOnly)
			if err != nil {
				t.Fatal(err)
			}
			for _, imp := range af.Imports {
				p, _ := strconv.Unquote(imp.Path.Value)
				if p == "math/rand" || p == "math/rand/v2" {
					t.Errorf("%s imports %s", strings.TrimPrefix(f, repoRoot+"/"), p)
				}
				if p == "crypto/rand" {
					src, _ := os.ReadFile(f)
					if bytes.Contains(src, []byte("rand.Read(")) || bytes.Contains(src, []byte("rand.Text(")) {
						cryptoRandRead = true
					}
				}
			}
		}
		if !cryptoRandRead {
			t.Errorf("no implementation file reads from crypto/rand")
		}
	})

	svc := clientSpec{ID: "svc", Secret: randomSecret("svc-"), Grants: "client_credentials", Scopes: "read"}
	app := clientSpec{ID: "app", Secret: randomSecret("app-"), Grants: "password refresh_token authorization_code", RedirectURIs: secLoopCB, Scopes: "read", SkipConsent: true}
	al := alice()
	in := startGate(t, gateSpec{Clients: []clientSpec{svc, app}, Users: []userSpec{al}})

	decoded := func(t *testing.T, what, tok string) []byte {
		t.Helper()
		checkTokenValue(t, what, tok)
		raw, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil {
			t.Fatalf("%s %q is not unpadded base64url: %v", what, tok, err)
		}
		if len(raw) < 16 {
			t.Fatalf("%s carries %d bytes, fewer than 16 (128 bits)", what, len(raw))
		}
		return raw
	}

	t.Run("10,000 access tokens", func(t *testing.T) {
		const n, workers = 10000, 16
		toks := make([]string, n)
		var mu sync.Mutex
		var firstErr string
		var wg sync.WaitGroup
		next := make(chan int)
		go func() {
			for i := range n {
				next <- i
			}
			close(next)
		}()
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					r, err := in.send(tokenCall{Form: form("grant_type", "client_credentials"), Basic: basic(svc.ID, svc.Secret)})
					if err == nil && r.Status == http.StatusOK {
						toks[i] = r.str("access_token")
						continue
					}
					mu.Lock()
					if firstErr == "" {
						if err != nil {
							firstErr = err.Error()
						} else {
							firstErr = r.String()
						}
					}
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		if firstErr != "" {
			t.Fatalf("issuing %d tokens: %s", n, firstErr)
		}
		seen := make(map[string]bool, n)
		var ones []int
		nbits := 0
		for i, tok := range toks {
			if seen[tok] {
				t.Fatalf("token %d repeats an earlier token", i)
			}
			seen[tok] = true
			raw := decoded(t, "access_token", tok)
			if ones == nil {
				nbits = len(raw) * 8
				ones = make([]int, nbits)
			}
			if len(raw)*8 != nbits {
				t.Fatalf("tokens of different lengths: %d and %d bits", nbits, len(raw)*8)
			}
			for bit := range nbits {
				if raw[bit/8]&(0x80>>(bit%8)) != 0 {
					ones[bit]++
				}
			}
		}
		// Each bit of random tokens is 1 in n/2 ± sqrt(n)/2 = 5000 ± 50 of them; ±400 is 8σ.
		for bit, c := range ones {
			if c < n/2-400 || c > n/2+400 {
				t.Errorf("bit %d of the tokens is 1 in %d of %d: not uniformly random", bit, c, n)
			}
		}
		// And the tokens differ from each other in about half their bits (no shared prefix).
		sum := 0
		prev := decoded(t, "access_token", toks[0])
		for _, tok := range toks[1:200] {
			cur := decoded(t, "access_token", tok)
			for k := range cur {
				sum += bits.OnesCount8(cur[k] ^ prev[k])
			}
			prev = cur
		}
		if avg := float64(sum) / 199; avg < float64(nbits)/2-float64(nbits)/8 {
			t.Errorf("consecutive tokens differ in %.1f of %d bits on average, want about half", avg, nbits)
		}
		t.Logf("%d distinct access tokens of %d bits", n, nbits)
	})

	t.Run("refresh tokens and codes", func(t *testing.T) {
		seen := map[string]string{}
		add := func(what, v string) {
			decoded(t, what, v)
			if prev, dup := seen[v]; dup {
				t.Fatalf("%s repeats a %s", what, prev)
			}
			seen[v] = what
		}
		for range 100 {
			tok := in.token(t, tokenCall{Form: form("grant_type", "password", "username", al.Name, "password", al.Password), Basic: basic(app.ID, app.Secret)}).mustToken(t)
			add("refresh_token", tok.Refresh)
		}
		b := in.newBrowser(t)
		for i := range 100 {
			add("code", secCode(t, b, authParams(app.ID, secLoopCB, "code", "read", strconv.Itoa(i)), al))
		}
	})
}

// ---------------------------------------------------------------------------------------------
// Hashed at rest.

// TestRFC9700_4_HashedAtRest proves that after issuing every kind of credential (access tokens of
// every grant, refresh tokens current and rotated out, redeemed and unredeemed codes, an implicit
// access token) no file under the instance's home — the store directory, Caddy's data and config
// directories, the Caddyfile — holds any of them, or a client secret or password, in plain text;
// the store holds the SHA-256 of the tokens instead.
func TestRFC9700_4_HashedAtRest(t *testing.T) {
	t.Parallel()
	web := clientSpec{ID: "web", Secret: randomSecret("web-"), Grants: "authorization_code refresh_token password client_credentials",
		RedirectURIs: secLoopCB, Scopes: "openid read", SkipConsent: true}
	spa := clientSpec{ID: "spa", Grants: "authorization_code refresh_token implicit", RedirectURIs: secSpaCB, Scopes: "read", SkipConsent: true}
	al := alice()
	in := startGate(t, gateSpec{Clients: []clientSpec{web, spa}, Users: []userSpec{al}})
	auth := basic(web.ID, web.Secret)
	plain := map[string]string{} // value -> what it is
	keep := func(what, v string) {
		if v == "" {
			t.Fatalf("no %s was issued", what)
		}
		plain[v] = what
	}
	keep("client secret", web.Secret)
	keep("user password", al.Password)

	cc := in.token(t, tokenCall{Form: form("grant_type", "client_credentials"), Basic: auth}).mustToken(t)
	keep("client_credentials access token", cc.Access)
	pw := in.token(t, tokenCall{Form: form("grant_type", "password", "username", al.Name, "password", al.Password, "scope", "openid read"), Basic: auth}).mustToken(t)
	keep("password-grant access token", pw.Access)
	keep("rotated-out refresh token", pw.Refresh)
	rf := in.token(t, tokenCall{Form: form("grant_type", "refresh_token", "refresh_token", pw.Refresh), Basic: auth}).mustToken(t)
	keep("refreshed access token", rf.Access)
	keep("current refresh token", rf.Refresh)

	b := in.newBrowser(t)
	used := secCode(t, b, authParams(web.ID, secLoopCB, "code", "openid read", "u"), al)
	keep("redeemed code", used)
	ac := in.token(t, tokenCall{Form: form("grant_type", "authorization_code", "code", used, "redirect_uri", secLoopCB), Basic: auth}).mustToken(t)
	keep("code access token", ac.Access)
	keep("code refresh token", ac.Refresh)
	v := oauth2.GenerateVerifier()
	keep("PKCE verifier", v)
	pending := secCode(t, b, withPKCE(authParams(spa.ID, secSpaCB, "code", "read", "p"), oauth2.S256ChallengeFromVerifier(v)), al)
	keep("unredeemed code", pending)
	res := b.authorize(authParams(spa.ID, secSpaCB, "token", "read", "i"), al.Name, al.Password, "allow")
	if res.Redirect == nil {
		t.Fatal("no implicit redirect")
	}
	keep("implicit access token", fragmentValues(res.Redirect).Get("access_token"))

	// Stop Caddy so that everything it buffered is on disk.
	in.stop()

	var files []string
	var storeBytes []byte
	err := filepath.WalkDir(in.home, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !d.Type().IsRegular() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel := strings.TrimPrefix(p, in.home+"/")
		files = append(files, fmt.Sprintf("%s (%d bytes)", rel, len(data)))
		if strings.HasPrefix(p, in.storeDir+string(filepath.Separator)) {
			storeBytes = append(storeBytes, data...)
		}
		for val, what := range plain {
			for _, enc := range uniq(val, url.QueryEscape(val), base64.StdEncoding.EncodeToString([]byte(val)), base64.RawURLEncoding.EncodeToString([]byte(val))) {
				if i := bytes.Index(data, []byte(enc)); i >= 0 {
					t.Errorf("%s holds a %s in plain text at byte %d", rel, what, i)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	t.Logf("files read: %s", strings.Join(files, ", "))
	if len(storeBytes) == 0 {
		t.Fatalf("the store directory %s is empty: nothing was checked", in.storeDir)
	}
	// The store's files are pebble's, and its tables are compressed: what a reader of them gets
	// is every entry decoded (tokenstore.DumpFile). That holds none of the values either, and
	// does hold the tokens by their SHA-256: the files read are the right ones.
	dump, err := tokenstore.DumpFile(in.storeDir)
	if err != nil {
		t.Fatal(err)
	}
	for val, what := range plain {
		for _, enc := range uniq(val, url.QueryEscape(val), base64.StdEncoding.EncodeToString([]byte(val)), base64.RawURLEncoding.EncodeToString([]byte(val))) {
			if bytes.Contains(dump, []byte(enc)) {
				t.Errorf("the store's entries hold a %s in plain text", what)
			}
		}
	}
	for _, tok := range []string{cc.Access, rf.Refresh, pending} {
		sum := sha256.Sum256([]byte(tok))
		if !bytes.Contains(dump, []byte(hex.EncodeToString(sum[:]))) {
			t.Errorf("the store holds no SHA-256 of a %s: the check read the wrong files", plain[tok])
		}
	}
}

// ---------------------------------------------------------------------------------------------
// Logs.

// TestRFC9700_NoSecretsInAnyLogLine proves that with Caddy's debug level, the auth site's access
// log and a guarded API site's access log on, every flow and every error — grants of every type,
// wrong secrets and passwords, unknown clients and users, failed and CSRF-refused logins, code
// and refresh-token replays, PKCE failures, implicit redirects, introspection, revocation,
// userinfo with the token in the header and the query, the guard with the token in the header,
// the query and a form body, credentials wrongly put in a token request's URL, and 429 answers
// — leaves no token, code, client secret, password, Basic credential or session cookie in any
// log line.
func TestRFC9700_NoSecretsInAnyLogLine(t *testing.T) {
	t.Parallel()
	web := clientSpec{ID: "web", Secret: randomSecret("web-"), Grants: "authorization_code refresh_token password client_credentials",
		RedirectURIs: secLoopCB, Scopes: "openid email read write"}
	spa := clientSpec{ID: "spa", Grants: "authorization_code refresh_token implicit", RedirectURIs: secSpaCB, Scopes: "openid read", SkipConsent: true}
	rs := clientSpec{ID: "rs", Secret: randomSecret("rs-"), Grants: "client_credentials"}
	al := alice()
	upstream := startEchoUpstream(t)
	api := fmt.Sprintf("http://127.0.0.1:%d", freePorts(t, 1)[0])
	site := fmt.Sprintf("%s {\n\tlog\n\thandle /api/* {\n\t\toauth2_guard read\n\t\treverse_proxy %s\n\t}\n\trespond 404\n}\n", api, upstream)
	in := startGateWith(t, gateSpec{Settings: "failure_limit 20 1m", Clients: []clientSpec{web, spa, rs}, Users: []userSpec{al}},
		siteOptions{BasePath: "/o", GlobalExtra: "debug", SiteExtra: "log", ExtraSites: site})
	g := &guardGate{in: in, api: api, upstream: upstream}
	auth := basic(web.ID, web.Secret)
	for _, c := range []clientSpec{web, rs} {
		in.remember("Basic credentials", strings.TrimPrefix(basic(c.ID, c.Secret).header(), "Basic "))
		in.remember("Basic credentials", strings.TrimPrefix(basic(c.ID, "wrong-"+c.Secret).header(), "Basic "))
	}
	// Requests with query secrets are sent by hand: remember what they carry.
	rawGet := func(t *testing.T, target string, h http.Header) int {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, target, nil)
		if err != nil {
			t.Fatal(err)
		}
		for k, vs := range h {
			req.Header[k] = vs
		}
		resp, err := in.http.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", target, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	rememberSession := func(b *browser) {
		u, _ := url.Parse(in.base + in.basePath + "/authorize")
		for _, c := range b.c.Jar.Cookies(u) {
			if strings.Contains(c.Name, "session") {
				in.remember("session cookie", c.Value)
			}
		}
	}

	flows := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"client credentials, right and wrong", func(t *testing.T) {
			in.token(t, tokenCall{Form: form("grant_type", "client_credentials"), Basic: auth}).mustToken(t)
			in.token(t, tokenCall{Form: form("grant_type", "client_credentials", "client_id", web.ID, "client_secret", web.Secret)}).mustToken(t)
			in.token(t, tokenCall{Form: form("grant_type", "client_credentials"), Basic: basic(web.ID, "wrong-"+web.Secret)}).mustError(t, outcome{401, "invalid_client"})
			in.token(t, tokenCall{Form: form("grant_type", "client_credentials", "client_id", web.ID, "client_secret", "wrong2-"+web.Secret)}).mustError(t, outcome{401, "invalid_client"})
			in.token(t, tokenCall{Form: form("grant_type", "client_credentials"), Basic: basic("nosuch", web.Secret)}).mustError(t, outcome{401, "invalid_client"})
		}},
		{"password, refresh, refresh reuse", func(t *testing.T) {
			a := in.token(t, tokenCall{Form: form("grant_type", "password", "username", al.Name, "password", al.Password, "scope", "openid read"), Basic: auth}).mustToken(t)
			bb := in.token(t, tokenCall{Form: form("grant_type", "refresh_token", "refresh_token", a.Refresh), Basic: auth}).mustToken(t)
			in.token(t, tokenCall{Form: form("grant_type", "refresh_token", "refresh_token", a.Refresh), Basic: auth}).mustError(t, outcome{400, "invalid_grant"})
			in.token(t, tokenCall{Form: form("grant_type", "refresh_token", "refresh_token", bb.Refresh), Basic: auth}).mustError(t, outcome{400, "invalid_grant"})
			in.token(t, tokenCall{Form: form("grant_type", "password", "username", al.Name, "password", "wrong-"+al.Password), Basic: auth}).mustError(t, outcome{400, "invalid_grant"})
			in.token(t, tokenCall{Form: form("grant_type", "password", "username", "nosuchuser", "password", al.Password), Basic: auth}).mustError(t, outcome{400, "invalid_grant"})
		}},
		{"code flow, code replay, PKCE failures", func(t *testing.T) {
			b := in.newBrowser(t)
			code := secCode(t, b, authParams(web.ID, secLoopCB, "code", "openid read", "l1"), al)
			rememberSession(b)
			in.token(t, tokenCall{Form: form("grant_type", "authorization_code", "code", code, "redirect_uri", secLoopCB), Basic: auth}).mustToken(t)
			in.token(t, tokenCall{Form: form("grant_type", "authorization_code", "code", code, "redirect_uri", secLoopCB), Basic: auth}).mustError(t, outcome{400, "invalid_grant"})
			code = secCode(t, b, authParams(web.ID, secLoopCB, "code", "read", "l2"), al)
			in.token(t, tokenCall{Form: form("grant_type", "authorization_code", "code", code, "redirect_uri", secLoopCB+"/x"), Basic: auth}).mustError(t, outcome{400, "invalid_grant"})
			v := oauth2.GenerateVerifier()
			sb := in.newBrowser(t)
			code = secCode(t, sb, withPKCE(authParams(spa.ID, secSpaCB, "code", "read", "l3"), oauth2.S256ChallengeFromVerifier(v)), al)
			rememberSession(sb)
			in.token(t, tokenCall{Form: form("grant_type", "authorization_code", "code", code, "redirect_uri", secSpaCB, "client_id", spa.ID, "code_verifier", oauth2.GenerateVerifier())}).mustError(t, outcome{400, "invalid_grant"})
			code = secCode(t, sb, withPKCE(authParams(spa.ID, secSpaCB, "code", "read", "l4"), oauth2.S256ChallengeFromVerifier(v)), al)
			in.token(t, tokenCall{Form: form("grant_type", "authorization_code", "code", code, "redirect_uri", secSpaCB, "client_id", spa.ID, "code_verifier", v)}).mustToken(t)
		}},
		{"implicit flow", func(t *testing.T) {
			b := in.newBrowser(t)
			res := b.authorize(authParams(spa.ID, secSpaCB, "token", "read", "l5"), al.Name, al.Password, "allow")
			if res.Redirect == nil || fragmentValues(res.Redirect).Get("access_token") == "" {
				t.Fatalf("implicit flow gave no token: %v", res.Redirect)
			}
		}},
		{"failed and CSRF-refused logins", func(t *testing.T) {
			b := in.newBrowser(t)
			p := b.get(in.url("/authorize") + "?" + authParams(web.ID, secLoopCB, "code", "read", "l6").Encode())
			b.submitLogin(p, al.Name, "wrong-"+al.Password)
			b.submitLogin(p, "nosuchuser", al.Password)
			f, _ := p.loginForm()
			vals := url.Values{"username": {al.Name}, "password": {al.Password}, "action": {"login"}}
			b.post(p, f.Action, vals)
		}},
		{"introspection, revocation, userinfo", func(t *testing.T) {
			tok := in.token(t, tokenCall{Form: form("grant_type", "password", "username", al.Name, "password", al.Password, "scope", "openid email read"), Basic: auth}).mustToken(t)
			rsAuth := basic(rs.ID, rs.Secret)
			in.token(t, tokenCall{Path: "/introspect", Form: form("token", tok.Access), Basic: rsAuth})
			in.token(t, tokenCall{Path: "/introspect", Form: form("token", tok.Refresh, "token_type_hint", "refresh_token"), Basic: rsAuth})
			in.token(t, tokenCall{Path: "/introspect", Form: form("token", tok.Access), Basic: basic(rs.ID, "wrong-"+rs.Secret)})
			rawGet(t, in.url("/userinfo"), http.Header{"Authorization": {"Bearer " + tok.Access}})
			rawGet(t, in.url("/userinfo")+"?access_token="+url.QueryEscape(tok.Access), nil)
			in.token(t, tokenCall{Path: "/revoke", Form: form("token", tok.Access), Basic: auth})
			in.token(t, tokenCall{Path: "/revoke", Form: form("token", tok.Refresh, "token_type_hint", "refresh_token"), Basic: auth})
			rawGet(t, in.url("/userinfo"), http.Header{"Authorization": {"Bearer " + tok.Access}})
		}},
		{"guard: header, query and form tokens, valid and not", func(t *testing.T) {
			tok := in.token(t, tokenCall{Form: form("grant_type", "client_credentials", "scope", "read"), Basic: auth}).mustToken(t)
			g.do(t, apiCall{Path: "/api/h", Bearer: tok.Access}).mustPass(t)
			g.do(t, apiCall{Path: "/api/q?x=1&access_token=" + url.QueryEscape(tok.Access)}).mustPass(t)
			g.do(t, apiCall{Method: http.MethodPost, Path: "/api/f", Body: "access_token=" + url.QueryEscape(tok.Access) + "&a=b", ContentType: "application/x-www-form-urlencoded"}).mustPass(t)
			bogus := randomSecret("bogus-token-")
			in.remember("bogus token", bogus)
			g.do(t, apiCall{Path: "/api/h", Bearer: bogus})
			g.do(t, apiCall{Path: "/api/q?access_token=" + bogus})
			in.token(t, tokenCall{Path: "/revoke", Form: form("token", tok.Access), Basic: auth})
			g.do(t, apiCall{Path: "/api/q?access_token=" + url.QueryEscape(tok.Access)})
		}},
		{"credentials in the URL of a token request", func(t *testing.T) {
			in.token(t, tokenCall{Query: "client_secret=" + url.QueryEscape(web.Secret), Form: form("grant_type", "client_credentials", "client_id", web.ID)}).mustError(t, outcome{400, "invalid_request"})
			in.token(t, tokenCall{Method: http.MethodGet, Query: form("grant_type", "password", "username", al.Name, "password", al.Password, "client_id", web.ID, "client_secret", web.Secret).Encode()})
		}},
		{"429 answers", func(t *testing.T) {
			hc := secHTTPClient(secTransportFrom(t, "127.0.0.8"))
			for range 22 {
				secSendFrom(t, in, hc, tokenCall{Form: form("grant_type", "client_credentials"), Basic: basic(web.ID, "wrong3-"+web.Secret)})
			}
			r := secSendFrom(t, in, hc, tokenCall{Form: form("grant_type", "client_credentials"), Basic: auth})
			if r.Status != http.StatusTooManyRequests {
				t.Errorf("after 22 failures with failure_limit 20: status %d, want 429", r.Status)
			}
			b := secBrowserFrom(t, in, "127.0.0.8")
			p := b.get(in.url("/authorize") + "?" + authParams(web.ID, secLoopCB, "code", "read", "l7").Encode())
			b.submitLogin(p, al.Name, al.Password)
		}},
	}
	for i, f := range flows {
		t.Run(f.name, func(t *testing.T) {
			before := in.log.Len()
			f.run(t)
			secWaitForLog(t, in, fmt.Sprintf("/sec-log-marker-%d", i))
			in.assertLogClean(t, in.log.String()[before:])
		})
	}

	// The log levels really were on: debug lines and access-log entries for both sites.
	log := in.log.String()
	for _, want := range []string{`"level":"debug"`, `"logger":"http.log.access`, `"uri":"/o/token"`, `"uri":"/o/authorize?`, `/api/q?`, `"status":429`} {
		if !strings.Contains(log, want) {
			t.Errorf("the log has no %s: debug and access logging were not exercised as intended", want)
		}
	}
	// The end of the run: Caddy stopped, every line written, the whole log checked again.
	in.stop()
	in.assertLogClean(t, in.log.String())
}

// ---------------------------------------------------------------------------------------------
// Brute force.

// TestRFC6749_2_3_1_BruteForceLimits proves (RFC 6749 §2.3.1 and §4.3.2: endpoints that check
// passwords "MUST protect … against brute force attacks") that with `failure_limit 3 1m` the
// fourth failed login, failed password grant or failed client authentication from one IP is
// answered 429 with a Retry-After of at most a minute, and so is the right password or secret
// from that IP; while the same user or client with the right password or secret from another IP
// is not locked out by those failures. Each flow runs from its own loopback address.
func TestRFC6749_2_3_1_BruteForceLimits(t *testing.T) {
	t.Parallel()
	web := clientSpec{ID: "web", Secret: randomSecret("web-"), Grants: "authorization_code", RedirectURIs: secLoopCB, Scopes: "read"}
	app := clientSpec{ID: "app", Secret: randomSecret("app-"), Grants: "password", Scopes: "read"}
	svc := clientSpec{ID: "svc", Secret: randomSecret("svc-"), Grants: "client_credentials", Scopes: "read"}
	al := alice()
	in := startGate(t, gateSpec{Settings: "failure_limit 3 1m", Clients: []clientSpec{web, app, svc}, Users: []userSpec{al}})
	params := authParams(web.ID, secLoopCB, "code", "read", "bf")
	authorizeURL := in.url("/authorize") + "?" + params.Encode()

	t.Run("failed logins", func(t *testing.T) {
		b := secBrowserFrom(t, in, "127.0.0.2")
		p := b.get(authorizeURL)
		for i := 1; i <= 3; i++ {
			p = b.submitLogin(p, al.Name, fmt.Sprintf("wrong-%d-%s", i, al.Password))
			if p.Status != http.StatusOK {
				t.Fatalf("failed login %d of 3: status %d, want 200 and the login form again", i, p.Status)
			}
		}
		limited := b.submitLogin(p, al.Name, "wrong-4-"+al.Password)
		secRetryAfter(t, "fourth failed login", limited.Status, limited.Header, 60)
		right := b.submitLogin(limited, al.Name, al.Password)
		secRetryAfter(t, "right password after the limit, same IP", right.Status, right.Header, 60)
		if _, ok := b.get(authorizeURL).consentForm(); ok {
			t.Errorf("a login while limited logged the browser in")
		}

		other := secBrowserFrom(t, in, "127.0.0.3")
		op := other.get(authorizeURL)
		lp := other.submitLogin(op, al.Name, al.Password)
		if lp.Status != http.StatusSeeOther {
			t.Fatalf("right password from another IP: want 303, got %s", lp)
		}
		if _, ok := other.get(lp.location().String()).consentForm(); !ok {
			t.Errorf("the login from another IP did not reach the consent page")
		}
	})

	pwCall := func(password string) tokenCall {
		return tokenCall{Form: form("grant_type", "password", "username", al.Name, "password", password), Basic: basic(app.ID, app.Secret)}
	}
	t.Run("failed password grants", func(t *testing.T) {
		hc := secHTTPClient(secTransportFrom(t, "127.0.0.4"))
		for i := 1; i <= 3; i++ {
			secSendFrom(t, in, hc, pwCall(fmt.Sprintf("wrong-%d-%s", i, al.Password))).mustError(t, outcome{400, "invalid_grant"})
		}
		r := secSendFrom(t, in, hc, pwCall("wrong-4-"+al.Password))
		secRetryAfter(t, "fourth failed password grant", r.Status, r.Header, 60)
		checkNoStore(t, r.Header)
		if r.str("error") == "" {
			t.Errorf("429 of the token endpoint without an error code: %s", r)
		}
		r = secSendFrom(t, in, hc, pwCall(al.Password))
		secRetryAfter(t, "right password after the limit, same IP", r.Status, r.Header, 60)
		if r.has("access_token") {
			t.Errorf("a limited password grant issued a token")
		}
		ok := secSendFrom(t, in, secHTTPClient(secTransportFrom(t, "127.0.0.5")), pwCall(al.Password))
		ok.mustToken(t)
	})

	t.Run("failed client authentications", func(t *testing.T) {
		hc := secHTTPClient(secTransportFrom(t, "127.0.0.6"))
		cc := func(secret string, post bool) tokenCall {
			if post {
				return tokenCall{Form: form("grant_type", "client_credentials", "client_id", svc.ID, "client_secret", secret)}
			}
			return tokenCall{Form: form("grant_type", "client_credentials"), Basic: basic(svc.ID, secret)}
		}
		for i := 1; i <= 3; i++ {
			secSendFrom(t, in, hc, cc(fmt.Sprintf("wrong-%d-%s", i, svc.Secret), i == 2)).mustError(t, outcome{401, "invalid_client"})
		}
		r := secSendFrom(t, in, hc, cc("wrong-4-"+svc.Secret, false))
		secRetryAfter(t, "fourth failed client authentication", r.Status, r.Header, 60)
		checkNoStore(t, r.Header)
		r = secSendFrom(t, in, hc, cc(svc.Secret, false))
		secRetryAfter(t, "right secret after the limit, same IP", r.Status, r.Header, 60)
		r = secSendFrom(t, in, hc, cc(svc.Secret, true))
		secRetryAfter(t, "right secret (client_secret_post) after the limit, same IP", r.Status, r.Header, 60)
		secSendFrom(t, in, secHTTPClient(secTransportFrom(t, "127.0.0.7")), cc(svc.Secret, false)).mustToken(t)
	})

	t.Run("unknown client ids count too", func(t *testing.T) {
		hc := secHTTPClient(secTransportFrom(t, "127.0.0.9"))
		for i := 1; i <= 3; i++ {
			secSendFrom(t, in, hc, tokenCall{Form: form("grant_type", "client_credentials"), Basic: basic(fmt.Sprintf("guess%d", i), "x-"+svc.Secret)}).mustError(t, outcome{401, "invalid_client"})
		}
		r := secSendFrom(t, in, hc, tokenCall{Form: form("grant_type", "client_credentials"), Basic: basic("guess4", "x-"+svc.Secret)})
		secRetryAfter(t, "fourth unknown client_id from one IP", r.Status, r.Header, 60)
	})

	t.Run("127.0.0.1 was never limited", func(t *testing.T) {
		in.token(t, tokenCall{Form: form("grant_type", "client_credentials"), Basic: basic(svc.ID, svc.Secret)}).mustToken(t)
		in.token(t, pwCall(al.Password)).mustToken(t)
	})
}
