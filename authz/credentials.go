package authz

import (
	"context"
	"runtime"
	"sync/atomic"
	"time"
)

// Checking a password or a client secret is the one thing an unauthenticated
// caller can make this server do that costs real CPU and memory (argon2id as
// configured allocates tens of MiB per verification). Every check goes
// through checkCredential, which, in this order:
//
//  1. takes the attempt's failure budget (429 when spent, 503 when the shared
//     counters cannot answer), so a burst of simultaneous guesses gets the
//     budget and no more (the review's finding 2: a check made before the
//     hash and a charge made after it let 200 simultaneous guesses through);
//  2. takes one of a fixed number of hash slots, waiting a bounded time with
//     a bounded number of waiters, else 503 with Retry-After: the memory of
//     verifications in flight is bounded by the slots, never by the callers;
//  3. verifies, gives the slot back, and on success gives the budget back;
//  4. on failure, waits until the attempt has cost a quarter more than a
//     failed check of the costliest configured hash costs (a running average
//     per class of hash), so that neither an unknown name nor a cheap hash
//     answers sooner (finding 8).

// hashMemoryBudget bounds the memory of hash verifications in flight: the
// slots are as many as argon2id verifications of the costliest configured
// memory fit in it (and at most two per CPU: hashing is CPU-bound, more in
// flight only queue in the scheduler).
const hashMemoryBudget = 256 << 20

const (
	hashSlotWait       = time.Second // longest a check waits for a slot
	hashWaitersPerSlot = 16          // waiters allowed per slot; beyond, 503 at once
)

var (
	errHashBusy = ErrTemporarilyUnavailable.WithDescription("too many password checks in progress; retry later").
			WithRetryAfter(time.Second)
	errCountersDown = ErrTemporarilyUnavailable.WithDescription("failed attempts cannot be counted; retry later").
			WithRetryAfter(time.Second)
)

// hashGate holds the hash slots of one server (logins, password grants and
// client authentication share them).
type hashGate struct {
	slots      chan struct{}
	waiters    atomic.Int64
	maxWaiters int64
}

func newHashGate(hashes []PasswordHash) *hashGate {
	n := 2 * runtime.GOMAXPROCS(0)
	var mem uint64
	for _, h := range hashes {
		mem = max(mem, h.memoryBytes())
	}
	if mem > 0 {
		n = min(n, int(hashMemoryBudget/mem))
	}
	n = max(n, 1)
	return &hashGate{slots: make(chan struct{}, n), maxWaiters: int64(n * hashWaitersPerSlot)}
}

// acquire takes a slot, waiting at most hashSlotWait; false: none came.
func (g *hashGate) acquire(ctx context.Context) bool {
	select {
	case g.slots <- struct{}{}:
		return true
	default:
	}
	if g.waiters.Add(1) > g.maxWaiters {
		g.waiters.Add(-1)
		return false
	}
	defer g.waiters.Add(-1)
	t := time.NewTimer(hashSlotWait)
	defer t.Stop()
	select {
	case g.slots <- struct{}{}:
		return true
	case <-t.C:
		return false
	case <-ctx.Done():
		return false
	}
}

func (g *hashGate) release() { <-g.slots }

// inFlight is the number of verifications running now (tests).
func (g *hashGate) inFlight() int { return len(g.slots) }

// credentialKind is what users or clients share: the decoy checked for a
// name nobody has, and what a failed check is padded to.
type credentialKind struct {
	decoy PasswordHash
	// costs is a running average of a failed check (ns) per hash class
	// configured (the map is fixed at start: read without a lock). Every
	// failed check lasts at least padFactor times the largest: on a loaded
	// machine the costliest class slows most, and the padding follows it.
	costs map[string]*atomic.Int64
}

const padFactor = 1.25

// newCredentialKind picks the costliest of hashes, measured here, as the
// decoy (bcrypt and argon2id costs are not comparable on paper). measured
// holds what was measured already, by class: each class is verified once.
func newCredentialKind(hashes []PasswordHash, measured map[string]time.Duration) *credentialKind {
	if len(hashes) == 0 {
		hashes = []PasswordHash{dummyBcrypt()}
	}
	k := &credentialKind{costs: map[string]*atomic.Int64{}}
	worst := time.Duration(-1)
	for _, h := range hashes {
		d, ok := measured[h.class()]
		if !ok {
			start := time.Now()
			h.Verify("oauth2gate measures this hash")
			d = time.Since(start)
			measured[h.class()] = d
		}
		if k.costs[h.class()] == nil {
			k.costs[h.class()] = new(atomic.Int64)
			k.costs[h.class()].Store(int64(d))
		}
		if d > worst {
			worst, k.decoy = d, h
		}
	}
	return k
}

// observe folds the duration of a failed check into its class's running
// average (1/8 weight: a loaded moment moves it, it does not set it).
func (k *credentialKind) observe(h PasswordHash, d time.Duration) {
	c := k.costs[h.class()]
	if c == nil {
		return
	}
	for {
		old := c.Load()
		n := old + (int64(d)-old)/8
		if c.CompareAndSwap(old, n) {
			return
		}
	}
}

func (k *credentialKind) padTo() time.Duration {
	var worst int64
	for _, c := range k.costs {
		worst = max(worst, c.Load())
	}
	return time.Duration(float64(worst) * padFactor)
}

// checkCredential verifies one password or secret under the failure budget
// of keys and the server's hash slots (see the top of this file). hash is
// the hash to check against, the zero hash when the name is unknown (the
// decoy is checked instead and the answer is no). It answers whether the
// secret was right, or a 429/503 error when it was not checked at all.
func (s *Server) checkCredential(ctx context.Context, kind *credentialKind, keys []string, hash PasswordHash, secret string) (bool, *Error) {
	if e := s.takeFailure(ctx, keys); e != nil {
		return false, e
	}
	return s.verifyUnderSlots(ctx, kind, keys, hash, secret)
}

// verifyUnderSlots is checkCredential once the budget of keys is taken.
func (s *Server) verifyUnderSlots(ctx context.Context, kind *credentialKind, keys []string, hash PasswordHash, secret string) (bool, *Error) {
	if !s.hashes.acquire(ctx) {
		s.refundFailure(ctx, keys) // nothing was checked
		return false, errHashBusy
	}
	known := !hash.IsZero()
	if !known {
		hash = kind.decoy
	}
	start := time.Now()
	ok := hash.Verify(secret) && known
	took := time.Since(start)
	s.hashes.release()
	if ok {
		s.refundFailure(ctx, keys)
		return true, nil
	}
	kind.observe(hash, took)
	if pad := kind.padTo() - took; pad > 0 {
		t := time.NewTimer(pad)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	return false, nil
}

// authenticateUser checks a username and password (the login form and the
// password grant): the user, or nil when the pair is wrong, or the 429/503
// error when it was not checked.
func (s *Server) authenticateUser(ctx context.Context, ip, username, password string) (*User, *Error) {
	u := s.users[username]
	var h PasswordHash
	if u != nil {
		h = u.password
	}
	ok, e := s.checkCredential(ctx, s.userCreds, failureKeys("user", username, ip), h, password)
	if e != nil || !ok {
		return nil, e
	}
	return u, nil
}

// authenticateSecret checks a client's secret; c is nil for an unknown
// client id. A secret this client was verified with before is known from
// its keyed hash (Client.memoized) without a hash check; that comparison
// runs under the in-memory limiter's lock, only while the address has
// budget left, and a miss takes a failure there first (takeUnless): checked
// outside the budget, the memory would answer unlimited guesses, and taken
// and given back around every request, the budget would refuse a busy
// client's own concurrent requests.
func (s *Server) authenticateSecret(ctx context.Context, ip, id string, c *Client, secret string) (bool, *Error) {
	var h PasswordHash
	if c != nil {
		h = c.secret
		if c.hasMemo() {
			if s.failures == nil { // failure_limit off
				if c.memoized(secret) {
					return true, nil
				}
			} else {
				hit, wait := s.failures.takeUnless(func() bool { return c.memoized(secret) }, func() []string { return failureKeys("client", id, ip) })
				switch {
				case wait > 0:
					return false, s.limited(failureKeys("client", id, ip), tooMany(wait))
				case hit:
					return true, nil
				case s.sharedFailures == nil:
					// The miss took the budget; check the hash without taking more.
					return s.checkTaken(ctx, s.clientCreds, failureKeys("client", id, ip), h, secret, c)
				}
				// With shared counters, the local charge is extra; the shared budget is
				// taken below as for any check.
			}
		}
	}
	ok, e := s.checkCredential(ctx, s.clientCreds, failureKeys("client", id, ip), h, secret)
	if ok {
		c.memoize(secret)
	}
	return ok, e
}

// checkTaken is checkCredential for an attempt whose budget is taken.
func (s *Server) checkTaken(ctx context.Context, kind *credentialKind, keys []string, h PasswordHash, secret string, c *Client) (bool, *Error) {
	ok, e := s.verifyUnderSlots(ctx, kind, keys, h, secret)
	if ok {
		c.memoize(secret)
	}
	return ok, e
}

// chargeFailure counts a failure that needs no hash (a public client that
// sent a secret): the budget is taken and not given back.
func (s *Server) chargeFailure(ctx context.Context, kind, who, ip string) *Error {
	return s.takeFailure(ctx, failureKeys(kind, who, ip))
}
