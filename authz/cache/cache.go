// Package cache keeps what access tokens are (subject, client, scopes,
// expiry) in a ristretto cache in front of the token store, keyed by the
// token's SHA-256. It holds facts about tokens, never a verdict for a route.
package cache

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"

	"github.com/oauth2gate/oauth2gate/authz/gateway"
)

// Entry is what a valid access token is: the gateway's Identity.
type Entry = gateway.Identity

// Key is a token's SHA-256: the cache never sees a token itself.
type Key = [32]byte

// slot is what ristretto holds: ristretto is keyed by the first 8 bytes of
// the hash (uniformly random already, and no per-request string to build),
// and a hit counts only when the whole hash matches. The entry is copied in,
// so a hit reads one object, not a chain of them.
type slot struct {
	key Key
	Entry
}

// Cache is ristretto plus a denylist of recently revoked keys.
//
// ristretto's Set is buffered: a request that read a token from the store
// just before it was revoked can have its Set land after the revocation's
// Del. Every hit is therefore checked against the denylist, which keeps a
// revoked key until the token would have expired anyway.
type Cache struct {
	rc  *ristretto.Cache[uint64, *slot]
	ttl time.Duration
	now func() time.Time

	denyMu sync.RWMutex
	deny   map[Key]time.Time
	denyN  atomic.Int64 // len(deny), read without the lock on the hot path
}

// Options size the cache.
type Options struct {
	MaxTokens int64         // default 1,000,000
	TTL       time.Duration // the longest an entry is trusted; default 5m
	Now       func() time.Time
}

// New builds a cache.
func New(opts Options) (*Cache, error) {
	if opts.MaxTokens <= 0 {
		opts.MaxTokens = 1_000_000
	}
	if opts.TTL <= 0 {
		opts.TTL = 5 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	rc, err := ristretto.NewCache(&ristretto.Config[uint64, *slot]{
		NumCounters: opts.MaxTokens * 10,
		MaxCost:     opts.MaxTokens,
		// Each full Get buffer wakes ristretto's policy goroutine; 512
		// rather than the usual 64 cuts that to an eighth, which is ~0.5 µs
		// of CPU per guarded request (BenchmarkGuardHandlerCold).
		BufferItems:        512,
		IgnoreInternalCost: true, // cost 1 per token, else MaxCost counts bytes
	})
	if err != nil {
		return nil, err
	}
	return &Cache{rc: rc, ttl: opts.TTL, now: opts.Now, deny: make(map[Key]time.Time)}, nil
}

// short is ristretto's key for k.
func short(k *Key) uint64 { return binary.LittleEndian.Uint64(k[:8]) }

// Get returns the entry for key if it is cached, unexpired and not revoked.
// It allocates nothing.
func (c *Cache) Get(key *Key) (*Entry, bool) {
	s, ok := c.rc.Get(short(key))
	if !ok || s.key != *key {
		return nil, false // absent, or another token sharing the first 8 bytes
	}
	if !c.now().Before(s.ExpiresAt) || c.denied(key) {
		c.rc.Del(short(key))
		return nil, false
	}
	return &s.Entry, true
}

func (c *Cache) denied(key *Key) bool {
	if c.denyN.Load() == 0 {
		return false
	}
	c.denyMu.RLock()
	_, ok := c.deny[*key]
	c.denyMu.RUnlock()
	return ok
}

// Set caches a copy of e for at most the cache TTL and never beyond its
// expiry. Entries are never changed once cached.
func (c *Cache) Set(key *Key, e *Entry) {
	ttl := e.ExpiresAt.Sub(c.now())
	if ttl > c.ttl {
		ttl = c.ttl
	}
	if ttl <= 0 || c.denied(key) {
		return
	}
	c.rc.SetWithTTL(short(key), &slot{key: *key, Entry: *e}, 1, ttl)
}

// Revoke drops key at once and keeps it denied until until (the token's own
// expiry; past it the store would refuse the token anyway).
func (c *Cache) Revoke(key *Key, until time.Time) {
	if maxUntil := c.now().Add(c.ttl); until.IsZero() || until.After(maxUntil) {
		// An entry that was read before the revocation lives at most ttl.
		until = maxUntil
	}
	c.denyMu.Lock()
	if old, ok := c.deny[*key]; !ok || until.After(old) {
		c.deny[*key] = until
	}
	c.denyN.Store(int64(len(c.deny)))
	c.denyMu.Unlock()
	c.rc.Del(short(key))
}

// Sweep forgets denylist entries whose tokens can no longer be cached.
func (c *Cache) Sweep() {
	now := c.now()
	c.denyMu.Lock()
	for k, until := range c.deny {
		if !now.Before(until) {
			delete(c.deny, k)
		}
	}
	c.denyN.Store(int64(len(c.deny)))
	c.denyMu.Unlock()
}

// Clear drops every entry (after a lost invalidation message, say).
func (c *Cache) Clear() { c.rc.Clear() }

// Wait blocks until buffered Sets are applied (tests).
func (c *Cache) Wait() { c.rc.Wait() }

// Close stops ristretto's goroutines.
func (c *Cache) Close() { c.rc.Close() }
