package tests

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/oauth2gate/oauth2gate/authz/tokenstore"
	"github.com/oauth2gate/oauth2gate/authz/tokenstore/redistest"
	"github.com/oauth2gate/oauth2gate/internal/proclog"
)

// sharedGates runs n Caddy instances on one Redis, each with the token endpoint (/o) and the
// guarded API site of guard_helpers_test.go, the same clients and users, and one echo upstream.
func sharedGates(t *testing.T, n int, storeLine, settings string) []*guardGate {
	t.Helper()
	svc := clientSpec{ID: "svc", Secret: randomSecret("svc-"), Grants: "client_credentials", Scopes: "read write admin"}
	app := clientSpec{ID: "app", Secret: randomSecret("app-"), Grants: "password refresh_token", Scopes: "read write admin"}
	al := alice()
	upstream := startEchoUpstream(t)
	var gates []*guardGate
	for range n {
		g := &guardGate{svc: svc, app: app, alice: al, upstream: upstream}
		g.api = fmt.Sprintf("http://127.0.0.1:%d", freePorts(t, 1)[0])
		site := fmt.Sprintf("%[2]s {\n"+guardRoutes+"}\n", upstream, g.api)
		g.in = startGateWith(t, gateSpec{Settings: settings, Clients: []clientSpec{svc, app}, Users: []userSpec{al}},
			siteOptions{BasePath: "/o", Store: storeLine, ExtraSites: site})
		gates = append(gates, g)
	}
	return gates
}

// redisKey is where the store keeps an access token (prefix + "a:" + SHA-256 hex).
func redisKey(prefix, token string) string {
	sum := sha256.Sum256([]byte(token))
	return prefix + "a:" + hex.EncodeToString(sum[:])
}

// TestRedisTwoInstances: a token issued by A is accepted by B; a refresh rotation on A makes B
// refuse the old access token on its next request although B had it cached; a code-free
// revocation through /revoke on B reaches A the same way.
func TestRedisTwoInstances(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	const prefix = "e2e-two:"
	gates := sharedGates(t, 2, "store redis "+srv.URL()+" {\n\tkey_prefix "+prefix+"\n}", "")
	a, b := gates[0], gates[1]
	raw := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer raw.Close()
	ctx := context.Background()

	// Issued by A, accepted by B (and by A).
	tok := a.pwToken(t, "read write")
	b.do(t, apiCall{Path: "/rw/orders", Bearer: tok.Access}).mustPass(t)
	a.do(t, apiCall{Path: "/rw/orders", Bearer: tok.Access}).mustPass(t)
	cc := a.ccToken(t, "read")
	b.do(t, apiCall{Path: "/rw/orders", Bearer: cc}).mustPass(t)

	// B answers from its cache: with the key gone from Redis behind everyone's back (no
	// revocation message), B still accepts the token. This is what makes the next step mean
	// something.
	waitCachedOn(t, b, raw, redisKey(prefix, cc), cc, false)
	b.do(t, apiCall{Path: "/rw/orders", Bearer: cc}).mustPass(t)

	// B has tok cached too; A rotates the refresh token, which revokes tok. B's next request
	// is refused.
	waitCachedOn(t, b, raw, redisKey(prefix, tok.Access), tok.Access, true)
	next := a.in.token(t, a.refreshCall(tok.Refresh)).mustToken(t)
	b.do(t, apiCall{Path: "/rw/orders", Bearer: tok.Access}).mustDeny(t, denial{Status: http.StatusUnauthorized, Code: "invalid_token"})
	a.do(t, apiCall{Path: "/rw/orders", Bearer: tok.Access}).mustDeny(t, denial{Status: http.StatusUnauthorized, Code: "invalid_token"})
	b.do(t, apiCall{Path: "/rw/orders", Bearer: next.Access}).mustPass(t)

	// The refresh token rotated on A is single-use on B too; replaying it on B revokes the
	// whole family, which A hears of at once (A has next cached).
	waitCachedOn(t, a, raw, redisKey(prefix, next.Access), next.Access, true)
	b.in.token(t, b.refreshCall(tok.Refresh)).mustError(t, outcome{http.StatusBadRequest, "invalid_grant"})
	a.do(t, apiCall{Path: "/rw/orders", Bearer: next.Access}).mustDeny(t, denial{Status: http.StatusUnauthorized, Code: "invalid_token"})
	a.in.token(t, a.refreshCall(next.Refresh)).mustError(t, outcome{http.StatusBadRequest, "invalid_grant"})

	// Concurrent refreshes of one refresh token on both instances: exactly one wins.
	fresh := a.pwToken(t, "read")
	replies, errs := race(20, func(i int) (*reply, error) {
		return gates[i%2].in.send(gates[i%2].refreshCall(fresh.Refresh))
	})
	mustExactlyOneWinner(t, replies, errs)

	// Every key under the prefix expires, but the server secrets (session and signing keys).
	keys := raw.Keys(ctx, prefix+"*").Val()
	if len(keys) == 0 {
		t.Fatal("nothing under the key prefix in Redis")
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, prefix+"s:") && raw.PTTL(ctx, k).Val() < 0 {
			t.Errorf("key %.24s… never expires", k)
		}
	}
}

// TestRedisOutage: Redis stops under load. The token endpoint answers 503
// temporarily_unavailable quickly, the guard serves the tokens it has cached and answers 503
// for the others, nothing answers 500; when Redis comes back on the same port both instances
// recover within seconds, without a restart.
func TestRedisOutage(t *testing.T) {
	t.Parallel()
	// This Redis persists (AOF, fsync always), as a production one would: tokens issued before
	// the outage are still valid after it.
	srv := redistest.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	gates := sharedGates(t, 2, "store redis "+srv.URL(), "")
	a, b := gates[0], gates[1]
	raw := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer raw.Close()

	cached := a.ccToken(t, "read")
	uncached := a.ccToken(t, "read")
	waitCachedOn(t, b, raw, redisKey(tokenstore.DefaultKeyPrefix, cached), cached, true)

	// Background load on both instances for the whole test: token requests on A, guarded
	// requests with the cached token on B. Bounded by stop and by a hard cap.
	var (
		stop     = make(chan struct{})
		wg       sync.WaitGroup
		mu       sync.Mutex
		statuses = map[string]int{}
		slowest  time.Duration
		sent     atomic.Int64
	)
	record := func(what string, status int, d time.Duration) {
		mu.Lock()
		statuses[fmt.Sprintf("%s %d", what, status)]++
		slowest = max(slowest, d)
		mu.Unlock()
	}
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				sent.Add(1)
				start := time.Now()
				if w%2 == 0 {
					r, err := a.in.send(tokenCall{Form: form("grant_type", "client_credentials", "scope", "read"), Basic: basic(a.svc.ID, a.svc.Secret)})
					if err != nil {
						record("token transport-error", 0, time.Since(start))
						continue
					}
					record("token", r.Status, time.Since(start))
				} else {
					r, err := b.send(apiCall{Path: "/rw/orders", Bearer: cached})
					if err != nil {
						record("guard(cached) transport-error", 0, time.Since(start))
						continue
					}
					record("guard(cached)", r.Status, time.Since(start))
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	defer func() {
		close(stop)
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		t.Logf("background load: %d requests, slowest %v, statuses %v", sent.Load(), slowest, statuses)
		for k, n := range statuses {
			if strings.HasSuffix(k, " 500") || strings.Contains(k, "transport-error") {
				t.Errorf("%d background requests answered %q", n, k)
			}
		}
		if slowest > 2*time.Second {
			t.Errorf("the slowest background request took %v, want under 2s", slowest)
		}
	}()
	// Let the load run before the outage: some requests of each kind answered.
	for deadline := time.Now().Add(20 * time.Second); sent.Load() < 40; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("only %d background requests in 20s before the outage", sent.Load())
		}
	}

	srv.Stop()
	outageStart := time.Now()

	// The token endpoint: 503 temporarily_unavailable, quickly, on both instances.
	for _, g := range gates {
		for _, call := range []tokenCall{
			{Form: form("grant_type", "client_credentials", "scope", "read"), Basic: basic(g.svc.ID, g.svc.Secret)},
			{Form: form("grant_type", "password", "username", g.alice.Name, "password", g.alice.Password, "scope", "read"), Basic: basic(g.app.ID, g.app.Secret)},
			{Form: form("grant_type", "refresh_token", "refresh_token", "no-such-refresh-token-000000"), Basic: basic(g.app.ID, g.app.Secret)},
		} {
			start := time.Now()
			r, err := g.in.send(call)
			took := time.Since(start)
			if err != nil {
				t.Fatalf("token endpoint with Redis down: %v", err)
			}
			r.mustError(t, outcome{http.StatusServiceUnavailable, "temporarily_unavailable"})
			if took > 2*time.Second {
				t.Errorf("token endpoint took %v to answer with Redis down, want under 2s", took)
			}
		}
	}
	// The guard: the cached token passes, the uncached one gets 503, quickly.
	for range 3 {
		b.do(t, apiCall{Path: "/rw/orders", Bearer: cached}).mustPass(t)
		start := time.Now()
		r, err := b.send(apiCall{Path: "/rw/orders", Bearer: uncached})
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != http.StatusServiceUnavailable || r.Echo != nil {
			t.Errorf("uncached token with Redis down: %s, want 503", r)
		}
		if r.str("error") != "temporarily_unavailable" {
			t.Errorf("uncached token with Redis down: error %q, want temporarily_unavailable", r.str("error"))
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("guard took %v to answer with Redis down, want under 2s", took)
		}
	}
	t.Logf("outage checks took %v", time.Since(outageStart))

	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	restarted := time.Now()
	// Both instances recover by themselves: A issues, B accepts the new token and the one it
	// had never seen, and a revocation on A reaches B again.
	var fresh string
	deadline := restarted.Add(15 * time.Second)
	for time.Now().Before(deadline) {
		r, err := a.in.send(tokenCall{Form: form("grant_type", "client_credentials", "scope", "read"), Basic: basic(a.svc.ID, a.svc.Secret)})
		if err == nil && r.Status == http.StatusOK {
			fresh = r.str("access_token")
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if fresh == "" {
		t.Fatal("A's token endpoint did not recover within 15s of Redis coming back")
	}
	recoverB := func(tok string) {
		t.Helper()
		for time.Now().Before(deadline) {
			r, err := b.send(apiCall{Path: "/rw/orders", Bearer: tok})
			if err == nil && r.Status == http.StatusOK {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Fatal("B's guard did not recover within 15s of Redis coming back")
	}
	recoverB(fresh)
	recoverB(uncached)
	t.Logf("recovered %v after Redis came back", time.Since(restarted))

	// The subscriptions are back: a rotation on A is refused by B at once.
	tok := a.pwToken(t, "read")
	// B's subscription may still be on its way back: wait until it hears revocations.
	probe := a.ccToken(t, "read")
	b.do(t, apiCall{Path: "/rw/orders", Bearer: probe}).mustPass(t)
	heard := false
	for time.Now().Before(deadline) && !heard {
		probeRevoke(t, a, probe)
		r := b.do(t, apiCall{Path: "/rw/orders", Bearer: probe})
		heard = r.Status == http.StatusUnauthorized
		if !heard {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if !heard {
		t.Fatal("B never heard of a revocation after Redis came back")
	}
	waitCachedOn(t, b, raw, redisKey(tokenstore.DefaultKeyPrefix, tok.Access), tok.Access, true)
	a.in.token(t, a.refreshCall(tok.Refresh)).mustToken(t)
	b.do(t, apiCall{Path: "/rw/orders", Bearer: tok.Access}).mustDeny(t, denial{Status: http.StatusUnauthorized, Code: "invalid_token"})
}

// waitCachedOn returns once g answers tok from its own cache, which it proves the only way an
// outsider can: with tok's key gone from Redis behind everyone's back (no revocation message), g
// still accepts tok. ristretto applies a Set asynchronously and may drop one under load, so the
// probe is repeated, the key put back after each refused probe, within a bound. restore puts
// the key back once tok is known to be cached.
func waitCachedOn(t *testing.T, g *guardGate, raw *redis.Client, key, tok string, restore bool) {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(20 * time.Second)
	for attempt := 1; ; attempt++ {
		g.do(t, apiCall{Path: "/rw/orders", Bearer: tok}).mustPass(t) // a miss reads the store and caches
		val, err := raw.Get(ctx, key).Result()
		if err != nil {
			t.Fatalf("the token is not under %.20s… in Redis: %v", key, err)
		}
		ttl := raw.PTTL(ctx, key).Val()
		if ttl <= 0 {
			t.Fatalf("the token's key %.20s… has no TTL (%v)", key, ttl)
		}
		raw.Del(ctx, key)
		r := g.do(t, apiCall{Path: "/rw/orders", Bearer: tok})
		if r.Status == http.StatusOK {
			if restore {
				raw.Set(ctx, key, val, ttl)
			}
			return
		}
		raw.Set(ctx, key, val, ttl)
		if time.Now().After(deadline) {
			t.Fatalf("after %d attempts in 20s the guard never answered the token from its cache: %s", attempt, r)
		}
	}
}

// probeRevoke revokes an access token on g through RFC 7009's endpoint.
func probeRevoke(t *testing.T, g *guardGate, token string) {
	t.Helper()
	r := g.in.token(t, tokenCall{Path: "/revoke", Form: form("token", token), Basic: basic(g.svc.ID, g.svc.Secret)})
	if r.Status != http.StatusOK {
		t.Fatalf("revoke: %s", r)
	}
}

// TestRedisBadConfig: a Redis URL that does not parse, a wrong password and an unreachable
// server fail `caddy validate` and `caddy run` with a message naming the store, never showing
// the password.
func TestRedisBadConfig(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, "--requirepass", "the-right-password-31415")
	port := freePorts(t, 1)[0]
	cases := []struct {
		name, url, mention string
	}{
		{"unparsable URL", "redis://:pw-in-bad-url@[::1", "does not parse"},
		{"wrong scheme", "http://" + srv.Addr(), "scheme"},
		{"wrong password", "redis://:not-the-password-2718@" + srv.Addr(), "WRONGPASS"},
		{"no password", srv.URL(), "NOAUTH"},
		{"nobody listening", fmt.Sprintf("redis://127.0.0.1:%d", port), "connection refused"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			home := t.TempDir()
			file := filepath.Join(home, "Caddyfile")
			cf := fmt.Sprintf("{\n\tadmin off\n\tpersist_config off\n\tauto_https off\n\toauth2 {\n\t\tstore redis %s\n\t\tsecrets_key %s\n\t}\n}\n\nhttp://127.0.0.1:%d {\n\toauth2_server /o\n}\n", tc.url, sharedSecretsKey, port)
			if err := os.WriteFile(file, []byte(cf), 0o600); err != nil {
				t.Fatal(err)
			}
			for _, sub := range []string{"validate", "run"} {
				start := time.Now()
				out, errOut, err := caddyCLI(t, home, sub, "--config", file, "--adapter", "caddyfile")
				msg := out + errOut
				if err == nil {
					t.Errorf("caddy %s accepted store redis %s:\n%s", sub, tc.url, msg)
					continue
				}
				if !strings.Contains(msg, "store redis") || !strings.Contains(msg, tc.mention) {
					t.Errorf("caddy %s error does not name the store and %q:\n%s", sub, tc.mention, proclog.Tail(msg, 2000))
				}
				for _, pw := range []string{"pw-in-bad-url", "not-the-password-2718", "the-right-password-31415"} {
					if strings.Contains(msg, pw) {
						t.Errorf("caddy %s output shows a password:\n%s", sub, msg)
					}
				}
				if d := time.Since(start); d > 20*time.Second {
					t.Errorf("caddy %s took %v to fail", sub, d)
				}
			}
		})
	}
	// The right password from the environment ({env.*}) works.
	t.Run("password from env", func(t *testing.T) {
		home := t.TempDir()
		file := filepath.Join(home, "Caddyfile")
		cf := fmt.Sprintf("{\n\tadmin off\n\tpersist_config off\n\tauto_https off\n\toauth2 {\n\t\tstore redis redis://:{env.OAUTH2GATE_TEST_REDIS_PW}@%s\n\t\tsecrets_key {env.%s}\n\t}\n}\n\nhttp://127.0.0.1:%d {\n\toauth2_server /o\n}\n", srv.Addr(), sharedSecretsKeyEnv, port)
		if err := os.WriteFile(file, []byte(cf), 0o600); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, caddyBin, "validate", "--config", file, "--adapter", "caddyfile")
		cmd.Dir = home
		cmd.Env = append(os.Environ(), "HOME="+home, "XDG_DATA_HOME="+filepath.Join(home, "data"), "XDG_CONFIG_HOME="+filepath.Join(home, "config"),
			"OAUTH2GATE_TEST_REDIS_PW=the-right-password-31415", sharedSecretsKeyEnv+"="+sharedSecretsKey)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("caddy validate with the password from the environment: %v\n%s", err, out)
		}
	})
}
