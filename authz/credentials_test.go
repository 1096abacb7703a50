package authz

import (
	"context"
	"net/url"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// TestHashGateBoundsWaiters: a full gate lets a bounded number of callers
// wait, refuses the rest at once, and hands a released slot to a waiter.
func TestHashGateBoundsWaiters(t *testing.T) {
	g := &hashGate{slots: make(chan struct{}, 2), maxWaiters: 1}
	ctx := context.Background()
	if !g.acquire(ctx) || !g.acquire(ctx) {
		t.Fatal("an empty gate of two refused")
	}
	got := make(chan bool, 1)
	go func() { got <- g.acquire(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for g.waiters.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the waiter never waited")
		}
		time.Sleep(time.Millisecond)
	}
	if g.acquire(ctx) {
		t.Fatal("a caller beyond the waiters' bound got a slot")
	}
	select {
	case ok := <-got:
		t.Fatalf("the waiter returned (%v) before any slot was released", ok)
	default:
	}
	g.release()
	if !<-got {
		t.Fatal("a released slot did not reach the waiter")
	}
	// A canceled caller stops waiting.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if g.acquire(cctx) {
		t.Fatal("a canceled caller got a slot of a full gate")
	}
}

// TestHashGateSizedByMemory: the slots fit argon2id's memory in the budget.
func TestHashGateSizedByMemory(t *testing.T) {
	argon := PasswordHash{argon: &argon2Params{memory: 64 * 1024, time: 1, threads: 1}} // 64 MiB
	if n := cap(newHashGate([]PasswordHash{argon}).slots); n*64<<20 > hashMemoryBudget || n < 1 {
		t.Fatalf("%d slots of 64 MiB for a budget of %d MiB", n, hashMemoryBudget>>20)
	}
	huge := PasswordHash{argon: &argon2Params{memory: 1 << 20, time: 1, threads: 1}} // 1 GiB
	if n := cap(newHashGate([]PasswordHash{huge}).slots); n != 1 {
		t.Fatalf("a hash over the budget gets %d slots, want 1", n)
	}
}

// TestFailedChecksArePaddedToTheDecoy (the review's finding 8): a wrong
// password of a user with a cheap hash, and of an unknown user, take at
// least what a failed check of the costliest configured hash takes.
func TestFailedChecksArePaddedToTheDecoy(t *testing.T) {
	cheap, err := bcrypt.GenerateFromPassword([]byte("carol-pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	costly, err := bcrypt.GenerateFromPassword([]byte("alice-pw"), 11)
	if err != nil {
		t.Fatal(err)
	}
	s := newTestServer(t, func(c *Config) {
		c.FailureBurst = -1
		c.Users = []UserConfig{{Username: "alice", PasswordHash: string(costly)}, {Username: "carol", PasswordHash: string(cheap)}}
	})
	if s.userCreds.decoy.class() != "bcrypt-11" {
		t.Fatalf("decoy %s, want the costliest hash (bcrypt-11)", s.userCreds.decoy.class())
	}
	for _, name := range []string{"carol", "nobody", "alice"} {
		floor := s.userCreds.padTo()
		start := time.Now()
		u, e := s.authenticateUser(context.Background(), "198.51.100.1", name, "wrong")
		took := time.Since(start)
		if u != nil || e != nil {
			t.Fatalf("%s: %v %v", name, u, e)
		}
		if took < floor*9/10 {
			t.Errorf("a wrong password of %s took %v, the padding is %v", name, took, floor)
		}
	}
	// The right password is not padded, and gives its failure back.
	start := time.Now()
	if u, e := s.authenticateUser(context.Background(), "198.51.100.1", "carol", "carol-pw"); u == nil || e != nil {
		t.Fatalf("carol's right password: %v %v", u, e)
	}
	if took := time.Since(start); took >= s.userCreds.padTo() {
		t.Logf("carol's right password took %v (machine busy?)", took)
	}
}

// TestRightPasswordGivesTheBudgetBack: a burst of the right password never
// locks a user out; wrong ones spend the budget, and the limit then holds
// for the right one too (it is not checked).
func TestRightPasswordGivesTheBudgetBack(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.FailureBurst = 3; c.FailureEvery = time.Hour })
	right := url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"wonderland"}}
	wrong := url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"nope"}}
	for i := range 6 {
		if a := tokenRequest(t, s, right, "conf", "s3cret"); a.status != 200 {
			t.Fatalf("right password %d: %d %v", i, a.status, a.body)
		}
	}
	for i := range 3 {
		if a := tokenRequest(t, s, wrong, "conf", "s3cret"); a.status != 400 {
			t.Fatalf("wrong password %d: %d %v", i, a.status, a.body)
		}
	}
	if a := tokenRequest(t, s, right, "conf", "s3cret"); a.status != 429 {
		t.Fatalf("right password after the budget is spent: %d %v, want 429", a.status, a.body)
	}
}

// TestMemoisedSecretUnderTheBudget: a client's own concurrent requests with its right secret
// (known from memory after the first) never spend the budget, while wrong secrets from the
// same address get exactly the budget of comparisons, after which even the right secret is
// refused unchecked (the memory answers no guesses from a locked address).
func TestMemoisedSecretUnderTheBudget(t *testing.T) {
	s := newTestServer(t, func(c *Config) { c.FailureBurst = 3; c.FailureEvery = time.Hour })
	cc := url.Values{"grant_type": {"client_credentials"}}
	if a := tokenRequest(t, s, cc, "cconly", "cc"); a.status != 200 {
		t.Fatalf("first request: %d %v", a.status, a.body)
	}
	statuses := func(n int, secret string) map[int]int {
		var mu sync.Mutex
		got := map[int]int{}
		var wg sync.WaitGroup
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				a := tokenRequest(t, s, cc, "cconly", secret)
				mu.Lock()
				got[a.status]++
				mu.Unlock()
			}()
		}
		wg.Wait()
		return got
	}
	if got := statuses(200, "cc"); got[200] != 200 {
		t.Fatalf("200 concurrent requests with the right secret: %v", got)
	}
	if got := statuses(200, "wrong"); got[401] != 3 || got[429] != 197 {
		t.Fatalf("200 concurrent wrong secrets, burst 3: %v, want 3 checked and 197 refused", got)
	}
	if a := tokenRequest(t, s, cc, "cconly", "cc"); a.status != 429 {
		t.Fatalf("the right secret from a locked address: %d, want 429", a.status)
	}
}
