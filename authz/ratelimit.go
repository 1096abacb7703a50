package authz

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"
)

// failureLimiter slows brute force (RFC 9700 §4.12-ish hygiene, OWASP ASVS
// 2.2.1): every failed login, failed password grant and failed client
// authentication costs a token from buckets keyed by (username, IP),
// (client_id, IP) and IP. The token is taken before the password is checked
// and given back when it was right, so that a burst of simultaneous guesses
// gets exactly the budget, never one each; an empty bucket answers 429 with
// Retry-After before any password is checked. Keys include the IP so that
// someone else's failures, from elsewhere, never lock a user or client out.
// Buckets that have refilled are forgotten, so memory stays bounded.
type failureLimiter struct {
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

// take takes one failure from every key when each has one left (all or
// none); otherwise it answers how long until they do.
func (l *failureLimiter) take(keys ...string) time.Duration {
	_, wait := l.takeUnless(nil, func() []string { return keys })
	return wait
}

// takeUnless is take with a check first: when every key has a failure left,
// known runs under the lock; if it answers true nothing is taken (a secret
// known to be right, compared in memory), else one failure is taken. A key
// with none left answers its wait, and known does not run. Concurrent
// callers are serialised, so a burst gets at most the budget of comparisons
// that miss, and right ones cost nothing and hold nothing.
func (l *failureLimiter) takeUnless(known func() bool, keysOf func() []string) (bool, time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buckets) == 0 && known != nil && known() {
		return true, 0 // nobody has failed lately: no key to build
	}
	keys := keysOf()
	var wait time.Duration
	for _, k := range keys {
		if b, ok := l.buckets[k]; ok {
			if lv := l.level(b, now); lv < 1 {
				wait = max(wait, time.Duration((1-lv)*float64(l.every)))
			}
		}
	}
	if wait > 0 {
		return false, wait
	}
	if known != nil && known() {
		return true, 0
	}
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
	return false, 0
}

// refund gives back a failure taken by take; a bucket full again is
// forgotten.
func (l *failureLimiter) refund(keys ...string) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, k := range keys {
		b, ok := l.buckets[k]
		if !ok {
			continue
		}
		if b.tokens = l.level(b, now) + 1; b.tokens >= l.burst {
			delete(l.buckets, k)
			continue
		}
		b.at = now
	}
}

// sweep forgets buckets that have refilled (they mean nothing any more).
func (l *failureLimiter) sweep() {
	l.mu.Lock()
	l.sweepLocked(l.now(), false)
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

// takeFailure takes one failure from the attempt's buckets before its
// password is checked: in the shared store's counters when it has them
// (Redis: the limits hold across instances), else in memory. A counter store
// that cannot answer refuses the attempt with 503 before any password is
// checked (finding 7 of the security review: failing open gave a locked
// address more guesses, and a right password answered differently from a
// wrong one).
func (s *Server) takeFailure(ctx context.Context, keys []string) *Error {
	if s.cfg.FailureBurst <= 0 {
		return nil
	}
	if fc := s.sharedFailures; fc != nil {
		wait, err := fc.TakeFailure(ctx, keys, s.cfg.FailureBurst, s.cfg.FailureEvery)
		if err != nil {
			return errCountersDown.WithWrap(fmt.Errorf("failure counters: %w", err))
		}
		if wait > 0 {
			return s.limited(keys, tooMany(wait))
		}
		return nil
	}
	if wait := s.failures.take(keys...); wait > 0 {
		return s.limited(keys, tooMany(wait))
	}
	return nil
}

// refundFailure gives back what takeFailure took: the password was right, or
// it was never checked.
func (s *Server) refundFailure(ctx context.Context, keys []string) {
	if s.cfg.FailureBurst <= 0 {
		return
	}
	if fc := s.sharedFailures; fc != nil {
		if err := fc.RefundFailure(ctx, keys, s.cfg.FailureBurst, s.cfg.FailureEvery); err != nil {
			s.logger.Warn("giving back a failed-attempt budget in the store", zap.String("error", err.Error()))
		}
		return
	}
	s.failures.refund(keys...)
}

// failureKeys are the buckets of one attempt: (who, IP) and IP.
func failureKeys(kind, who, ip string) []string {
	return []string{kind + "\x00" + who + "\x00" + ip, "ip\x00" + ip}
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
