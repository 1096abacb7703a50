package cache

import (
	"crypto/sha256"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func keyOf(s string) *Key { h := Key(sha256.Sum256([]byte(s))); return &h }

func newTest(t *testing.T, now func() time.Time) *Cache {
	t.Helper()
	c, err := New(Options{MaxTokens: 1000, TTL: time.Minute, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestHitMissAndExpiry(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	c := newTest(t, func() time.Time { return now })
	k := keyOf("tok")
	c.Set(k, &Entry{Subject: "alice", ExpiresAt: now.Add(10 * time.Second)})
	c.Wait()
	if e, ok := c.Get(k); !ok || e.Subject != "alice" {
		t.Fatalf("Get after Set = %v, %v", e, ok)
	}
	now = now.Add(11 * time.Second)
	if _, ok := c.Get(k); ok {
		t.Fatal("an entry outlived its token's expiry")
	}
}

func TestRevokeBeatsBufferedSet(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	c := newTest(t, func() time.Time { return now })
	k := keyOf("tok")
	e := &Entry{Subject: "alice", ExpiresAt: now.Add(time.Hour)}

	// A request read the token before the revocation and its Set is still
	// in ristretto's buffer when the revocation's Del runs.
	c.Set(k, e)
	c.Revoke(k, e.ExpiresAt)
	c.Wait()
	if _, ok := c.Get(k); ok {
		t.Fatal("a buffered Set brought a revoked token back")
	}
	// A request that read before the revocation calls Set only after it.
	c.Set(k, e)
	c.Wait()
	if _, ok := c.Get(k); ok {
		t.Fatal("a Set after the revocation brought the token back")
	}
}

func TestDenylistIsSweptWhenHarmless(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	c := newTest(t, func() time.Time { return now })
	c.Revoke(keyOf("a"), now.Add(time.Hour))
	c.Revoke(keyOf("b"), now.Add(10*time.Second))
	now = now.Add(61 * time.Second) // past the cache TTL: nothing read before can still be cached
	c.Sweep()
	if n := c.denyN.Load(); n != 0 {
		t.Fatalf("denylist holds %d entries after sweep, want 0", n)
	}
}

func TestConcurrentRevokeNeverServesAfterReturn(t *testing.T) {
	c := newTest(t, time.Now)
	k := keyOf("tok")
	e := &Entry{Subject: "alice", ExpiresAt: time.Now().Add(time.Hour)}
	c.Set(k, e)
	c.Wait()
	var revoked atomic.Bool
	var bad atomic.Int32
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				after := revoked.Load()
				if _, ok := c.Get(k); ok && after {
					bad.Add(1)
				} else if !ok && !after {
					// a miss before the revocation re-reads the store and Sets
					c.Set(k, e)
				}
			}
		}()
	}
	time.Sleep(5 * time.Millisecond)
	c.Revoke(k, e.ExpiresAt)
	revoked.Store(true)
	time.Sleep(20 * time.Millisecond)
	close(stop)
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d lookups that started after Revoke returned got the token", bad.Load())
	}
}

// Two hashes that share ristretto's 8-byte key are still two tokens: a hit
// counts only on the whole hash, and the other token is a miss, never its
// neighbour's entry.
func TestSharedShortKeyIsAMiss(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	c := newTest(t, func() time.Time { return now })
	a := keyOf("a")
	b := *a
	b[31] ^= 1
	c.Set(a, &Entry{Subject: "alice", ExpiresAt: now.Add(time.Hour)})
	c.Wait()
	if e, ok := c.Get(&b); ok {
		t.Fatalf("a different token got %q's entry", e.Subject)
	}
	if e, ok := c.Get(a); !ok || e.Subject != "alice" {
		t.Fatalf("Get(a) = %v, %v after a miss on its neighbour", e, ok)
	}
}

func TestGetAllocatesNothing(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	c := newTest(t, func() time.Time { return now })
	k := keyOf("tok")
	c.Set(k, &Entry{Subject: "alice", ExpiresAt: now.Add(time.Hour)})
	c.Wait()
	if n := testing.AllocsPerRun(1000, func() { c.Get(k) }); n != 0 {
		t.Fatalf("Get allocates %v times", n)
	}
}
