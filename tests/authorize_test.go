package tests

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/oauth2"
)

const (
	webCB    = "http://127.0.0.1:1/cb"
	webOther = "http://127.0.0.1:1/other"
	spaCB    = "http://127.0.0.1:1/spa"
	firstCB  = "http://127.0.0.1:1/first"
)

// odd state: the server must hand it back byte for byte (RFC 6749 §4.1.2).
func oddState() string { return "st/ä+=&?# " + randomSecret("") }

// TestAuthorizeEndpoint covers GET /o/authorize: login and consent pages, CSRF, cookies,
// redirect URI checks, error redirects (RFC 6749 §4.1.2.1, §4.2.2.1) and the implicit flow.
func TestAuthorizeEndpoint(t *testing.T) {
	t.Parallel()
	web := clientSpec{ID: "web", Secret: randomSecret("web-"), Grants: "authorization_code refresh_token", RedirectURIs: webCB + " " + webOther, Scopes: "groups read write", Name: "Web App"}
	spa := clientSpec{ID: "spa", Grants: "authorization_code refresh_token implicit", RedirectURIs: spaCB, Scopes: "read write", Name: "Single Page"}
	first := clientSpec{ID: "first", Secret: randomSecret("first-"), Grants: "authorization_code", RedirectURIs: firstCB, Scopes: "read", SkipConsent: true}
	al, bo := alice(), bob()
	in := startGate(t, gateSpec{Clients: []clientSpec{web, spa, first}, Users: []userSpec{al, bo}})

	webParams := func(scope, state string) url.Values { return authParams(web.ID, webCB, "code", scope, state) }

	t.Run("login page", func(t *testing.T) {
		b := in.newBrowser(t)
		params := webParams("read write", oddState())
		p := b.get(in.url("/authorize") + "?" + params.Encode())
		if p.Status != http.StatusOK {
			t.Fatalf("want 200 login page, got %s", p)
		}
		checkPageHeaders(t, p)
		f, ok := p.loginForm()
		if !ok {
			t.Fatalf("no form with username and password inputs: %s", p)
		}
		if f.Method != http.MethodPost {
			t.Errorf("login form method %q, want POST", f.Method)
		}
		if f.Action.Host != in.host() {
			t.Errorf("login form posts to %s, not to the server", f.Action)
		}
		if _, ok := csrfField(f, params); !ok {
			t.Errorf("login form has no hidden anti-CSRF input; hidden inputs: %v", f.Hidden)
		}
	})

	t.Run("login page under the trailing-slash path", func(t *testing.T) {
		b := in.newBrowser(t)
		p := b.get(in.url("/authorize/") + "?" + webParams("read", "s1").Encode())
		if _, ok := p.loginForm(); p.Status != http.StatusOK || !ok {
			t.Fatalf("want the login page, got %s", p)
		}
	})

	badLogins := []struct{ name, user, pass string }{
		{"wrong password", "alice", "wrong-" + al.Password},
		{"unknown user", "mallory", al.Password},
		{"empty password", "alice", ""},
	}
	for _, tc := range badLogins {
		t.Run("login refused/"+tc.name, func(t *testing.T) {
			b := in.newBrowser(t)
			params := webParams("read", "s2")
			p := b.get(in.url("/authorize") + "?" + params.Encode())
			lp := b.submitLogin(p, tc.user, tc.pass)
			if lp.Status != http.StatusOK && lp.Status != http.StatusUnauthorized {
				t.Errorf("bad login: status %d, want 200 or 401", lp.Status)
			}
			if loc := lp.Header.Get("Location"); loc != "" {
				t.Errorf("bad login redirected to %s", loc)
			}
			if _, ok := lp.loginForm(); !ok {
				t.Errorf("bad login did not show the login form again: %s", lp)
			}
			again := b.get(in.url("/authorize") + "?" + params.Encode())
			if _, ok := again.loginForm(); !ok {
				t.Errorf("after a bad login the browser is logged in: %s", again)
			}
		})
	}

	loginCSRF := []struct {
		name   string
		mutate func(t *testing.T, v url.Values, field string, in *instance)
	}{
		{"missing", func(t *testing.T, v url.Values, field string, _ *instance) { v.Del(field) }},
		{"wrong", func(t *testing.T, v url.Values, field string, _ *instance) { v.Set(field, randomSecret("forged")) }},
		{"from another session", func(t *testing.T, v url.Values, field string, in *instance) {
			other := in.newBrowser(t)
			op := other.get(in.url("/authorize") + "?" + webParams("read", "s3").Encode())
			of, ok := op.loginForm()
			if !ok {
				t.Fatalf("no login form: %s", op)
			}
			v.Set(field, of.Hidden.Get(field))
		}},
	}
	for _, tc := range loginCSRF {
		t.Run("login CSRF/"+tc.name, func(t *testing.T) {
			b := in.newBrowser(t)
			params := webParams("read", "s3")
			p := b.get(in.url("/authorize") + "?" + params.Encode())
			f, ok := p.loginForm()
			if !ok {
				t.Fatalf("no login form: %s", p)
			}
			field, ok := csrfField(f, params)
			if !ok {
				t.Fatalf("cannot find the anti-CSRF input among %v", f.Hidden)
			}
			v := cloneValues(f.Hidden)
			v.Set("username", "alice")
			v.Set("password", al.Password)
			tc.mutate(t, v, field, in)
			lp := b.post(p, f.Action, v)
			if lp.Status != http.StatusForbidden {
				t.Errorf("login with %s CSRF token: status %d, want 403", tc.name, lp.Status)
			}
			if loc := lp.Header.Get("Location"); loc != "" {
				t.Errorf("login with %s CSRF token redirected to %s", tc.name, loc)
			}
			again := b.get(in.url("/authorize") + "?" + params.Encode())
			if _, ok := again.loginForm(); !ok {
				t.Errorf("a forged login logged the browser in: %s", again)
			}
		})
	}

	t.Run("login sets a safe session cookie and answers 303", func(t *testing.T) {
		b := in.newBrowser(t)
		params := webParams("read write", oddState())
		p := b.get(in.url("/authorize") + "?" + params.Encode())
		lp := b.submitLogin(p, "alice", al.Password)
		if lp.Status != http.StatusSeeOther {
			t.Fatalf("login POST: want 303 See Other (never 307, which would re-POST the password), got %s", lp)
		}
		loc := lp.location()
		if loc == nil || loc.Host != in.host() || strings.TrimSuffix(loc.Path, "/") != in.basePath+"/authorize" {
			t.Errorf("login redirects to %v, want the authorize endpoint", loc)
		} else {
			q := loc.Query()
			for _, k := range []string{"client_id", "redirect_uri", "response_type", "state", "scope"} {
				if q.Get(k) != params.Get(k) {
					t.Errorf("after login, authorize %s = %q, want %q", k, q.Get(k), params.Get(k))
				}
			}
		}
		cookies := liveCookies(lp.Header)
		if len(cookies) == 0 {
			t.Fatalf("login response sets no cookie; Set-Cookie: %v", lp.Header.Values("Set-Cookie"))
		}
		for _, c := range cookies {
			if !c.HttpOnly {
				t.Errorf("cookie %s is not HttpOnly: %s", c.Name, c.Raw)
			}
			if c.SameSite != http.SameSiteLaxMode {
				t.Errorf("cookie %s SameSite is not Lax: %s", c.Name, c.Raw)
			}
		}
		cp := b.get(loc.String())
		if _, ok := cp.consentForm(); !ok {
			t.Errorf("after login, want the consent page, got %s", cp)
		}
	})

	t.Run("consent page", func(t *testing.T) {
		b := in.newBrowser(t)
		params := webParams("read write", oddState())
		p := b.login(params, "alice", al.Password)
		if p.Status != http.StatusOK {
			t.Fatalf("want 200 consent page, got %s", p)
		}
		checkPageHeaders(t, p)
		f, ok := p.consentForm()
		if !ok {
			t.Fatalf("no form with decision=allow and decision=deny buttons: %s", p)
		}
		if f.Method != http.MethodPost {
			t.Errorf("consent form method %q, want POST", f.Method)
		}
		if _, ok := csrfField(f, params); !ok {
			t.Errorf("consent form has no hidden anti-CSRF input; hidden inputs: %v", f.Hidden)
		}
		text := p.text()
		for _, s := range []string{"read", "write"} {
			if !regexp.MustCompile(`\b` + s + `\b`).MatchString(text) {
				t.Errorf("consent page does not list the requested scope %q:\n%s", s, text)
			}
		}
	})

	consentCSRF := []struct {
		name   string
		mutate func(v url.Values, field string)
	}{
		{"missing", func(v url.Values, field string) { v.Del(field) }},
		{"wrong", func(v url.Values, field string) { v.Set(field, randomSecret("forged")) }},
	}
	for _, tc := range consentCSRF {
		t.Run("consent CSRF/"+tc.name, func(t *testing.T) {
			b := in.newBrowser(t)
			params := webParams("read", "s4")
			p := b.login(params, "alice", al.Password)
			f, ok := p.consentForm()
			if !ok {
				t.Fatalf("no consent form: %s", p)
			}
			field, ok := csrfField(f, params)
			if !ok {
				t.Fatalf("cannot find the anti-CSRF input among %v", f.Hidden)
			}
			v := cloneValues(f.Hidden)
			v.Set("decision", "allow")
			tc.mutate(v, field)
			cp := b.post(p, f.Action, v)
			if cp.Status != http.StatusForbidden {
				t.Errorf("consent with %s CSRF token: status %d, want 403", tc.name, cp.Status)
			}
			if loc := cp.Header.Get("Location"); loc != "" {
				t.Errorf("consent with %s CSRF token redirected to %s", tc.name, loc)
			}
		})
	}

	t.Run("consent CSRF/from another session", func(t *testing.T) {
		params := webParams("read", "s5")
		attacker := in.newBrowser(t)
		ap := attacker.login(params, "bob", bo.Password)
		af, ok := ap.consentForm()
		if !ok {
			t.Fatalf("no consent form for bob: %s", ap)
		}
		victim := in.newBrowser(t)
		vp := victim.login(params, "alice", al.Password)
		vf, ok := vp.consentForm()
		if !ok {
			t.Fatalf("no consent form for alice: %s", vp)
		}
		field, ok := csrfField(vf, params)
		if !ok {
			t.Fatalf("cannot find the anti-CSRF input among %v", vf.Hidden)
		}
		v := cloneValues(vf.Hidden)
		v.Set(field, af.Hidden.Get(field))
		v.Set("decision", "allow")
		cp := victim.post(vp, vf.Action, v)
		if cp.Status != http.StatusForbidden {
			t.Errorf("consent with another session's CSRF token: status %d, want 403", cp.Status)
		}
		if loc := cp.Header.Get("Location"); loc != "" {
			t.Errorf("consent with another session's CSRF token redirected to %s", loc)
		}
	})

	t.Run("allow redirects with code and state", func(t *testing.T) {
		b := in.newBrowser(t)
		state := oddState()
		res := b.authorize(webParams("read write", state), "alice", al.Password, "allow")
		if !res.SawLogin || !res.SawConsent {
			t.Errorf("want login and consent pages, saw login=%v consent=%v", res.SawLogin, res.SawConsent)
		}
		mustCode(t, res, webCB, state)
		if res.Redirect.Fragment != "" {
			t.Errorf("code redirect has a fragment: %s", res.Redirect)
		}
	})

	t.Run("second request in the same session skips login", func(t *testing.T) {
		b := in.newBrowser(t)
		b.authorize(webParams("read", "s6"), "alice", al.Password, "allow")
		res := b.authorize(webParams("read", "s7"), "alice", al.Password, "allow")
		if res.SawLogin {
			t.Errorf("logged-in browser was shown the login page again")
		}
		mustCode(t, res, webCB, "s7")
	})

	t.Run("deny redirects with access_denied", func(t *testing.T) {
		b := in.newBrowser(t)
		state := oddState()
		res := b.authorize(webParams("read", state), "alice", al.Password, "deny")
		mustRedirectError(t, res, webCB, "access_denied", state)
	})

	t.Run("skip_consent client", func(t *testing.T) {
		b := in.newBrowser(t)
		state := oddState()
		res := b.authorize(authParams(first.ID, firstCB, "code", "read", state), "alice", al.Password, "deny")
		if res.SawConsent {
			t.Errorf("consent page shown for a skip_consent client")
		}
		mustCode(t, res, firstCB, state)
	})

	t.Run("implicit grant", func(t *testing.T) {
		b := in.newBrowser(t)
		state := oddState()
		res := b.authorize(authParams(spa.ID, spaCB, "token", "read", state), "alice", al.Password, "allow")
		if res.Redirect == nil {
			t.Fatal("no redirect")
		}
		checkRedirectTarget(t, res.Redirect, spaCB)
		if res.Redirect.RawQuery != "" {
			t.Errorf("implicit redirect has a query %q; the token belongs in the fragment", res.Redirect.RawQuery)
		}
		fv := fragmentValues(res.Redirect)
		if e := fv.Get("error"); e != "" {
			t.Fatalf("implicit grant failed: error=%s %s", e, fv.Get("error_description"))
		}
		checkTokenValue(t, "access_token", fv.Get("access_token"))
		if fv.Get("token_type") != "Bearer" {
			t.Errorf("token_type = %q, want Bearer", fv.Get("token_type"))
		}
		if n, err := json.Number(fv.Get("expires_in")).Int64(); err != nil || n <= 0 {
			t.Errorf("expires_in = %q, want a positive integer", fv.Get("expires_in"))
		}
		if fv.Get("scope") != "read" {
			t.Errorf("scope = %q, want read", fv.Get("scope"))
		}
		if fv.Get("state") != state {
			t.Errorf("state = %q, want %q", fv.Get("state"), state)
		}
		for _, k := range []string{"refresh_token", "code"} {
			if fv.Has(k) {
				t.Errorf("implicit response carries %s (RFC 6749 §4.2.2)", k)
			}
		}
	})

	// Never redirect to a URI that is not registered (RFC 6749 §3.1.2.4, §4.1.2.1).
	badTargets := []struct{ name, clientID, redirectURI string }{
		{"unknown client", "nobody", webCB},
		{"missing client_id", "", webCB},
		{"prefix of registered", web.ID, "http://127.0.0.1:1/c"},
		{"registered plus suffix", web.ID, webCB + "x"},
		{"registered plus path", web.ID, webCB + "/evil"},
		{"trailing slash", web.ID, webCB + "/"},
		{"other port", web.ID, "http://127.0.0.1:2/cb"},
		{"no port", web.ID, "http://127.0.0.1/cb"},
		{"https scheme", web.ID, "https://127.0.0.1:1/cb"},
		{"other host", web.ID, "http://evil.example:1/cb"},
		{"userinfo trick", web.ID, "http://127.0.0.1:1@evil.example/cb"},
		{"extra query", web.ID, webCB + "?next=http://evil.example"},
		{"fragment", web.ID, webCB + "#x"},
		{"dot segments", web.ID, "http://127.0.0.1:1/x/../cb"},
		{"upper-case path", web.ID, "http://127.0.0.1:1/CB"},
		{"another client's URI", web.ID, spaCB},
		{"missing with two registered", web.ID, ""},
	}
	for _, loggedIn := range []bool{false, true} {
		name := "unregistered redirect_uri/fresh browser/"
		if loggedIn {
			name = "unregistered redirect_uri/logged in/"
		}
		t.Run(strings.TrimSuffix(name, "/"), func(t *testing.T) {
			b := in.newBrowser(t)
			if loggedIn {
				b.authorize(webParams("read", "s8"), "alice", al.Password, "allow")
			}
			for _, tc := range badTargets {
				for _, rt := range []string{"code", "token"} {
					params := authParams(tc.clientID, tc.redirectURI, rt, "read", "s9")
					p := b.get(in.url("/authorize") + "?" + params.Encode())
					if p.Status != http.StatusBadRequest {
						t.Errorf("%s (response_type=%s, %q): status %d, want 400", tc.name, rt, tc.redirectURI, p.Status)
					}
					if loc := p.Header.Get("Location"); loc != "" {
						t.Errorf("%s (response_type=%s): redirected to %s", tc.name, rt, loc)
					}
					if ct := p.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
						t.Errorf("%s: Content-Type %q, want an HTML error page", tc.name, ct)
					}
				}
			}
		})
	}

	t.Run("repeated client_id or redirect_uri never redirects", func(t *testing.T) {
		// RFC 6749 §3.1: parameters MUST NOT be included more than once; with two values the
		// target is ambiguous, so the answer is an error page.
		b := in.newBrowser(t)
		b.authorize(webParams("read", "s11"), "alice", al.Password, "allow")
		for _, params := range []url.Values{
			{"client_id": {web.ID}, "redirect_uri": {webCB, webOther}, "response_type": {"code"}, "state": {"r1"}},
			{"client_id": {web.ID, spa.ID}, "redirect_uri": {webCB}, "response_type": {"code"}, "state": {"r2"}},
		} {
			p := b.get(in.url("/authorize") + "?" + params.Encode())
			if p.Status != http.StatusBadRequest {
				t.Errorf("%v: status %d, want 400", params, p.Status)
			}
			if loc := p.Header.Get("Location"); loc != "" {
				t.Errorf("%v: redirected to %s", params, loc)
			}
		}
	})

	t.Run("error page headers", func(t *testing.T) {
		b := in.newBrowser(t)
		p := b.get(in.url("/authorize") + "?" + authParams("nobody", webCB, "code", "read", "s").Encode())
		checkPageHeaders(t, p)
	})

	// Errors about a valid client and redirect URI go back to the client (RFC 6749 §4.1.2.1).
	verifier := oauth2.GenerateVerifier()
	errorRedirects := []struct {
		name        string
		params      url.Values
		redirectURI string
		code        string
	}{
		{"unsupported response_type", authParams(web.ID, webCB, "foo", "read", "e1"), webCB, "unsupported_response_type"},
		{"missing response_type", authParams(web.ID, webCB, "", "read", "e2"), webCB, "invalid_request"},
		{"implicit for a client without it", authParams(web.ID, webCB, "token", "read", "e3"), webCB, "unauthorized_client"},
		{"unknown scope", authParams(web.ID, webCB, "code", "admin", "e4"), webCB, "invalid_scope"},
		{"scope partly outside", authParams(web.ID, webCB, "code", "read admin", "e5"), webCB, "invalid_scope"},
		{"implicit scope outside", authParams(spa.ID, spaCB, "token", "groups", "e6"), spaCB, "invalid_scope"},
		{"public client without PKCE", authParams(spa.ID, spaCB, "code", "read", "e7"), spaCB, "invalid_request"},
		{"unknown code_challenge_method", func() url.Values {
			v := withPKCE(authParams(spa.ID, spaCB, "code", "read", "e8"), oauth2.S256ChallengeFromVerifier(verifier))
			v.Set("code_challenge_method", "S512")
			return v
		}(), spaCB, "invalid_request"},
	}
	t.Run("error redirects", func(t *testing.T) {
		b := in.newBrowser(t)
		b.authorize(webParams("read", "s10"), "alice", al.Password, "allow")
		for _, tc := range errorRedirects {
			t.Run(tc.name, func(t *testing.T) {
				res := b.authorize(tc.params, "alice", al.Password, "allow")
				mustRedirectError(t, res, tc.redirectURI, tc.code, tc.params.Get("state"))
			})
		}
	})

	t.Run("public client with PKCE gets a code", func(t *testing.T) {
		b := in.newBrowser(t)
		params := withPKCE(authParams(spa.ID, spaCB, "code", "read", "p1"), oauth2.S256ChallengeFromVerifier(verifier))
		mustCode(t, b.authorize(params, "alice", al.Password, "allow"), spaCB, "p1")
	})
}

// liveCookies are the cookies a response sets (not the ones it deletes).
func liveCookies(h http.Header) []*http.Cookie {
	var out []*http.Cookie
	for _, c := range (&http.Response{Header: h}).Cookies() {
		if c.MaxAge < 0 || c.Value == "" {
			continue
		}
		out = append(out, c)
	}
	return out
}
