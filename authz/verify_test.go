package authz

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/oauth2gate/oauth2gate/authz/gateway"
)

// The Server as the gateway's Verifier: its real store and cache, tokens
// from its token endpoint. The gateway's own rules are tested in
// authz/gateway with a verifier of fixed tokens.
func issueToken(t testing.TB, s *Server, sc string) string {
	t.Helper()
	a := tokenRequest(t, s, url.Values{"grant_type": {"client_credentials"}, "scope": {sc}}, "conf", "s3cret")
	if a.status != 200 {
		t.Fatalf("issuing token: %d %v", a.status, a.body)
	}
	return a.body["access_token"].(string)
}

// TestCachedTokenIsNotAVerdict is the test that would have caught Ory
// Oathkeeper's CVE-2021-32701: a token cached by a read route must still be
// refused by a write route.
func TestCachedTokenIsNotAVerdict(t *testing.T) {
	s := newTestServer(t, nil)
	read := issueToken(t, s, "read")
	readRules, _ := gateway.NewScopeRules([]string{"read"}, nil)
	writeRules, _ := gateway.NewScopeRules([]string{"write"}, nil)
	readGuard := gateway.New(s, readRules, gateway.Options{})
	writeGuard := gateway.New(s, writeRules, gateway.Options{})
	req := func() *http.Request {
		r := httptest.NewRequest("GET", "/x", nil)
		r.Header.Set("Authorization", "Bearer "+read)
		return r
	}
	for range 3 {
		if _, _, d := readGuard.Check(req()); d != nil {
			t.Fatalf("read route refused a read token: %+v", d)
		}
	}
	s.cache.Wait()
	if _, _, d := writeGuard.Check(req()); d == nil || d.Code != "insufficient_scope" {
		t.Fatalf("write route let a cached read token through: %+v", d)
	}
}

func TestCacheEntryNeverOutlivesToken(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.AccessTokenTTL = time.Second })
	tok := issueToken(t, s, "read")
	if _, err := s.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	s.cache.Wait()
	time.Sleep(1100 * time.Millisecond)
	if _, err := s.Verify(context.Background(), tok); err == nil {
		t.Fatal("an expired token passed from the cache")
	}
}

// BenchmarkGuardHotPath: token in the header, cache warm, scope check.
func BenchmarkGuardHotPath(b *testing.B) { benchGuardHotPath(b, nil) }

// BenchmarkGuardHotPathJWT is the same with RFC 9068 JWT access tokens.
func BenchmarkGuardHotPathJWT(b *testing.B) {
	benchGuardHotPath(b, func(c *Config) { c.AccessTokenFormat = "jwt" })
}

func benchGuardHotPath(b *testing.B, mutate func(*Config)) {
	s := newTestServer(b, mutate)
	const n = 1024
	rules, _ := gateway.NewScopeRules(nil, []gateway.MethodScopes{{Methods: []string{"GET"}, Scopes: []string{"read"}}})
	g := gateway.New(s, rules, gateway.Options{QueryToken: true, FormToken: true})
	reqs := make([]*http.Request, n)
	for i := range reqs {
		reqs[i] = httptest.NewRequest("GET", "/x", nil)
		reqs[i].Header.Set("Authorization", "Bearer "+issueToken(b, s, "read write"))
		if _, _, d := g.Check(reqs[i]); d != nil {
			b.Fatal(d)
		}
	}
	s.cache.Wait()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, d := g.Check(reqs[i%n]); d != nil {
			b.Fatal(d)
		}
	}
}
