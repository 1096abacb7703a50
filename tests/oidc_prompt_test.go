package tests

import (
	"net/url"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// TestOIDCPromptAndMaxAge: OIDC Core §3.1.2.1 prompt and max_age with a live login session. Core
// §15.1 makes both mandatory for every OpenID Provider, and the discovery document advertises
// prompt_values_supported [none login consent select_account].
func TestOIDCPromptAndMaxAge(t *testing.T) {
	t.Parallel()
	g := startOP(t, "")
	in := g.in
	params := func(state string, extra url.Values) url.Values {
		p := withPKCE(authParams(g.web.ID, webCB, "code", "openid", state), oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier()))
		for k, vs := range extra {
			p[k] = vs
		}
		return p
	}
	// loggedIn is a browser with a login session, and the session's auth_time (whole seconds).
	loggedIn := func(t *testing.T) (*browser, time.Time) {
		t.Helper()
		b := in.newBrowser(t)
		at := time.Now()
		res := b.authorize(params("s0", nil), g.alice.Name, g.alice.Password, "allow")
		mustCode(t, res, webCB, "s0")
		if !res.SawLogin {
			t.Fatal("first request did not show the login page")
		}
		return b, at
	}

	t.Run("prompt=none without a session: login_required", func(t *testing.T) {
		res := in.newBrowser(t).authorize(params("s1", url.Values{"prompt": {"none"}}), g.alice.Name, g.alice.Password, "allow")
		mustRedirectError(t, res, webCB, "login_required", "s1")
	})
	t.Run("prompt=none with a session, consent needed: consent_required", func(t *testing.T) {
		b, _ := loggedIn(t)
		res := b.authorize(params("s2", url.Values{"prompt": {"none"}}), g.alice.Name, g.alice.Password, "allow")
		mustRedirectError(t, res, webCB, "consent_required", "s2")
	})
	t.Run("prompt=login with a session: the user logs in again", func(t *testing.T) {
		b, first := loggedIn(t)
		time.Sleep(2100 * time.Millisecond)
		v := oauth2.GenerateVerifier()
		p := withPKCE(authParams(g.web.ID, webCB, "code", "openid", "s3"), oauth2.S256ChallengeFromVerifier(v))
		p.Set("prompt", "login")
		res := b.authorize(p, g.alice.Name, g.alice.Password, "allow")
		code := mustCode(t, res, webCB, "s3")
		if !res.SawLogin {
			t.Errorf("prompt=login with a live session: no login page, the session was reused (OIDC Core §3.1.2.1)")
		}
		r := in.token(t, tokenCall{Form: form("grant_type", "authorization_code", "code", code, "redirect_uri", webCB, "code_verifier", v), Basic: g.webAuth()})
		r.mustToken(t)
		_, cl := jwtParts(t, r.str("id_token"))
		if at := numClaim(t, cl, "auth_time"); at <= first.Unix()+1 {
			t.Errorf("auth_time %v after prompt=login is the first login's (%v), not the new one", time.Unix(at, 0), first.Truncate(time.Second))
		}
	})
	t.Run("prompt=none together with another value: invalid_request", func(t *testing.T) {
		b, _ := loggedIn(t)
		res := b.authorize(params("s4", url.Values{"prompt": {"none login"}}), g.alice.Name, g.alice.Password, "allow")
		mustRedirectError(t, res, webCB, "invalid_request", "s4")
	})
	t.Run("max_age=0 with a session: the user logs in again", func(t *testing.T) {
		b, _ := loggedIn(t)
		time.Sleep(1100 * time.Millisecond)
		res := b.authorize(params("s5", url.Values{"max_age": {"0"}}), g.alice.Name, g.alice.Password, "allow")
		mustCode(t, res, webCB, "s5")
		if !res.SawLogin {
			t.Errorf("max_age=0 with a session older than 0 s: no login page (OIDC Core §3.1.2.1: the OP MUST actively re-authenticate)")
		}
	})
	t.Run("max_age=3600 with a fresh session: no login, auth_time in the id_token", func(t *testing.T) {
		b, at := loggedIn(t)
		v := oauth2.GenerateVerifier()
		p := withPKCE(authParams(g.web.ID, webCB, "code", "openid", "s6"), oauth2.S256ChallengeFromVerifier(v))
		p.Set("max_age", "3600")
		res := b.authorize(p, g.alice.Name, g.alice.Password, "allow")
		code := mustCode(t, res, webCB, "s6")
		if res.SawLogin {
			t.Errorf("max_age=3600 with a fresh session showed the login page")
		}
		r := in.token(t, tokenCall{Form: form("grant_type", "authorization_code", "code", code, "redirect_uri", webCB, "code_verifier", v), Basic: g.webAuth()})
		r.mustToken(t)
		_, cl := jwtParts(t, r.str("id_token"))
		near(t, "auth_time", numClaim(t, cl, "auth_time"), at, 5*time.Second)
	})
}
