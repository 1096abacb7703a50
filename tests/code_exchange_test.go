package tests

import (
	"net/url"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// TestCodeExchange covers RFC 6749 §4.1.3 / §10.5 and RFC 7636 §4.6 at the token endpoint.
func TestCodeExchange(t *testing.T) {
	t.Parallel()
	web := clientSpec{ID: "web", Secret: randomSecret("web-"), Grants: "authorization_code refresh_token", RedirectURIs: webCB + " " + webOther, Scopes: "groups read write", SkipConsent: false}
	web2 := clientSpec{ID: "web2", Secret: randomSecret("web2-"), Grants: "authorization_code refresh_token", RedirectURIs: webCB, Scopes: "groups read write"}
	spa := clientSpec{ID: "spa", Grants: "authorization_code refresh_token", RedirectURIs: spaCB, Scopes: "read write"}
	al := alice()
	in := startGate(t, gateSpec{Clients: []clientSpec{web, web2, spa}, Users: []userSpec{al}})

	// One logged-in browser hands out codes; each code goes through the consent page.
	b := in.newBrowser(t)
	getCode := func(t *testing.T, params url.Values) string {
		t.Helper()
		b.t = t
		return mustCode(t, b.authorize(params, "alice", al.Password, "allow"), params.Get("redirect_uri"), params.Get("state"))
	}
	webCode := func(t *testing.T, scope string) string {
		t.Helper()
		return getCode(t, authParams(web.ID, webCB, "code", scope, "x1"))
	}
	exchange := func(t *testing.T, code, redirectURI string, auth *basicAuth, extra ...string) *reply {
		t.Helper()
		f := form("grant_type", "authorization_code", "code", code)
		if redirectURI != "" {
			f.Set("redirect_uri", redirectURI)
		}
		for i := 0; i+1 < len(extra); i += 2 {
			f.Set(extra[i], extra[i+1])
		}
		return in.token(t, tokenCall{Form: f, Basic: auth})
	}
	webAuth := basic(web.ID, web.Secret)

	t.Run("confidential client, client_secret_basic", func(t *testing.T) {
		code := webCode(t, "read write")
		r := exchange(t, code, webCB, webAuth)
		tok := r.mustToken(t)
		if tok.Refresh == "" {
			t.Errorf("no refresh_token for a client listing refresh_token: %s", r)
		}
		if !sameScopes(tok.Scope, "read write") {
			t.Errorf("scope = %q, want read write", tok.Scope)
		}
		// The refresh token from a code works.
		in.token(t, tokenCall{Form: form("grant_type", "refresh_token", "refresh_token", tok.Refresh), Basic: webAuth}).mustToken(t)
	})

	t.Run("confidential client, client_secret_post", func(t *testing.T) {
		code := webCode(t, "read")
		exchange(t, code, webCB, nil, "client_id", web.ID, "client_secret", web.Secret).mustToken(t)
	})

	t.Run("trailing slash path", func(t *testing.T) {
		code := webCode(t, "read")
		in.token(t, tokenCall{Path: "/token/", Form: form("grant_type", "authorization_code", "code", code, "redirect_uri", webCB), Basic: webAuth}).mustToken(t)
	})

	t.Run("default scope is the client's full list", func(t *testing.T) {
		code := webCode(t, "")
		tok := exchange(t, code, webCB, webAuth).mustToken(t)
		if !sameScopes(tok.Scope, web.Scopes) {
			t.Errorf("scope = %q, want %q", tok.Scope, web.Scopes)
		}
	})

	t.Run("second registered redirect_uri", func(t *testing.T) {
		code := getCode(t, authParams(web.ID, webOther, "code", "read", "x2"))
		exchange(t, code, webOther, webAuth).mustToken(t)
	})

	t.Run("confidential client with PKCE", func(t *testing.T) {
		v := oauth2.GenerateVerifier()
		code := getCode(t, withPKCE(authParams(web.ID, webCB, "code", "read", "x3"), oauth2.S256ChallengeFromVerifier(v)))
		exchange(t, code, webCB, webAuth, "code_verifier", v).mustToken(t)
	})

	t.Run("public client with PKCE", func(t *testing.T) {
		v := oauth2.GenerateVerifier()
		code := getCode(t, withPKCE(authParams(spa.ID, spaCB, "code", "read write", "x4"), oauth2.S256ChallengeFromVerifier(v)))
		r := exchange(t, code, spaCB, nil, "client_id", spa.ID, "code_verifier", v)
		tok := r.mustToken(t)
		if tok.Refresh == "" {
			t.Errorf("no refresh_token: %s", r)
		}
		in.token(t, tokenCall{Form: form("grant_type", "refresh_token", "refresh_token", tok.Refresh, "client_id", spa.ID)}).mustToken(t)
	})

	pkceFailures := []struct {
		name     string
		verifier func(v string) (string, bool)
	}{
		{"wrong code_verifier", func(string) (string, bool) { return oauth2.GenerateVerifier(), true }},
		{"missing code_verifier", func(string) (string, bool) { return "", false }},
		{"challenge sent as verifier", func(v string) (string, bool) { return oauth2.S256ChallengeFromVerifier(v), true }},
	}
	for _, tc := range pkceFailures {
		t.Run("PKCE/"+tc.name, func(t *testing.T) {
			v := oauth2.GenerateVerifier()
			code := getCode(t, withPKCE(authParams(spa.ID, spaCB, "code", "read", "x5"), oauth2.S256ChallengeFromVerifier(v)))
			extra := []string{"client_id", spa.ID}
			if sent, ok := tc.verifier(v); ok {
				extra = append(extra, "code_verifier", sent)
			}
			exchange(t, code, spaCB, nil, extra...).mustError(t, outcome{400, "invalid_grant"})
		})
	}

	t.Run("PKCE/confidential client with wrong verifier", func(t *testing.T) {
		v := oauth2.GenerateVerifier()
		code := getCode(t, withPKCE(authParams(web.ID, webCB, "code", "read", "x6"), oauth2.S256ChallengeFromVerifier(v)))
		exchange(t, code, webCB, webAuth, "code_verifier", oauth2.GenerateVerifier()).mustError(t, outcome{400, "invalid_grant"})
	})

	t.Run("different redirect_uri at exchange", func(t *testing.T) {
		code := webCode(t, "read")
		exchange(t, code, webOther, webAuth).mustError(t, outcome{400, "invalid_grant"})
	})

	t.Run("missing redirect_uri at exchange", func(t *testing.T) {
		code := webCode(t, "read")
		exchange(t, code, "", webAuth).mustError(t, outcome{400, "invalid_grant"}, outcome{400, "invalid_request"})
	})

	t.Run("code of another client", func(t *testing.T) {
		code := webCode(t, "read")
		exchange(t, code, webCB, basic(web2.ID, web2.Secret)).mustError(t, outcome{400, "invalid_grant"})
	})

	t.Run("confidential code without client authentication", func(t *testing.T) {
		code := webCode(t, "read")
		exchange(t, code, webCB, nil, "client_id", web.ID).mustError(t, outcome{401, "invalid_client"})
		exchange(t, code, webCB, basic(web.ID, "wrong-"+web.Secret)).mustError(t, outcome{401, "invalid_client"})
	})

	t.Run("reused code is refused and revokes what it issued", func(t *testing.T) {
		code := webCode(t, "read write")
		firstTok := exchange(t, code, webCB, webAuth).mustToken(t)
		if firstTok.Refresh == "" {
			t.Fatal("no refresh token from the first exchange")
		}
		exchange(t, code, webCB, webAuth).mustError(t, outcome{400, "invalid_grant"})
		// RFC 6749 §4.1.2: the authorization server SHOULD revoke tokens issued from a reused code.
		in.token(t, tokenCall{Form: form("grant_type", "refresh_token", "refresh_token", firstTok.Refresh), Basic: webAuth}).mustError(t, outcome{400, "invalid_grant"})
	})

	t.Run("50 concurrent redemptions of one code", func(t *testing.T) {
		code := webCode(t, "read")
		replies, errs := race(50, func(int) (*reply, error) {
			return in.send(tokenCall{Form: form("grant_type", "authorization_code", "code", code, "redirect_uri", webCB), Basic: webAuth})
		})
		mustExactlyOneWinner(t, replies, errs)
	})
}

// TestAuthorizationCodeExpires covers code_ttl: an unused code dies after its lifetime.
func TestAuthorizationCodeExpires(t *testing.T) {
	t.Parallel()
	web := clientSpec{ID: "web", Secret: randomSecret("web-"), Grants: "authorization_code", RedirectURIs: webCB, Scopes: "read", SkipConsent: true}
	al := alice()
	in := startGate(t, gateSpec{Settings: "code_ttl 1s", Clients: []clientSpec{web}, Users: []userSpec{al}})
	b := in.newBrowser(t)
	auth := basic(web.ID, web.Secret)

	fresh := mustCode(t, b.authorize(authParams(web.ID, webCB, "code", "read", "f"), "alice", al.Password, "allow"), webCB, "f")
	in.token(t, tokenCall{Form: form("grant_type", "authorization_code", "code", fresh, "redirect_uri", webCB), Basic: auth}).mustToken(t)

	stale := mustCode(t, b.authorize(authParams(web.ID, webCB, "code", "read", "s"), "alice", al.Password, "allow"), webCB, "s")
	time.Sleep(2 * time.Second) // wait out code_ttl 1s
	in.token(t, tokenCall{Form: form("grant_type", "authorization_code", "code", stale, "redirect_uri", webCB), Basic: auth}).mustError(t, outcome{400, "invalid_grant"})
}
