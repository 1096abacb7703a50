package authz

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// fakeless: the verifier in these tests is the real Server with its real
// store and cache; tokens come from its token endpoint.
func issueToken(t testing.TB, s *Server, sc string) string {
	t.Helper()
	a := tokenRequest(t, s, url.Values{"grant_type": {"client_credentials"}, "scope": {sc}}, "conf", "s3cret")
	if a.status != 200 {
		t.Fatalf("issuing token: %d %v", a.status, a.body)
	}
	return a.body["access_token"].(string)
}

func TestScopeRules(t *testing.T) {
	rules := func(inline []string, lines ...MethodScopes) ScopeRules {
		r, err := NewScopeRules(inline, lines)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	perMethod := rules(nil, MethodScopes{[]string{"GET"}, []string{"read"}}, MethodScopes{[]string{"POST", "PUT", "DELETE"}, []string{"write"}})
	withStar := rules([]string{"base"}, MethodScopes{[]string{"DELETE"}, []string{"admin"}})
	none := rules(nil)
	tests := []struct {
		name    string
		r       ScopeRules
		method  string
		want    string
		allowed bool
	}{
		{"GET named", perMethod, "GET", "read", true},
		{"HEAD follows GET", perMethod, "HEAD", "read", true},
		{"PUT in list", perMethod, "PUT", "write", true},
		{"PATCH fails closed", perMethod, "PATCH", "", false},
		{"star default", withStar, "GET", "base", true},
		{"named beats star", withStar, "DELETE", "admin", true},
		{"no rules: any token", none, "PATCH", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := tt.r.Required(tt.method)
			if ok != tt.allowed || got.String() != tt.want {
				t.Fatalf("Required(%s) = %q, %v; want %q, %v", tt.method, got.String(), ok, tt.want, tt.allowed)
			}
		})
	}
	if _, err := NewScopeRules(nil, []MethodScopes{{[]string{"GET"}, []string{"a"}}, {[]string{"GET"}, []string{"b"}}}); err == nil {
		t.Fatal("two lines naming GET accepted")
	}
}

func TestGuardRFC6750Table(t *testing.T) {
	s := newTestServer(t, nil)
	read := issueToken(t, s, "read")
	rules, _ := NewScopeRules(nil, []MethodScopes{{[]string{"GET"}, []string{"read"}}, {[]string{"POST"}, []string{"write"}}})
	g := NewGuard(s, rules, GuardOptions{Realm: "api", QueryToken: true, FormToken: true})
	tests := []struct {
		name    string
		method  string
		target  string
		auth    string
		body    string
		status  int
		errCode string
	}{
		{"no token", "GET", "/x", "", "", 401, ""},
		{"header", "GET", "/x", "Bearer " + read, "", 0, ""},
		{"lower-case scheme", "GET", "/x", "bearer " + read, "", 0, ""},
		{"extra spaces", "GET", "/x", "Bearer    " + read + "  ", "", 0, ""},
		{"query", "GET", "/x?access_token=" + read, "", "", 0, ""},
		{"form", "POST", "/x", "", "access_token=" + read, 403, "insufficient_scope"},
		{"header and query", "GET", "/x?access_token=" + read, "Bearer " + read, "", 400, "invalid_request"},
		{"repeated query", "GET", "/x?access_token=a&access_token=b", "", "", 400, "invalid_request"},
		{"empty bearer", "GET", "/x", "Bearer ", "", 400, "invalid_request"},
		{"outside b64token", "GET", "/x", "Bearer a\"b", "", 401, "invalid_token"},
		{"non-utf8", "GET", "/x", "Bearer \xff\xfe", "", 401, "invalid_token"},
		{"huge", "GET", "/x", "Bearer " + strings.Repeat("a", 1<<20), "", 401, "invalid_token"},
		{"unknown", "GET", "/x", "Bearer unknowntoken", "", 401, "invalid_token"},
		{"scope missing", "POST", "/x", "Bearer " + read, "", 403, "insufficient_scope"},
		{"method not admitted", "PATCH", "/x", "Bearer " + read, "", 403, "insufficient_scope"},
		{"basic is not bearer", "GET", "/x", "Basic Zm9vOmJhcg==", "", 401, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(tt.method, tt.target, strings.NewReader(tt.body))
			if tt.body != "" {
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			if tt.auth != "" {
				r.Header["Authorization"] = []string{tt.auth}
			}
			e, _, d := g.Check(r)
			if tt.status == 0 {
				if d != nil || e == nil || e.Subject != "conf" {
					t.Fatalf("want pass, got %+v", d)
				}
				return
			}
			if d == nil || d.Status != tt.status || d.Code != tt.errCode {
				t.Fatalf("got %+v, want %d %q", d, tt.status, tt.errCode)
			}
			if !strings.HasPrefix(d.WWWAuthenticate, `Bearer realm="api"`) {
				t.Fatalf("WWW-Authenticate = %q", d.WWWAuthenticate)
			}
			if tt.errCode != "" && !strings.Contains(d.WWWAuthenticate, `error="`+tt.errCode+`"`) {
				t.Fatalf("WWW-Authenticate = %q lacks the error", d.WWWAuthenticate)
			}
			if tt.errCode == "insufficient_scope" && tt.name == "scope missing" && !strings.Contains(d.WWWAuthenticate, `scope="write"`) {
				t.Fatalf("WWW-Authenticate = %q lacks scope", d.WWWAuthenticate)
			}
		})
	}
}

// TestFinding1_MethodSpellingsCannotBypassMethodScopes: scope lines are
// upper case; a method in any other spelling (which an upstream may well
// upper-case and run) is refused before its token is even looked at.
func TestFinding1_MethodSpellingsCannotBypassMethodScopes(t *testing.T) {
	s := newTestServer(t, nil)
	read := issueToken(t, s, "read")
	rules, _ := NewScopeRules([]string{"read"}, []MethodScopes{{[]string{"POST", "PUT", "PATCH", "DELETE"}, []string{"write"}}})
	g := NewGuard(s, rules, GuardOptions{})
	check := func(method string) *Denial {
		r := httptest.NewRequest("GET", "/orders/1", nil)
		r.Method = method
		r.Header.Set("Authorization", "Bearer "+read)
		_, _, d := g.Check(r)
		return d
	}
	for _, m := range []string{"delete", "Delete", "dELETE", "DELETe", "post", "Post", "put", "patch", "PaTcH", "get", "Get", "head", "options",
		"DELETE ", " DELETE", "DEL ETE", "DELETE\t", "DELETE_", "D.ELETE", "DÉLETE", "DELETE\x00", "ＤＥＬＥＴＥ"} {
		d := check(m)
		if d == nil || d.Status != http.StatusBadRequest || d.Code != "invalid_request" {
			t.Errorf("method %q with a read token: %+v, want 400 invalid_request", m, d)
		}
	}
	for _, m := range []string{"DELETE", "POST", "PUT", "PATCH"} {
		if d := check(m); d == nil || d.Code != "insufficient_scope" {
			t.Errorf("method %q with a read token: %+v, want 403 insufficient_scope", m, d)
		}
	}
	for _, m := range []string{"GET", "HEAD", "OPTIONS", "M-SEARCH", "PROPFIND"} {
		if d := check(m); d != nil {
			t.Errorf("method %q with a read token: %+v, want pass (the * line)", m, d)
		}
	}
}

// TestCachedTokenIsNotAVerdict is the test that would have caught Ory
// Oathkeeper's CVE-2021-32701: a token cached by a read route must still be
// refused by a write route.
func TestCachedTokenIsNotAVerdict(t *testing.T) {
	s := newTestServer(t, nil)
	read := issueToken(t, s, "read")
	readRules, _ := NewScopeRules([]string{"read"}, nil)
	writeRules, _ := NewScopeRules([]string{"write"}, nil)
	readGuard := NewGuard(s, readRules, GuardOptions{})
	writeGuard := NewGuard(s, writeRules, GuardOptions{})
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

func TestStripToken(t *testing.T) {
	r := httptest.NewRequest("GET", "/x?a=1&access_token=tok&b=2", nil)
	StripToken(r, FromQuery)
	if r.URL.RawQuery != "a=1&b=2" || r.RequestURI != "/x?a=1&b=2" {
		t.Fatalf("query after strip: %q %q", r.URL.RawQuery, r.RequestURI)
	}
	r = httptest.NewRequest("GET", "/x", nil)
	r.Header.Set("Authorization", "Bearer tok")
	StripToken(r, FromHeader)
	if r.Header.Get("Authorization") != "" {
		t.Fatal("Authorization kept")
	}
}

func TestCacheEntryNeverOutlivesToken(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.AccessTokenTTL = time.Second })
	tok := issueToken(t, s, "read")
	if _, err := s.Lookup(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	s.cache.Wait()
	time.Sleep(1100 * time.Millisecond)
	if _, err := s.Lookup(context.Background(), tok); err == nil {
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
	rules, _ := NewScopeRules(nil, []MethodScopes{{[]string{"GET"}, []string{"read"}}})
	g := NewGuard(s, rules, GuardOptions{QueryToken: true, FormToken: true})
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
