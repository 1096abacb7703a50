package authz

import (
	"context"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// failureLimiter slows brute force (RFC 9700 §4.12-ish hygiene, OWASP ASVS
// 2.2.1): every failed login, failed password grant and failed client
// authentication takes a token from buckets keyed by (username, IP),
// (client_id, IP) and IP. An empty bucket answers 429 with Retry-After
// before any password is checked. Keys include the IP so that someone
// else's failures, from elsewhere, never lock a user or client out.
// Buckets that have refilled are forgotten, so memory stays bounded.
type failureLimiter struct {
	live    atomic.Int64 // len(buckets), read without the lock: the common case is none
	mu      sync.Mutex
	buckets map[string]*bucket
	burst   float64       // failures allowed at once
	every   time.Duration // one more failure allowed per this much time
	max     int           // most buckets kept; beyond it the fullest are dropped
	now     func() time.Time
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newFailureLimiter(burst int, every time.Duration, now func() time.Time) *failureLimiter {
	return &failureLimiter{buckets: map[string]*bucket{}, burst: float64(burst), every: every, max: 100_000, now: now}
}

func (l *failureLimiter) level(b *bucket, now time.Time) float64 {
	t := b.tokens + float64(now.Sub(b.at))/float64(l.every)
	return math.Min(t, l.burst)
}

// blocked reports whether any key has no failure left, and how long until one
// comes back.
func (l *failureLimiter) blocked(keys ...string) (bool, time.Duration) {
	if l == nil || l.live.Load() == 0 {
		return false, 0
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	var wait time.Duration
	for _, k := range keys {
		b, ok := l.buckets[k]
		if !ok {
			continue
		}
		if lv := l.level(b, now); lv < 1 {
			if d := time.Duration((1 - lv) * float64(l.every)); d > wait {
				wait = d
			}
		}
	}
	return wait > 0, wait
}

// fail records a failure under every key.
func (l *failureLimiter) fail(keys ...string) {
	if l == nil {
		return
	}
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		b, ok := l.buckets[k]
		if !ok {
			if len(l.buckets) >= l.max {
				l.sweepLocked(now, true)
			}
			b = &bucket{tokens: l.burst, at: now}
			l.buckets[k] = b
		}
		b.tokens = l.level(b, now) - 1
		b.at = now
	}
	l.live.Store(int64(len(l.buckets)))
}

// sweep forgets buckets that have refilled (they mean nothing any more).
func (l *failureLimiter) sweep() {
	l.mu.Lock()
	l.sweepLocked(l.now(), false)
	l.live.Store(int64(len(l.buckets)))
	l.mu.Unlock()
}

func (l *failureLimiter) sweepLocked(now time.Time, hard bool) {
	for k, b := range l.buckets {
		if lv := l.level(b, now); lv >= l.burst || hard && lv >= l.burst-1 {
			delete(l.buckets, k)
		}
	}
	if hard && len(l.buckets) >= l.max {
		// Still full of live buckets: drop arbitrary ones rather than grow.
		for k := range l.buckets {
			delete(l.buckets, k)
			if len(l.buckets) < l.max*9/10 {
				break
			}
		}
	}
}

func (l *failureLimiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

// failureBlocked and failureSeen use the shared store's counters when it has
// them (Redis: the limits hold across instances), else the in-memory buckets.
func (s *Server) failureBlocked(ctx context.Context, keys func() []string) (bool, time.Duration) {
	if s.cfg.FailureBurst <= 0 {
		return false, 0
	}
	if fc := s.sharedFailures; fc != nil {
		wait, err := fc.FailureWait(ctx, keys(), s.cfg.FailureBurst, s.cfg.FailureEvery)
		if err != nil {
			return false, 0 // the store's outage answers for itself
		}
		return wait > 0, wait
	}
	if s.failures.live.Load() == 0 {
		return false, 0 // nobody has failed lately: no key to build
	}
	return s.failures.blocked(keys()...)
}

// failureKeys are the buckets of one attempt: (who, IP) and IP.
func failureKeys(kind, who, ip string) func() []string {
	return func() []string { return []string{kind + "\x00" + who + "\x00" + ip, "ip\x00" + ip} }
}

func (s *Server) failureSeen(ctx context.Context, keys ...string) {
	if s.cfg.FailureBurst <= 0 {
		return
	}
	if fc := s.sharedFailures; fc != nil {
		if err := fc.Fail(ctx, keys, s.cfg.FailureBurst, s.cfg.FailureEvery); err != nil {
			s.logger.Warn("recording a failed attempt in the store", zap.String("error", err.Error()))
		}
		return
	}
	s.failures.fail(keys...)
}

// clientIP is the request's remote address without the port; the Caddy
// glue replaces it with Caddy's client IP (trusted proxies honoured).
func defaultClientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func retryAfter(d time.Duration) string {
	s := int(math.Ceil(d.Seconds()))
	if s < 1 {
		s = 1
	}
	return strconv.Itoa(s)
}

// ErrTooManyFailures is answered with 429 and Retry-After.
var ErrTooManyFailures = &Error{Code: "temporarily_unavailable", Description: "too many failed attempts; retry later", Status: http.StatusTooManyRequests}
