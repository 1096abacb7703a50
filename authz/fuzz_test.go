package authz

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/oauth2gate/oauth2gate/authz/scope"
)

// Fuzz targets (`make fuzz FUZZTIME=5m` runs each; `go test` replays the
// seeds and testdata/fuzz). Each checks the parser's contract, not only that
// it does not panic.

func FuzzTokenRequest(f *testing.F) {
	s := newTestServer(f, func(c *Config) { c.FailureBurst = -1 })
	for _, seed := range []string{
		"grant_type=client_credentials&client_id=conf&client_secret=s3cret",
		"grant_type=password&username=alice&password=wonderland&scope=read",
		"grant_type=refresh_token&refresh_token=abc&scope=read%20write",
		"grant_type=authorization_code&code=x&redirect_uri=https%3A%2F%2Fapp.test%2Fcb&code_verifier=v",
		"grant_type=client_credentials&grant_type=password",
		"%zz=1", "a=%", "grant_type=\x00",
	} {
		f.Add(seed, "Basic Y29uZjpzM2NyZXQ=", "")
	}
	f.Add("grant_type=client_credentials", "Bearer x", "a=b")
	f.Fuzz(func(t *testing.T, body, auth, query string) {
		target := "/oauth2/token"
		if query != "" {
			target += "?" + url.PathEscape(query)
		}
		r := httptest.NewRequest(http.MethodPost, target, strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if auth != "" && !strings.ContainsAny(auth, "\r\n") {
			r.Header["Authorization"] = []string{auth}
		}
		w := httptest.NewRecorder()
		s.ServeEndpoint(w, r, "/oauth2")
		if w.Code >= 500 && w.Code != http.StatusServiceUnavailable {
			t.Fatalf("status %d for body %q", w.Code, body)
		}
		if w.Header().Get("Cache-Control") != "no-store" {
			t.Fatal("token endpoint answer without Cache-Control: no-store")
		}
		if w.Code != http.StatusOK && !strings.Contains(w.Body.String(), `"error"`) {
			t.Fatalf("error without an RFC error body: %d %s", w.Code, w.Body)
		}
	})
}

func FuzzAuthorizeRequest(f *testing.F) {
	s := newTestServer(f, func(c *Config) { c.FailureBurst = -1 })
	for _, seed := range []string{
		"client_id=conf&redirect_uri=https%3A%2F%2Fapp.test%2Fcb&response_type=code&state=xyz",
		"client_id=pub&response_type=code&code_challenge=E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM&code_challenge_method=S256",
		"client_id=conf&response_type=token&scope=read%20write&nonce=n",
		"client_id=conf&redirect_uri=https%3A%2F%2Fevil.test%2Fcb&response_type=code",
		"client_id=conf&client_id=pub", "request=eyJ&client_id=conf&response_type=code", "%",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, query string) {
		r := httptest.NewRequest(http.MethodGet, "/oauth2/authorize", nil)
		r.URL.RawQuery = query
		w := httptest.NewRecorder()
		s.ServeEndpoint(w, r, "/oauth2")
		if w.Code >= 500 {
			t.Fatalf("status %d for %q", w.Code, query)
		}
		loc := w.Header().Get("Location")
		if loc == "" {
			return
		}
		// A redirect may only go to a registered URI (RFC 9700 §4.1.3).
		u, err := url.Parse(loc)
		if err != nil {
			t.Fatalf("unparsable Location %q", loc)
		}
		u.RawQuery, u.Fragment, u.RawFragment = "", "", ""
		if got := u.String(); got != "https://app.test/cb" && got != "https://pub.test/cb" {
			t.Fatalf("redirect to unregistered %q for %q", got, query)
		}
	})
}

func FuzzScopeParse(f *testing.F) {
	for _, seed := range []string{"read write", "  a  b ", "a\tb", `x"y`, "é", "openid email profile", ""} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		set, err := scope.Parse(in)
		if err != nil {
			return
		}
		again, err := scope.Parse(set.String())
		if err != nil || again.String() != set.String() {
			t.Fatalf("Parse(%q) = %q does not round-trip (%q, %v)", in, set.String(), again.String(), err)
		}
		if !set.Contains(again) || !again.Contains(set) {
			t.Fatal("round-trip changed the set")
		}
	})
}

func FuzzJWTParse(f *testing.F) {
	s := newTestServer(f, func(c *Config) { c.AccessTokenFormat = "jwt" })
	good := issueToken(f, s, "read")
	parts := strings.Split(good, ".")
	f.Add(good)
	f.Add(parts[0] + "." + parts[1] + ".")
	f.Add("eyJhbGciOiJub25lIiwidHlwIjoiYXQrand0In0." + parts[1] + ".")
	f.Add(parts[0] + "." + parts[1] + "x." + parts[2])
	f.Add("a.b.c")
	f.Fuzz(func(t *testing.T, tok string) {
		var cl accessClaims
		err := s.keys.verify(tok, "at+jwt", &cl)
		if err == nil && tok != good {
			// Any other string that verifies must at least carry our issuer.
			if cl.Issuer != s.cfg.Issuer {
				t.Fatalf("foreign token verified: %q", tok)
			}
		}
	})
}
