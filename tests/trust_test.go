package tests

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// countingProxy stands between the gate and a provider's endpoint: it counts the requests and
// can play the provider being down (502) without stopping it.
type countingProxy struct {
	srv    *httptest.Server
	target string
	hits   atomic.Int64
	down   atomic.Bool
}

func startCountingProxy(t *testing.T, target string) *countingProxy {
	t.Helper()
	p := &countingProxy{target: target}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.hits.Add(1)
		if p.down.Load() {
			http.Error(w, "provider down", http.StatusBadGateway)
			return
		}
		resp, err := http.Get(p.target)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for _, k := range []string{"Content-Type", "Cache-Control"} {
			if v := resp.Header.Get(k); v != "" {
				w.Header().Set(k, v)
			}
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// trustEnv: two oauth2gate instances as identity providers (A issues RS256 JWT access tokens
// with a signing key the test holds, B opaque tokens checked by introspection) and a third
// Caddy that only guards, with trust blocks for both and no token store, in front of an echo
// upstream.
type trustEnv struct {
	a, b     *instance
	aKey     *rsa.PrivateKey
	aKid     string
	jwks     *countingProxy
	gate     *instance
	api      *guardGate
	svcA     clientSpec
	svcB     clientSpec
	gateCred clientSpec
}

func writeRSAKey(t *testing.T) (*rsa.PrivateKey, string) {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "a-signing.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return k, path
}

const trustRoutes = `
	handle /a/* {
		oauth2_guard read {
			issuer %[2]s
			header_up X-Iss {oauth2.issuer}
			header_up X-Claim-Client {oauth2.claim.client_id}
			header_up X-Claim-Missing {oauth2.claim.nope}
		}
		reverse_proxy %[1]s
	}
	handle /b/* {
		oauth2_guard read {
			issuer %[3]s
			header_up X-Iss {oauth2.issuer}
		}
		reverse_proxy %[1]s
	}
	handle /claim-ok/* {
		oauth2_guard {
			claim client_id svc-a other
		}
		reverse_proxy %[1]s
	}
	handle /claim-bad/* {
		oauth2_guard read {
			claim client_id someone-else
		}
		reverse_proxy %[1]s
	}
	handle {
		respond "not guarded" 404
	}
`

// startTrustGate writes and starts the guard-only Caddy.
func startTrustGate(t *testing.T, e *trustEnv, jwksURI string) *instance {
	t.Helper()
	gate := newInstance(t)
	upstream := startEchoUpstream(t)
	cfg := "{\n" + gate.globalOptions() + fmt.Sprintf(`	oauth2 {
		trust %s {
			jwks_uri %s
			audience %s
			leeway 5s
		}
		trust %s {
			# oauth2gate's introspection says aud is the client the token was issued to
			audience %s %s
			introspection %s {
				client_id %s
				client_secret %s
			}
			cache_ttl 1s
		}
	}
}

%s {
%s}
`, e.a.base, jwksURI, e.a.base, e.b.base, e.b.base, e.svcB.ID, e.b.url("/introspect"), e.gateCred.ID, e.gateCred.Secret,
		gate.base, fmt.Sprintf(trustRoutes, upstream, e.a.base, e.b.base))
	if err := os.WriteFile(gate.file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	gate.remember("client secret", e.gateCred.Secret)
	t.Cleanup(gate.cleanup)
	gate.start()
	return gate
}

func startTrustEnv(t *testing.T) *trustEnv { return startTrustEnvWith(t, "RS256", false) }

// startTrustEnvWith is startTrustEnv with A's JWT algorithm ("" for the
// default) and, with jwksDown, A's keys unreachable when the gate starts.
func startTrustEnvWith(t *testing.T, alg string, jwksDown bool) *trustEnv {
	t.Helper()
	e := &trustEnv{
		svcA:     clientSpec{ID: "svc-a", Secret: randomSecret("svca-"), Grants: "client_credentials", Scopes: "read write"},
		svcB:     clientSpec{ID: "svc-b", Secret: randomSecret("svcb-"), Grants: "client_credentials", Scopes: "read write"},
		gateCred: clientSpec{ID: "gate", Secret: randomSecret("gate-"), Grants: "client_credentials", Scopes: "read"},
	}
	var keyPath string
	e.aKey, keyPath = writeRSAKey(t)
	format := strings.TrimSpace("format jwt " + alg)
	e.a = startGate(t, gateSpec{Settings: "access_token {\n\t" + format + "\n}\nsigning_key " + keyPath, Clients: []clientSpec{e.svcA}})
	e.b = startGate(t, gateSpec{Clients: []clientSpec{e.svcB, e.gateCred}})
	e.jwks = startCountingProxy(t, e.a.url("/jwks"))
	e.jwks.down.Store(jwksDown)
	e.gate = startTrustGate(t, e, e.jwks.srv.URL)
	e.api = &guardGate{in: e.gate, api: e.gate.base}
	return e
}

func (e *trustEnv) tokenA(t *testing.T, scope string) string {
	t.Helper()
	tok := e.a.token(t, tokenCall{Form: form("grant_type", "client_credentials", "scope", scope), Basic: basic(e.svcA.ID, e.svcA.Secret)}).mustToken(t)
	e.gate.remember("access_token", tok.Access)
	return tok.Access
}

func (e *trustEnv) tokenB(t *testing.T, scope string) string {
	t.Helper()
	tok := e.b.token(t, tokenCall{Form: form("grant_type", "client_credentials", "scope", scope), Basic: basic(e.svcB.ID, e.svcB.Secret)}).mustToken(t)
	e.gate.remember("access_token", tok.Access)
	return tok.Access
}

// forgeA signs claims with A's own key (the test holds it), so each bad token breaks exactly
// one rule and nothing else.
func (e *trustEnv) forgeA(t *testing.T, kid string, extra map[jose.HeaderKey]any, mod func(map[string]any)) string {
	t.Helper()
	now := time.Now()
	claims := map[string]any{
		"iss": e.a.base, "aud": e.a.base, "sub": "svc-a", "client_id": "svc-a", "scope": "read",
		"iat": now.Unix(), "exp": now.Add(10 * time.Minute).Unix(), "jti": randomSecret("j"),
	}
	if mod != nil {
		mod(claims)
	}
	return signJWT(t, jose.RS256, e.aKey, kid, extra, claims)
}

func signJWT(t *testing.T, alg jose.SignatureAlgorithm, key any, kid string, extra map[jose.HeaderKey]any, claims map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", kid)
	for k, v := range extra {
		opts = opts.WithHeader(k, v)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	jws, err := s.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func jwtHeader(t *testing.T, tok string) map[string]any {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatal(err)
	}
	return h
}

func must503(t *testing.T, r *apiReply, why string) {
	t.Helper()
	if r.Status != http.StatusServiceUnavailable || r.str("error") != "temporarily_unavailable" || r.Echo != nil {
		t.Fatalf("%s: want 503 temporarily_unavailable, got %s", why, r)
	}
}

// waitReply repeats a call until ok says the answer is the awaited one, within a bound.
func waitReply(t *testing.T, g *guardGate, c apiCall, what string, ok func(*apiReply) bool) *apiReply {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r, err := g.send(c)
		if err == nil && ok(r) {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; last answer %v %v", what, r, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestTrustOtherOauth2gate: a Caddy with only trust blocks guards a legacy upstream with the
// tokens of two other oauth2gate instances, one issuing JWTs, one opaque tokens it introspects.
func TestTrustOtherOauth2gate(t *testing.T) {
	e := startTrustEnv(t)
	g := e.api

	t.Run("no token store", func(t *testing.T) {
		if _, err := os.Stat(filepath.Join(e.gate.home, "data", "caddy", "oauth2")); !os.IsNotExist(err) {
			t.Fatalf("a guard-only Caddy opened a token store: %v", err)
		}
		if _, err := os.Stat(e.gate.storeDir); !os.IsNotExist(err) {
			t.Fatalf("a guard-only Caddy made a store dir: %v", err)
		}
	})

	t.Run("discovery publishes the access token algorithm", func(t *testing.T) {
		resp, err := http.Get(e.a.base + "/.well-known/openid-configuration")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var md map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&md)
		if got := fmt.Sprint(md["access_token_signing_alg_values_supported"]); got != "[RS256]" {
			t.Fatalf("access_token_signing_alg_values_supported = %s, want [RS256]", got)
		}
	})

	jwtA := e.tokenA(t, "read")
	if h := jwtHeader(t, jwtA); h["alg"] != "RS256" {
		t.Fatalf("A's access token header %v, want RS256", h)
	} else {
		e.aKid, _ = h["kid"].(string)
	}
	opaqueB := e.tokenB(t, "read")

	t.Run("JWT of A passes, with issuer and claim placeholders", func(t *testing.T) {
		echo := g.do(t, apiCall{Path: "/a/x", Bearer: jwtA}).mustPass(t)
		if echo.Header.Get("X-Iss") != e.a.base || echo.Header.Get("X-Claim-Client") != "svc-a" || echo.Header.Get("X-Auth-Subject") != "svc-a" {
			t.Fatalf("identity headers %v", echo.Header)
		}
		if _, ok := echo.Header["X-Claim-Missing"]; ok {
			t.Fatalf("a claim the token lacks sent a header: %v", echo.Header)
		}
		if echo.Header.Get("Authorization") != "" {
			t.Fatal("the token reached the upstream")
		}
		// A caller's own identity headers are removed.
		echo = g.do(t, apiCall{Path: "/a/x", Bearer: jwtA, Header: http.Header{"X-Iss": {"https://evil"}, "X-Claim-Missing": {"forged"}}}).mustPass(t)
		if echo.Header.Get("X-Iss") != e.a.base || echo.Header.Get("X-Claim-Missing") != "" {
			t.Fatalf("a caller's identity header got through: %v", echo.Header)
		}
	})
	t.Run("opaque token of B passes by introspection", func(t *testing.T) {
		echo := g.do(t, apiCall{Path: "/b/x", Bearer: opaqueB}).mustPass(t)
		if echo.Header.Get("X-Iss") != e.b.base || echo.Header.Get("X-Auth-Subject") != "svc-b" {
			t.Fatalf("identity headers %v", echo.Header)
		}
	})
	t.Run("issuer lines restrict routes", func(t *testing.T) {
		g.do(t, apiCall{Path: "/b/x", Bearer: jwtA}).mustDeny(t, denial{Status: 401, Code: "invalid_token"})
		g.do(t, apiCall{Path: "/a/x", Bearer: opaqueB}).mustDeny(t, denial{Status: 401, Code: "invalid_token"})
	})
	t.Run("scopes and claims", func(t *testing.T) {
		g.do(t, apiCall{Path: "/a/x", Bearer: e.tokenA(t, "write")}).mustDeny(t, denial{Status: 403, Code: "insufficient_scope", Scope: "read"})
		g.do(t, apiCall{Path: "/claim-ok/x", Bearer: jwtA}).mustPass(t)
		r := g.do(t, apiCall{Path: "/claim-bad/x", Bearer: jwtA})
		r.mustDeny(t, denial{Status: 403, Code: "insufficient_scope"})
		if strings.Contains(r.Header.Get("WWW-Authenticate"), "scope=") {
			t.Fatalf("a failed claim rule named a scope: %q", r.Header.Get("WWW-Authenticate"))
		}
		g.do(t, apiCall{Path: "/claim-bad/x", Bearer: opaqueB}).mustDeny(t, denial{Status: 403, Code: "insufficient_scope"})
	})

	t.Run("every rule with the bad token that breaks it", func(t *testing.T) {
		if e.aKid == "" {
			t.Fatal("A's token has no kid")
		}
		fetchesBefore := e.jwks.hits.Load()
		// The forged control token, signed with A's real key, passes: each case below
		// differs from it in one way.
		g.do(t, apiCall{Path: "/a/x", Bearer: e.forgeA(t, e.aKid, nil, nil)}).mustPass(t)

		parts := strings.Split(jwtA, ".")
		sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
		sig[len(sig)/2] ^= 0x20
		payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
		var claims map[string]any
		_ = json.Unmarshal(payload, &claims)
		claims["scope"] = "read write admin"
		widened, _ := json.Marshal(claims)

		pub, _ := x509.MarshalPKIXPublicKey(&e.aKey.PublicKey)
		pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})
		hs256 := func(secret []byte) string {
			h, _ := json.Marshal(map[string]any{"alg": "HS256", "typ": "at+jwt", "kid": e.aKid})
			in := base64.RawURLEncoding.EncodeToString(h) + "." + parts[1]
			m := hmac.New(sha256.New, secret)
			m.Write([]byte(in))
			return in + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
		}
		noneHdr, _ := json.Marshal(map[string]any{"alg": "none", "typ": "at+jwt", "kid": e.aKid})

		evil, _ := rsa.GenerateKey(rand.Reader, 2048)
		var evilHits atomic.Int64
		evilSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			evilHits.Add(1)
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &evil.PublicKey, KeyID: e.aKid, Algorithm: "RS256", Use: "sig"}}})
		}))
		defer evilSrv.Close()
		evilClaims := func(c map[string]any) {}
		now := time.Now()

		for _, tc := range []struct{ name, tok string }{
			{"tampered signature", parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sig)},
			{"tampered payload (scope widened)", parts[0] + "." + base64.RawURLEncoding.EncodeToString(widened) + "." + parts[2]},
			{"alg none", base64.RawURLEncoding.EncodeToString(noneHdr) + "." + parts[1] + "."},
			{"HS256 keyed with the public key's PEM", hs256(pubPEM)},
			{"HS256 keyed with the public key's DER", hs256(pub)},
			{"jwk header with the attacker's key", signJWT(t, jose.RS256, evil, e.aKid, map[jose.HeaderKey]any{"jwk": jose.JSONWebKey{Key: &evil.PublicKey, KeyID: e.aKid, Algorithm: "RS256"}}, claims)},
			{"jku header pointing elsewhere", signJWT(t, jose.RS256, evil, e.aKid, map[jose.HeaderKey]any{"jku": evilSrv.URL}, claims)},
			{"x5u header pointing elsewhere", signJWT(t, jose.RS256, evil, e.aKid, map[jose.HeaderKey]any{"x5u": evilSrv.URL}, claims)},
			{"wrong iss", e.forgeA(t, e.aKid, nil, func(c map[string]any) { c["iss"] = e.b.base })},
			{"iss nobody trusts", e.forgeA(t, e.aKid, nil, func(c map[string]any) { c["iss"] = "https://evil.example" })},
			{"wrong aud", e.forgeA(t, e.aKid, nil, func(c map[string]any) { c["aud"] = "https://other.example" })},
			{"no aud", e.forgeA(t, e.aKid, nil, func(c map[string]any) { delete(c, "aud") })},
			{"expired", e.forgeA(t, e.aKid, nil, func(c map[string]any) { c["exp"] = now.Add(-time.Minute).Unix() })},
			{"not yet valid", e.forgeA(t, e.aKid, nil, func(c map[string]any) { c["nbf"] = now.Add(time.Minute).Unix() })},
			{"issued in the future", e.forgeA(t, e.aKid, nil, func(c map[string]any) { c["iat"] = now.Add(time.Minute).Unix() })},
			{"typ of another JWT", e.forgeA(t, e.aKid, map[jose.HeaderKey]any{"typ": "dpop+jwt"}, evilClaims)},
			{"unknown kid", e.forgeA(t, "no-such-kid", nil, nil)},
		} {
			r := g.do(t, apiCall{Path: "/a/x", Bearer: tc.tok})
			if r.Status != 401 {
				t.Errorf("%s: want 401 invalid_token, got %s", tc.name, r)
				continue
			}
			r.mustDeny(t, denial{Status: 401, Code: "invalid_token"})
		}
		if n := evilHits.Load(); n != 0 {
			t.Errorf("the attacker's jku/x5u was fetched %d times", n)
		}
		// The unknown kid made the gate look for a new key, once.
		if n := e.jwks.hits.Load() - fetchesBefore; n < 1 || n > 2 {
			t.Errorf("an unknown kid caused %d JWKS requests, want 1", n)
		}
	})

	t.Run("kid flood costs a handful of JWKS requests", func(t *testing.T) {
		before := e.jwks.hits.Load()
		var wg sync.WaitGroup
		var wrong atomic.Int64
		toks := make([]string, 300)
		for i := range toks {
			toks[i] = e.forgeA(t, randomSecret("kid-"), nil, nil)
		}
		for _, tok := range toks {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := g.send(apiCall{Path: "/a/x", Bearer: tok})
				if err != nil || r.Status != 401 {
					wrong.Add(1)
				}
			}()
		}
		wg.Wait()
		if wrong.Load() != 0 {
			t.Fatalf("%d of 300 random-kid tokens were not 401", wrong.Load())
		}
		if n := e.jwks.hits.Load() - before; n > 2 {
			t.Fatalf("300 random kids cost the provider %d JWKS requests", n)
		}
		t.Logf("300 random kids: %d JWKS requests", e.jwks.hits.Load()-before)
	})

	t.Run("keys survive a JWKS outage", func(t *testing.T) {
		e.jwks.down.Store(true)
		defer e.jwks.down.Store(false)
		g.do(t, apiCall{Path: "/a/x", Bearer: e.tokenA(t, "read")}).mustPass(t)
	})

	t.Run("revoked token is refused once the introspection cache lapses", func(t *testing.T) {
		tok := e.tokenB(t, "read")
		g.do(t, apiCall{Path: "/b/x", Bearer: tok}).mustPass(t)
		r := e.b.token(t, tokenCall{Path: "/revoke", Form: form("token", tok), Basic: basic(e.svcB.ID, e.svcB.Secret)})
		if r.Status != 200 {
			t.Fatalf("revoke: %s", r)
		}
		start := time.Now()
		waitReply(t, g, apiCall{Path: "/b/x", Bearer: tok}, "the revoked token's 401", func(r *apiReply) bool { return r.Status == 401 }).
			mustDeny(t, denial{Status: 401, Code: "invalid_token"})
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("a revoked token passed for %v with cache_ttl 1s", d)
		}
	})

	t.Run("introspection provider down is 503, never a pass", func(t *testing.T) {
		tok := e.tokenB(t, "read")
		e.b.stop()
		defer e.b.start()
		r, err := g.send(apiCall{Path: "/b/x", Bearer: tok})
		if err != nil {
			t.Fatal(err)
		}
		must503(t, r, "introspection endpoint down")
		r, _ = g.send(apiCall{Path: "/b/x", Bearer: randomSecret("never-issued-")})
		must503(t, r, "introspection endpoint down, unknown token")
	})
}

// TestTrustIssuerDownAtStart: an identity provider unreachable when Caddy starts does not stop
// it; its tokens get 503 until the keys load, then pass.
func TestTrustIssuerDownAtStart(t *testing.T) {
	e := startTrustEnvWith(t, "", true)
	g := e.api
	tok := e.tokenA(t, "read") // ES256, the default algorithm
	if h := jwtHeader(t, tok); h["alg"] != "ES256" {
		t.Fatalf("default JWT access token alg %v, want ES256", h["alg"])
	}
	r, err := g.send(apiCall{Path: "/a/x", Bearer: tok})
	if err != nil {
		t.Fatal(err)
	}
	must503(t, r, "keys never loaded")
	// B is unaffected.
	g.do(t, apiCall{Path: "/b/x", Bearer: e.tokenB(t, "read")}).mustPass(t)
	e.jwks.down.Store(false)
	waitReply(t, g, apiCall{Path: "/a/x", Bearer: tok}, "A's keys after it came back", func(r *apiReply) bool { return r.Status == 200 }).mustPass(t)
}
