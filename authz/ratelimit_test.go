package authz

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestFailureLimiterBucket(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	l := newFailureLimiter(3, 10*time.Second, func() time.Time { return now })
	key := "user\x00alice\x00198.51.100.7"
	for i := range 3 {
		if w := l.take(key); w != 0 {
			t.Fatalf("refused after %d failures, burst is 3", i)
		}
	}
	wait := l.take(key)
	if wait <= 0 || wait > 10*time.Second {
		t.Fatalf("after 3 failures: wait=%v", wait)
	}
	if w := l.take("user\x00alice\x00203.0.113.9"); w != 0 {
		t.Fatal("another IP is refused by someone else's failures")
	}
	// A right password gives its failure back.
	l.refund(key)
	if w := l.take(key); w != 0 {
		t.Fatal("a refund gave nothing back")
	}
	if w := l.take(key); w == 0 {
		t.Fatal("a refund gave back more than one")
	}
	now = now.Add(wait)
	if w := l.take(key); w != 0 {
		t.Fatalf("still refused after Retry-After (%v)", wait)
	}
	now = now.Add(time.Minute)
	l.sweep()
	if n := l.size(); n != 0 {
		t.Fatalf("%d refilled buckets kept after sweep", n)
	}
}

// TestFailureLimiterTakeIsAtomic: of 200 simultaneous attempts on one key,
// exactly the burst are let through (the review's finding 2).
func TestFailureLimiterTakeIsAtomic(t *testing.T) {
	l := newFailureLimiter(10, time.Hour, time.Now)
	var wg sync.WaitGroup
	var granted atomic.Int64
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if l.take("user\x00bob\x00198.51.100.8", "ip\x00198.51.100.8") == 0 {
				granted.Add(1)
			}
		}()
	}
	wg.Wait()
	if granted.Load() != 10 {
		t.Fatalf("200 simultaneous attempts, burst 10: %d let through", granted.Load())
	}
}

func TestFailureLimiterMemoryBounded(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	l := newFailureLimiter(3, time.Hour, func() time.Time { return now })
	l.max = 1000
	for i := range 10_000 {
		l.take(fmt.Sprintf("ip\x00%d", i))
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
