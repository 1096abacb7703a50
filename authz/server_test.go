package authz

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/oauth2gate/oauth2gate/authz/cache"
	"github.com/oauth2gate/oauth2gate/authz/tokenstore"
)

func hash(t testing.TB, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

func newTestServer(t testing.TB, mutate func(*Config)) *Server {
	t.Helper()
	st, err := tokenstore.OpenFile(t.TempDir(), tokenstore.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := cache.New(cache.Options{MaxTokens: 10000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); st.Close() })
	cfg := Config{
		Issuer:     "http://issuer.test",
		SecretsKey: testSecretsKey(t),
		Clients: []ClientConfig{
			{ID: "conf", SecretHash: hash(t, "s3cret"), Grants: []string{GrantAuthorizationCode, GrantPassword, GrantClientCredentials, GrantRefreshToken}, RedirectURIs: []string{"https://app.test/cb"}, Scopes: []string{"read", "write"}},
			{ID: "other", SecretHash: hash(t, "other"), Grants: []string{GrantPassword, GrantRefreshToken}, Scopes: []string{"read", "write"}},
			{ID: "pub", Public: true, Grants: []string{GrantAuthorizationCode, GrantPassword, GrantRefreshToken}, RedirectURIs: []string{"https://pub.test/cb"}, Scopes: []string{"read"}},
			{ID: "cconly", SecretHash: hash(t, "cc"), Grants: []string{GrantClientCredentials}, Scopes: []string{"read"}},
		},
		Users: []UserConfig{{Username: "alice", PasswordHash: hash(t, "wonderland")}},
	}
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := New(context.Background(), cfg, st, c, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type answer struct {
	status int
	header http.Header
	body   map[string]any
}

func tokenRequest(t testing.TB, s *Server, form url.Values, basic ...string) answer {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/oauth2/token", strings.NewReader(form.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if len(basic) == 2 {
		r.SetBasicAuth(url.QueryEscape(basic[0]), url.QueryEscape(basic[1]))
	}
	w := httptest.NewRecorder()
	if !s.ServeEndpoint(w, r, "/oauth2") {
		t.Fatal("token endpoint not served")
	}
	var body map[string]any
	_ = json.Unmarshal(w.Body.Bytes(), &body)
	return answer{w.Code, w.Header(), body}
}

func TestTokenErrors(t *testing.T) {
	s := newTestServer(t, nil)
	tests := []struct {
		name   string
		form   url.Values
		basic  []string
		status int
		code   string
	}{
		{"unknown client", url.Values{"grant_type": {"client_credentials"}, "client_id": {"nobody"}, "client_secret": {"x"}}, nil, 401, "invalid_client"},
		{"wrong secret", url.Values{"grant_type": {"client_credentials"}, "client_id": {"conf"}, "client_secret": {"wrong"}}, nil, 401, "invalid_client"},
		{"wrong secret basic", url.Values{"grant_type": {"client_credentials"}}, []string{"conf", "wrong"}, 401, "invalid_client"},
		{"no client", url.Values{"grant_type": {"client_credentials"}}, nil, 401, "invalid_client"},
		{"two auth methods", url.Values{"grant_type": {"client_credentials"}, "client_secret": {"s3cret"}}, []string{"conf", "s3cret"}, 400, "invalid_request"},
		{"grant not listed", url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"wonderland"}}, []string{"cconly", "cc"}, 400, "unauthorized_client"},
		{"unknown grant", url.Values{"grant_type": {"urn:foo"}}, []string{"conf", "s3cret"}, 400, "unsupported_grant_type"},
		{"missing grant", url.Values{}, []string{"conf", "s3cret"}, 400, "invalid_request"},
		{"repeated parameter", url.Values{"grant_type": {"client_credentials", "client_credentials"}}, []string{"conf", "s3cret"}, 400, "invalid_request"},
		{"scope too wide", url.Values{"grant_type": {"client_credentials"}, "scope": {"read admin"}}, []string{"conf", "s3cret"}, 400, "invalid_scope"},
		{"bad password", url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"nope"}}, []string{"conf", "s3cret"}, 400, "invalid_grant"},
		{"unknown user", url.Values{"grant_type": {"password"}, "username": {"mallory"}, "password": {"nope"}}, []string{"conf", "s3cret"}, 400, "invalid_grant"},
		{"missing code", url.Values{"grant_type": {"authorization_code"}}, []string{"conf", "s3cret"}, 400, "invalid_request"},
		{"unknown code", url.Values{"grant_type": {"authorization_code"}, "code": {"nope"}, "redirect_uri": {"https://app.test/cb"}}, []string{"conf", "s3cret"}, 400, "invalid_grant"},
		{"unknown refresh", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"nope"}}, []string{"conf", "s3cret"}, 400, "invalid_grant"},
		{"public client with secret", url.Values{"grant_type": {"password"}, "client_id": {"pub"}, "client_secret": {"x"}, "username": {"alice"}, "password": {"wonderland"}}, nil, 401, "invalid_client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := tokenRequest(t, s, tt.form, tt.basic...)
			if a.status != tt.status || a.body["error"] != tt.code {
				t.Fatalf("got %d %v, want %d %s", a.status, a.body, tt.status, tt.code)
			}
			if a.header.Get("Cache-Control") != "no-store" {
				t.Fatal("error without Cache-Control: no-store")
			}
			if tt.status == 401 && tt.basic != nil && !strings.HasPrefix(a.header.Get("WWW-Authenticate"), "Basic") {
				t.Fatal("401 to Basic auth without WWW-Authenticate: Basic")
			}
		})
	}
}

func TestTokenRequestInQueryRefusedUnlessAllowed(t *testing.T) {
	q := "grant_type=client_credentials&client_id=conf&client_secret=s3cret"
	for _, allow := range []bool{false, true} {
		s := newTestServer(t, func(c *Config) { c.AllowGetTokenRequest = allow })
		w := httptest.NewRecorder()
		s.ServeEndpoint(w, httptest.NewRequest(http.MethodGet, "/oauth2/token?"+q, nil), "/oauth2")
		if allow && w.Code != 200 || !allow && (w.Code < 400 || w.Code >= 500 || !strings.Contains(w.Body.String(), "invalid_request")) {
			t.Fatalf("allow=%v: GET with query answered %d %s", allow, w.Code, w.Body)
		}
	}
}

func TestRefreshRules(t *testing.T) {
	s := newTestServer(t, nil)
	pw := tokenRequest(t, s, url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"wonderland"}}, "conf", "s3cret")
	if pw.status != 200 {
		t.Fatalf("password grant: %d %v", pw.status, pw.body)
	}
	rt := pw.body["refresh_token"].(string)
	// another client, authenticated, may not use it
	if a := tokenRequest(t, s, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, "other", "other"); a.status != 400 || a.body["error"] != "invalid_grant" {
		t.Fatalf("other client's refresh: %d %v", a.status, a.body)
	}
	// widening is refused, and does not burn the token
	if a := tokenRequest(t, s, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "scope": {"read admin"}}, "conf", "s3cret"); a.status != 400 || a.body["error"] != "invalid_scope" {
		t.Fatalf("widening refresh: %d %v", a.status, a.body)
	}
	// narrowing works and rotates
	a := tokenRequest(t, s, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "scope": {"read"}}, "conf", "s3cret")
	if a.status != 200 || a.body["scope"] != "read" || a.body["refresh_token"] == rt || a.body["refresh_token"] == "" {
		t.Fatalf("narrowing refresh: %d %v", a.status, a.body)
	}
	// the old access token is gone, the new one works
	if _, err := s.Verify(context.Background(), pw.body["access_token"].(string)); err == nil {
		t.Fatal("old access token still valid after refresh")
	}
	if e, err := s.Verify(context.Background(), a.body["access_token"].(string)); err != nil || e.Scope != "read" || e.Subject != "alice" {
		t.Fatalf("new access token: %+v %v", e, err)
	}
	// the old refresh token is spent
	if b := tokenRequest(t, s, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, "conf", "s3cret"); b.status != 400 || b.body["error"] != "invalid_grant" {
		t.Fatalf("spent refresh token: %d %v", b.status, b.body)
	}
}

func TestRevocationReachesLookupAtOnce(t *testing.T) {
	s := newTestServer(t, nil)
	pw := tokenRequest(t, s, url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"wonderland"}}, "conf", "s3cret")
	tok, rt := pw.body["access_token"].(string), pw.body["refresh_token"].(string)
	ctx := context.Background()
	var revoked atomic.Bool
	var passedAfter atomic.Int32
	var wg sync.WaitGroup
	deadline := time.Now().Add(2 * time.Second)
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000 && time.Now().Before(deadline); i++ {
				after := revoked.Load()
				if _, err := s.Verify(ctx, tok); err == nil && after {
					passedAfter.Add(1)
				}
			}
		}()
	}
	time.Sleep(10 * time.Millisecond)
	// refresh rotation revokes the old access token
	if a := tokenRequest(t, s, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}}, "conf", "s3cret"); a.status != 200 {
		t.Fatalf("refresh: %d %v", a.status, a.body)
	}
	revoked.Store(true)
	wg.Wait()
	if n := passedAfter.Load(); n != 0 {
		t.Fatalf("%d lookups that started after the revocation returned passed", n)
	}
}

func TestPasswordHashForms(t *testing.T) {
	tests := []struct {
		name, hash, pw string
		ok             bool
	}{
		{"bcrypt", hash(t, "hello"), "hello", true},
		{"bcrypt wrong", hash(t, "hello"), "hell", false},
		{"argon2id", "$argon2id$v=19$m=47104,t=1,p=1$kYgYYPEXyXEoedxSA4dqsQ$3LzgYN5A9w9EpOGwsBtYh49gDplNSlx47FPj13ioOCg", "wonderland", true},
		{"argon2id wrong", "$argon2id$v=19$m=47104,t=1,p=1$kYgYYPEXyXEoedxSA4dqsQ$3LzgYN5A9w9EpOGwsBtYh49gDplNSlx47FPj13ioOCg", "alice", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := ParsePasswordHash(tt.hash)
			if err != nil {
				t.Fatal(err)
			}
			if h.Verify(tt.pw) != tt.ok {
				t.Fatalf("Verify(%q) = %v", tt.pw, !tt.ok)
			}
		})
	}
	for _, bad := range []string{"plaintext", "$argon2id$v=19$m=1$x$y", "$2a$nope"} {
		if _, err := ParsePasswordHash(bad); err == nil {
			t.Errorf("ParsePasswordHash(%q) accepted", bad)
		}
	}
}

func TestRedactLocation(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://a.test/cb?code=abc&state=x", "https://a.test/cb?code=REDACTED&state=x"},
		{"https://a.test/cb?state=x&code=abc", "https://a.test/cb?state=x&code=REDACTED"},
		{"https://a.test/cb#access_token=abc&expires_in=3600&state=x", "https://a.test/cb#access_token=REDACTED&expires_in=3600&state=x"},
		{"https://a.test/cb?error=access_denied&state=x", "https://a.test/cb?error=access_denied&state=x"},
		{"https://a.test/cb?mycode=1&code=abc", "https://a.test/cb?mycode=1&code=REDACTED"},
	}
	for _, tt := range tests {
		if got := redactLocation(tt.in); got != tt.want {
			t.Errorf("redactLocation(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
