package authz

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestFailureLimiterBucket(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	l := newFailureLimiter(3, 10*time.Second, func() time.Time { return now })
	key := "user\x00alice\x00198.51.100.7"
	for i := range 3 {
		if b, _ := l.blocked(key); b {
			t.Fatalf("blocked after %d failures, burst is 3", i)
		}
		l.fail(key)
	}
	b, wait := l.blocked(key)
	if !b || wait <= 0 || wait > 10*time.Second {
		t.Fatalf("after 3 failures: blocked=%v wait=%v", b, wait)
	}
	if b, _ := l.blocked("user\x00alice\x00203.0.113.9"); b {
		t.Fatal("another IP is blocked by someone else's failures")
	}
	now = now.Add(wait)
	if b, _ := l.blocked(key); b {
		t.Fatalf("still blocked after Retry-After (%v)", wait)
	}
	now = now.Add(time.Minute)
	l.sweep()
	if n := l.size(); n != 0 {
		t.Fatalf("%d refilled buckets kept after sweep", n)
	}
}

func TestFailureLimiterMemoryBounded(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	l := newFailureLimiter(3, time.Hour, func() time.Time { return now })
	l.max = 1000
	for i := range 10_000 {
		l.fail(fmt.Sprintf("ip\x00%d", i))
	}
	if n := l.size(); n > l.max {
		t.Fatalf("%d buckets, max %d", n, l.max)
	}
}

func TestTokenEndpointFailureLimit(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.FailureBurst = 3; c.FailureEvery = time.Minute })
	wrong := url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"nope"}}
	for range 3 {
		if a := tokenRequest(t, s, wrong, "conf", "s3cret"); a.status != 400 {
			t.Fatalf("bad password: %d %v", a.status, a.body)
		}
	}
	r := httptest.NewRequest(http.MethodPost, "/oauth2/token", strings.NewReader(url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"wonderland"}}.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.SetBasicAuth("conf", "s3cret")
	w := httptest.NewRecorder()
	s.ServeEndpoint(w, r, "/oauth2")
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" {
		t.Fatalf("4th attempt from the same IP: %d Retry-After=%q", w.Code, w.Header().Get("Retry-After"))
	}
	// The right password from another IP is not locked out.
	r = httptest.NewRequest(http.MethodPost, "/oauth2/token", strings.NewReader(url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"wonderland"}}.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.SetBasicAuth("conf", "s3cret")
	r.RemoteAddr = "203.0.113.50:4242"
	w = httptest.NewRecorder()
	s.ServeEndpoint(w, r, "/oauth2")
	if w.Code != http.StatusOK {
		t.Fatalf("correct login from another IP: %d %s", w.Code, w.Body)
	}
	// Failed client authentications count the same way.
	for range 3 {
		tokenRequest(t, s, url.Values{"grant_type": {"client_credentials"}}, "other", "wrong")
	}
	if a := tokenRequest(t, s, url.Values{"grant_type": {"client_credentials"}}, "cconly", "cc"); a.status != http.StatusTooManyRequests {
		t.Fatalf("after failures from this IP: %d %v, want 429", a.status, a.body)
	}
}
