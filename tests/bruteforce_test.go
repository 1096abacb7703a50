package tests

// The outside security review of 2026-12-01 (issue 11), findings 2, 7 and 8: what an
// unauthenticated caller can make the server spend on password checks, and what those checks
// tell. Each test does what the reviewer did against the real binary.

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oauth2gate/oauth2gate/authz/tokenstore/redistest"
)

// caddyHash is a hash made the way the README tells operators to make one.
func caddyHash(t *testing.T, plain string, args ...string) string {
	t.Helper()
	out, err := exec.Command(caddyBin, append([]string{"hash-password", "--plaintext", plain}, args...)...).Output()
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

// burst sends n requests at once (released together) and counts the answers by status and
// error code; a transport error is counted as "transport".
func burst(n int, send func(i int) (*reply, error)) map[string]int {
	var (
		mu    sync.Mutex
		count = map[string]int{}
		wg    sync.WaitGroup
		start = make(chan struct{})
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			r, err := send(i)
			key := "transport"
			if err == nil {
				key = strconv.Itoa(r.Status)
				if code, _ := r.JSON["error"].(string); code != "" {
					key += " " + code
				}
				if (r.Status == http.StatusTooManyRequests || r.Status == http.StatusServiceUnavailable) && r.Header.Get("Retry-After") == "" {
					key += " without Retry-After"
				}
			}
			mu.Lock()
			count[key]++
			mu.Unlock()
		}()
	}
	close(start)
	wg.Wait()
	return count
}

// checkBudget: of a burst against failure_limit 10, at most 10 were checked (answered with
// checked), at least one was (else the test proves nothing), and every other answer is 429, or
// 503 when every hash slot was busy (a 503 gives its budget back).
func checkBudget(t *testing.T, what string, count map[string]int, checked string) {
	t.Helper()
	onlyStatuses(t, what, count, checked, "429 temporarily_unavailable", "503 temporarily_unavailable")
	if n := count[checked]; n > 10 || n == 0 {
		t.Errorf("%s with failure_limit 10: %d were checked (%v)", what, n, count)
	}
	if count["429 temporarily_unavailable"] == 0 {
		t.Errorf("%s: none was refused by the limit (%v)", what, count)
	}
}

// drainBudget sends wrong guesses one at a time until the limit answers 429 (at most 10: the
// budget), so that what a burst's 503s gave back is spent.
func drainBudget(t *testing.T, send func() (*reply, error)) {
	t.Helper()
	for range 11 {
		r, err := send()
		if err != nil {
			t.Fatal(err)
		}
		if r.Status == http.StatusTooManyRequests {
			return
		}
	}
	t.Fatal("11 more wrong guesses after the burst, and no 429")
}

// onlyStatuses fails when count holds any answer but the allowed ones.
func onlyStatuses(t *testing.T, what string, count map[string]int, allowed ...string) {
	t.Helper()
	for k := range count {
		ok := false
		for _, a := range allowed {
			ok = ok || k == a
		}
		if !ok {
			t.Errorf("%s: answers %v; %q is not one of %q", what, count, k, allowed)
			return
		}
	}
}

// TestFinding2_SimultaneousGuessesGetOnlyTheBudget: 200 simultaneous wrong passwords for one
// user from one address all got 400 (each had checked the limit before any had failed); the
// same race held for client secrets and the login form. Now the budget (failure_limit 10) is
// taken before the hash: of each burst at most 10 are checked and the rest are refused with 429
// (or 503 while every hash slot is busy), never checked.
func TestFinding2_SimultaneousGuessesGetOnlyTheBudget(t *testing.T) {
	t.Parallel()
	appSecret, aliceHash, bobHash := randomSecret("app-"), caddyHash(t, "alice-right", "--algorithm", "argon2id"), caddyHash(t, "bob-right", "--algorithm", "bcrypt", "--bcrypt-cost", "10")
	svcSecret := randomSecret("svc-")
	in := startCaddy(t, fmt.Sprintf(`failure_limit 10 1h
client app {
	secret %s
	grants password authorization_code
	redirect_uris https://app.test/cb
	scopes read
}
client svc {
	secret %s
	grants client_credentials
	scopes read
}
user alice %s
user bob %s
`, hashSecret(t, appSecret), caddyHash(t, svcSecret, "--algorithm", "argon2id"), aliceHash, bobHash))
	in.remember("client secret", appSecret)
	in.remember("client secret", svcSecret)
	for _, pw := range []string{"alice-right", "bob-right"} {
		in.remember("password", pw)
	}

	for i, user := range []string{"alice", "bob"} {
		// Each user's burst comes from its own address: the address's own bucket would
		// otherwise be spent by the first burst.
		hc := &http.Client{Transport: secTransportFrom(t, fmt.Sprintf("127.0.0.%d", 20+i)), Timeout: requestTimeout}
		grant := func(pw string) tokenCall {
			return tokenCall{Form: form("grant_type", "password", "username", user, "password", pw, "scope", "read"), Basic: basic("app", appSecret)}
		}
		// The client's secret is verified once here, then known without a hash.
		if r, err := in.sendVia(hc, grant(user+"-right")); err != nil || r.Status != http.StatusOK {
			t.Fatalf("%s's right password: %v %v", user, r, err)
		}
		count := burst(200, func(int) (*reply, error) { return in.sendVia(hc, grant("wrong-guess")) })
		checkBudget(t, user+": 200 simultaneous wrong passwords", count, "400 invalid_grant")
		// Spend what the burst left (503s give their budget back), then the address is
		// out of budget: the right password is refused unchecked.
		drainBudget(t, func() (*reply, error) { return in.sendVia(hc, grant("wrong-guess")) })
		if r, err := in.sendVia(hc, grant(user+"-right")); err != nil || r.Status != http.StatusTooManyRequests {
			t.Errorf("%s's right password after the burst: %v %v, want 429", user, r, err)
		}
	}

	// Client secrets: an argon2id-hashed client from a third address.
	hc := &http.Client{Transport: secTransportFrom(t, "127.0.0.22"), Timeout: requestTimeout}
	count := burst(200, func(int) (*reply, error) {
		return in.sendVia(hc, tokenCall{Form: form("grant_type", "client_credentials"), Basic: basic("svc", "wrong-secret")})
	})
	checkBudget(t, "200 simultaneous wrong client secrets", count, "401 invalid_client")

	// The login form, from a fourth address: one login page, 200 simultaneous posts of it.
	b := secBrowserFrom(t, in, "127.0.0.23")
	b.unavailableOK = true // every hash slot busy: 503, as at the token endpoint
	page := b.get(in.url("/authorize") + "?" + authParams("app", "https://app.test/cb", "code", "read", "st").Encode())
	if _, ok := page.loginForm(); !ok {
		t.Fatalf("no login page: %s", page)
	}
	var wrong, limited, other atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			p := b.submitLogin(page, "alice", "wrong-guess")
			switch {
			case p.Status == http.StatusOK && strings.Contains(p.Body, "Invalid username or password"):
				wrong.Add(1)
			case p.Status == http.StatusTooManyRequests || p.Status == http.StatusServiceUnavailable:
				limited.Add(1)
			default:
				other.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	if wrong.Load() > 10 || wrong.Load() == 0 || other.Load() != 0 {
		t.Errorf("200 simultaneous wrong logins with failure_limit 10: %d checked, %d limited, %d other", wrong.Load(), limited.Load(), other.Load())
	}
}

// TestFinding2_HashMemoryIsBounded: 80 simultaneous password grants for an argon2id user (46 MiB
// per check as `caddy hash-password --algorithm argon2id` makes it) took Caddy from 66 MB to
// 3.84 GB. With the limit off (so that only the hash slots stand in the way), 300 simultaneous
// wrong passwords leave Caddy's peak resident memory under its start-up size plus 600 MiB: the
// slots hold at most 256 MiB of argon2id memory (authz/credentials.go), and the Go heap may grow
// to twice what is live. Those not checked get 503 with Retry-After, never a queue without end.
func TestFinding2_HashMemoryIsBounded(t *testing.T) {
	t.Parallel()
	appSecret := randomSecret("app-")
	in := startCaddy(t, fmt.Sprintf("failure_limit off\nclient app {\n\tsecret %s\n\tgrants password\n\tscopes read\n}\nuser alice %s\n",
		hashSecret(t, appSecret), caddyHash(t, "alice-right", "--algorithm", "argon2id")))
	in.remember("client secret", appSecret)
	in.remember("password", "alice-right")
	grant := func(pw string) tokenCall {
		return tokenCall{Form: form("grant_type", "password", "username", "alice", "password", pw), Basic: basic("app", appSecret)}
	}
	if r, err := in.send(grant("alice-right")); err != nil || r.Status != http.StatusOK {
		t.Fatalf("right password: %v %v", r, err)
	}
	base := procMemKiB(t, in.cmd.Process.Pid, "VmRSS")
	count := burst(300, func(int) (*reply, error) { return in.send(grant("wrong-guess")) })
	onlyStatuses(t, "300 simultaneous wrong passwords", count, "400 invalid_grant", "503 temporarily_unavailable")
	if count["400 invalid_grant"] == 0 {
		t.Errorf("no password was checked at all: %v", count)
	}
	peak := procMemKiB(t, in.cmd.Process.Pid, "VmHWM")
	t.Logf("300 simultaneous argon2id checks: %v; resident %d MiB before, peak %d MiB", count, base>>10, peak>>10)
	if peak > base+600<<10 {
		t.Errorf("peak resident memory %d MiB from %d MiB: more than 600 MiB for hash checks in flight", peak>>10, base>>10)
	}
	// The server still answers, and the right password still works.
	if r, err := in.send(grant("alice-right")); err != nil || r.Status != http.StatusOK {
		t.Errorf("right password after the burst: %v %v", r, err)
	}
}

// procMemKiB reads a VmRSS/VmHWM line of /proc/<pid>/status.
func procMemKiB(t *testing.T, pid int, field string) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// TestFinding7_CountersDownRefuseBeforeAnyPassword: with Redis down, a locked address got 15
// more guesses, and the right password answered 503 where wrong ones answered 400 (an oracle).
// Now when the shared counters cannot answer, every attempt gets 503 before any password is
// checked: the right one and the wrong ones alike, at the token endpoint and the login form.
func TestFinding7_CountersDownRefuseBeforeAnyPassword(t *testing.T) {
	t.Parallel()
	// A Redis that persists, as a production one would: the counters outlive its restart.
	srv := redistest.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	appSecret := randomSecret("app-")
	in := startCaddyWith(t, fmt.Sprintf(`failure_limit 3 1h
client app {
	secret %s
	grants password authorization_code
	redirect_uris https://app.test/cb
	scopes read
}
user alice %s
`, hashSecret(t, appSecret), hashSecret(t, "alice-right")), siteOptions{BasePath: "/o", Store: "store redis " + srv.URL()})
	in.remember("client secret", appSecret)
	in.remember("password", "alice-right")
	grant := func(pw string) tokenCall {
		return tokenCall{Form: form("grant_type", "password", "username", "alice", "password", pw), Basic: basic("app", appSecret)}
	}
	if r, err := in.send(grant("alice-right")); err != nil || r.Status != http.StatusOK {
		t.Fatalf("right password: %v %v", r, err)
	}
	// Lock this address.
	for range 3 {
		if r, err := in.send(grant("wrong")); err != nil || r.Status != http.StatusBadRequest {
			t.Fatalf("wrong password: %v %v", r, err)
		}
	}
	if r, err := in.send(grant("wrong")); err != nil || r.Status != http.StatusTooManyRequests {
		t.Fatalf("4th wrong password: %v %v, want 429", r, err)
	}
	// Another address, with its budget, for the login form.
	b := secBrowserFrom(t, in, "127.0.0.24")
	b.unavailableOK = true // 503 is this test's answer while Redis is down
	page := b.get(in.url("/authorize") + "?" + authParams("app", "https://app.test/cb", "code", "read", "st").Encode())
	if _, ok := page.loginForm(); !ok {
		t.Fatalf("no login page: %s", page)
	}

	srv.Stop()
	for i := range 15 {
		pw := "wrong"
		if i%3 == 0 {
			pw = "alice-right"
		}
		r, err := in.send(grant(pw))
		if err != nil || r.Status != http.StatusServiceUnavailable || r.JSON["error"] != "temporarily_unavailable" || r.Header.Get("Retry-After") == "" {
			t.Fatalf("attempt %d (%s password) with Redis down: %v %v, want 503 temporarily_unavailable with Retry-After", i, pw, r, err)
		}
	}
	for _, pw := range []string{"wrong", "alice-right"} {
		if p := b.submitLogin(page, "alice", pw); p.Status != http.StatusServiceUnavailable {
			t.Errorf("login form (%s password) with Redis down: %s, want 503", pw, p)
		}
	}

	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	// Back up: the limit still holds for the locked address (nothing was counted or
	// checked while the counters were down), and another address signs in.
	deadline := time.Now().Add(20 * time.Second)
	for {
		r, err := in.send(grant("alice-right"))
		if err == nil && r.Status == http.StatusTooManyRequests {
			break
		}
		if err == nil && r.Status != http.StatusServiceUnavailable {
			t.Fatalf("locked address after Redis is back: %v, want 429", r)
		}
		if time.Now().After(deadline) {
			t.Fatalf("Redis back, still %v %v", r, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if p := b.submitLogin(page, "alice", "alice-right"); p.Status != http.StatusSeeOther {
		t.Errorf("login from another address after Redis is back: %s, want 303", p)
	}
}

// TestFinding8_FailedLoginsCostTheSame: with an argon2id user, bcrypt users of two costs and
// unknown users, a wrong password took 29-49 ms for one, 58-72 ms for others: timing told which
// users exist and how they are hashed. Every failed check is now padded to what the costliest
// configured hash costs, so the medians of interleaved rounds agree within 40 % (before the fix: 29-49 ms against 58-72 ms, and a cheap bcrypt answered in a few milliseconds).
func TestFinding8_FailedLoginsCostTheSame(t *testing.T) {
	t.Parallel()
	appSecret := randomSecret("app-")
	in := startCaddy(t, fmt.Sprintf("failure_limit off\nclient app {\n\tsecret %s\n\tgrants password\n\tscopes read\n}\nuser alice %s\nuser bob %s\nuser carol %s\n",
		hashSecret(t, appSecret),
		caddyHash(t, "alice-right", "--algorithm", "argon2id"),
		caddyHash(t, "bob-right", "--algorithm", "bcrypt", "--bcrypt-cost", "10"),
		caddyHash(t, "carol-right", "--algorithm", "bcrypt", "--bcrypt-cost", "4")))
	in.remember("client secret", appSecret)
	if r, err := in.send(tokenCall{Form: form("grant_type", "password", "username", "carol", "password", "carol-right"), Basic: basic("app", appSecret)}); err != nil || r.Status != http.StatusOK {
		t.Fatalf("carol's right password: %v %v", r, err)
	}
	names := []string{"alice", "bob", "carol", "nosuchuser", "nobody-either"}
	took := map[string][]time.Duration{}
	for round := range 15 {
		for i := range names {
			name := names[(i+round)%len(names)] // interleaved: a busy moment hits every name
			start := time.Now()
			r, err := in.send(tokenCall{Form: form("grant_type", "password", "username", name, "password", "wrong-guess"), Basic: basic("app", appSecret)})
			d := time.Since(start)
			if err != nil || r.Status != http.StatusBadRequest {
				t.Fatalf("%s: %v %v", name, r, err)
			}
			took[name] = append(took[name], d)
		}
	}
	medians := map[string]time.Duration{}
	lo, hi := time.Duration(1<<62), time.Duration(0)
	for name, ds := range took {
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		medians[name] = ds[len(ds)/2]
		lo, hi = min(lo, medians[name]), max(hi, medians[name])
	}
	t.Logf("median of a wrong password: %v", medians)
	if float64(hi)/float64(lo) > 1.4 {
		t.Errorf("the medians of a wrong password differ by %.2fx (%v): timing tells who exists or how they are hashed", float64(hi)/float64(lo), medians)
	}
}

// TestFinding2_BudgetIsSharedAcrossInstances: two Caddys on one Redis share the failure budget:
// 200 simultaneous wrong passwords, half to each, get 10 checks in all, not 10 each. (The
// counters of a Redis store had silently fallen back to each instance's memory once the store
// was wrapped with its caches: this test would have caught it.)
func TestFinding2_BudgetIsSharedAcrossInstances(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	appSecret := randomSecret("app-")
	body := fmt.Sprintf("failure_limit 10 1h\nclient app {\n\tsecret %s\n\tgrants password\n\tscopes read\n}\nuser alice %s\n", hashSecret(t, appSecret), hashSecret(t, "alice-right"))
	a := startCaddyWith(t, body, siteOptions{BasePath: "/o", Store: "store redis " + srv.URL()})
	b := startCaddyWith(t, body, siteOptions{BasePath: "/o", Store: "store redis " + srv.URL()})
	grant := func(pw string) tokenCall {
		return tokenCall{Form: form("grant_type", "password", "username", "alice", "password", pw), Basic: basic("app", appSecret)}
	}
	for _, in := range []*instance{a, b} {
		in.remember("client secret", appSecret)
		in.remember("password", "alice-right")
		if r, err := in.send(grant("alice-right")); err != nil || r.Status != http.StatusOK {
			t.Fatalf("right password: %v %v", r, err)
		}
	}
	count := burst(200, func(i int) (*reply, error) {
		if i%2 == 0 {
			return a.send(grant("wrong-guess"))
		}
		return b.send(grant("wrong-guess"))
	})
	checkBudget(t, "200 simultaneous wrong passwords on two instances", count, "400 invalid_grant")
	drainBudget(t, func() (*reply, error) { return a.send(grant("wrong-guess")) })
	for _, in := range []*instance{a, b} {
		if r, err := in.send(grant("alice-right")); err != nil || r.Status != http.StatusTooManyRequests {
			t.Errorf("right password after the shared budget is spent: %v %v, want 429", r, err)
		}
	}
}
