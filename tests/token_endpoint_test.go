package tests

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// tokenEndpointGate has one client for each shape a token request can take.
type tokenEndpointGate struct {
	spec                               gateSpec
	svc, app, other, pub, noref, colon clientSpec
	alice, bob                         userSpec
}

func newTokenEndpointGate() tokenEndpointGate {
	g := tokenEndpointGate{
		svc:   clientSpec{ID: "svc", Secret: randomSecret("svc-"), Grants: "client_credentials", Scopes: "read write"},
		app:   clientSpec{ID: "app", Secret: randomSecret("app-"), Grants: "authorization_code refresh_token password client_credentials", RedirectURIs: "http://127.0.0.1:1/cb", Scopes: "groups read write"},
		other: clientSpec{ID: "other", Secret: randomSecret("other-"), Grants: "password refresh_token", Scopes: "read write"},
		pub:   clientSpec{ID: "pub", Grants: "password refresh_token authorization_code", RedirectURIs: "http://127.0.0.1:1/pub", Scopes: "read write"},
		noref: clientSpec{ID: "noref", Secret: randomSecret("noref-"), Grants: "password", Scopes: "read"},
		// RFC 6749 §2.3.1: id and secret are form-encoded before Basic; these need it.
		colon: clientSpec{ID: "svc:one", Secret: randomSecret("p@ss:w/rd+ =&%"), Grants: "client_credentials", Scopes: "read"},
		alice: alice(),
		bob:   bob(),
	}
	g.spec = gateSpec{
		Settings: "access_token {\n\tttl 30m\n}\nrefresh_token {\n\tttl 720h\n}\ncode_ttl 1m",
		Clients:  []clientSpec{g.svc, g.app, g.other, g.pub, g.noref, g.colon},
		Users:    []userSpec{g.alice, g.bob},
	}
	return g
}

// TestTokenEndpoint covers RFC 6749 §4.3, §4.4, §5 and §2.3.1 on POST /o/token.
func TestTokenEndpoint(t *testing.T) {
	t.Parallel()
	g := newTokenEndpointGate()
	in := startGate(t, g.spec)
	svc, app, pub := g.svc, g.app, g.pub

	t.Run("client_credentials with client_secret_basic", func(t *testing.T) {
		r := in.token(t, tokenCall{Form: form("grant_type", "client_credentials"), Basic: basic(svc.ID, svc.Secret)})
		tok := r.mustToken(t)
		if r.has("refresh_token") {
			t.Errorf("client_credentials response carries a refresh_token (RFC 6749 §4.4.3): %s", r)
		}
		if !sameScopes(tok.Scope, "read write") {
			t.Errorf("default scope = %q, want the client's full list %q", tok.Scope, "read write")
		}
		if tok.ExpiresIn < 1790 || tok.ExpiresIn > 1800 {
			t.Errorf("expires_in = %d, want about 1800 (access_token ttl 30m)", tok.ExpiresIn)
		}
	})

	t.Run("client_credentials with client_secret_post", func(t *testing.T) {
		r := in.token(t, tokenCall{Form: form("grant_type", "client_credentials", "client_id", svc.ID, "client_secret", svc.Secret, "scope", "read")})
		tok := r.mustToken(t)
		if tok.Scope != "read" {
			t.Errorf("scope = %q, want read", tok.Scope)
		}
	})

	t.Run("form content type with charset", func(t *testing.T) {
		in.token(t, tokenCall{Form: form("grant_type", "client_credentials"), ContentType: "application/x-www-form-urlencoded; charset=UTF-8", Basic: basic(svc.ID, svc.Secret)}).mustToken(t)
	})

	t.Run("auth-scheme is case-insensitive", func(t *testing.T) {
		// RFC 9110 §11.1: the authentication scheme is a case-insensitive token.
		h := basic(svc.ID, svc.Secret).header()
		in.remember("client secret", svc.Secret)
		in.token(t, tokenCall{Form: form("grant_type", "client_credentials"), RawAuth: "basic" + strings.TrimPrefix(h, "Basic")}).mustToken(t)
	})

	t.Run("unrecognized parameters are ignored", func(t *testing.T) {
		// RFC 6749 §3.2: the authorization server MUST ignore unrecognized request parameters.
		in.token(t, tokenCall{Form: form("grant_type", "client_credentials", "foo", "bar", "audience", "x"), Basic: basic(svc.ID, svc.Secret)}).mustToken(t)
	})

	t.Run("empty parameter counts as omitted", func(t *testing.T) {
		// RFC 6749 §3.1: parameters sent without a value MUST be treated as if omitted.
		tok := in.token(t, tokenCall{Body: "grant_type=client_credentials&scope=", Basic: basic(svc.ID, svc.Secret)}).mustToken(t)
		if !sameScopes(tok.Scope, "read write") {
			t.Errorf("scope = %q, want the default %q", tok.Scope, "read write")
		}
	})

	t.Run("trailing slash path", func(t *testing.T) {
		r := in.token(t, tokenCall{Path: "/token/", Form: form("grant_type", "client_credentials"), Basic: basic(svc.ID, svc.Secret)})
		r.mustToken(t)
	})

	t.Run("form-encoded credentials in Basic", func(t *testing.T) {
		c := g.colon
		in.token(t, tokenCall{Form: form("grant_type", "client_credentials"), Basic: basic(c.ID, c.Secret)}).mustToken(t)
		in.token(t, tokenCall{Form: form("grant_type", "client_credentials", "client_id", c.ID, "client_secret", c.Secret)}).mustToken(t)
	})

	t.Run("password grant, confidential client", func(t *testing.T) {
		r := in.token(t, tokenCall{Form: form("grant_type", "password", "username", "alice", "password", g.alice.Password, "scope", "read write"), Basic: basic(app.ID, app.Secret)})
		tok := r.mustToken(t)
		if tok.Refresh == "" {
			t.Errorf("no refresh_token although the client lists refresh_token: %s", r)
		}
		if !sameScopes(tok.Scope, "read write") {
			t.Errorf("scope = %q, want read write", tok.Scope)
		}
	})

	t.Run("password grant, default scope", func(t *testing.T) {
		r := in.token(t, tokenCall{Form: form("grant_type", "password", "username", "bob", "password", g.bob.Password, "client_id", app.ID, "client_secret", app.Secret)})
		if tok := r.mustToken(t); !sameScopes(tok.Scope, app.Scopes) {
			t.Errorf("default scope = %q, want the client's full list %q", tok.Scope, app.Scopes)
		}
	})

	t.Run("password grant, public client", func(t *testing.T) {
		r := in.token(t, tokenCall{Form: form("grant_type", "password", "username", "alice", "password", g.alice.Password, "client_id", pub.ID)})
		if tok := r.mustToken(t); tok.Refresh == "" {
			t.Errorf("no refresh_token for a public client listing refresh_token: %s", r)
		}
	})

	t.Run("password grant, client without refresh_token grant", func(t *testing.T) {
		r := in.token(t, tokenCall{Form: form("grant_type", "password", "username", "alice", "password", g.alice.Password), Basic: basic(g.noref.ID, g.noref.Secret)})
		r.mustToken(t)
		if r.has("refresh_token") {
			t.Errorf("refresh_token issued to a client without the refresh_token grant: %s", r)
		}
	})

	t.Run("tokens are long, URL-safe and distinct", func(t *testing.T) {
		seen := map[string]bool{}
		for i := range 100 {
			r := in.token(t, tokenCall{Form: form("grant_type", "client_credentials"), Basic: basic(svc.ID, svc.Secret)})
			tok := r.mustToken(t)
			if seen[tok.Access] {
				t.Fatalf("access token repeated after %d tokens", i)
			}
			seen[tok.Access] = true
		}
		for i := range 20 {
			r := in.token(t, tokenCall{Form: form("grant_type", "password", "username", "bob", "password", g.bob.Password), Basic: basic(app.ID, app.Secret)})
			tok := r.mustToken(t)
			if seen[tok.Access] || seen[tok.Refresh] {
				t.Fatalf("token repeated after %d password grants", i)
			}
			seen[tok.Access], seen[tok.Refresh] = true, true
		}
	})

	// RFC 6749 §5.2 errors.
	cc := "grant_type=client_credentials"
	errorCases := []struct {
		name string
		call tokenCall
		want []outcome
		// basicChallenge: the client used Basic, so a 401 must carry WWW-Authenticate: Basic.
		basicChallenge bool
	}{
		{name: "unknown client, basic", call: tokenCall{Form: form("grant_type", "client_credentials"), Basic: basic("nobody", "whatever-secret")}, want: []outcome{{401, "invalid_client"}}, basicChallenge: true},
		{name: "unknown client, post", call: tokenCall{Form: form("grant_type", "client_credentials", "client_id", "nobody", "client_secret", "whatever-secret")}, want: []outcome{{401, "invalid_client"}}},
		{name: "wrong secret, basic", call: tokenCall{Form: form("grant_type", "client_credentials"), Basic: basic(svc.ID, svc.Secret+"x")}, want: []outcome{{401, "invalid_client"}}, basicChallenge: true},
		{name: "wrong secret, post", call: tokenCall{Form: form("grant_type", "client_credentials", "client_id", svc.ID, "client_secret", "wrong-"+svc.Secret)}, want: []outcome{{401, "invalid_client"}}},
		{name: "confidential client without secret", call: tokenCall{Form: form("grant_type", "password", "username", "alice", "password", g.alice.Password, "client_id", app.ID)}, want: []outcome{{401, "invalid_client"}}},
		{name: "no client at all", call: tokenCall{Form: form("grant_type", "client_credentials")}, want: []outcome{{401, "invalid_client"}}},
		{name: "both basic and post", call: tokenCall{Form: form("grant_type", "client_credentials", "client_id", svc.ID, "client_secret", svc.Secret), Basic: basic(svc.ID, svc.Secret)}, want: []outcome{{400, "invalid_request"}}},
		{name: "grant not listed: password for a client_credentials client", call: tokenCall{Form: form("grant_type", "password", "username", "alice", "password", g.alice.Password), Basic: basic(svc.ID, svc.Secret)}, want: []outcome{{400, "unauthorized_client"}}},
		{name: "grant not listed: client_credentials for a password client", call: tokenCall{Form: form("grant_type", "client_credentials"), Basic: basic(g.other.ID, g.other.Secret)}, want: []outcome{{400, "unauthorized_client"}}},
		{name: "public client asks client_credentials", call: tokenCall{Form: form("grant_type", "client_credentials", "client_id", pub.ID)}, want: []outcome{{400, "unauthorized_client"}, {401, "invalid_client"}}},
		{name: "unknown grant_type", call: tokenCall{Form: form("grant_type", "urn:example:bogus"), Basic: basic(svc.ID, svc.Secret)}, want: []outcome{{400, "unsupported_grant_type"}}},
		{name: "missing grant_type", call: tokenCall{Form: form("scope", "read"), Basic: basic(svc.ID, svc.Secret)}, want: []outcome{{400, "invalid_request"}}},
		{name: "grant_type repeated", call: tokenCall{Body: cc + "&" + cc, Basic: basic(svc.ID, svc.Secret)}, want: []outcome{{400, "invalid_request"}}},
		{name: "scope repeated", call: tokenCall{Body: cc + "&scope=read&scope=write", Basic: basic(svc.ID, svc.Secret)}, want: []outcome{{400, "invalid_request"}}},
		{name: "client_id repeated", call: tokenCall{Form: url.Values{"grant_type": {"client_credentials"}, "client_id": {svc.ID, svc.ID}, "client_secret": {svc.Secret}}}, want: []outcome{{400, "invalid_request"}}},
		{name: "username repeated", call: tokenCall{Form: url.Values{"grant_type": {"password"}, "username": {"alice", "bob"}, "password": {g.alice.Password}}, Basic: basic(app.ID, app.Secret)}, want: []outcome{{400, "invalid_request"}}},
		{name: "unknown scope", call: tokenCall{Form: form("grant_type", "client_credentials", "scope", "admin"), Basic: basic(svc.ID, svc.Secret)}, want: []outcome{{400, "invalid_scope"}}},
		{name: "scope partly outside the client's", call: tokenCall{Form: form("grant_type", "client_credentials", "scope", "read admin"), Basic: basic(svc.ID, svc.Secret)}, want: []outcome{{400, "invalid_scope"}}},
		{name: "scope of another client", call: tokenCall{Form: form("grant_type", "client_credentials", "scope", "groups"), Basic: basic(svc.ID, svc.Secret)}, want: []outcome{{400, "invalid_scope"}}},
		{name: "password grant with a scope outside the client's", call: tokenCall{Form: form("grant_type", "password", "username", "alice", "password", g.alice.Password, "scope", "read admin"), Basic: basic(app.ID, app.Secret)}, want: []outcome{{400, "invalid_scope"}}},
		{name: "wrong password", call: tokenCall{Form: form("grant_type", "password", "username", "alice", "password", "wrong-"+g.alice.Password), Basic: basic(app.ID, app.Secret)}, want: []outcome{{400, "invalid_grant"}}},
		{name: "unknown user", call: tokenCall{Form: form("grant_type", "password", "username", "mallory", "password", g.alice.Password), Basic: basic(app.ID, app.Secret)}, want: []outcome{{400, "invalid_grant"}}},
		{name: "another user's password", call: tokenCall{Form: form("grant_type", "password", "username", "bob", "password", g.alice.Password), Basic: basic(app.ID, app.Secret)}, want: []outcome{{400, "invalid_grant"}}},
		{name: "password grant without username", call: tokenCall{Form: form("grant_type", "password", "password", g.alice.Password), Basic: basic(app.ID, app.Secret)}, want: []outcome{{400, "invalid_request"}}},
		{name: "refresh_token grant without refresh_token", call: tokenCall{Form: form("grant_type", "refresh_token"), Basic: basic(app.ID, app.Secret)}, want: []outcome{{400, "invalid_request"}}},
		{name: "authorization_code grant without code", call: tokenCall{Form: form("grant_type", "authorization_code", "redirect_uri", "http://127.0.0.1:1/cb"), Basic: basic(app.ID, app.Secret)}, want: []outcome{{400, "invalid_request"}}},
		{name: "unknown code", call: tokenCall{Form: form("grant_type", "authorization_code", "code", randomSecret("nocode-"), "redirect_uri", "http://127.0.0.1:1/cb"), Basic: basic(app.ID, app.Secret)}, want: []outcome{{400, "invalid_grant"}}},
		{name: "parameters only in the query string of a POST", call: tokenCall{Query: cc + "&scope=read", Body: "", Basic: basic(svc.ID, svc.Secret)}, want: []outcome{{400, "invalid_request"}}},
		{name: "secret in the query string of a POST", call: tokenCall{Query: "client_secret=" + url.QueryEscape(svc.Secret), Form: form("grant_type", "client_credentials", "client_id", svc.ID)}, want: []outcome{{400, "invalid_request"}}},
		{name: "GET with parameters in the query", call: tokenCall{Method: http.MethodGet, Query: form("grant_type", "client_credentials", "client_id", svc.ID, "client_secret", svc.Secret).Encode()}, want: []outcome{{400, "invalid_request"}, {405, "invalid_request"}}},
		{name: "JSON body", call: tokenCall{Body: `{"grant_type":"client_credentials"}`, ContentType: "application/json", Basic: basic(svc.ID, svc.Secret)}, want: []outcome{{400, "invalid_request"}}},
		{name: "malformed form body", call: tokenCall{Body: "grant_type=client_credentials&scope=%zz", Basic: basic(svc.ID, svc.Secret)}, want: []outcome{{400, "invalid_request"}}},
		{name: "empty body", call: tokenCall{Basic: basic(svc.ID, svc.Secret)}, want: []outcome{{400, "invalid_request"}}},
		{name: "malformed Basic header value", call: tokenCall{Form: form("grant_type", "client_credentials"), Basic: basic("%zz", "x%")}, want: []outcome{{401, "invalid_client"}, {400, "invalid_request"}}},
	}
	for _, tc := range errorCases {
		t.Run("error/"+tc.name, func(t *testing.T) {
			r := in.token(t, tc.call)
			r.mustError(t, tc.want...)
			if tc.basicChallenge && r.Status == http.StatusUnauthorized {
				if wa := r.Header.Get("WWW-Authenticate"); !strings.HasPrefix(strings.ToLower(wa), "basic") {
					t.Errorf("WWW-Authenticate = %q, want Basic … after Basic auth failed (RFC 6749 §5.2)", wa)
				}
			}
		})
	}

	t.Run("raw malformed Authorization headers never 5xx", func(t *testing.T) {
		for _, h := range []string{"Basic", "Basic !!!notbase64", "Basic " + "Zm9v", "Bearer abc", "basic   ", "Basic Og=="} {
			req, _ := http.NewRequest(http.MethodPost, in.url("/token"), strings.NewReader("grant_type=client_credentials"))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Authorization", h)
			resp, err := in.http.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 400 && resp.StatusCode != 401 {
				t.Errorf("Authorization %q: status %d, want 400 or 401", h, resp.StatusCode)
			}
		}
	})
}

// TestTokenRequestInQueryOptIn covers allow_get_token_request: the seeds' GET /token?… URLs.
func TestTokenRequestInQueryOptIn(t *testing.T) {
	t.Parallel()
	svc := clientSpec{ID: "svc", Secret: randomSecret("svc-"), Grants: "client_credentials", Scopes: "read write"}
	in := startGate(t, gateSpec{Settings: "allow_get_token_request", Clients: []clientSpec{svc}})

	t.Run("GET with credentials in the query", func(t *testing.T) {
		q := form("grant_type", "client_credentials", "client_id", svc.ID, "client_secret", svc.Secret).Encode()
		tok := in.token(t, tokenCall{Method: http.MethodGet, Query: q}).mustToken(t)
		if !sameScopes(tok.Scope, "read write") {
			t.Errorf("scope = %q", tok.Scope)
		}
	})
	t.Run("POST form still works", func(t *testing.T) {
		in.token(t, tokenCall{Form: form("grant_type", "client_credentials"), Basic: basic(svc.ID, svc.Secret)}).mustToken(t)
	})
	t.Run("GET with a wrong secret", func(t *testing.T) {
		q := form("grant_type", "client_credentials", "client_id", svc.ID, "client_secret", "nope-"+svc.Secret).Encode()
		in.token(t, tokenCall{Method: http.MethodGet, Query: q}).mustError(t, outcome{401, "invalid_client"})
	})
}
