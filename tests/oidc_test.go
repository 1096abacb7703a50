package tests

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"
)

// OpenID Connect end to end (issue 4): discovery, id_token, userinfo and JWKS against the real
// binary, checked by github.com/coreos/go-oidc/v3 and golang.org/x/oauth2 as a relying party would.

// opGate is a Caddy that is an OpenID Provider, with a guarded API site (guardRoutes) beside it.
// The embedded guardGate's app (password refresh_token) and svc (client_credentials) clients and
// its alice (here with a full set of claims) keep the guard helpers working.
type opGate struct {
	*guardGate
	web  clientSpec // confidential, authorization_code refresh_token, redirect webCB
	spa  clientSpec // public, authorization_code refresh_token, redirect spaCB
	rs   clientSpec // a resource server: confidential, only introspects
	body string     // the oauth2 block as written, for restarts with another configuration
	opts siteOptions
}

// opUser is alice with standard and custom claims.
func opUser() userSpec {
	return userSpec{
		Name:     "alice",
		Password: randomSecret("Pässwörd &=+ "),
		Claims: [][2]string{
			{"email", "alice@example.com"},
			{"email_verified", "true"},
			{"name", `"Alice Liddell"`},
			{"given_name", "Alice"},
			{"family_name", "Liddell"},
			{"groups", "admins"},
			{"phone_number", `"+44 20 7946 0000"`},
		},
	}
}

func startOP(t *testing.T, settings string) *opGate {
	t.Helper()
	return startOPWith(t, settings, false)
}

// startOPWith runs the provider; defaultBase serves the endpoints under the module's /oauth2.
func startOPWith(t *testing.T, settings string, defaultBase bool) *opGate {
	t.Helper()
	g := &opGate{
		guardGate: &guardGate{
			svc:   clientSpec{ID: "svc", Secret: randomSecret("svc-"), Grants: "client_credentials", Scopes: "read write admin"},
			app:   clientSpec{ID: "app", Secret: randomSecret("app-"), Grants: "password refresh_token", Scopes: "openid email read write admin"},
			alice: opUser(),
		},
		web: clientSpec{ID: "web", Secret: randomSecret("web-"), Grants: "authorization_code refresh_token", RedirectURIs: webCB,
			Scopes: "openid profile email groups phone read write", Name: "Web App"},
		spa: clientSpec{ID: "spa", Grants: "authorization_code refresh_token implicit", RedirectURIs: spaCB, Scopes: "openid read"},
		rs:  clientSpec{ID: "rs", Secret: randomSecret("rs-"), Grants: "client_credentials"},
	}
	g.upstream = startEchoUpstream(t)
	g.api = fmt.Sprintf("http://127.0.0.1:%d", freePorts(t, 1)[0])
	g.opts = siteOptions{BasePath: "/o", DefaultBasePath: defaultBase,
		ExtraSites: fmt.Sprintf("%s {\n%s}\n", g.api, fmt.Sprintf(guardRoutes, g.upstream))}
	spec := gateSpec{Settings: settings, Clients: []clientSpec{g.web, g.spa, g.rs, g.app, g.svc}, Users: []userSpec{g.alice}}
	g.body = spec.body(t)
	g.in = startCaddyWith(t, g.body, g.opts)
	for _, c := range spec.Clients {
		g.in.remember("client secret", c.Secret)
	}
	g.in.remember("user password", g.alice.Password)
	return g
}

// restartWith rewrites the Caddyfile with extra lines at the top of the oauth2 block and restarts
// Caddy on the same ports, home and store.
func (g *opGate) restartWith(t *testing.T, extra string) {
	t.Helper()
	g.in.stop()
	body := strings.TrimSpace(extra) + "\n" + g.body
	if err := os.WriteFile(g.in.file, []byte(g.in.caddyfile(body, g.opts)), 0o600); err != nil {
		t.Fatal(err)
	}
	g.in.start()
}

// codeRequest is one authorization request of the web (or spa) client.
type codeRequest struct {
	Client   clientSpec // default web
	Scope    string
	State    string
	Nonce    string
	Verifier string // PKCE S256 verifier; default a fresh one
}

// authorizeCode walks the browser through login and consent and returns the code, checking the
// redirect carries state and iss (RFC 9207).
func (g *opGate) authorizeCode(t *testing.T, r codeRequest) (code, verifier string) {
	t.Helper()
	c := r.Client
	if c.ID == "" {
		c = g.web
	}
	redirect := strings.Fields(c.RedirectURIs)[0]
	if r.State == "" {
		r.State = randomSecret("st-")
	}
	verifier = r.Verifier
	if verifier == "" {
		verifier = oauth2.GenerateVerifier()
	}
	params := withPKCE(authParams(c.ID, redirect, "code", r.Scope, r.State), oauth2.S256ChallengeFromVerifier(verifier))
	if r.Nonce != "" {
		params.Set("nonce", r.Nonce)
	}
	res := g.in.newBrowser(t).authorize(params, g.alice.Name, g.alice.Password, "allow")
	code = mustCode(t, res, redirect, r.State)
	if iss := res.Redirect.Query().Get("iss"); iss != g.in.base {
		t.Errorf("authorization response iss = %q, want %q (RFC 9207)", iss, g.in.base)
	}
	return code, verifier
}

// codeTokens runs the code flow (PKCE S256) and the exchange by hand and returns the token reply.
func (g *opGate) codeTokens(t *testing.T, r codeRequest) *reply {
	t.Helper()
	c := r.Client
	if c.ID == "" {
		c = g.web
	}
	code, verifier := g.authorizeCode(t, r)
	call := tokenCall{Form: form("grant_type", "authorization_code", "code", code, "redirect_uri", strings.Fields(c.RedirectURIs)[0], "code_verifier", verifier)}
	if c.Secret != "" {
		call.Basic = basic(c.ID, c.Secret)
	} else {
		call.Form.Set("client_id", c.ID)
	}
	return g.in.token(t, call)
}

// refresh is the refresh_token grant of the web client.
func (g *opGate) refresh(t *testing.T, rt string) *reply {
	t.Helper()
	return g.in.token(t, g.webRefreshCall(rt))
}

func (g *opGate) webRefreshCall(rt string) tokenCall {
	return tokenCall{Form: form("grant_type", "refresh_token", "refresh_token", rt), Basic: basic(g.web.ID, g.web.Secret)}
}

// jsonGet fetches a JSON document without authentication.
func jsonGet(t *testing.T, in *instance, rawURL string) (*http.Response, map[string]any) {
	t.Helper()
	resp, err := in.http.Get(rawURL)
	if err != nil {
		t.Fatalf("GET %s: %v", rawURL, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	var obj map[string]any
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&obj); err != nil {
		t.Fatalf("GET %s: %d, body is not a JSON object: %v\n%s", rawURL, resp.StatusCode, err, data)
	}
	return resp, obj
}

// jwks fetches and parses the published key set.
func (g *opGate) jwks(t *testing.T) jose.JSONWebKeySet {
	t.Helper()
	resp, err := g.in.http.Get(g.in.url("/jwks"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /jwks: %d %s", resp.StatusCode, data)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(data, &set); err != nil {
		t.Fatalf("JWKS is not a JWK Set: %v\n%s", err, data)
	}
	return set
}

// jwtParts decodes a compact JWS without verifying it.
func jwtParts(t *testing.T, tok string) (header, claims map[string]any) {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a compact JWS (%d parts): %.40s…", len(parts), tok)
	}
	dec := func(s string) map[string]any {
		raw, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			t.Fatalf("JWS part is not base64url: %v", err)
		}
		var m map[string]any
		d := json.NewDecoder(bytes.NewReader(raw))
		d.UseNumber()
		if err := d.Decode(&m); err != nil {
			t.Fatalf("JWS part is not a JSON object: %v: %s", err, raw)
		}
		return m
	}
	return dec(parts[0]), dec(parts[1])
}

func numClaim(t *testing.T, m map[string]any, k string) int64 {
	t.Helper()
	n, ok := m[k].(json.Number)
	if !ok {
		t.Errorf("claim %s = %#v, want a JSON number", k, m[k])
		return 0
	}
	v, err := n.Int64()
	if err != nil {
		t.Errorf("claim %s = %v, want an integer (NumericDate)", k, n)
	}
	return v
}

// near asserts a NumericDate is within slack of want.
func near(t *testing.T, what string, got int64, want time.Time, slack time.Duration) {
	t.Helper()
	if d := time.Unix(got, 0).Sub(want); d < -slack || d > slack {
		t.Errorf("%s = %v, want within %v of %v", what, time.Unix(got, 0), slack, want.Truncate(time.Second))
	}
}

// oidcCtx is a context whose HTTP client go-oidc and x/oauth2 use.
func oidcCtx(t *testing.T, in *instance) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	hc := &http.Client{Transport: in.transport, Timeout: requestTimeout}
	return oidc.ClientContext(context.WithValue(ctx, oauth2.HTTPClient, hc), hc)
}

func retrieveErr(err error) string {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return fmt.Sprintf("%d %s", re.Response.StatusCode, re.Body)
	}
	return err.Error()
}

// TestOIDCGoOIDC: go-oidc discovers the provider, x/oauth2 runs the code flow with PKCE S256 from
// the discovered endpoints, and every id_token (first and after a refresh) verifies: signature
// against the JWKS, iss, aud, exp, nonce, at_hash; claims follow the granted scopes; UserInfo works.
func TestOIDCGoOIDC(t *testing.T) {
	t.Parallel()
	g := startOP(t, "")
	in := g.in
	ctx := oidcCtx(t, in)

	provider, err := oidc.NewProvider(ctx, in.base)
	if err != nil {
		t.Fatalf("go-oidc discovery of %s: %v", in.base, err)
	}
	if ep := provider.Endpoint(); ep.AuthURL != in.url("/authorize") || ep.TokenURL != in.url("/token") {
		t.Errorf("discovered endpoints %+v", ep)
	}
	if provider.UserInfoEndpoint() != in.url("/userinfo") {
		t.Errorf("userinfo endpoint %q", provider.UserInfoEndpoint())
	}
	verifier := provider.Verifier(&oidc.Config{ClientID: g.web.ID})

	conf := func(scopes ...string) *oauth2.Config {
		return &oauth2.Config{ClientID: g.web.ID, ClientSecret: g.web.Secret, Endpoint: provider.Endpoint(), RedirectURL: webCB, Scopes: scopes}
	}
	// flow runs the code flow through the library-built URL and returns the token and verified id_token.
	flow := func(t *testing.T, c *oauth2.Config) (*oauth2.Token, *oidc.IDToken, string, string) {
		t.Helper()
		pkce := oauth2.GenerateVerifier()
		state, nonce := oddState(), randomSecret("nonce-")
		authURL := c.AuthCodeURL(state, oauth2.S256ChallengeOption(pkce), oidc.Nonce(nonce))
		res := in.newBrowser(t).authorizeURL(authURL, g.alice.Name, g.alice.Password, "allow")
		code := mustCode(t, res, webCB, state)
		if iss := res.Redirect.Query().Get("iss"); iss != in.base {
			t.Errorf("iss in the authorization response = %q, want %q", iss, in.base)
		}
		tok, err := c.Exchange(ctx, code, oauth2.VerifierOption(pkce))
		if err != nil {
			t.Fatalf("Exchange: %s", retrieveErr(err))
		}
		in.remember("access_token", tok.AccessToken)
		in.remember("refresh_token", tok.RefreshToken)
		raw, _ := tok.Extra("id_token").(string)
		if raw == "" {
			t.Fatalf("no id_token in the token response though openid was granted (scope %v)", tok.Extra("scope"))
		}
		idt, err := verifier.Verify(ctx, raw)
		if err != nil {
			t.Fatalf("go-oidc rejects the id_token: %v", err)
		}
		return tok, idt, raw, nonce
	}

	type claimSet struct {
		Email         string `json:"email"`
		EmailVerified *bool  `json:"email_verified"`
		Name          string `json:"name"`
		GivenName     string `json:"given_name"`
		FamilyName    string `json:"family_name"`
		Groups        string `json:"groups"`
		Phone         string `json:"phone_number"`
		AuthTime      int64  `json:"auth_time"`
		AtHash        string `json:"at_hash"`
		Nonce         string `json:"nonce"`
	}

	t.Run("code flow, id_token, userinfo, refresh", func(t *testing.T) {
		c := conf(oidc.ScopeOpenID, "profile", "email", "read")
		start := time.Now()
		tok, idt, raw, nonce := flow(t, c)

		if idt.Issuer != in.base {
			t.Errorf("iss = %q, want %q", idt.Issuer, in.base)
		}
		if idt.Subject != "alice" {
			t.Errorf("sub = %q, want alice", idt.Subject)
		}
		if !slices.Equal(idt.Audience, []string{g.web.ID}) {
			t.Errorf("aud = %v, want [%s]", idt.Audience, g.web.ID)
		}
		if idt.Nonce != nonce {
			t.Errorf("nonce = %q, want %q echoed", idt.Nonce, nonce)
		}
		if idt.AccessTokenHash == "" {
			t.Errorf("no at_hash in the id_token of a code flow")
		} else if err := idt.VerifyAccessToken(tok.AccessToken); err != nil {
			t.Errorf("at_hash does not match the access token: %v", err)
		}
		near(t, "iat", idt.IssuedAt.Unix(), time.Now(), 10*time.Second)
		if idt.Expiry.Before(time.Now().Add(50*time.Minute)) || idt.Expiry.After(time.Now().Add(2*time.Hour)) {
			t.Errorf("exp = %v, want about an hour from now", idt.Expiry)
		}
		var cl claimSet
		if err := idt.Claims(&cl); err != nil {
			t.Fatal(err)
		}
		if cl.AuthTime == 0 {
			t.Errorf("no auth_time")
		} else {
			near(t, "auth_time", cl.AuthTime, start, 10*time.Second)
			if cl.AuthTime > idt.IssuedAt.Unix() {
				t.Errorf("auth_time %d after iat %d", cl.AuthTime, idt.IssuedAt.Unix())
			}
		}
		if cl.Email != "alice@example.com" || cl.EmailVerified == nil || !*cl.EmailVerified {
			t.Errorf("email claims = %q %v, want alice@example.com true (a JSON boolean)", cl.Email, cl.EmailVerified)
		}
		if cl.Name != "Alice Liddell" || cl.GivenName != "Alice" || cl.FamilyName != "Liddell" {
			t.Errorf("profile claims = %q %q %q", cl.Name, cl.GivenName, cl.FamilyName)
		}
		if cl.Groups != "" || cl.Phone != "" {
			t.Errorf("claims of scopes not granted were released: groups=%q phone=%q", cl.Groups, cl.Phone)
		}
		h, _ := jwtParts(t, raw)
		if h["alg"] != "RS256" {
			t.Errorf("id_token alg = %v, want RS256", h["alg"])
		}

		ui, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
		if err != nil {
			t.Fatalf("go-oidc UserInfo: %v", err)
		}
		if ui.Subject != "alice" || ui.Email != "alice@example.com" || !ui.EmailVerified {
			t.Errorf("userinfo = %+v", ui)
		}
		var uic claimSet
		if err := ui.Claims(&uic); err != nil {
			t.Fatal(err)
		}
		if uic.Name != "Alice Liddell" || uic.Groups != "" || uic.Phone != "" || uic.Nonce != "" || uic.AtHash != "" {
			t.Errorf("userinfo claims = %+v", uic)
		}

		// Refresh: a new id_token with the same sub, aud and auth_time, a new iat, at_hash of the
		// new access token, and (OIDC Core §12.2) no nonce.
		time.Sleep(1100 * time.Millisecond) // a later iat
		old := *tok
		tok.Expiry = time.Now().Add(-time.Minute)
		next, err := c.TokenSource(ctx, tok).Token()
		if err != nil {
			t.Fatalf("refresh through TokenSource: %s", retrieveErr(err))
		}
		in.remember("access_token", next.AccessToken)
		in.remember("refresh_token", next.RefreshToken)
		if next.AccessToken == old.AccessToken || next.RefreshToken == old.RefreshToken {
			t.Errorf("refresh returned the old tokens")
		}
		raw2, _ := next.Extra("id_token").(string)
		if raw2 == "" {
			t.Fatalf("no id_token after refresh")
		}
		idt2, err := verifier.Verify(ctx, raw2)
		if err != nil {
			t.Fatalf("go-oidc rejects the refreshed id_token: %v", err)
		}
		if idt2.Subject != idt.Subject || !slices.Equal(idt2.Audience, idt.Audience) || idt2.Issuer != idt.Issuer {
			t.Errorf("refreshed id_token sub/aud/iss %q %v %q differ from %q %v %q", idt2.Subject, idt2.Audience, idt2.Issuer, idt.Subject, idt.Audience, idt.Issuer)
		}
		if !idt2.IssuedAt.After(idt.IssuedAt) {
			t.Errorf("refreshed id_token iat %v not after the first %v", idt2.IssuedAt, idt.IssuedAt)
		}
		if err := idt2.VerifyAccessToken(next.AccessToken); err != nil {
			t.Errorf("refreshed id_token at_hash: %v", err)
		}
		var cl2 claimSet
		_ = idt2.Claims(&cl2)
		if cl2.AuthTime != cl.AuthTime {
			t.Errorf("refreshed id_token auth_time = %d, want the original %d (OIDC Core §12.2)", cl2.AuthTime, cl.AuthTime)
		}
		if cl2.Nonce != "" {
			t.Errorf("refreshed id_token carries nonce %q", cl2.Nonce)
		}
		if cl2.Email != "alice@example.com" || cl2.Name != "Alice Liddell" {
			t.Errorf("refreshed id_token claims = %+v", cl2)
		}
		if _, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(next)); err != nil {
			t.Errorf("UserInfo with the refreshed access token: %v", err)
		}
	})

	for _, c := range []struct {
		scopes []string
		want   claimSet
	}{
		{[]string{"openid"}, claimSet{}},
		{[]string{"openid", "email"}, claimSet{Email: "alice@example.com"}},
		{[]string{"openid", "profile"}, claimSet{Name: "Alice Liddell", GivenName: "Alice", FamilyName: "Liddell"}},
		{[]string{"openid", "groups"}, claimSet{Groups: "admins"}},
		{[]string{"openid", "phone"}, claimSet{Phone: "+44 20 7946 0000"}},
	} {
		t.Run("claims by scope "+strings.Join(c.scopes, "+"), func(t *testing.T) {
			cf := conf(c.scopes...)
			tok, idt, _, _ := flow(t, cf)
			var got claimSet
			if err := idt.Claims(&got); err != nil {
				t.Fatal(err)
			}
			ui, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(tok))
			if err != nil {
				t.Fatalf("UserInfo: %v", err)
			}
			var gotUI claimSet
			_ = ui.Claims(&gotUI)
			for _, s := range []struct {
				what string
				cs   claimSet
			}{{"id_token", got}, {"userinfo", gotUI}} {
				cs := s.cs
				if cs.Email != c.want.Email || cs.Name != c.want.Name || cs.GivenName != c.want.GivenName ||
					cs.FamilyName != c.want.FamilyName || cs.Groups != c.want.Groups || cs.Phone != c.want.Phone {
					t.Errorf("%s claims with scope %v = %+v, want %+v", s.what, c.scopes, cs, c.want)
				}
				if (cs.EmailVerified != nil) != (c.want.Email != "") {
					t.Errorf("%s email_verified present = %v with scope %v", s.what, cs.EmailVerified != nil, c.scopes)
				}
			}
			if ui.Subject != "alice" {
				t.Errorf("userinfo sub = %q", ui.Subject)
			}
		})
	}

	t.Run("no openid scope: no id_token, userinfo refuses", func(t *testing.T) {
		c := conf("read")
		pkce := oauth2.GenerateVerifier()
		res := in.newBrowser(t).authorizeURL(c.AuthCodeURL("s-no-openid", oauth2.S256ChallengeOption(pkce)), g.alice.Name, g.alice.Password, "allow")
		tok, err := c.Exchange(ctx, mustCode(t, res, webCB, "s-no-openid"), oauth2.VerifierOption(pkce))
		if err != nil {
			t.Fatalf("Exchange: %s", retrieveErr(err))
		}
		in.remember("access_token", tok.AccessToken)
		in.remember("refresh_token", tok.RefreshToken)
		if tok.Extra("id_token") != nil {
			t.Errorf("id_token issued without the openid scope")
		}
		if _, err := provider.UserInfo(ctx, oauth2.StaticTokenSource(tok)); err == nil {
			t.Errorf("UserInfo answered for a token without openid")
		}
	})

	t.Run("an id_token for another client does not verify", func(t *testing.T) {
		_, _, raw, _ := flow(t, conf(oidc.ScopeOpenID))
		other := provider.Verifier(&oidc.Config{ClientID: "someone-else"})
		if _, err := other.Verify(ctx, raw); err == nil {
			t.Errorf("an id_token for %s verified for client someone-else", g.web.ID)
		}
	})
}

// TestOIDCDiscovery: both metadata documents at the issuer root list every endpoint, grant,
// response type, scope, PKCE method, client authentication method and signing algorithm, with
// issuer exactly as configured; each listed endpoint answers; pkce_plain off drops plain.
func TestOIDCDiscovery(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name        string
		settings    string
		defaultBase bool
		pkce        []string
	}{
		{"base /o, plain allowed", "", false, []string{"S256", "plain"}},
		{"default base /oauth2, pkce_plain off", "pkce_plain off", true, []string{"S256"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			g := startOPWith(t, c.settings, c.defaultBase)
			in := g.in
			var docs []map[string]any
			for _, p := range []string{"/.well-known/openid-configuration", "/.well-known/oauth-authorization-server", "/.well-known/openid-configuration/"} {
				resp, md := jsonGet(t, in, in.base+p)
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("GET %s: %d", p, resp.StatusCode)
				}
				checkJSONContentType(t, resp.Header)
				docs = append(docs, md)
			}
			// The documents are at the issuer's root, not under the base path.
			if resp, err := in.http.Get(in.url("/.well-known/openid-configuration")); err == nil {
				data, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if bytes.Contains(data, []byte(`"issuer"`)) {
					t.Errorf("metadata also served under the base path %s", in.basePath)
				}
			}
			if a, b := fmt.Sprint(docs[0]), fmt.Sprint(docs[1]); a != b {
				t.Errorf("openid-configuration and oauth-authorization-server differ:\n%s\n%s", a, b)
			}
			md := docs[0]
			strs := func(k string) []string {
				raw, ok := md[k].([]any)
				if !ok {
					t.Errorf("%s = %#v, want a JSON array", k, md[k])
					return nil
				}
				var out []string
				for _, v := range raw {
					s, _ := v.(string)
					out = append(out, s)
				}
				return out
			}
			has := func(k string, want ...string) {
				got := strs(k)
				for _, w := range want {
					if !slices.Contains(got, w) {
						t.Errorf("%s = %v, missing %q", k, got, w)
					}
				}
			}
			exactly := func(k string, want ...string) {
				got := strs(k)
				if !slices.Equal(scopeList(got), scopeList(want)) {
					t.Errorf("%s = %v, want exactly %v", k, got, want)
				}
			}
			if md["issuer"] != in.base {
				t.Errorf("issuer = %v, want exactly %q", md["issuer"], in.base)
			}
			eps := map[string]string{
				"authorization_endpoint": "/authorize",
				"token_endpoint":         "/token",
				"userinfo_endpoint":      "/userinfo",
				"jwks_uri":               "/jwks",
				"introspection_endpoint": "/introspect",
				"revocation_endpoint":    "/revoke",
			}
			for k, p := range eps {
				if md[k] != in.url(p) {
					t.Errorf("%s = %v, want %s", k, md[k], in.url(p))
				}
			}
			exactly("grant_types_supported", "authorization_code", "implicit", "password", "client_credentials", "refresh_token")
			has("response_types_supported", "code", "token")
			has("response_modes_supported", "query", "fragment")
			has("subject_types_supported", "public")
			exactly("id_token_signing_alg_values_supported", "RS256")
			has("scopes_supported", "openid", "profile", "email", "groups", "phone", "read", "write", "admin")
			has("claims_supported", "sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "email", "email_verified", "name", "groups")
			if got := strs("code_challenge_methods_supported"); !slices.Equal(got, c.pkce) {
				t.Errorf("code_challenge_methods_supported = %v, want %v", got, c.pkce)
			}
			exactly("token_endpoint_auth_methods_supported", "client_secret_basic", "client_secret_post", "none")
			exactly("introspection_endpoint_auth_methods_supported", "client_secret_basic", "client_secret_post")
			has("revocation_endpoint_auth_methods_supported", "client_secret_basic", "client_secret_post")
			if md["authorization_response_iss_parameter_supported"] != true {
				t.Errorf("authorization_response_iss_parameter_supported = %v, want true", md["authorization_response_iss_parameter_supported"])
			}
			for _, k := range []string{"request_parameter_supported", "request_uri_parameter_supported"} {
				if md[k] != false {
					t.Errorf("%s = %v, want false (request objects are refused)", k, md[k])
				}
			}
			for k, v := range md {
				if v == nil {
					t.Errorf("%s is null; omit it instead", k)
				}
			}

			// Every advertised endpoint exists and answers as it should without credentials.
			get := func(u string) int {
				resp, err := in.http.Get(u)
				if err != nil {
					t.Fatalf("GET %s: %v", u, err)
				}
				resp.Body.Close()
				return resp.StatusCode
			}
			post := func(u string) (int, http.Header) {
				resp, err := in.http.Post(u, formCT, strings.NewReader("token=x"))
				if err != nil {
					t.Fatalf("POST %s: %v", u, err)
				}
				resp.Body.Close()
				return resp.StatusCode, resp.Header
			}
			if s := get(in.url("/jwks")); s != http.StatusOK {
				t.Errorf("jwks_uri answered %d", s)
			}
			if s := get(in.url("/authorize")); s != http.StatusBadRequest {
				t.Errorf("authorization_endpoint without parameters answered %d, want 400", s)
			}
			if s := get(in.url("/userinfo")); s != http.StatusUnauthorized {
				t.Errorf("userinfo_endpoint without a token answered %d, want 401", s)
			}
			for _, p := range []string{"/token", "/introspect", "/revoke"} {
				if s, h := post(in.url(p)); s != http.StatusUnauthorized || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Basic") && p == "/introspect" {
					t.Errorf("POST %s without client authentication answered %d (WWW-Authenticate %q), want 401", p, s, h.Get("WWW-Authenticate"))
				}
			}

			// go-oidc accepts the document (the issuer must match exactly).
			ctx := oidcCtx(t, in)
			if _, err := oidc.NewProvider(ctx, in.base); err != nil {
				t.Errorf("go-oidc: %v", err)
			}
			if _, err := oidc.NewProvider(ctx, in.base+"/"); err == nil {
				t.Errorf("go-oidc accepted the issuer with a trailing slash: the document's issuer is not exact")
			}
		})
	}
}

// scopeList sorts a copy, for order-insensitive comparison.
func scopeList(v []string) []string {
	out := slices.Clone(v)
	slices.Sort(out)
	return out
}

// TestOIDCUserinfo: /userinfo takes the token in the header, the query or a form body, by GET and
// POST, and answers RFC 6750 errors otherwise.
func TestOIDCUserinfo(t *testing.T) {
	t.Parallel()
	g := startOP(t, "")
	in := g.in
	tok := g.codeTokens(t, codeRequest{Scope: "openid email read"}).mustToken(t)

	call := func(method, query, body, bearer string) (*http.Response, map[string]any) {
		t.Helper()
		u := in.url("/userinfo")
		if query != "" {
			u += "?" + query
		}
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, _ := http.NewRequest(method, u, rd)
		if body != "" {
			req.Header.Set("Content-Type", formCT)
		}
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := in.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		if resp.StatusCode >= 500 {
			t.Errorf("%s /userinfo answered %d: %s", method, resp.StatusCode, data)
		}
		var m map[string]any
		_ = json.Unmarshal(data, &m)
		return resp, m
	}
	ok := func(t *testing.T, resp *http.Response, m map[string]any) {
		t.Helper()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("want 200, got %d %v", resp.StatusCode, m)
		}
		checkJSONContentType(t, resp.Header)
		checkNoStore(t, resp.Header)
		if m["sub"] != "alice" || m["email"] != "alice@example.com" || m["email_verified"] != true {
			t.Errorf("userinfo = %v", m)
		}
		if _, leak := m["name"]; leak {
			t.Errorf("profile claim released without the profile scope: %v", m)
		}
	}
	refused := func(t *testing.T, resp *http.Response, m map[string]any, status int, code string) {
		t.Helper()
		if resp.StatusCode != status {
			t.Fatalf("want %d %s, got %d %v", status, code, resp.StatusCode, m)
		}
		ch, err := parseChallenge(resp.Header.Get("WWW-Authenticate"))
		if err != nil || ch.Scheme != "Bearer" {
			t.Errorf("WWW-Authenticate = %q (%v), want a Bearer challenge", resp.Header.Get("WWW-Authenticate"), err)
		}
		if ch.Params["error"] != code {
			t.Errorf("WWW-Authenticate error = %q, want %q", ch.Params["error"], code)
		}
		if code != "" && m["error"] != code {
			t.Errorf("body error = %v, want %s", m["error"], code)
		}
	}

	t.Run("GET with the header", func(t *testing.T) { r, m := call("GET", "", "", tok.Access); ok(t, r, m) })
	t.Run("POST with the header", func(t *testing.T) { r, m := call("POST", "", "", tok.Access); ok(t, r, m) })
	t.Run("GET with access_token in the query", func(t *testing.T) {
		r, m := call("GET", "access_token="+url.QueryEscape(tok.Access), "", "")
		ok(t, r, m)
	})
	t.Run("POST with access_token in the form body", func(t *testing.T) {
		r, m := call("POST", "", "access_token="+url.QueryEscape(tok.Access), "")
		ok(t, r, m)
	})
	t.Run("no token", func(t *testing.T) { r, m := call("GET", "", "", ""); refused(t, r, m, 401, "") })
	t.Run("unknown token", func(t *testing.T) {
		r, m := call("GET", "", "", randomSecret("nope-"))
		refused(t, r, m, 401, "invalid_token")
	})
	t.Run("token in two places", func(t *testing.T) {
		r, m := call("GET", "access_token="+url.QueryEscape(tok.Access), "", tok.Access)
		refused(t, r, m, 400, "invalid_request")
	})
	t.Run("token without openid", func(t *testing.T) {
		pw := g.pwToken(t, "read")
		r, m := call("GET", "", "", pw.Access)
		refused(t, r, m, 403, "insufficient_scope")
	})
	t.Run("the id_token is not an access token", func(t *testing.T) {
		idt := g.codeTokens(t, codeRequest{Scope: "openid"}).str("id_token")
		r, m := call("GET", "", "", idt)
		refused(t, r, m, 401, "invalid_token")
	})
	t.Run("PUT is not allowed", func(t *testing.T) {
		r, _ := call("PUT", "", "", tok.Access)
		if r.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("PUT /userinfo: %d, want 405", r.StatusCode)
		}
	})
}

// TestOIDCBadInput: oversized nonce and state, unknown prompt, request objects, tampered JWTs at
// /userinfo, and unauthenticated introspection all get clear errors, never a 5xx.
func TestOIDCBadInput(t *testing.T) {
	t.Parallel()
	g := startOP(t, "")
	in := g.in
	big := func(prefix string) string { return prefix + strings.Repeat("n", 10<<10-len(prefix)) }

	t.Run("10 KB nonce is echoed in the id_token", func(t *testing.T) {
		nonce := big("nonce-")
		r := g.codeTokens(t, codeRequest{Scope: "openid", Nonce: nonce})
		r.mustToken(t)
		_, cl := jwtParts(t, r.str("id_token"))
		if cl["nonce"] != nonce {
			t.Errorf("nonce not echoed (got %d bytes)", len(fmt.Sprint(cl["nonce"])))
		}
	})
	t.Run("10 KB state is echoed", func(t *testing.T) {
		state := big("state-")
		g.codeTokens(t, codeRequest{Scope: "openid", State: state}).mustToken(t) // mustCode checks the state
	})

	errRedirect := func(t *testing.T, extra url.Values, want string) {
		t.Helper()
		params := authParams(g.web.ID, webCB, "code", "openid", "s-bad")
		params = withPKCE(params, oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier()))
		for k, vs := range extra {
			params[k] = vs
		}
		res := in.newBrowser(t).authorize(params, g.alice.Name, g.alice.Password, "allow")
		mustRedirectError(t, res, webCB, want, "s-bad")
		if res.Redirect != nil && res.Redirect.Query().Get("iss") != in.base {
			t.Errorf("error redirect without iss=%s: %s", in.base, res.Redirect)
		}
		if res.SawLogin {
			t.Errorf("the login page was shown before refusing the request")
		}
	}
	t.Run("unknown prompt", func(t *testing.T) { errRedirect(t, url.Values{"prompt": {"teleport"}}, "invalid_request") })
	t.Run("known prompt among unknown ones", func(t *testing.T) {
		errRedirect(t, url.Values{"prompt": {"login frobnicate"}}, "invalid_request")
	})
	t.Run("request object", func(t *testing.T) {
		obj := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`)) + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"client_id":"web"}`)) + "."
		errRedirect(t, url.Values{"request": {obj}}, "request_not_supported")
	})
	t.Run("request_uri", func(t *testing.T) {
		errRedirect(t, url.Values{"request_uri": {"https://client.example.org/request.jwt"}}, "request_not_supported")
	})

	t.Run("tampered JWTs at /userinfo", func(t *testing.T) {
		idt := g.codeTokens(t, codeRequest{Scope: "openid"}).str("id_token")
		parts := strings.Split(idt, ".")
		for name, tok := range map[string]string{
			"flipped payload": parts[0] + "." + flipChar(parts[1]) + "." + parts[2],
			"alg none":        b64json(`{"alg":"none","typ":"JWT"}`) + "." + parts[1] + ".",
			"no signature":    parts[0] + "." + parts[1] + ".",
			"garbage":         "a.b.c",
		} {
			req, _ := http.NewRequest("GET", in.url("/userinfo"), nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := in.http.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
				t.Errorf("%s: %d %q, want 401 invalid_token", name, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
			}
		}
	})

	t.Run("introspection without client authentication", func(t *testing.T) {
		r := in.token(t, tokenCall{Path: "/introspect", Form: form("token", "whatever")})
		r.mustError(t, outcome{401, "invalid_client"})
		if !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Basic") {
			t.Errorf("WWW-Authenticate = %q, want a Basic challenge (RFC 7662 §2.1)", r.Header.Get("WWW-Authenticate"))
		}
	})
}

// TestAuthorizationResponseIss: every authorization response names the issuer (RFC 9207 §2):
// codes, errors, and the implicit flow's fragment.
func TestAuthorizationResponseIss(t *testing.T) {
	t.Parallel()
	g := startOP(t, "")
	in := g.in
	t.Run("code", func(t *testing.T) { g.authorizeCode(t, codeRequest{Scope: "openid"}) }) // authorizeCode checks iss
	t.Run("access_denied", func(t *testing.T) {
		p := withPKCE(authParams(g.web.ID, webCB, "code", "openid", "s-deny"), oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier()))
		res := in.newBrowser(t).authorize(p, g.alice.Name, g.alice.Password, "deny")
		mustRedirectError(t, res, webCB, "access_denied", "s-deny")
		if got := res.Redirect.Query().Get("iss"); got != in.base {
			t.Errorf("iss = %q, want %q", got, in.base)
		}
	})
	t.Run("invalid_scope", func(t *testing.T) {
		p := withPKCE(authParams(g.web.ID, webCB, "code", "openid admin", "s-scope"), oauth2.S256ChallengeFromVerifier(oauth2.GenerateVerifier()))
		res := in.newBrowser(t).authorize(p, g.alice.Name, g.alice.Password, "allow")
		mustRedirectError(t, res, webCB, "invalid_scope", "s-scope")
		if got := res.Redirect.Query().Get("iss"); got != in.base {
			t.Errorf("iss = %q, want %q", got, in.base)
		}
	})
	t.Run("implicit token in the fragment", func(t *testing.T) {
		res := in.newBrowser(t).authorize(authParams(g.spa.ID, spaCB, "token", "read", "s-imp"), g.alice.Name, g.alice.Password, "allow")
		if res.Redirect == nil {
			t.Fatal("no redirect")
		}
		f := fragmentValues(res.Redirect)
		if f.Get("access_token") == "" || f.Get("state") != "s-imp" {
			t.Fatalf("implicit redirect %s", res.Redirect.Redacted())
		}
		if f.Get("iss") != in.base {
			t.Errorf("fragment iss = %q, want %q", f.Get("iss"), in.base)
		}
		if res.Redirect.RawQuery != "" {
			t.Errorf("implicit response in the query: %q", res.Redirect.RawQuery)
		}
	})
}

// flipChar changes one character in the middle of a base64url string to another valid one.
func flipChar(s string) string {
	i := len(s) / 2
	c := byte('A')
	if s[i] == 'A' {
		c = 'B'
	}
	return s[:i] + string(c) + s[i+1:]
}

func b64json(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
