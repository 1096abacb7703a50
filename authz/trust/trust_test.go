package trust

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/oauth2gate/oauth2gate/authz/gateway"
	"github.com/oauth2gate/oauth2gate/authz/oautherr"
)

// clock is a settable time for the issuer and its caches.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// provider is a hostile-when-asked identity provider: discovery, JWKS and
// introspection, each counting its requests and answering as the test says.
type provider struct {
	t      testing.TB
	srv    *httptest.Server
	rsa    *rsa.PrivateKey
	ec     *ecdsa.PrivateKey
	issuer string

	jwksHits, discoHits, introHits atomic.Int64

	mu        sync.Mutex
	jwks      func(w http.ResponseWriter) // nil: the normal JWKS
	intro     func(w http.ResponseWriter, r *http.Request)
	active    map[string]map[string]any // token -> introspection answer
	down      bool
	extraKeys []jose.JSONWebKey
}

func newProvider(t testing.TB) *provider {
	t.Helper()
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p := &provider{t: t, rsa: rk, ec: ek, active: map[string]map[string]any{}}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		p.discoHits.Add(1)
		if p.isDown() {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": p.issuer, "jwks_uri": p.srv.URL + "/jwks"})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		p.jwksHits.Add(1)
		p.mu.Lock()
		f, down := p.jwks, p.down
		p.mu.Unlock()
		if down {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		if f != nil {
			f(w)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "max-age=300")
		_ = json.NewEncoder(w).Encode(p.publicJWKS())
	})
	mux.HandleFunc("/introspect", func(w http.ResponseWriter, r *http.Request) {
		p.introHits.Add(1)
		p.mu.Lock()
		f, down := p.intro, p.down
		p.mu.Unlock()
		if down {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		if f != nil {
			f(w, r)
			return
		}
		id, secret, ok := r.BasicAuth()
		if !ok || id != "gate" || secret != "s3cret" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"invalid_client"}`))
			return
		}
		_ = r.ParseForm()
		p.mu.Lock()
		ans, ok := p.active[r.PostForm.Get("token")]
		p.mu.Unlock()
		if !ok {
			ans = map[string]any{"active": false}
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		_ = json.NewEncoder(w).Encode(ans)
	})
	p.srv = httptest.NewServer(mux)
	p.issuer = p.srv.URL
	t.Cleanup(p.srv.Close)
	return p
}

func (p *provider) isDown() bool { p.mu.Lock(); defer p.mu.Unlock(); return p.down }
func (p *provider) setDown(d bool) {
	p.mu.Lock()
	p.down = d
	p.mu.Unlock()
}

func (p *provider) publicJWKS() jose.JSONWebKeySet {
	p.mu.Lock()
	defer p.mu.Unlock()
	keys := []jose.JSONWebKey{
		{Key: &p.rsa.PublicKey, KeyID: "rsa1", Algorithm: "RS256", Use: "sig"},
		{Key: &p.ec.PublicKey, KeyID: "ec1", Algorithm: "ES256", Use: "sig"},
	}
	return jose.JSONWebKeySet{Keys: append(keys, p.extraKeys...)}
}

// claims are a valid token's claims, now being the issuer's clock.
func (p *provider) claims(now time.Time) map[string]any {
	return map[string]any{
		"iss": p.issuer, "aud": []string{"api", "other"}, "sub": "alice", "client_id": "app",
		"scope": "read write", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "jti": "j1",
		"groups": []string{"admins", "staff"},
	}
}

func sign(t testing.TB, alg jose.SignatureAlgorithm, key any, kid string, extra map[jose.HeaderKey]any, claims map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("at+jwt")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
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
	tok, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// rawJWT builds a compact JWS by hand, for headers no signer would write.
func rawJWT(header map[string]any, claims map[string]any, sig func(signingInput string) []byte) string {
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	in := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	return in + "." + base64.RawURLEncoding.EncodeToString(sig(in))
}

type env struct {
	p     *provider
	clk   *clock
	is    *Issuer
	set   *Set
	route *Route
}

func setup(t testing.TB, mod func(*Config)) *env {
	t.Helper()
	p := newProvider(t)
	clk := &clock{t: time.Now()}
	cfg := Config{
		Issuer:        p.issuer,
		Audience:      []string{"api"},
		Introspection: &Introspection{URL: p.srv.URL + "/introspect", ClientID: "gate", ClientSecret: "s3cret"},
		Now:           clk.now,
	}
	if mod != nil {
		mod(&cfg)
	}
	is, err := NewIssuer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(is.Close)
	set, err := NewSet([]*Issuer{is}, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(set.Close)
	route, err := set.Route(nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &env{p: p, clk: clk, is: is, set: set, route: route}
}

// started starts the issuer and waits (bounded) for its keys.
func (e *env) started(t testing.TB) *env {
	t.Helper()
	e.set.Start()
	waitFor(t, "keys loaded", e.is.KeysLoaded)
	return e
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func wantInvalid(t *testing.T, v gateway.Verifier, tok, why string) {
	t.Helper()
	id, err := v.Verify(context.Background(), tok)
	if id != nil || !errors.Is(err, oautherr.InvalidToken) {
		t.Fatalf("%s: got %+v, %v; want invalid_token", why, id, err)
	}
}

func wantUnavailable(t *testing.T, v gateway.Verifier, tok, why string) {
	t.Helper()
	id, err := v.Verify(context.Background(), tok)
	e := oautherr.As(err)
	if id != nil || e == nil || e.Status != http.StatusServiceUnavailable || e.Code != "temporarily_unavailable" {
		t.Fatalf("%s: got %+v, %v; want 503 temporarily_unavailable", why, id, err)
	}
}

func TestValidJWTs(t *testing.T) {
	e := setup(t, nil).started(t)
	now := e.clk.now()
	for _, tc := range []struct {
		alg jose.SignatureAlgorithm
		key any
		kid string
	}{{jose.RS256, e.p.rsa, "rsa1"}, {jose.ES256, e.p.ec, "ec1"}, {jose.PS256, e.p.rsa, "rsa1x"}} {
		kid := tc.kid
		if tc.alg == jose.PS256 {
			// rsa1 names RS256 as its alg: a PS256 token needs a key without one.
			e.p.mu.Lock()
			e.p.extraKeys = []jose.JSONWebKey{{Key: &e.p.rsa.PublicKey, KeyID: "rsa1x", Use: "sig"}}
			e.p.mu.Unlock()
		}
		tok := sign(t, tc.alg, tc.key, kid, nil, e.p.claims(now))
		id, err := e.route.Verify(context.Background(), tok)
		if err != nil {
			t.Fatalf("%s: %v", tc.alg, err)
		}
		if id.Subject != "alice" || id.ClientID != "app" || id.Scope != "read write" || id.Issuer != e.p.issuer || id.Username != "alice" {
			t.Fatalf("%s: identity %+v", tc.alg, id)
		}
		if g, _ := id.Claims["groups"].([]any); len(g) != 2 {
			t.Fatalf("claims %v", id.Claims)
		}
	}
	// typ JWT (Keycloak, Entra) and application/at+jwt pass; scp arrays,
	// azp and a configured scope claim are read.
	c := e.p.claims(now)
	delete(c, "scope")
	delete(c, "client_id")
	c["scp"] = []string{"a", "b"}
	c["azp"] = "kc-app"
	for _, typ := range []string{"JWT", "application/at+jwt"} {
		tok := sign(t, jose.RS256, e.p.rsa, "rsa1", map[jose.HeaderKey]any{"typ": typ}, c)
		id, err := e.route.Verify(context.Background(), tok)
		if err != nil || id.Scope != "a b" || id.ClientID != "kc-app" {
			t.Fatalf("typ %s: %+v %v", typ, id, err)
		}
	}
}

func TestScopeAndSubjectClaims(t *testing.T) {
	e := setup(t, func(c *Config) { c.ScopeClaim = "perms"; c.SubjectClaim = "oid" }).started(t)
	c := e.p.claims(e.clk.now())
	c["perms"] = "x y"
	c["oid"] = "u-42"
	id, err := e.route.Verify(context.Background(), sign(t, jose.RS256, e.p.rsa, "rsa1", nil, c))
	if err != nil || id.Scope != "x y" || id.Subject != "u-42" {
		t.Fatalf("%+v %v", id, err)
	}
}

func TestHostileJWTs(t *testing.T) {
	e := setup(t, nil).started(t)
	now := e.clk.now()
	good := sign(t, jose.RS256, e.p.rsa, "rsa1", nil, e.p.claims(now))

	// Tampered: the payload changed, the signature kept.
	parts := strings.Split(good, ".")
	c := e.p.claims(now)
	c["scope"] = "read write admin"
	cb, _ := json.Marshal(c)
	wantInvalid(t, e.route, parts[0]+"."+base64.RawURLEncoding.EncodeToString(cb)+"."+parts[2], "tampered payload")
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	sig[10] ^= 1
	wantInvalid(t, e.route, parts[0]+"."+parts[1]+"."+base64.RawURLEncoding.EncodeToString(sig), "tampered signature")

	// alg none, with and without a signature part.
	none := rawJWT(map[string]any{"alg": "none", "typ": "at+jwt", "kid": "rsa1"}, e.p.claims(now), func(string) []byte { return nil })
	wantInvalid(t, e.route, none, "alg none")
	wantInvalid(t, e.route, strings.TrimSuffix(none, "."), "alg none, two parts")
	for _, alg := range []string{"None", "NONE"} {
		wantInvalid(t, e.route, rawJWT(map[string]any{"alg": alg}, e.p.claims(now), func(string) []byte { return nil }), "alg "+alg)
	}

	// HS256 keyed with the public key's bytes (PEM, DER and the JWK's n).
	der, _ := x509.MarshalPKIXPublicKey(&e.p.rsa.PublicKey)
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	for name, secret := range map[string][]byte{"pem": pemBytes, "der": der, "n": e.p.rsa.N.Bytes()} {
		tok := rawJWT(map[string]any{"alg": "HS256", "typ": "at+jwt", "kid": "rsa1"}, e.p.claims(now), func(in string) []byte {
			m := hmac.New(sha256.New, secret)
			m.Write([]byte(in))
			return m.Sum(nil)
		})
		wantInvalid(t, e.route, tok, "HS256 with the public key's "+name)
	}

	// A key the token carries itself (jwk) or points to (jku, x5u).
	evil, _ := rsa.GenerateKey(rand.Reader, 2048)
	var evilHits atomic.Int64
	evilSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		evilHits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &evil.PublicKey, KeyID: "rsa1", Algorithm: "RS256"}}})
	}))
	defer evilSrv.Close()
	evilJWK := jose.JSONWebKey{Key: &evil.PublicKey, KeyID: "rsa1", Algorithm: "RS256"}
	for name, hdr := range map[string]map[jose.HeaderKey]any{
		"jwk":      {"jwk": evilJWK},
		"jku":      {"jku": evilSrv.URL},
		"x5u":      {"x5u": evilSrv.URL},
		"jku kid2": {"jku": evilSrv.URL, "kid": "evil"},
	} {
		kid := "rsa1"
		if k, ok := hdr["kid"].(string); ok {
			kid = k
			delete(hdr, "kid")
		}
		wantInvalid(t, e.route, sign(t, jose.RS256, evil, kid, hdr, e.p.claims(now)), name+" header")
	}
	if n := evilHits.Load(); n != 0 {
		t.Fatalf("the token's jku/x5u was fetched %d times", n)
	}

	// An RS256 token whose kid names the EC key, and an ES256 token naming
	// the RSA key: the key's type must fit the alg.
	wantInvalid(t, e.route, sign(t, jose.RS256, e.p.rsa, "ec1", nil, e.p.claims(now)), "RS256 with an EC kid")
	wantInvalid(t, e.route, sign(t, jose.ES256, e.p.ec, "rsa1", nil, e.p.claims(now)), "ES256 with an RSA kid")

	// Claims.
	bad := func(name string, mod func(map[string]any)) {
		c := e.p.claims(now)
		mod(c)
		wantInvalid(t, e.route, sign(t, jose.RS256, e.p.rsa, "rsa1", nil, c), name)
	}
	bad("wrong iss", func(c map[string]any) { c["iss"] = e.p.issuer + "/other" })
	bad("iss with a trailing slash", func(c map[string]any) { c["iss"] = e.p.issuer + "/" })
	bad("no iss", func(c map[string]any) { delete(c, "iss") })
	bad("wrong aud", func(c map[string]any) { c["aud"] = "someone-else" })
	bad("aud array without ours", func(c map[string]any) { c["aud"] = []string{"x", "API"} })
	bad("no aud", func(c map[string]any) { delete(c, "aud") })
	bad("expired", func(c map[string]any) { c["exp"] = now.Add(-time.Minute).Unix() })
	bad("no exp", func(c map[string]any) { delete(c, "exp") })
	bad("exp a string", func(c map[string]any) { c["exp"] = fmt.Sprint(now.Add(time.Hour).Unix()) })
	bad("nbf in the future", func(c map[string]any) { c["nbf"] = now.Add(5 * time.Minute).Unix() })
	bad("iat in the future", func(c map[string]any) { c["iat"] = now.Add(5 * time.Minute).Unix() })
	// Within the leeway both pass.
	c = e.p.claims(now)
	c["nbf"] = now.Add(10 * time.Second).Unix()
	c["exp"] = now.Add(-10 * time.Second).Unix()
	if _, err := e.route.Verify(context.Background(), sign(t, jose.RS256, e.p.rsa, "rsa1", nil, c)); err != nil {
		t.Fatalf("within the leeway: %v", err)
	}
	// typ of another kind of JWT.
	wantInvalid(t, e.route, sign(t, jose.RS256, e.p.rsa, "rsa1", map[jose.HeaderKey]any{"typ": "dpop+jwt"}, e.p.claims(now)), "typ dpop+jwt")
	// An issuer nobody trusts.
	c = e.p.claims(now)
	c["iss"] = "https://evil.example"
	wantInvalid(t, e.route, sign(t, jose.RS256, e.p.rsa, "rsa1", nil, c), "untrusted iss")
}

func TestAlgorithmsRestricted(t *testing.T) {
	e := setup(t, func(c *Config) { c.Algorithms = []string{"ES256"} }).started(t)
	wantInvalid(t, e.route, sign(t, jose.RS256, e.p.rsa, "rsa1", nil, e.p.claims(e.clk.now())), "RS256 not configured")
	for _, a := range []string{"HS256", "none", "rs256"} {
		cfg := Config{Issuer: "https://idp.example", Audience: []string{"a"}, Algorithms: []string{a}}
		if err := cfg.Check(); err == nil {
			t.Fatalf("algorithm %s accepted", a)
		}
	}
}

func TestVerifiedJWTCache(t *testing.T) {
	e := setup(t, nil).started(t)
	tok := sign(t, jose.RS256, e.p.rsa, "rsa1", nil, e.p.claims(e.clk.now()))
	if _, err := e.route.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	e.set.verified.Wait()
	h := sha256.Sum256([]byte(tok))
	if _, ok := e.set.verified.Get(&h); !ok {
		t.Fatal("a verified JWT is not cached")
	}
	// A route that does not accept the issuer refuses the cached token too.
	other, err := e.set.Route(nil, []string{})
	if err == nil {
		wantInvalid(t, other, tok, "route with no issuer")
	}
	// Past its exp (and the leeway) the cached identity is not used.
	e.clk.add(time.Hour + time.Minute)
	wantInvalid(t, e.route, tok, "expired after caching")
}

func TestUnknownKidFloodIsRateLimited(t *testing.T) {
	e := setup(t, nil).started(t)
	before := e.p.jwksHits.Load()
	now := e.clk.now()
	var wg sync.WaitGroup
	var wrong atomic.Int64
	for i := range 500 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tok := sign(t, jose.ES256, e.p.ec, fmt.Sprintf("kid-%d", i), nil, e.p.claims(now))
			if _, err := e.route.Verify(context.Background(), tok); !errors.Is(err, oautherr.InvalidToken) {
				wrong.Add(1)
			}
		}()
	}
	wg.Wait()
	if wrong.Load() != 0 {
		t.Fatalf("%d random-kid tokens were not invalid_token", wrong.Load())
	}
	if n := e.p.jwksHits.Load() - before; n > 2 {
		t.Fatalf("500 random kids cost %d JWKS requests", n)
	}
	// A rotation: a new key appears; once the interval has passed its
	// first token fetches the JWKS again and passes.
	nk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	e.p.mu.Lock()
	e.p.extraKeys = []jose.JSONWebKey{{Key: &nk.PublicKey, KeyID: "ec2", Algorithm: "ES256"}}
	e.p.mu.Unlock()
	e.clk.add(KidRefetchEvery)
	if _, err := e.route.Verify(context.Background(), sign(t, jose.ES256, nk, "ec2", nil, e.p.claims(e.clk.now()))); err != nil {
		t.Fatalf("rotated key: %v", err)
	}
}

// TestKidRefetchOutlivesACanceledCaller: a caller that sends a token with a
// new kid and hangs up at once does not spend the interval's one refetch:
// the key the provider just rotated in works for the next caller.
func TestKidRefetchOutlivesACanceledCaller(t *testing.T) {
	e := setup(t, nil).started(t)
	nk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	e.p.mu.Lock()
	e.p.extraKeys = []jose.JSONWebKey{{Key: &nk.PublicKey, KeyID: "ec2", Algorithm: "ES256"}}
	e.p.mu.Unlock()
	e.clk.add(KidRefetchEvery)
	tok := sign(t, jose.ES256, nk, "ec2", nil, e.p.claims(e.clk.now()))
	gone, cancel := context.WithCancel(context.Background())
	cancel()
	_, _ = e.route.Verify(gone, sign(t, jose.ES256, nk, "ec2", nil, e.p.claims(e.clk.now())))
	if _, err := e.route.Verify(context.Background(), tok); err != nil {
		t.Fatalf("the rotated key after a canceled caller's refetch: %v", err)
	}
}

// TestKidRefetchIsSharedByConcurrentCallers: callers that arrive with the
// new kid while its one refetch is in flight wait for that fetch instead of
// being refused at once.
func TestKidRefetchIsSharedByConcurrentCallers(t *testing.T) {
	e := setup(t, nil).started(t)
	nk, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	release := make(chan struct{})
	e.p.mu.Lock()
	e.p.extraKeys = []jose.JSONWebKey{{Key: &nk.PublicKey, KeyID: "ec2", Algorithm: "ES256"}}
	e.p.jwks = func(w http.ResponseWriter) {
		<-release
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(e.p.publicJWKS())
	}
	e.p.mu.Unlock()
	e.clk.add(KidRefetchEvery)
	before := e.p.jwksHits.Load()
	tok := sign(t, jose.ES256, nk, "ec2", nil, e.p.claims(e.clk.now()))
	const n = 20
	errs := make(chan error, n)
	go func() {
		_, err := e.route.Verify(context.Background(), tok)
		errs <- err
	}()
	waitFor(t, "the refetch", func() bool { return e.p.jwksHits.Load() > before })
	for range n - 1 {
		go func() {
			_, err := e.route.Verify(context.Background(), tok)
			errs <- err
		}()
	}
	close(release)
	for range n {
		if err := <-errs; err != nil {
			t.Fatalf("a caller that came during the refetch: %v", err)
		}
	}
}

func TestHostileJWKSAnswers(t *testing.T) {
	for name, f := range map[string]func(w http.ResponseWriter){
		"oversized": func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"keys":[],"pad":"`))
			_, _ = w.Write([]byte(strings.Repeat("a", MaxDocument)))
			_, _ = w.Write([]byte(`"}`))
		},
		"invalid JSON": func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"keys":[`))
		},
		"wrong content type": func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "text/html")
			_, _ = w.Write([]byte(`{"keys":[]}`))
		},
		"not a JWKS": func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`[1,2]`))
		},
		"a symmetric key": func(w http.ResponseWriter) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"keys":[{"kty":"oct","kid":"rsa1","k":"c2VjcmV0"}]}`))
		},
		"server error": func(w http.ResponseWriter) { http.Error(w, "boom", 500) },
	} {
		t.Run(name, func(t *testing.T) {
			e := setup(t, nil)
			e.p.jwks = f
			e.set.Start()
			waitFor(t, "a JWKS fetch", func() bool { return e.p.jwksHits.Load() > 0 })
			tok := sign(t, jose.RS256, e.p.rsa, "rsa1", nil, e.p.claims(e.clk.now()))
			id, err := e.route.Verify(context.Background(), tok)
			if id != nil || err == nil {
				t.Fatalf("passed: %+v", id)
			}
			if name == "a symmetric key" {
				// Loaded, but no key fits: the HS256 trick has nothing to use.
				hs := rawJWT(map[string]any{"alg": "HS256", "kid": "rsa1"}, e.p.claims(e.clk.now()), func(in string) []byte {
					m := hmac.New(sha256.New, []byte("secret"))
					m.Write([]byte(in))
					return m.Sum(nil)
				})
				wantInvalid(t, e.route, hs, "HS256 with the JWKS's oct key")
				return
			}
			wantUnavailable(t, e.route, tok, name)
		})
	}
}

func TestProviderDownAtStartThenUp(t *testing.T) {
	e := setup(t, nil)
	e.p.setDown(true)
	e.set.Start()
	waitFor(t, "a discovery attempt", func() bool { return e.p.discoHits.Load() > 0 })
	tok := sign(t, jose.RS256, e.p.rsa, "rsa1", nil, e.p.claims(e.clk.now()))
	wantUnavailable(t, e.route, tok, "provider down since start")
	e.p.setDown(false)
	waitFor(t, "keys after the provider came back", e.is.KeysLoaded)
	if _, err := e.route.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
}

func TestKeysSurviveJWKSOutageForABoundedTime(t *testing.T) {
	e := setup(t, nil).started(t)
	e.p.setDown(true)
	e.clk.add(KeysOutage - time.Minute)
	c := e.p.claims(e.clk.now())
	if _, err := e.route.Verify(context.Background(), sign(t, jose.RS256, e.p.rsa, "rsa1", nil, c)); err != nil {
		t.Fatalf("within the outage bound: %v", err)
	}
	e.clk.add(2 * time.Minute)
	wantUnavailable(t, e.route, sign(t, jose.RS256, e.p.rsa, "rsa1", nil, e.p.claims(e.clk.now())), "past the outage bound")
}

func TestDiscoveryRFC8414WithPath(t *testing.T) {
	p := newProvider(t)
	var hits atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/oauth-authorization-server/tenant/a", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": "ISSUER", "jwks_uri": p.srv.URL + "/jwks"})
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	issuer := srv.URL + "/tenant/a"
	mux.HandleFunc("/wrong/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": "https://evil.example", "jwks_uri": p.srv.URL + "/jwks"})
	})
	// The handler above answers for issuer; swap its placeholder.
	p.issuer = issuer
	mux2 := http.NewServeMux()
	mux2.HandleFunc("/.well-known/oauth-authorization-server/tenant/a", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": issuer, "jwks_uri": p.srv.URL + "/jwks"})
	})
	mux2.Handle("/wrong/", mux)
	srv.Config.Handler = mux2
	is, err := NewIssuer(Config{Issuer: issuer, Audience: []string{"api"}})
	if err != nil {
		t.Fatal(err)
	}
	defer is.Close()
	set, _ := NewSet([]*Issuer{is}, "")
	defer set.Close()
	set.Start()
	waitFor(t, "keys by RFC 8414", is.KeysLoaded)
	route, _ := set.Route(nil, nil)
	if _, err := route.Verify(context.Background(), sign(t, jose.RS256, p.rsa, "rsa1", nil, p.claims(time.Now()))); err != nil {
		t.Fatal(err)
	}
	// A discovery document that names another issuer is not used.
	bad, _ := NewIssuer(Config{Issuer: srv.URL + "/wrong", Audience: []string{"api"}})
	defer bad.Close()
	if _, err := bad.keys.refresh(context.Background()); err == nil || !strings.Contains(err.Error(), "names issuer") {
		t.Fatalf("mismatched discovery issuer: %v", err)
	}
}

func TestCacheControlBounds(t *testing.T) {
	for cc, want := range map[string]time.Duration{
		"":                    DefaultRefresh,
		"max-age=5":           MinRefresh,
		"public, max-age=600": 10 * time.Minute,
		"max-age=99999999":    MaxRefresh,
		"no-store":            MinRefresh,
		"max-age=-1":          DefaultRefresh,
	} {
		if got := refreshAfter(cc); got != want {
			t.Errorf("%q: %v, want %v", cc, got, want)
		}
	}
}

func TestIntrospection(t *testing.T) {
	e := setup(t, nil)
	now := e.clk.now()
	e.p.active["opaque-good"] = map[string]any{"active": true, "sub": "bob", "client_id": "app", "scope": "read", "exp": now.Add(time.Minute).Unix(), "iss": e.p.issuer, "aud": "api"}
	e.p.active["opaque-wrong-aud"] = map[string]any{"active": true, "sub": "bob", "scope": "read", "exp": now.Add(time.Minute).Unix(), "aud": "other"}
	e.p.active["opaque-wrong-iss"] = map[string]any{"active": true, "sub": "bob", "iss": "https://evil.example"}
	e.p.active["opaque-expired"] = map[string]any{"active": true, "sub": "bob", "exp": now.Add(-time.Second).Unix()}
	e.p.active["opaque-refresh"] = map[string]any{"active": true, "sub": "bob", "token_type": "refresh_token"}
	id, err := e.route.Verify(context.Background(), "opaque-good")
	if err != nil || id.Subject != "bob" || id.Scope != "read" || id.ClientID != "app" {
		t.Fatalf("%+v %v", id, err)
	}
	for _, tok := range []string{"opaque-wrong-aud", "opaque-wrong-iss", "opaque-expired", "opaque-refresh", "opaque-unknown"} {
		wantInvalid(t, e.route, tok, tok)
	}
	// Cached: the second ask costs the provider nothing.
	e.is.answers.Wait()
	n := e.p.introHits.Load()
	if _, err := e.route.Verify(context.Background(), "opaque-good"); err != nil {
		t.Fatal(err)
	}
	if e.p.introHits.Load() != n {
		t.Fatal("a cached answer was asked again")
	}
	// Revoked at the provider: after cache_ttl (30s) it is refused, even
	// though the answer said exp was later.
	e.p.mu.Lock()
	delete(e.p.active, "opaque-good")
	e.p.mu.Unlock()
	e.clk.add(DefaultCacheTTL + time.Second)
	wantInvalid(t, e.route, "opaque-good", "revoked after cache_ttl")
	// Inactive answers are remembered NegativeTTL, then asked again.
	e.is.inactive.Wait()
	n = e.p.introHits.Load()
	wantInvalid(t, e.route, "opaque-good", "negative cache")
	if e.p.introHits.Load() != n {
		t.Fatal("an inactive answer was not cached")
	}
	e.clk.add(NegativeTTL + time.Second)
	wantInvalid(t, e.route, "opaque-good", "after the negative cache")
	if e.p.introHits.Load() != n+1 {
		t.Fatal("the negative cache outlived its bound")
	}
}

func TestIntrospectionNeverCachedPastExp(t *testing.T) {
	e := setup(t, func(c *Config) { c.CacheTTL = time.Hour })
	e.p.active["short"] = map[string]any{"active": true, "sub": "bob", "exp": e.clk.now().Add(10 * time.Second).Unix()}
	if _, err := e.route.Verify(context.Background(), "short"); err != nil {
		t.Fatal(err)
	}
	e.is.answers.Wait()
	e.clk.add(11 * time.Second)
	// The provider still says active (its clock is real); the cached
	// answer is not used past exp, and the new answer is expired here.
	wantInvalid(t, e.route, "short", "cached past exp")
}

func TestIntrospectionHostileAnswers(t *testing.T) {
	for name, f := range map[string]func(w http.ResponseWriter, r *http.Request){
		"oversized": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"active":true,"sub":"x","pad":"` + strings.Repeat("a", MaxIntrospection) + `"}`))
		},
		"invalid JSON": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"active":true`))
		},
		"wrong content type": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			_, _ = w.Write([]byte(`{"active":true,"sub":"x"}`))
		},
		"active a string": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"active":"true","sub":"x"}`))
		},
		"two objects": func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"active":false}{"active":true}`))
		},
		"server error": func(w http.ResponseWriter, r *http.Request) { http.Error(w, `{"active":true}`, 500) },
		"redirect": func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "http://127.0.0.1:1/steal", http.StatusTemporaryRedirect)
		},
		"slow": func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-time.After(IntrospectTimeout + 2*time.Second):
			}
		},
	} {
		t.Run(name, func(t *testing.T) {
			e := setup(t, nil)
			e.p.intro = f
			start := time.Now()
			wantUnavailable(t, e.route, "opaque-x", name)
			if d := time.Since(start); d > IntrospectTimeout+time.Second {
				t.Fatalf("took %v", d)
			}
		})
	}
	e := setup(t, nil)
	e.p.setDown(true)
	wantUnavailable(t, e.route, "opaque-x", "provider down")
	e.p.srv.Close()
	wantUnavailable(t, e.route, "opaque-x", "provider gone")
}

func TestIntrospectionSendsBasicCredentials(t *testing.T) {
	e := setup(t, func(c *Config) { c.Introspection.ClientID = "ga:te"; c.Introspection.ClientSecret = "s&c=t" })
	var gotAuth string
	e.p.intro = func(w http.ResponseWriter, r *http.Request) {
		gotAuth = r.Header.Get("Authorization")
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"active":false}`))
	}
	wantInvalid(t, e.route, "opaque-x", "inactive")
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte("ga%3Ate:s%26c%3Dt"))
	if gotAuth != want {
		t.Fatalf("Authorization %q, want %q", gotAuth, want)
	}
}

// holdIntrospection makes the provider's introspection endpoint wait until
// release is called (at the latest when the test ends), then answer as
// before.
func holdIntrospection(t *testing.T, e *env) (release func()) {
	ch := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(ch) }) }
	t.Cleanup(release)
	inner := e.p.intro
	e.p.intro = func(w http.ResponseWriter, r *http.Request) {
		<-ch
		if inner != nil {
			inner(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"active":true,"sub":"bob"}`))
	}
	return release
}

func TestIntrospectionBurstSharesOneCall(t *testing.T) {
	e := setup(t, nil)
	e.p.active["burst"] = map[string]any{"active": true, "sub": "bob", "exp": e.clk.now().Add(time.Minute).Unix()}
	release := holdIntrospection(t, e)
	var wg sync.WaitGroup
	var fails atomic.Int64
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := e.route.Verify(context.Background(), "burst"); err != nil {
				fails.Add(1)
			}
		}()
	}
	waitFor(t, "the first introspection", func() bool { return e.p.introHits.Load() > 0 })
	release()
	wg.Wait()
	if fails.Load() != 0 {
		t.Fatalf("%d failed", fails.Load())
	}
	if n := e.p.introHits.Load(); n > 5 {
		t.Fatalf("200 simultaneous requests cost %d introspections", n)
	}
}

// TestIntrospectionSharedCallOutlivesItsFirstCaller: a caller that goes
// away (its request's context canceled) while others wait on the same
// introspection neither fails them nor is kept waiting itself.
func TestIntrospectionSharedCallOutlivesItsFirstCaller(t *testing.T) {
	e := setup(t, nil)
	e.p.active["shared"] = map[string]any{"active": true, "sub": "bob", "exp": e.clk.now().Add(time.Minute).Unix()}
	release := holdIntrospection(t, e)
	firstCtx, cancelFirst := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() {
		_, err := e.route.Verify(firstCtx, "shared")
		first <- err
	}()
	waitFor(t, "the first introspection", func() bool { return e.p.introHits.Load() > 0 })
	second := make(chan error, 1)
	go func() {
		_, err := e.route.Verify(context.Background(), "shared")
		second <- err
	}()
	cancelFirst()
	select {
	case <-first: // the caller that left is not kept waiting
	case <-time.After(10 * time.Second):
		t.Fatal("a canceled caller is still waiting for the shared introspection")
	}
	release()
	select {
	case err := <-second:
		if err != nil {
			t.Fatalf("the caller that stayed got %v after the first one left", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the caller that stayed got no answer")
	}
}

// TestIntrospectionsInFlightAreBounded: a burst of made-up opaque tokens,
// each a different one, against a provider that is slow to answer costs at
// most MaxIntrospections calls at once; the rest get 503 after waiting
// IntrospectSlotWait at most, and those in flight answer once the provider
// does.
func TestIntrospectionsInFlightAreBounded(t *testing.T) {
	e := setup(t, nil)
	release := holdIntrospection(t, e)
	const n = 3 * MaxIntrospections
	var busy, passed, other atomic.Int64
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.route.Verify(context.Background(), fmt.Sprintf("made-up-%d", i))
			switch oe := oautherr.As(err); {
			case err == nil:
				passed.Add(1)
			case oe != nil && oe.Status == http.StatusServiceUnavailable:
				busy.Add(1)
			default:
				other.Add(1)
			}
		}()
	}
	waitFor(t, "every caller without a slot answered", func() bool { return busy.Load()+other.Load() >= n-MaxIntrospections })
	if hits := e.p.introHits.Load(); hits != MaxIntrospections {
		t.Fatalf("%d introspection calls at once, want %d", hits, MaxIntrospections)
	}
	release()
	wg.Wait()
	if passed.Load() != MaxIntrospections || busy.Load() != n-MaxIntrospections || other.Load() != 0 {
		t.Fatalf("passed %d, busy %d, other %d; want %d, %d, 0", passed.Load(), busy.Load(), other.Load(), MaxIntrospections, n-MaxIntrospections)
	}
}

func TestRouteWithTwoIntrospectorsIsRefused(t *testing.T) {
	mk := func(name string) *Issuer {
		is, err := NewIssuer(Config{Issuer: name, Introspection: &Introspection{URL: name + "/introspect", ClientID: "a", ClientSecret: "b"}})
		if err != nil {
			t.Fatal(err)
		}
		return is
	}
	set, err := NewSet([]*Issuer{mk("https://a.example"), mk("https://b.example")}, "")
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	if _, err := set.Route(nil, nil); err == nil || !strings.Contains(err.Error(), "more than one") {
		t.Fatalf("two introspectors on a route: %v", err)
	}
	if _, err := set.Route(nil, []string{"https://a.example"}); err != nil {
		t.Fatal(err)
	}
	if _, err := set.Route(nil, []string{"https://c.example"}); err == nil {
		t.Fatal("an untrusted issuer was accepted on a route")
	}
}

func TestRouteIssuerRestriction(t *testing.T) {
	e := setup(t, nil).started(t)
	other, err := NewIssuer(Config{Issuer: "https://other.example", Audience: []string{"api"}})
	if err != nil {
		t.Fatal(err)
	}
	set, err := NewSet([]*Issuer{e.is, other}, "")
	if err != nil {
		t.Fatal(err)
	}
	route, err := set.Route(nil, []string{"https://other.example"})
	if err != nil {
		t.Fatal(err)
	}
	tok := sign(t, jose.RS256, e.p.rsa, "rsa1", nil, e.p.claims(e.clk.now()))
	wantInvalid(t, route, tok, "issuer not accepted on the route")
	// Verified on a route that accepts it, then cached: still refused here.
	if _, err := e.route.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	wantInvalid(t, route, tok, "issuer not accepted on the route, cached elsewhere")
	wantInvalid(t, route, "opaque-token", "opaque on a route without introspection")
}

func TestLocalVerifierGetsOwnTokens(t *testing.T) {
	e := setup(t, nil).started(t)
	var asked atomic.Int64
	local := gateway.VerifierFunc(func(ctx context.Context, tok string) (*gateway.Identity, error) {
		asked.Add(1)
		if tok == "ours" {
			return &gateway.Identity{Subject: "me", Issuer: "https://self.example", ExpiresAt: time.Now().Add(time.Hour)}, nil
		}
		return nil, oautherr.InvalidToken
	})
	set, err := NewSet([]*Issuer{e.is}, "https://self.example")
	if err != nil {
		t.Fatal(err)
	}
	route, _ := set.Route(local, nil)
	if id, err := route.Verify(context.Background(), "ours"); err != nil || id.Subject != "me" {
		t.Fatalf("%+v %v", id, err)
	}
	n := e.p.introHits.Load()
	wantInvalid(t, route, "not-ours", "unknown opaque")
	if e.p.introHits.Load() != n+1 {
		t.Fatal("an opaque token unknown here was not introspected")
	}
}
