package tests

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"

	"github.com/oauth2gate/oauth2gate/internal/proclog"
)

// The token lifecycle end to end (issue 4): introspection (RFC 7662), revocation (RFC 7009) and
// its reach into the guard's cache, refresh token reuse detection with and without a grace,
// PKCE (RFC 7636), signing key rotation, and RFC 9068 JWT access tokens at the guard.

// introspect calls /introspect; auth nil sends no client authentication.
func (g *opGate) introspect(t *testing.T, token, hint string, auth *basicAuth) *reply {
	t.Helper()
	f := form("token", token)
	if hint != "" {
		f.Set("token_type_hint", hint)
	}
	return g.in.token(t, tokenCall{Path: "/introspect", Form: f, Basic: auth})
}

func (g *opGate) rsAuth() *basicAuth { return basic(g.rs.ID, g.rs.Secret) }

// revoke calls /revoke.
func (g *opGate) revoke(t *testing.T, token, hint string, auth *basicAuth) *reply {
	t.Helper()
	f := form("token", token)
	if hint != "" {
		f.Set("token_type_hint", hint)
	}
	return g.in.token(t, tokenCall{Path: "/revoke", Form: f, Basic: auth})
}

func (g *opGate) webAuth() *basicAuth { return basic(g.web.ID, g.web.Secret) }

// introspected is what an active introspection response must say.
type introspected struct {
	TokenType, Scope, ClientID, Username, Sub string
	TTL                                       time.Duration // exp - iat
}

// mustActive asserts an RFC 7662 §2.2 active response with every field.
func (r *reply) mustActive(t *testing.T, in *instance, want introspected) {
	t.Helper()
	if r.Status != http.StatusOK || r.JSON == nil {
		t.Fatalf("introspection: want 200 JSON, got %s", r)
	}
	checkJSONContentType(t, r.Header)
	checkNoStore(t, r.Header)
	if r.JSON["active"] != true {
		t.Fatalf("active = %v, want true: %s", r.JSON["active"], r)
	}
	if !sameScopes(r.str("scope"), want.Scope) {
		t.Errorf("scope = %q, want %q", r.str("scope"), want.Scope)
	}
	for k, v := range map[string]string{"client_id": want.ClientID, "sub": want.Sub, "username": want.Username, "token_type": want.TokenType, "iss": in.base} {
		if r.str(k) != v {
			t.Errorf("%s = %q, want %q: %s", k, r.str(k), v, r)
		}
	}
	if want.Username == "" && r.has("username") {
		t.Errorf("username present for a token without a user: %s", r)
	}
	exp, iat := numClaim(t, r.JSON, "exp"), numClaim(t, r.JSON, "iat")
	near(t, "iat", iat, time.Now(), 30*time.Second)
	if d := time.Duration(exp-iat) * time.Second; d < want.TTL-2*time.Second || d > want.TTL+2*time.Second {
		t.Errorf("exp - iat = %v, want %v", d, want.TTL)
	}
}

// mustInactive asserts {"active":false} and nothing else (RFC 7662 §2.2).
func (r *reply) mustInactive(t *testing.T) {
	t.Helper()
	if r.Status != http.StatusOK || r.JSON == nil {
		t.Fatalf("introspection: want 200 JSON, got %s", r)
	}
	if r.JSON["active"] != false || len(r.JSON) != 1 {
		t.Errorf(`want exactly {"active":false}, got %s`, r)
	}
	checkNoStore(t, r.Header)
}

// TestIntrospection: RFC 7662 for access and refresh tokens, with and without token_type_hint,
// for authenticated confidential clients only.
func TestIntrospection(t *testing.T) {
	t.Parallel()
	g := startOP(t, "")
	tok := g.codeTokens(t, codeRequest{Scope: "openid email read"}).mustToken(t)
	access := introspected{TokenType: "Bearer", Scope: "openid email read", ClientID: "web", Username: "alice", Sub: "alice", TTL: time.Hour}
	refresh := introspected{TokenType: "refresh_token", Scope: "openid email read", ClientID: "web", Username: "alice", Sub: "alice", TTL: 720 * time.Hour}

	for _, hint := range []string{"", "access_token", "refresh_token", "bogus_hint"} {
		t.Run("access token, hint "+hint, func(t *testing.T) {
			g.introspect(t, tok.Access, hint, g.rsAuth()).mustActive(t, g.in, access)
		})
		t.Run("refresh token, hint "+hint, func(t *testing.T) {
			g.introspect(t, tok.Refresh, hint, g.rsAuth()).mustActive(t, g.in, refresh)
		})
		t.Run("unknown token, hint "+hint, func(t *testing.T) {
			g.introspect(t, randomSecret("unknown-"), hint, g.rsAuth()).mustInactive(t)
		})
	}
	t.Run("rotated-out tokens are inactive", func(t *testing.T) {
		old := g.codeTokens(t, codeRequest{Scope: "openid read"}).mustToken(t)
		next := g.refresh(t, old.Refresh).mustToken(t)
		for _, hint := range []string{"", "refresh_token", "access_token"} {
			g.introspect(t, old.Refresh, hint, g.rsAuth()).mustInactive(t)
			g.introspect(t, old.Access, hint, g.rsAuth()).mustInactive(t)
		}
		g.introspect(t, next.Refresh, "", g.rsAuth()).mustActive(t, g.in, introspected{TokenType: "refresh_token", Scope: "openid read", ClientID: "web", Username: "alice", Sub: "alice", TTL: 720 * time.Hour})
	})
	t.Run("client_credentials token: no username, sub is the client", func(t *testing.T) {
		cc := g.ccToken(t, "read write")
		g.introspect(t, cc, "", g.rsAuth()).mustActive(t, g.in, introspected{TokenType: "Bearer", Scope: "read write", ClientID: "svc", Sub: "svc", TTL: time.Hour})
	})
	t.Run("client_secret_post", func(t *testing.T) {
		g.in.token(t, tokenCall{Path: "/introspect", Form: form("token", tok.Access, "client_id", g.rs.ID, "client_secret", g.rs.Secret)}).mustActive(t, g.in, access)
	})
	t.Run("the token's own client may introspect it", func(t *testing.T) {
		g.introspect(t, tok.Access, "", g.webAuth()).mustActive(t, g.in, access)
	})
	t.Run("malformed and oversized tokens are inactive", func(t *testing.T) {
		for _, v := range []string{"a b", "ä", strings.Repeat("x", 20<<10), "a.b.c"} {
			g.introspect(t, v, "", g.rsAuth()).mustInactive(t)
		}
	})

	t.Run("no client authentication: 401", func(t *testing.T) {
		r := g.introspect(t, tok.Access, "", nil)
		r.mustError(t, outcome{401, "invalid_client"})
		if !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Basic") {
			t.Errorf("WWW-Authenticate = %q, want Basic", r.Header.Get("WWW-Authenticate"))
		}
		if r.has("active") {
			t.Errorf("unauthenticated introspection says whether the token is active: %s", r)
		}
	})
	t.Run("wrong secret: 401", func(t *testing.T) {
		g.introspect(t, tok.Access, "", basic(g.rs.ID, g.rs.Secret+"x")).mustError(t, outcome{401, "invalid_client"})
	})
	t.Run("unknown client: 401", func(t *testing.T) {
		g.introspect(t, tok.Access, "", basic("nobody", randomSecret("nobody-"))).mustError(t, outcome{401, "invalid_client"})
	})
	t.Run("public client: 401", func(t *testing.T) {
		g.in.token(t, tokenCall{Path: "/introspect", Form: form("token", tok.Access, "client_id", g.spa.ID)}).mustError(t, outcome{401, "invalid_client"})
	})
	t.Run("bearer token instead of client credentials: 401", func(t *testing.T) {
		g.in.token(t, tokenCall{Path: "/introspect", Form: form("token", tok.Access), RawAuth: "Bearer " + tok.Access}).mustError(t, outcome{401, "invalid_client"})
	})
	t.Run("no token parameter: 400", func(t *testing.T) {
		g.in.token(t, tokenCall{Path: "/introspect", Form: form("x", "y"), Basic: g.rsAuth()}).mustError(t, outcome{400, "invalid_request"})
	})
	t.Run("GET: 405", func(t *testing.T) {
		r := g.in.token(t, tokenCall{Path: "/introspect", Method: "GET", Query: "token=" + tok.Access, Basic: g.rsAuth()})
		if r.Status != http.StatusMethodNotAllowed {
			t.Errorf("GET /introspect: %s, want 405", r)
		}
	})
}

// TestRevocation: RFC 7009 for access and refresh tokens; a revoked token is refused by the guard
// (which had it cached) on the very next request; a refresh token takes its grant with it.
func TestRevocation(t *testing.T) {
	t.Parallel()
	g := startOP(t, "")
	deny := denial{Status: 401, Code: "invalid_token"}
	userinfo := func(t *testing.T, access string) int {
		t.Helper()
		req, _ := http.NewRequest("GET", g.in.url("/userinfo"), nil)
		req.Header.Set("Authorization", "Bearer "+access)
		resp, err := g.in.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusUnauthorized && !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Errorf("/userinfo 401 without error=invalid_token: %q", resp.Header.Get("WWW-Authenticate"))
		}
		return resp.StatusCode
	}
	mustRevoked := func(t *testing.T, r *reply) {
		t.Helper()
		if r.Status != http.StatusOK {
			t.Fatalf("revocation: %s, want 200", r)
		}
	}

	for _, hint := range []string{"", "access_token", "refresh_token"} {
		t.Run("access token, hint "+hint, func(t *testing.T) {
			tok := g.codeTokens(t, codeRequest{Scope: "openid read"}).mustToken(t)
			for range 3 {
				g.do(t, apiCall{Path: "/rw/x", Bearer: tok.Access}).mustPass(t) // cached now
			}
			if s := userinfo(t, tok.Access); s != 200 {
				t.Fatalf("/userinfo before revocation: %d", s)
			}
			mustRevoked(t, g.revoke(t, tok.Access, hint, g.webAuth()))
			g.do(t, apiCall{Path: "/rw/x", Bearer: tok.Access}).mustDeny(t, deny)
			g.do(t, apiCall{Path: "/rw/x?access_token=" + tok.Access}).mustDeny(t, deny)
			g.introspect(t, tok.Access, "", g.rsAuth()).mustInactive(t)
			if s := userinfo(t, tok.Access); s != http.StatusUnauthorized {
				t.Errorf("/userinfo after revocation: %d, want 401", s)
			}
			// Revoking it again is still 200.
			mustRevoked(t, g.revoke(t, tok.Access, hint, g.webAuth()))
		})
		t.Run("refresh token, hint "+hint, func(t *testing.T) {
			first := g.codeTokens(t, codeRequest{Scope: "openid read"}).mustToken(t)
			second := g.refresh(t, first.Refresh).mustToken(t) // the grant now has a history
			for range 3 {
				g.do(t, apiCall{Path: "/rw/x", Bearer: second.Access}).mustPass(t)
			}
			mustRevoked(t, g.revoke(t, second.Refresh, hint, g.webAuth()))
			g.do(t, apiCall{Path: "/rw/x", Bearer: second.Access}).mustDeny(t, deny)
			g.introspect(t, second.Access, "", g.rsAuth()).mustInactive(t)
			g.introspect(t, second.Refresh, "refresh_token", g.rsAuth()).mustInactive(t)
			g.refresh(t, second.Refresh).mustError(t, outcome{400, "invalid_grant"})
			g.refresh(t, first.Refresh).mustError(t, outcome{400, "invalid_grant"})
			g.do(t, apiCall{Path: "/rw/x", Bearer: first.Access}).mustDeny(t, deny)
		})
	}

	t.Run("unknown token: 200", func(t *testing.T) {
		for _, hint := range []string{"", "access_token", "refresh_token", "bogus_hint"} {
			mustRevoked(t, g.revoke(t, randomSecret("unknown-"), hint, g.webAuth()))
		}
		mustRevoked(t, g.revoke(t, "a.b.c", "", g.webAuth()))
	})
	t.Run("another client's token is not revoked", func(t *testing.T) {
		tok := g.codeTokens(t, codeRequest{Scope: "openid read"}).mustToken(t)
		for _, v := range []string{tok.Access, tok.Refresh} {
			r := g.revoke(t, v, "", g.rsAuth())
			if r.Status != http.StatusOK && (r.Status < 400 || r.Status >= 500) {
				t.Errorf("revocation of another client's token: %s", r)
			}
		}
		g.do(t, apiCall{Path: "/rw/x", Bearer: tok.Access}).mustPass(t)
		g.introspect(t, tok.Refresh, "", g.rsAuth()).mustActive(t, g.in, introspected{TokenType: "refresh_token", Scope: "openid read", ClientID: "web", Username: "alice", Sub: "alice", TTL: 720 * time.Hour})
	})
	t.Run("public client revokes its own token with its client_id", func(t *testing.T) {
		tok := g.codeTokens(t, codeRequest{Client: g.spa, Scope: "openid read"}).mustToken(t)
		g.do(t, apiCall{Path: "/rw/x", Bearer: tok.Access}).mustPass(t)
		mustRevoked(t, g.in.token(t, tokenCall{Path: "/revoke", Form: form("token", tok.Refresh, "client_id", g.spa.ID)}))
		g.do(t, apiCall{Path: "/rw/x", Bearer: tok.Access}).mustDeny(t, deny)
	})
	t.Run("no client authentication: 401", func(t *testing.T) {
		tok := g.pwToken(t, "read")
		g.in.token(t, tokenCall{Path: "/revoke", Form: form("token", tok.Access)}).mustError(t, outcome{401, "invalid_client"})
		g.revoke(t, tok.Access, "", basic(g.web.ID, "wrong")).mustError(t, outcome{401, "invalid_client"})
		g.do(t, apiCall{Path: "/rw/x", Bearer: tok.Access}).mustPass(t)
	})
	t.Run("no token parameter: 400", func(t *testing.T) {
		g.in.token(t, tokenCall{Path: "/revoke", Form: form("x", "y"), Basic: g.webAuth()}).mustError(t, outcome{400, "invalid_request"})
	})
}

// TestRefreshReuse: RFC 9700 §4.14.2 reuse detection under 20 concurrent refreshes of one token,
// without a grace (one winner, then the family ends) and with reuse_grace 5s (all get the same
// pair, which works; a replay after the grace ends the family).
func TestRefreshReuse(t *testing.T) {
	t.Parallel()
	const n = 20
	deny := denial{Status: 401, Code: "invalid_token"}

	t.Run("reuse_grace 0", func(t *testing.T) {
		t.Parallel()
		g := startOP(t, "refresh_token {\n\treuse_grace 0\n}")
		first := g.codeTokens(t, codeRequest{Scope: "openid read"}).mustToken(t)
		g.do(t, apiCall{Path: "/rw/x", Bearer: first.Access}).mustPass(t)
		replies, errs := race(n, func(int) (*reply, error) { return g.in.send(g.webRefreshCall(first.Refresh)) })
		winner := mustExactlyOneWinner(t, replies, errs)
		if winner == nil {
			t.FailNow()
		}
		won := winner.mustToken(t)
		// The losers presented a rotated-out token: the whole family is gone.
		g.refresh(t, won.Refresh).mustError(t, outcome{400, "invalid_grant"})
		g.do(t, apiCall{Path: "/rw/x", Bearer: won.Access}).mustDeny(t, deny)
		g.do(t, apiCall{Path: "/rw/x", Bearer: first.Access}).mustDeny(t, deny)
		g.introspect(t, won.Refresh, "", g.rsAuth()).mustInactive(t)
		g.introspect(t, won.Access, "", g.rsAuth()).mustInactive(t)

		// A sequential replay, no race: the same.
		a := g.codeTokens(t, codeRequest{Scope: "openid read"}).mustToken(t)
		b := g.refresh(t, a.Refresh).mustToken(t)
		g.do(t, apiCall{Path: "/rw/x", Bearer: b.Access}).mustPass(t)
		g.refresh(t, a.Refresh).mustError(t, outcome{400, "invalid_grant"})
		g.do(t, apiCall{Path: "/rw/x", Bearer: b.Access}).mustDeny(t, deny)
		g.refresh(t, b.Refresh).mustError(t, outcome{400, "invalid_grant"})
	})

	t.Run("reuse_grace 5s", func(t *testing.T) {
		t.Parallel()
		g := startOP(t, "refresh_token {\n\treuse_grace 5s\n}")
		first := g.codeTokens(t, codeRequest{Scope: "openid read"}).mustToken(t)
		replies, errs := race(n, func(int) (*reply, error) { return g.in.send(g.webRefreshCall(first.Refresh)) })
		rotated := time.Now()
		var pair issued
		for i, r := range replies {
			if errs[i] != nil {
				t.Fatalf("refresh %d: %v", i, errs[i])
			}
			if r.Status != http.StatusOK {
				t.Errorf("refresh %d within the grace: %s, want 200", i, r)
				continue
			}
			got := r.mustToken(t)
			if pair.Access == "" {
				pair = got
				continue
			}
			if got.Refresh != pair.Refresh {
				t.Errorf("refresh %d got another refresh token than the first 200", i)
			}
			if got.Access != pair.Access {
				t.Errorf("refresh %d got another access token than the first 200 (opaque tokens within the grace are the same)", i)
			}
			if !sameScopes(got.Scope, "openid read") {
				t.Errorf("refresh %d scope %q", i, got.Scope)
			}
			if r.str("id_token") == "" {
				t.Errorf("refresh %d: no id_token", i)
			}
		}
		if t.Failed() {
			t.FailNow()
		}
		if pair.Refresh == first.Refresh || pair.Access == first.Access {
			t.Fatalf("the grace gave back the old tokens")
		}
		// The pair works; the old access token is gone.
		g.do(t, apiCall{Path: "/rw/x", Bearer: pair.Access}).mustPass(t)
		g.do(t, apiCall{Path: "/rw/x", Bearer: first.Access}).mustDeny(t, deny)
		third := g.refresh(t, pair.Refresh).mustToken(t)
		g.do(t, apiCall{Path: "/rw/x", Bearer: third.Access}).mustPass(t)

		// A replay of the first refresh token after the grace ends the whole family.
		time.Sleep(time.Until(rotated.Add(5*time.Second + 700*time.Millisecond)))
		g.refresh(t, first.Refresh).mustError(t, outcome{400, "invalid_grant"})
		g.do(t, apiCall{Path: "/rw/x", Bearer: third.Access}).mustDeny(t, deny)
		g.refresh(t, third.Refresh).mustError(t, outcome{400, "invalid_grant"})
		g.introspect(t, third.Refresh, "", g.rsAuth()).mustInactive(t)
	})

	t.Run("reuse_grace 5s, replay after the successor was used", func(t *testing.T) {
		t.Parallel()
		g := startOP(t, "refresh_token {\n\treuse_grace 5s\n}")
		first := g.codeTokens(t, codeRequest{Scope: "openid read"}).mustToken(t)
		second := g.refresh(t, first.Refresh).mustToken(t)
		third := g.refresh(t, second.Refresh).mustToken(t)
		g.do(t, apiCall{Path: "/rw/x", Bearer: third.Access}).mustPass(t)
		// first's successor (second) is rotated out already: no pair to give back, reuse detected.
		g.refresh(t, first.Refresh).mustError(t, outcome{400, "invalid_grant"})
		g.do(t, apiCall{Path: "/rw/x", Bearer: third.Access}).mustDeny(t, deny)
		g.refresh(t, third.Refresh).mustError(t, outcome{400, "invalid_grant"})
	})
}

// TestPKCEMethods: S256 and plain (RFC 7636), a wrong or missing verifier is invalid_grant, and
// pkce_plain off refuses plain at the authorization endpoint.
func TestPKCEMethods(t *testing.T) {
	t.Parallel()
	exchange := func(t *testing.T, g *opGate, code, verifier string) *reply {
		t.Helper()
		f := form("grant_type", "authorization_code", "code", code, "redirect_uri", webCB)
		if verifier != "" {
			f.Set("code_verifier", verifier)
		}
		return g.in.token(t, tokenCall{Form: f, Basic: g.webAuth()})
	}
	codeWith := func(t *testing.T, g *opGate, challenge, method string) string {
		t.Helper()
		p := authParams(g.web.ID, webCB, "code", "openid read", "pk")
		p.Set("code_challenge", challenge)
		if method != "" {
			p.Set("code_challenge_method", method)
		}
		return mustCode(t, g.in.newBrowser(t).authorize(p, g.alice.Name, g.alice.Password, "allow"), webCB, "pk")
	}
	refusedAt := func(t *testing.T, g *opGate, challenge, method string) {
		t.Helper()
		p := authParams(g.web.ID, webCB, "code", "openid read", "pk")
		p.Set("code_challenge", challenge)
		if method != "" {
			p.Set("code_challenge_method", method)
		}
		mustRedirectError(t, g.in.newBrowser(t).authorize(p, g.alice.Name, g.alice.Password, "allow"), webCB, "invalid_request", "pk")
	}

	t.Run("plain allowed", func(t *testing.T) {
		t.Parallel()
		g := startOP(t, "")
		v := oauth2.GenerateVerifier()
		t.Run("S256", func(t *testing.T) {
			exchange(t, g, codeWith(t, g, oauth2.S256ChallengeFromVerifier(v), "S256"), v).mustToken(t)
		})
		t.Run("S256, wrong verifier", func(t *testing.T) {
			exchange(t, g, codeWith(t, g, oauth2.S256ChallengeFromVerifier(v), "S256"), oauth2.GenerateVerifier()).mustError(t, outcome{400, "invalid_grant"})
		})
		t.Run("S256, the challenge sent as verifier", func(t *testing.T) {
			c := oauth2.S256ChallengeFromVerifier(v)
			exchange(t, g, codeWith(t, g, c, "S256"), c).mustError(t, outcome{400, "invalid_grant"})
		})
		t.Run("S256, no verifier", func(t *testing.T) {
			exchange(t, g, codeWith(t, g, oauth2.S256ChallengeFromVerifier(v), "S256"), "").mustError(t, outcome{400, "invalid_grant"})
		})
		t.Run("plain", func(t *testing.T) {
			exchange(t, g, codeWith(t, g, v, "plain"), v).mustToken(t)
		})
		t.Run("plain by default (no method)", func(t *testing.T) {
			exchange(t, g, codeWith(t, g, v, ""), v).mustToken(t)
		})
		t.Run("plain, wrong verifier", func(t *testing.T) {
			exchange(t, g, codeWith(t, g, v, "plain"), oauth2.GenerateVerifier()).mustError(t, outcome{400, "invalid_grant"})
		})
		t.Run("unknown method", func(t *testing.T) { refusedAt(t, g, v, "S512") })
		t.Run("challenge too short", func(t *testing.T) { refusedAt(t, g, "short", "plain") })
	})

	t.Run("pkce_plain off", func(t *testing.T) {
		t.Parallel()
		g := startOP(t, "pkce_plain off")
		v := oauth2.GenerateVerifier()
		t.Run("plain refused", func(t *testing.T) { refusedAt(t, g, v, "plain") })
		t.Run("no method means plain: refused", func(t *testing.T) { refusedAt(t, g, v, "") })
		t.Run("S256 works", func(t *testing.T) {
			exchange(t, g, codeWith(t, g, oauth2.S256ChallengeFromVerifier(v), "S256"), v).mustToken(t)
		})
		t.Run("discovery lists only S256", func(t *testing.T) {
			_, md := jsonGet(t, g.in, g.in.base+"/.well-known/openid-configuration")
			if fmt.Sprint(md["code_challenge_methods_supported"]) != "[S256]" {
				t.Errorf("code_challenge_methods_supported = %v", md["code_challenge_methods_supported"])
			}
		})
	})
}

// TestSigningKeyRotation: the JWKS publishes an RS256 and an ES256 key; after a restart with a
// signing_key PEM the new RSA key signs id_tokens, the old RS256 key stays published, and an
// id_token signed before the rotation still verifies.
func TestSigningKeyRotation(t *testing.T) {
	t.Parallel()
	g := startOP(t, "")
	ctx := oidcCtx(t, g.in)

	before := g.jwks(t)
	kidOf := map[string]string{} // alg -> kid
	for _, k := range before.Keys {
		if !k.IsPublic() || !k.Valid() {
			t.Errorf("JWK %s is not a valid public key", k.KeyID)
		}
		if k.Use != "sig" || k.KeyID == "" {
			t.Errorf("JWK use=%q kid=%q, want sig and a kid", k.Use, k.KeyID)
		}
		switch key := k.Key.(type) {
		case *rsa.PublicKey:
			if k.Algorithm != "RS256" || key.N.BitLen() < 2048 {
				t.Errorf("RSA JWK alg %s, %d bits", k.Algorithm, key.N.BitLen())
			}
		case *ecdsa.PublicKey:
			if k.Algorithm != "ES256" || key.Curve != elliptic.P256() {
				t.Errorf("EC JWK alg %s curve %v", k.Algorithm, key.Curve.Params().Name)
			}
		default:
			t.Errorf("JWK %s of type %T", k.KeyID, k.Key)
		}
		kidOf[k.Algorithm] = k.KeyID
	}
	if len(before.Keys) != 2 || kidOf["RS256"] == "" || kidOf["ES256"] == "" {
		t.Fatalf("want one RS256 and one ES256 key, got %d keys: %v", len(before.Keys), kidOf)
	}
	resp, err := g.in.http.Get(g.in.url("/jwks"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/jwk-set+json" && !strings.HasPrefix(ct, "application/json") {
		t.Errorf("JWKS Content-Type %q", ct)
	}

	oldTok := g.codeTokens(t, codeRequest{Scope: "openid email"}).mustToken(t)
	oldRaw := g.codeTokens(t, codeRequest{Scope: "openid email"}).str("id_token")
	if h, _ := jwtParts(t, oldRaw); h["kid"] != kidOf["RS256"] {
		t.Errorf("id_token kid = %v, want the RS256 key %s", h["kid"], kidOf["RS256"])
	}

	// The generated keys are kept in the store: a plain restart publishes the same set.
	g.restartWith(t, "")
	if kids := kidsOf(g.jwks(t)); kids != kidsOf(before) {
		t.Errorf("a restart changed the generated keys: %s, then %s", kidsOf(before), kids)
	}

	// Rotate: restart with a PEM of our own (PKCS#1).
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(g.in.home, "signing.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(priv)})
	if err := os.WriteFile(keyFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	g.restartWith(t, "signing_key "+keyFile)

	after := g.jwks(t)
	var newKid string
	seen := map[string]bool{}
	for _, k := range after.Keys {
		seen[k.KeyID] = true
		if pub, ok := k.Key.(*rsa.PublicKey); ok && pub.N.Cmp(priv.N) == 0 && pub.E == priv.E {
			newKid = k.KeyID
			if k.Algorithm != "RS256" {
				t.Errorf("configured key published with alg %q", k.Algorithm)
			}
		}
		if !k.IsPublic() {
			t.Errorf("JWKS publishes private key material for %s", k.KeyID)
		}
	}
	if newKid == "" {
		t.Fatalf("the signing_key's public key is not in the JWKS (kids %v)", seen)
	}
	if !seen[kidOf["RS256"]] {
		t.Errorf("the replaced RS256 key %s was dropped from the JWKS at once", kidOf["RS256"])
	}
	if !seen[kidOf["ES256"]] {
		t.Errorf("the ES256 key %s is gone though signing_key was RSA", kidOf["ES256"])
	}

	// go-oidc with a fresh key set: the old id_token verifies, and a new one is signed by the new key.
	provider, err := oidc.NewProvider(ctx, g.in.base)
	if err != nil {
		t.Fatal(err)
	}
	verifier := provider.Verifier(&oidc.Config{ClientID: g.web.ID})
	if _, err := verifier.Verify(ctx, oldRaw); err != nil {
		t.Errorf("an id_token signed before the rotation no longer verifies: %v", err)
	}
	newRaw := g.codeTokens(t, codeRequest{Scope: "openid email"}).str("id_token")
	if h, _ := jwtParts(t, newRaw); h["kid"] != newKid || h["alg"] != "RS256" {
		t.Errorf("new id_token header kid=%v alg=%v, want %s RS256", h["kid"], h["alg"], newKid)
	}
	if _, err := verifier.Verify(ctx, newRaw); err != nil {
		t.Errorf("new id_token: %v", err)
	}
	jws, err := jose.ParseSigned(newRaw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jws.Verify(&priv.PublicKey); err != nil {
		t.Errorf("the new id_token is not signed by the configured key: %v", err)
	}
	// Tokens issued before the restart still work.
	g.do(t, apiCall{Path: "/any/x", Bearer: oldTok.Access}).mustPass(t)

	// Starting again with the same key changes nothing.
	g.restartWith(t, "signing_key "+keyFile)
	again := g.jwks(t)
	if len(again.Keys) != len(after.Keys) {
		t.Errorf("a restart with the same signing_key changed the JWKS: %d keys, then %d", len(after.Keys), len(again.Keys))
	}
	if _, err := verifier.Verify(ctx, newRaw); err != nil {
		t.Errorf("after a second restart: %v", err)
	}
}

// kidsOf lists a key set's alg:kid pairs, sorted.
func kidsOf(set jose.JSONWebKeySet) string {
	var out []string
	for _, k := range set.Keys {
		out = append(out, k.Algorithm+":"+k.KeyID)
	}
	return strings.Join(scopeList(out), " ")
}

// TestSigningKeyRotationEC: a signing_key EC P-256 PEM (SEC 1) replaces the generated ES256 key;
// JWT access tokens signed before keep working at the guard, new ones are signed by the new key,
// and the RS256 key is untouched.
func TestSigningKeyRotationEC(t *testing.T) {
	t.Parallel()
	g := startOP(t, "access_token {\n\tformat jwt\n}")
	before := g.jwks(t)
	old := g.codeTokens(t, codeRequest{Scope: "openid read"}).mustToken(t)
	g.do(t, apiCall{Path: "/rw/x", Bearer: old.Access}).mustPass(t)
	oldHdr, _ := jwtParts(t, old.Access)

	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(g.in.home, "ec.pem")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	g.restartWith(t, "signing_key "+keyFile)

	after := g.jwks(t)
	var newKid string
	for _, k := range after.Keys {
		if pub, ok := k.Key.(*ecdsa.PublicKey); ok && pub.X.Cmp(priv.X) == 0 && pub.Y.Cmp(priv.Y) == 0 {
			newKid = k.KeyID
		}
	}
	if newKid == "" {
		t.Fatalf("the EC signing_key is not in the JWKS: %s", kidsOf(after))
	}
	for _, k := range before.Keys {
		if len(after.Key(k.KeyID)) != 1 {
			t.Errorf("key %s:%s is no longer published", k.Algorithm, k.KeyID)
		}
	}
	// The JWT signed with the replaced key still passes (restart emptied the cache: this is a
	// local signature check against the retired, still published key).
	g.do(t, apiCall{Path: "/rw/x", Bearer: old.Access}).mustPass(t)
	g.introspect(t, old.Access, "", g.rsAuth()).mustActive(t, g.in, introspected{TokenType: "Bearer", Scope: "openid read", ClientID: "web", Username: "alice", Sub: "alice", TTL: time.Hour})

	fresh := g.codeTokens(t, codeRequest{Scope: "openid read"}).mustToken(t)
	h, _ := jwtParts(t, fresh.Access)
	if h["kid"] != newKid || h["kid"] == oldHdr["kid"] {
		t.Errorf("new JWT kid %v, want the configured key %s", h["kid"], newKid)
	}
	jws, err := jose.ParseSigned(fresh.Access, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jws.Verify(&priv.PublicKey); err != nil {
		t.Errorf("the new JWT is not signed by the configured key: %v", err)
	}
	g.do(t, apiCall{Path: "/rw/x", Bearer: fresh.Access}).mustPass(t)

	// A JWT signed with the server's own key that the server never issued (here: the genuine
	// claims with another jti, and the genuine claims re-signed) is refused: a valid signature
	// alone never admits a token, so revocation cannot be bypassed.
	_, cl := jwtParts(t, fresh.Access)
	replayed := signWith(t, jose.ES256, priv, newKid, "at+jwt", cl)
	cl["jti"] = "never-issued-" + randomSecret("")
	minted := signWith(t, jose.ES256, priv, newKid, "at+jwt", cl)
	for _, f := range []string{minted, replayed} {
		g.do(t, apiCall{Path: "/rw/x", Bearer: f}).mustDeny(t, denial{Status: 401, Code: "invalid_token"})
		g.introspect(t, f, "", g.rsAuth()).mustInactive(t)
	}
	// Revoked, the genuine token is refused though its signature stays valid.
	if r := g.revoke(t, fresh.Access, "", g.webAuth()); r.Status != 200 {
		t.Fatalf("revoke: %s", r)
	}
	g.do(t, apiCall{Path: "/rw/x", Bearer: fresh.Access}).mustDeny(t, denial{Status: 401, Code: "invalid_token"})
	// id_tokens are still RS256 with the generated key.
	idt := g.codeTokens(t, codeRequest{Scope: "openid"}).str("id_token")
	if ih, _ := jwtParts(t, idt); ih["alg"] != "RS256" || len(before.Key(fmt.Sprint(ih["kid"]))) != 1 {
		t.Errorf("id_token header %v after an EC signing_key", ih)
	}
}

// jwtKeyOf returns the JWK the header's kid names.
func jwtKeyOf(t *testing.T, set jose.JSONWebKeySet, kid string) jose.JSONWebKey {
	t.Helper()
	ks := set.Key(kid)
	if len(ks) != 1 {
		t.Fatalf("kid %s: %d keys in the JWKS", kid, len(ks))
	}
	return ks[0]
}

// signWith signs claims as a compact JWS with the given key, kid and typ.
func signWith(t *testing.T, alg jose.SignatureAlgorithm, key any, kid, typ string, claims map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType(jose.ContentType(typ))
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid, Algorithm: string(alg)}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	obj, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestJWTAccessTokens: with access_token { format jwt } tokens are RFC 9068 JWTs that the guard
// checks locally; revocation is still honoured, and forged, tampered, alg=none and foreign-key
// tokens are refused with 401 invalid_token, never a 5xx.
func TestJWTAccessTokens(t *testing.T) {
	t.Parallel()
	g := startOP(t, "access_token {\n\tformat jwt\n}\nrefresh_token {\n\treuse_grace 5s\n}")
	in := g.in
	deny := denial{Status: 401, Code: "invalid_token"}
	set := g.jwks(t)
	start := time.Now()
	r := g.codeTokens(t, codeRequest{Scope: "openid email read"})
	tok := r.mustToken(t)

	t.Run("RFC 9068 shape and signature", func(t *testing.T) {
		h, cl := jwtParts(t, tok.Access)
		if h["typ"] != "at+jwt" || h["alg"] != "ES256" {
			t.Errorf("header typ=%v alg=%v, want at+jwt ES256", h["typ"], h["alg"])
		}
		kid, _ := h["kid"].(string)
		k := jwtKeyOf(t, set, kid)
		if k.Algorithm != "ES256" {
			t.Errorf("kid %s names a %s key", kid, k.Algorithm)
		}
		jws, err := jose.ParseSigned(tok.Access, []jose.SignatureAlgorithm{jose.ES256})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := jws.Verify(k.Key); err != nil {
			t.Errorf("signature does not verify with the published key: %v", err)
		}
		for k, want := range map[string]string{"iss": in.base, "sub": "alice", "client_id": "web"} {
			if cl[k] != want {
				t.Errorf("%s = %v, want %s", k, cl[k], want)
			}
		}
		switch aud := cl["aud"].(type) {
		case string:
			if aud != in.base {
				t.Errorf("aud = %q, want the issuer %s", aud, in.base)
			}
		case []any:
			if len(aud) == 0 || aud[0] != in.base {
				t.Errorf("aud = %v", aud)
			}
		default:
			t.Errorf("aud = %#v", cl["aud"])
		}
		if s, _ := cl["scope"].(string); !sameScopes(s, "openid email read") {
			t.Errorf("scope = %v", cl["scope"])
		}
		if j, _ := cl["jti"].(string); len(j) < 16 {
			t.Errorf("jti = %v, want a unique identifier", cl["jti"])
		}
		iat, exp := numClaim(t, cl, "iat"), numClaim(t, cl, "exp")
		near(t, "iat", iat, time.Now(), 10*time.Second)
		if exp-iat != 3600 || tok.ExpiresIn < 3590 || tok.ExpiresIn > 3600 {
			t.Errorf("exp - iat = %d, expires_in %d, want 3600 (the default ttl)", exp-iat, tok.ExpiresIn)
		}
		near(t, "auth_time", numClaim(t, cl, "auth_time"), start, 10*time.Second)
		// Another token has another jti.
		_, cl2 := jwtParts(t, g.codeTokens(t, codeRequest{Scope: "openid read"}).mustToken(t).Access)
		if cl2["jti"] == cl["jti"] {
			t.Errorf("two tokens share jti %v", cl["jti"])
		}
		// The id_token's at_hash covers the JWT.
		idt := r.str("id_token")
		_, icl := jwtParts(t, idt)
		if icl["at_hash"] == nil {
			t.Errorf("no at_hash")
		}
		ctx := oidcCtx(t, in)
		p, err := oidc.NewProvider(ctx, in.base)
		if err != nil {
			t.Fatal(err)
		}
		v, err := p.Verifier(&oidc.Config{ClientID: g.web.ID}).Verify(ctx, idt)
		if err != nil {
			t.Fatalf("id_token: %v", err)
		}
		if err := v.VerifyAccessToken(tok.Access); err != nil {
			t.Errorf("at_hash of the JWT access token: %v", err)
		}
		if fmt.Sprint(icl["aud"]) == fmt.Sprint(cl["aud"]) {
			t.Errorf("id_token and access token have the same audience %v", icl["aud"])
		}
	})

	t.Run("the guard, userinfo and introspection accept it", func(t *testing.T) {
		e := g.do(t, apiCall{Path: "/rw/x", Bearer: tok.Access}).mustPass(t)
		if e.Header.Get("X-Auth-Subject") != "alice" || e.Header.Get("X-Auth-Client-Id") != "web" {
			t.Errorf("identity headers %v", e.Header)
		}
		if e.Header.Get("Authorization") != "" {
			t.Errorf("the JWT reached the upstream")
		}
		g.do(t, apiCall{Path: "/rw/x?access_token=" + tok.Access}).mustPass(t)
		g.do(t, apiCall{Method: "POST", Path: "/rw/x", Bearer: tok.Access}).mustDeny(t, denial{Status: 403, Code: "insufficient_scope", Scope: "write"})
		_, ui := func() (*http.Response, map[string]any) {
			req, _ := http.NewRequest("GET", in.url("/userinfo"), nil)
			req.Header.Set("Authorization", "Bearer "+tok.Access)
			resp, err := in.http.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var m map[string]any
			_ = json.NewDecoder(resp.Body).Decode(&m)
			if resp.StatusCode != 200 {
				t.Errorf("/userinfo with a JWT access token: %d %v", resp.StatusCode, m)
			}
			return resp, m
		}()
		if ui["sub"] != "alice" || ui["email"] != "alice@example.com" {
			t.Errorf("userinfo = %v", ui)
		}
		g.introspect(t, tok.Access, "", g.rsAuth()).mustActive(t, in, introspected{TokenType: "Bearer", Scope: "openid email read", ClientID: "web", Username: "alice", Sub: "alice", TTL: time.Hour})
		// client_credentials JWT: the client is the subject.
		cc := g.ccToken(t, "read")
		_, ccl := jwtParts(t, cc)
		if ccl["sub"] != "svc" || ccl["client_id"] != "svc" {
			t.Errorf("client_credentials JWT sub=%v client_id=%v", ccl["sub"], ccl["client_id"])
		}
		g.do(t, apiCall{Path: "/rw/x", Bearer: cc}).mustPass(t)
	})

	t.Run("forgeries are refused", func(t *testing.T) {
		hdr, cl := jwtParts(t, tok.Access)
		kid, _ := hdr["kid"].(string)
		parts := strings.Split(tok.Access, ".")
		otherEC, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		otherRSA, _ := rsa.GenerateKey(rand.Reader, 2048)
		var rsKid string
		for _, k := range set.Keys {
			if k.Algorithm == "RS256" {
				rsKid = k.KeyID
			}
		}
		widened := map[string]any{}
		for k, v := range cl {
			widened[k] = v
		}
		widened["scope"] = "openid email read write admin"
		pubJSON, _ := json.Marshal(jwtKeyOf(t, set, kid))
		idToken := g.codeTokens(t, codeRequest{Scope: "openid"}).str("id_token")

		forged := map[string]string{
			"flipped payload character":    parts[0] + "." + flipChar(parts[1]) + "." + parts[2],
			"widened scope, old signature": parts[0] + "." + b64json(mustJSON(t, widened)) + "." + parts[2],
			"flipped signature character":  parts[0] + "." + parts[1] + "." + flipChar(parts[2]),
			"alg none":                     b64json(`{"alg":"none","typ":"at+jwt","kid":"`+kid+`"}`) + "." + parts[1] + ".",
			"alg none, no kid":             b64json(`{"alg":"none","typ":"at+jwt"}`) + "." + parts[1] + ".",
			"another EC key, our kid":      signWith(t, jose.ES256, otherEC, kid, "at+jwt", cl),
			"another EC key, its own kid":  signWith(t, jose.ES256, otherEC, "mallory", "at+jwt", cl),
			"another RSA key, our RS kid":  signWith(t, jose.RS256, otherRSA, rsKid, "at+jwt", cl),
			"HS256 keyed with our JWK":     signWith(t, jose.HS256, pubJSON, kid, "at+jwt", cl),
			"an id_token as access token":  idToken,
			"header only":                  parts[0] + "..",
		}
		for name, f := range forged {
			t.Run(name, func(t *testing.T) {
				for _, c := range []apiCall{{Path: "/rw/x", Bearer: f}, {Path: "/any/x", Bearer: f}, {Path: "/any/x?access_token=" + f}} {
					g.do(t, c).mustDeny(t, deny)
				}
				g.introspect(t, f, "", g.rsAuth()).mustInactive(t)
				req, _ := http.NewRequest("GET", in.url("/userinfo"), nil)
				req.Header.Set("Authorization", "Bearer "+f)
				resp, err := in.http.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
					t.Errorf("at /userinfo: %d %q, want 401 invalid_token", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
				}
			})
		}
		// The genuine one still passes.
		g.do(t, apiCall{Path: "/rw/x", Bearer: tok.Access}).mustPass(t)
	})

	t.Run("refresh within the grace: same refresh token, every JWT works", func(t *testing.T) {
		pair := g.codeTokens(t, codeRequest{Scope: "openid read"}).mustToken(t)
		replies, errs := race(10, func(int) (*reply, error) { return in.send(g.webRefreshCall(pair.Refresh)) })
		var refresh string
		var accesses []string
		for i, r := range replies {
			if errs[i] != nil || r.Status != 200 {
				t.Errorf("refresh %d: %v %v", i, errs[i], r)
				continue
			}
			got := r.mustToken(t)
			if refresh == "" {
				refresh = got.Refresh
			} else if got.Refresh != refresh {
				t.Errorf("refresh %d: another refresh token", i)
			}
			if strings.Count(got.Access, ".") != 2 {
				t.Errorf("refresh %d: access token is not a JWT", i)
			}
			g.do(t, apiCall{Path: "/rw/x", Bearer: got.Access}).mustPass(t) // cached now
			accesses = append(accesses, got.Access)
		}
		g.do(t, apiCall{Path: "/rw/x", Bearer: pair.Access}).mustDeny(t, deny)
		// Revoking the refresh token ends every access token the retries got.
		if r := g.revoke(t, refresh, "refresh_token", g.webAuth()); r.Status != 200 {
			t.Fatalf("revoke: %s", r)
		}
		for i, a := range accesses {
			if r := g.do(t, apiCall{Path: "/rw/x", Bearer: a}); r.Status != http.StatusUnauthorized {
				t.Errorf("access token %d of the grace retries after revoking the refresh token: %s", i, r)
			}
		}
	})

	t.Run("revocation is honoured by jti through the cache", func(t *testing.T) {
		pair := g.codeTokens(t, codeRequest{Scope: "openid read"}).mustToken(t)
		for range 3 {
			g.do(t, apiCall{Path: "/rw/x", Bearer: pair.Access}).mustPass(t)
		}
		if r := g.revoke(t, pair.Access, "access_token", g.webAuth()); r.Status != 200 {
			t.Fatalf("revoke: %s", r)
		}
		g.do(t, apiCall{Path: "/rw/x", Bearer: pair.Access}).mustDeny(t, deny)
		g.introspect(t, pair.Access, "", g.rsAuth()).mustInactive(t)

		// Revoking the refresh token ends its JWT access tokens too.
		next := g.refresh(t, pair.Refresh).mustToken(t)
		g.do(t, apiCall{Path: "/rw/x", Bearer: next.Access}).mustPass(t)
		if r := g.revoke(t, next.Refresh, "", g.webAuth()); r.Status != 200 {
			t.Fatalf("revoke: %s", r)
		}
		g.do(t, apiCall{Path: "/rw/x", Bearer: next.Access}).mustDeny(t, deny)
	})
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestAccessTokenExpiry: an expired access token, opaque or JWT, is refused by the guard (which
// had it cached), /userinfo and introspection.
func TestAccessTokenExpiry(t *testing.T) {
	t.Parallel()
	for _, format := range []string{"opaque", "jwt"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			g := startOP(t, fmt.Sprintf("access_token {\n\tformat %s\n\tttl 2s\n}", format))
			issuedAt := time.Now()
			tok := g.pwToken(t, "openid read")
			if tok.ExpiresIn > 2 {
				t.Errorf("expires_in = %d with ttl 2s", tok.ExpiresIn)
			}
			if format == "jwt" {
				_, cl := jwtParts(t, tok.Access)
				if d := numClaim(t, cl, "exp") - numClaim(t, cl, "iat"); d != 2 {
					t.Errorf("exp - iat = %d, want 2", d)
				}
			}
			g.do(t, apiCall{Path: "/rw/x", Bearer: tok.Access}).mustPass(t)
			userinfo := func() *http.Response {
				req, _ := http.NewRequest("GET", g.in.url("/userinfo"), nil)
				req.Header.Set("Authorization", "Bearer "+tok.Access)
				resp, err := g.in.http.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				return resp
			}
			if r := userinfo(); r.StatusCode != 200 {
				t.Errorf("/userinfo before expiry: %d", r.StatusCode)
			}
			time.Sleep(time.Until(issuedAt.Add(3200 * time.Millisecond)))
			g.do(t, apiCall{Path: "/rw/x", Bearer: tok.Access}).mustDeny(t, denial{Status: 401, Code: "invalid_token"})
			g.do(t, apiCall{Path: "/any/x?access_token=" + tok.Access}).mustDeny(t, denial{Status: 401, Code: "invalid_token"})
			r := userinfo()
			if r.StatusCode != http.StatusUnauthorized || !strings.Contains(r.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
				t.Errorf("/userinfo after expiry: %d %q, want 401 invalid_token", r.StatusCode, r.Header.Get("WWW-Authenticate"))
			}
			g.introspect(t, tok.Access, "", g.rsAuth()).mustInactive(t)
			// The refresh token still gives a working pair.
			next := g.in.token(t, g.refreshCall(tok.Refresh)).mustToken(t)
			g.do(t, apiCall{Path: "/rw/x", Bearer: next.Access}).mustPass(t)
		})
	}
}

// TestSigningKeyAndLifecycleConfigErrors: caddy validate refuses an unusable signing_key (naming
// the file and why) and bad values of the issue-4 directives, and accepts a good key.
func TestSigningKeyAndLifecycleConfigErrors(t *testing.T) {
	t.Parallel()
	home := t.TempDir()
	writeKey := func(name string, block *pem.Block) string {
		p := filepath.Join(home, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	p384DER, _ := x509.MarshalECPrivateKey(p384)
	good, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	goodDER, _ := x509.MarshalPKCS8PrivateKey(good)
	goodFile := writeKey("good.pem", &pem.Block{Type: "PRIVATE KEY", Bytes: goodDER})
	notPEM := filepath.Join(home, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	certOnly := writeKey("cert.pem", &pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2, 3}})

	validate := func(t *testing.T, settings string) (string, error) {
		t.Helper()
		dir := t.TempDir()
		file := filepath.Join(dir, "Caddyfile")
		cf := "{\n\tadmin off\n\tpersist_config off\n\tauto_https off\n\toauth2 {\n\t\tissuer http://127.0.0.1:9\n\t\tstore file " +
			filepath.Join(dir, "store") + "\n" + settings + "\n\t}\n}\n\nhttp://127.0.0.1:9 {\n\toauth2_server /o\n}\n"
		if err := os.WriteFile(file, []byte(cf), 0o600); err != nil {
			t.Fatal(err)
		}
		out, errOut, err := caddyCLI(t, dir, "validate", "--config", file, "--adapter", "caddyfile")
		return out + errOut, err
	}
	for _, c := range []struct{ name, settings, mention string }{
		{"missing signing_key file", "signing_key " + filepath.Join(home, "nope.pem"), "nope.pem"},
		{"signing_key is not PEM", "signing_key " + notPEM, "not.pem"},
		{"signing_key holds no private key", "signing_key " + certOnly, "cert.pem"},
		{"RSA key shorter than 2048 bits", "signing_key " + writeKey("small.pem", &pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(small)}), "2048"},
		{"EC key not on P-256", "signing_key " + writeKey("p384.pem", &pem.Block{Type: "EC PRIVATE KEY", Bytes: p384DER}), "P-256"},
		{"access_token format", "access_token {\n\tformat xml\n}", "xml"},
		{"negative reuse_grace", "refresh_token {\n\treuse_grace -1s\n}", "reuse_grace"},
		{"pkce_plain value", "pkce_plain maybe", "maybe"},
		{"signing_key twice", "signing_key " + goodFile + "\nsigning_key " + goodFile, "signing_key"},
	} {
		t.Run(c.name, func(t *testing.T) {
			msg, err := validate(t, c.settings)
			if err == nil {
				t.Fatalf("caddy validate accepted it:\n%s", msg)
			}
			if !strings.Contains(msg, c.mention) {
				t.Errorf("the error does not mention %q:\n%s", c.mention, proclog.Tail(msg, 2000))
			}
			if strings.Contains(msg, "panic") || strings.Contains(msg, "goroutine ") {
				t.Errorf("validate panicked:\n%s", proclog.Tail(msg, 4000))
			}
		})
	}
	t.Run("a good EC P-256 PKCS#8 key", func(t *testing.T) {
		if msg, err := validate(t, "signing_key "+goodFile+"\naccess_token {\n\tformat jwt\n}\nrefresh_token {\n\treuse_grace 0\n}\npkce_plain off"); err != nil {
			t.Errorf("caddy validate refused a good configuration: %v\n%s", err, msg)
		}
	})
}
