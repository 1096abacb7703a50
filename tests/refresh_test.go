package tests

import (
	"net/http"
	"testing"
)

// TestRefreshTokenGrant covers RFC 6749 §6: rotation, scope narrowing, binding to the client.
func TestRefreshTokenGrant(t *testing.T) {
	t.Parallel()
	app := clientSpec{ID: "app", Secret: randomSecret("app-"), Grants: "password refresh_token", Scopes: "groups read write"}
	other := clientSpec{ID: "other", Secret: randomSecret("other-"), Grants: "password refresh_token", Scopes: "groups read write"}
	pub := clientSpec{ID: "pub", Grants: "password refresh_token", Scopes: "read write"}
	al := alice()
	in := startGate(t, gateSpec{Clients: []clientSpec{app, other, pub}, Users: []userSpec{al}})

	// issue gets a fresh refresh token for alice through app with scope "read write".
	issue := func(t *testing.T) issued {
		t.Helper()
		r := in.token(t, tokenCall{Form: form("grant_type", "password", "username", "alice", "password", al.Password, "scope", "read write"), Basic: basic(app.ID, app.Secret)})
		tok := r.mustToken(t)
		if tok.Refresh == "" {
			t.Fatalf("password grant gave no refresh_token: %s", r)
		}
		return tok
	}
	refresh := func(t *testing.T, rt, scope string) *reply {
		t.Helper()
		f := form("grant_type", "refresh_token", "refresh_token", rt)
		if scope != "" {
			f.Set("scope", scope)
		}
		return in.token(t, tokenCall{Form: f, Basic: basic(app.ID, app.Secret)})
	}

	t.Run("rotation", func(t *testing.T) {
		first := issue(t)
		r := refresh(t, first.Refresh, "")
		second := r.mustToken(t)
		if second.Access == first.Access {
			t.Errorf("refresh returned the same access token")
		}
		if second.Refresh == "" || second.Refresh == first.Refresh {
			t.Errorf("refresh did not return a new refresh token: %s", r)
		}
		if !sameScopes(second.Scope, "read write") {
			t.Errorf("scope after refresh = %q, want read write", second.Scope)
		}
		third := refresh(t, second.Refresh, "").mustToken(t)
		if third.Refresh == second.Refresh {
			t.Errorf("second refresh returned the same refresh token")
		}
		// Both spent tokens are refused. (Replaying one may also revoke the live token, as the
		// OAuth 2.0 Security BCP §4.14.2 recommends, so nothing is asserted about third after this.)
		refresh(t, first.Refresh, "").mustError(t, outcome{400, "invalid_grant"})
		refresh(t, second.Refresh, "").mustError(t, outcome{400, "invalid_grant"})
	})

	t.Run("trailing slash path", func(t *testing.T) {
		first := issue(t)
		in.token(t, tokenCall{Path: "/token/", Form: form("grant_type", "refresh_token", "refresh_token", first.Refresh), Basic: basic(app.ID, app.Secret)}).mustToken(t)
	})

	t.Run("client_secret_post", func(t *testing.T) {
		first := issue(t)
		in.token(t, tokenCall{Form: form("grant_type", "refresh_token", "refresh_token", first.Refresh, "client_id", app.ID, "client_secret", app.Secret)}).mustToken(t)
	})

	t.Run("narrowing scope", func(t *testing.T) {
		first := issue(t)
		tok := refresh(t, first.Refresh, "read").mustToken(t)
		if tok.Scope != "read" {
			t.Errorf("scope = %q, want read", tok.Scope)
		}
	})

	t.Run("narrowing leaves the refresh token's scope as granted", func(t *testing.T) {
		// RFC 6749 §6: a new refresh token's scope MUST be identical to that of the refresh token
		// in the request; narrowing applies to the access token.
		first := issue(t)
		narrowed := refresh(t, first.Refresh, "read").mustToken(t)
		if narrowed.Refresh == "" {
			t.Fatal("no new refresh token")
		}
		back := refresh(t, narrowed.Refresh, "read write").mustToken(t)
		if !sameScopes(back.Scope, "read write") {
			t.Errorf("scope = %q, want read write", back.Scope)
		}
	})

	widen := []struct{ name, scope string }{
		{"unknown scope", "admin"},
		{"client scope never granted", "groups"},
		{"granted plus one", "read write groups"},
		{"granted plus unknown", "read admin"},
	}
	for _, tc := range widen {
		t.Run("widening scope/"+tc.name, func(t *testing.T) {
			first := issue(t)
			refresh(t, first.Refresh, tc.scope).mustError(t, outcome{400, "invalid_scope"})
			// A refused request must not consume the token.
			refresh(t, first.Refresh, "").mustToken(t)
		})
	}

	t.Run("presented by another client", func(t *testing.T) {
		first := issue(t)
		in.token(t, tokenCall{Form: form("grant_type", "refresh_token", "refresh_token", first.Refresh), Basic: basic(other.ID, other.Secret)}).mustError(t, outcome{400, "invalid_grant"})
		in.token(t, tokenCall{Form: form("grant_type", "refresh_token", "refresh_token", first.Refresh, "client_id", pub.ID)}).mustError(t, outcome{400, "invalid_grant"})
	})

	t.Run("without client authentication", func(t *testing.T) {
		first := issue(t)
		in.token(t, tokenCall{Form: form("grant_type", "refresh_token", "refresh_token", first.Refresh)}).mustError(t, outcome{401, "invalid_client"})
		in.token(t, tokenCall{Form: form("grant_type", "refresh_token", "refresh_token", first.Refresh, "client_id", app.ID)}).mustError(t, outcome{401, "invalid_client"})
		r := in.token(t, tokenCall{Form: form("grant_type", "refresh_token", "refresh_token", first.Refresh), Basic: basic(app.ID, "wrong-"+app.Secret)})
		r.mustError(t, outcome{401, "invalid_client"})
		if wa := r.Header.Get("WWW-Authenticate"); r.Status == http.StatusUnauthorized && wa == "" {
			t.Errorf("401 after Basic auth without WWW-Authenticate")
		}
		refresh(t, first.Refresh, "").mustToken(t)
	})

	t.Run("public client refreshes with its client_id", func(t *testing.T) {
		r := in.token(t, tokenCall{Form: form("grant_type", "password", "username", "alice", "password", al.Password, "client_id", pub.ID)})
		first := r.mustToken(t)
		if first.Refresh == "" {
			t.Fatalf("no refresh token: %s", r)
		}
		second := in.token(t, tokenCall{Form: form("grant_type", "refresh_token", "refresh_token", first.Refresh, "client_id", pub.ID)}).mustToken(t)
		if second.Refresh == first.Refresh || second.Access == first.Access {
			t.Errorf("public refresh did not rotate")
		}
	})

	t.Run("not a refresh token", func(t *testing.T) {
		first := issue(t)
		refresh(t, first.Access, "").mustError(t, outcome{400, "invalid_grant"})
		refresh(t, randomSecret("bogus-"), "").mustError(t, outcome{400, "invalid_grant"})
	})

	t.Run("50 concurrent refreshes of one token", func(t *testing.T) {
		first := issue(t)
		replies, errs := race(50, func(int) (*reply, error) {
			return in.send(tokenCall{Form: form("grant_type", "refresh_token", "refresh_token", first.Refresh), Basic: basic(app.ID, app.Secret)})
		})
		if winner := mustExactlyOneWinner(t, replies, errs); winner != nil {
			winner.mustToken(t)
		}
	})
}
