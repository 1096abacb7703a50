package caddymodule

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"golang.org/x/crypto/bcrypt"

	"github.com/oauth2gate/oauth2gate/authz"
	"github.com/oauth2gate/oauth2gate/authz/cache"
	"github.com/oauth2gate/oauth2gate/authz/tokenstore"
)

// guardFixture is a real authorization server (file store, ristretto cache)
// and an oauth2_guard set up on it as the Caddyfile
// `oauth2_guard { scope GET read }` would.
type guardFixture struct {
	srv   *authz.Server
	cache *cache.Cache
	guard *Guard
}

func newGuardFixture(tb testing.TB) *guardFixture {
	tb.Helper()
	st, err := tokenstore.OpenFile(tb.TempDir(), tokenstore.FileOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	c, err := cache.New(cache.Options{MaxTokens: 1_000_000}) // the default
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close(); st.Close() })
	sh, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		tb.Fatal(err)
	}
	srv, err := authz.New(context.Background(), authz.Config{
		Issuer:     "http://issuer.test",
		SecretsKey: bytes.Repeat([]byte{7}, authz.SecretsKeySize),
		Clients: []authz.ClientConfig{{
			ID: "svc", SecretHash: string(sh), Grants: []string{authz.GrantClientCredentials}, Scopes: []string{"read", "write"},
		}},
	}, st, c, nil)
	if err != nil {
		tb.Fatal(err)
	}
	g := &Guard{MethodScopes: []MethodScope{{Methods: []string{"GET"}, Scopes: []string{"read"}}}}
	if err := g.setup(srv); err != nil {
		tb.Fatal(err)
	}
	return &guardFixture{srv: srv, cache: c, guard: g}
}

func (f *guardFixture) issue(tb testing.TB, sc string) string {
	tb.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {sc}}
	r := httptest.NewRequest(http.MethodPost, "/oauth2/token", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.SetBasicAuth("svc", "s3cret")
	w := httptest.NewRecorder()
	f.srv.ServeEndpoint(w, r, "/oauth2")
	var body struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &body); w.Code != 200 || err != nil || body.AccessToken == "" {
		tb.Fatalf("issuing a token: %d %s", w.Code, w.Body)
	}
	return body.AccessToken
}

// request is a GET as Caddy's server hands it to a handler: a replacer in
// its context with the HTTP provider already mapped.
func guardRequest(tok string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/orders", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	repl := caddy.NewReplacer()
	repl.Map(func(string) (any, bool) { return nil, false })
	return r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
}

// warmRequests issues n tokens and builds a request for each, every one
// passed through the guard until the cache holds them all. auth[i] is
// reqs[i]'s Authorization header, which the guard strips: a benchmark puts
// it back before each request.
func (f *guardFixture) warmRequests(tb testing.TB, n int) (reqs []*http.Request, auth [][]string) {
	tb.Helper()
	reqs = make([]*http.Request, n)
	auth = make([][]string, n)
	passed := 0
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { passed++; return nil })
	w := httptest.NewRecorder()
	for i := range reqs {
		reqs[i] = guardRequest(f.issue(tb, "read write"))
		auth[i] = reqs[i].Header["Authorization"]
	}
	for range 3 { // ristretto's Sets are buffered and may be dropped: go round again
		for i := range reqs {
			reqs[i].Header["Authorization"] = auth[i]
			if err := f.guard.ServeHTTP(w, reqs[i], next); err != nil {
				tb.Fatal(err)
			}
		}
	}
	if passed != 3*n {
		tb.Fatalf("warming: %d of %d requests passed (%d)", passed, 3*n, w.Code)
	}
	f.cache.Wait()
	return reqs, auth
}

func TestGuardHandlerPassesAndTellsUpstream(t *testing.T) {
	f := newGuardFixture(t)
	tok := f.issue(t, "read")
	r := guardRequest(tok)
	r.Header.Set("X-Auth-Subject", "forged")
	var got http.Header
	err := f.guard.ServeHTTP(httptest.NewRecorder(), r, caddyhttp.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) error {
		got = r.Header.Clone()
		return nil
	}))
	if err != nil || got == nil {
		t.Fatalf("guard refused a valid token: %v", err)
	}
	if got.Get("Authorization") != "" || got.Get("X-Auth-Subject") != "svc" || got.Get("X-Auth-Client-Id") != "svc" || got.Get("X-Auth-Scope") != "read" {
		t.Fatalf("upstream headers %v", got)
	}
	// The identity values share one backing array; each is capped, so an
	// append to one header cannot write into the next.
	r.Header["X-Auth-Subject"] = append(r.Header["X-Auth-Subject"], "extra")
	if v := r.Header["X-Auth-Client-Id"]; len(v) != 1 || v[0] != "svc" {
		t.Fatalf("appending to one identity header changed another: %q", v)
	}
}

// BenchmarkGuardHandler is the whole oauth2_guard handler on the hot path:
// token in the header, cache warm, scope check, forged identity dropped,
// token stripped, placeholders published and identity headers set.
func BenchmarkGuardHandler(b *testing.B) {
	f := newGuardFixture(b)
	const n = 1024
	reqs, auth := f.warmRequests(b, n)
	w := httptest.NewRecorder()
	passed := 0
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { passed++; return nil })
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := reqs[i%n]
		r.Header["Authorization"] = auth[i%n] // the guard stripped it last time
		if err := f.guard.ServeHTTP(w, r, next); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if passed != b.N {
		b.Fatalf("%d of %d requests passed", passed, b.N)
	}
}
