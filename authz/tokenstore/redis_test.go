package tokenstore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/oauth2gate/oauth2gate/authz/tokenstore/redistest"
)

func openRedisTest(t *testing.T, url string, opts RedisOptions) *RedisStore {
	t.Helper()
	if opts.ReplayWindow == 0 {
		opts.ReplayWindow = time.Hour
	}
	s, err := OpenRedis(url, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// rawClient is a plain client on srv, playing "something else" that shares
// the Redis.
func rawClient(t *testing.T, srv *redistest.Server) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { c.Close() })
	return c
}

// redisBackend runs the shared suite on one redis-server; a space is a key
// prefix, so every subtest has its own keys.
func redisBackend(t *testing.T) backend {
	srv := redistest.Start(t)
	raw := rawClient(t, srv)
	var n atomic.Int32
	return backend{
		space: func(*testing.T) string { return fmt.Sprintf("suite%d:", n.Add(1)) },
		open: func(t *testing.T, prefix string) Store {
			return openRedisTest(t, srv.URL(), RedisOptions{KeyPrefix: prefix})
		},
		putRaw: func(t *testing.T, s Store, key, value string) {
			if err := raw.Set(context.Background(), s.(*RedisStore).prefix+key, value, 0).Err(); err != nil {
				t.Fatal(err)
			}
		},
		dump: func(t *testing.T, prefix string) string {
			ctx := context.Background()
			var b strings.Builder
			keys, err := raw.Keys(ctx, prefix+"*").Result()
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range keys {
				b.WriteString(k + "\n")
				switch raw.Type(ctx, k).Val() {
				case "string":
					b.WriteString(raw.Get(ctx, k).Val() + "\n")
				case "set":
					b.WriteString(strings.Join(raw.SMembers(ctx, k).Val(), " ") + "\n")
				}
			}
			return b.String()
		},
	}
}

func TestRedisStore(t *testing.T) { runStoreSuite(t, redisBackend(t)) }

// Two instances on one Redis: a token issued by one is seen by the other,
// and its family is one family.
func TestRedisTwoInstancesShareState(t *testing.T) {
	srv := redistest.Start(t)
	a := openRedisTest(t, srv.URL(), RedisOptions{})
	b := openRedisTest(t, srv.URL(), RedisOptions{})
	ctx := context.Background()
	if err := a.SaveTokens(ctx, issue("a0", "r0", "g1")); err != nil {
		t.Fatal(err)
	}
	if r, err := b.GetAccess(ctx, HashOf("a0")); err != nil || r.GrantID != "g1" {
		t.Fatalf("instance B reads %+v, %v", r, err)
	}
	if _, _, _, err := b.RotateRefresh(ctx, HashOf("r0"), accept, issue("a1", "r1", ""), false); err != nil {
		t.Fatal(err)
	}
	if _, _, replay, err := a.RotateRefresh(ctx, HashOf("r0"), accept, issue("a2", "r2", ""), false); !errors.Is(err, ErrReplayed) || replay.GrantID != "g1" {
		t.Fatalf("replay on A of a token rotated on B: %v, %+v", err, replay)
	}
	ka, _ := a.Secret(ctx, "k", func() ([]byte, error) { return []byte("from-a"), nil })
	kb, _ := b.Secret(ctx, "k", func() ([]byte, error) { return []byte("from-b"), nil })
	if string(ka) != "from-a" || string(kb) != "from-a" {
		t.Fatalf("instances disagree on a secret: %q, %q", ka, kb)
	}
	// Another prefix is another world.
	c := openRedisTest(t, srv.URL(), RedisOptions{KeyPrefix: "other:"})
	if _, err := c.GetAccess(ctx, HashOf("a1")); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a store with another key prefix sees the token: %v", err)
	}
}

// Secrets created by many instances at once: all get the same one.
func TestRedisSecretCreatedOnceUnderConcurrency(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	var stores []*RedisStore
	for range 8 {
		stores = append(stores, openRedisTest(t, srv.URL(), RedisOptions{}))
	}
	got := make([]string, len(stores))
	var wg sync.WaitGroup
	for i, s := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, err := s.Secret(ctx, "session_key", func() ([]byte, error) { return []byte(fmt.Sprint("k", i)), nil })
			if err != nil {
				t.Error(err)
			}
			got[i] = string(b)
		}()
	}
	wg.Wait()
	for _, g := range got {
		if g != got[0] {
			t.Fatalf("instances got different secrets: %q", got)
		}
	}
}

// Keys expire with what they hold: nothing is left behind in Redis.
func TestRedisKeysExpireWithTheirTokens(t *testing.T) {
	srv := redistest.Start(t)
	raw := rawClient(t, srv)
	s := openRedisTest(t, srv.URL(), RedisOptions{KeyPrefix: "p:", ReplayWindow: 2 * time.Hour})
	ctx := context.Background()
	iss := issue("a0", "r0", "g1") // access 1h, refresh 24h
	if err := s.SaveTokens(ctx, iss); err != nil {
		t.Fatal(err)
	}
	code := rec("c1", time.Minute)
	code.GrantID = "g0"
	if err := s.SaveCode(ctx, HashOf("code"), code, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.TakeCode(ctx, HashOf("code"), nil); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := s.RotateRefresh(ctx, HashOf("r0"), accept, issue("a1", "r1", ""), false); err != nil {
		t.Fatal(err)
	}
	near := func(key string, want time.Duration) {
		t.Helper()
		got := raw.PTTL(ctx, "p:"+key).Val()
		if got < want-5*time.Second || got > want+time.Second {
			t.Errorf("TTL of %.14s… = %v, want about %v", key, got, want)
		}
	}
	near(prefixAccess+HashOf("a1").String(), time.Hour)
	near(prefixRefresh+HashOf("r1").String(), 24*time.Hour)
	near(prefixFamily+"g1", 24*time.Hour)
	near(prefixRotatedOut+HashOf("r0").String(), 24*time.Hour)
	near(prefixUsedCode+HashOf("code").String(), 2*time.Hour)
	if _, err := s.RevokeGrant(ctx, "g1"); err != nil {
		t.Fatal(err)
	}
	near(prefixFamily+"g1", 2*time.Hour)
	// Every key but the server secrets has a TTL.
	keys := raw.Keys(ctx, "p:*").Val()
	if len(keys) == 0 {
		t.Fatal("no keys under the prefix")
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, "p:"+prefixSecret) && raw.PTTL(ctx, k).Val() < 0 {
			t.Errorf("key %.16s… never expires", k)
		}
	}
	// A short code really goes away on its own.
	if err := s.SaveCode(ctx, HashOf("short"), code, 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for raw.Exists(ctx, "p:"+prefixCode+HashOf("short").String()).Val() == 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if raw.Exists(ctx, "p:"+prefixCode+HashOf("short").String()).Val() == 1 {
		t.Fatal("an expired code is still in Redis")
	}
}

// Garbage written into our keys, of any type, is no token and a log line.
func TestRedisGarbageIsLoggedNeverAToken(t *testing.T) {
	srv := redistest.Start(t)
	raw := rawClient(t, srv)
	core, logs := observer.New(zap.WarnLevel)
	s := openRedisTest(t, srv.URL(), RedisOptions{KeyPrefix: "g:", Logger: zap.New(core)})
	ctx := context.Background()
	h := HashOf("tok")
	for _, v := range []string{"null", "{}", "{not json", `{"cid":42}`} {
		raw.Set(ctx, "g:"+prefixAccess+h.String(), v, 0)
		if _, err := s.GetAccess(ctx, h); !errors.Is(err, ErrNotFound) {
			t.Errorf("access record %q: %v, want ErrNotFound", v, err)
		}
		raw.Set(ctx, "g:"+prefixCode+h.String(), v, 0)
		if _, _, err := s.TakeCode(ctx, h, nil); !errors.Is(err, ErrNotFound) {
			t.Errorf("code record %q: %v, want ErrNotFound", v, err)
		}
	}
	if n := logs.FilterMessageSnippet("not ours").Len(); n < 8 {
		t.Errorf("%d garbage log lines for 8 garbage records", n)
	}
	// Other Redis types in our keys.
	raw.Del(ctx, "g:"+prefixAccess+h.String(), "g:"+prefixRefresh+h.String(), "g:"+prefixCode+h.String())
	raw.LPush(ctx, "g:"+prefixAccess+h.String(), "x")
	raw.HSet(ctx, "g:"+prefixRefresh+h.String(), "f", "v")
	raw.SAdd(ctx, "g:"+prefixCode+h.String(), "m")
	raw.LPush(ctx, "g:"+prefixSecret+"session", "x")
	if _, err := s.GetAccess(ctx, h); !errors.Is(err, ErrNotFound) {
		t.Errorf("a list as access record: %v", err)
	}
	if _, err := s.GetRefresh(ctx, h); !errors.Is(err, ErrNotFound) {
		t.Errorf("a hash as refresh record: %v", err)
	}
	if _, _, _, err := s.RotateRefresh(ctx, h, accept, issue("a1", "r1", ""), false); !errors.Is(err, ErrNotFound) {
		t.Errorf("rotating a hash: %v", err)
	}
	if _, err := s.RevokeRefresh(ctx, h); err != nil {
		t.Errorf("revoking a hash: %v", err)
	}
	if _, _, err := s.TakeCode(ctx, h, nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("taking a set as code: %v", err)
	}
	// A list where a secret should be is replaced, as the file store replaces garbage.
	if b, err := s.Secret(ctx, "session", func() ([]byte, error) { return []byte("k"), nil }); err != nil || string(b) != "k" {
		t.Errorf("secret over a list: %q, %v", b, err)
	}
	if logs.FilterMessageSnippet("not ours").Len() == 0 {
		t.Fatal("garbage in our keys was not logged")
	}
	for _, e := range logs.All() {
		for _, f := range e.Context {
			if strings.Contains(f.String, h.String()) {
				t.Errorf("a log line holds a whole key hash: %v", f.String)
			}
		}
	}
}

// watchRecorder collects what Watch reports.
type watchRecorder struct {
	mu      sync.Mutex
	revoked map[Hash]time.Time
	resets  int
	changed chan struct{}
}

func newWatchRecorder() *watchRecorder {
	return &watchRecorder{revoked: map[Hash]time.Time{}, changed: make(chan struct{}, 1)}
}

func (w *watchRecorder) onRevoke(r Revoked) {
	w.mu.Lock()
	for _, h := range r.Access {
		w.revoked[h] = time.Now()
	}
	w.mu.Unlock()
	w.poke()
}

func (w *watchRecorder) onReset() {
	w.mu.Lock()
	w.resets++
	w.mu.Unlock()
	w.poke()
}

func (w *watchRecorder) poke() {
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

// waitFor polls cond each time something is reported, up to d.
func (w *watchRecorder) waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.After(d)
	for {
		w.mu.Lock()
		ok := cond()
		w.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-w.changed:
		case <-deadline:
			return false
		}
	}
}

// When both instances watch, a revocation on A returns only once B has
// applied it: B refuses the token on its very next request.
func TestRedisRevocationWaitsForEveryInstance(t *testing.T) {
	srv := redistest.Start(t)
	ctx := context.Background()
	var stores []*RedisStore
	var recs []*watchRecorder
	for range 3 {
		s := openRedisTest(t, srv.URL(), RedisOptions{})
		w := newWatchRecorder()
		s.Watch(w.onRevoke, w.onReset)
		stores, recs = append(stores, s), append(recs, w)
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, s := range stores {
		for s.listening.Load() == 0 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if s.listening.Load() == 0 {
			t.Fatal("a subscription never came up")
		}
	}
	a := stores[0]
	for i := range 20 {
		tok := fmt.Sprint("tok", i)
		if err := a.SaveTokens(ctx, issue(tok, "r"+tok, "g"+tok)); err != nil {
			t.Fatal(err)
		}
		var err error
		switch i % 4 {
		case 0:
			_, err = a.RevokeAccess(ctx, HashOf(tok))
		case 1:
			_, err = a.RevokeRefresh(ctx, HashOf("r"+tok))
		case 2:
			_, _, _, err = a.RotateRefresh(ctx, HashOf("r"+tok), accept, issue("n"+tok, "nr"+tok, ""), false)
		case 3:
			_, err = a.RevokeGrant(ctx, "g"+tok)
		}
		if err != nil {
			t.Fatal(err)
		}
		for j, w := range recs[1:] {
			w.mu.Lock()
			_, heard := w.revoked[HashOf(tok)]
			w.mu.Unlock()
			if !heard {
				t.Errorf("revocation %d (kind %d) returned before instance %d applied it", i, i%4, j+1)
			}
		}
	}
}

// Every kind of revocation on instance A reaches instance B's watcher.
func TestRedisWatchDeliversRevocations(t *testing.T) {
	srv := redistest.Start(t)
	a := openRedisTest(t, srv.URL(), RedisOptions{})
	b := openRedisTest(t, srv.URL(), RedisOptions{})
	w := newWatchRecorder()
	b.Watch(w.onRevoke, w.onReset)
	if !w.waitFor(5*time.Second, func() bool { return w.resets >= 1 }) {
		t.Fatal("the subscription never confirmed")
	}
	ctx := context.Background()
	for _, tok := range []string{"a0", "a1", "a2", "a3", "a4"} {
		if err := a.SaveTokens(ctx, issue(tok, "r"+tok, "g"+tok)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.RevokeAccess(ctx, HashOf("a0")); err != nil {
		t.Fatal(err)
	}
	if _, err := a.RevokeRefresh(ctx, HashOf("ra1")); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := a.RotateRefresh(ctx, HashOf("ra2"), accept, issue("n2", "nr2", ""), false); err != nil {
		t.Fatal(err)
	}
	if _, err := a.RevokeGrant(ctx, "ga3"); err != nil {
		t.Fatal(err)
	}
	want := []string{"a0", "a1", "a2", "a3"}
	ok := w.waitFor(5*time.Second, func() bool {
		for _, tok := range want {
			if _, ok := w.revoked[HashOf(tok)]; !ok {
				return false
			}
		}
		return true
	})
	if !ok {
		t.Fatalf("B heard of %d revocations, want %v", len(w.revoked), want)
	}
	if _, heard := w.revoked[HashOf("a4")]; heard {
		t.Fatal("B heard of a revocation that never happened")
	}
}

// A lost subscription: Redis goes away and comes back on the same port. The
// watcher resets (so the cache is cleared) and then hears revocations again;
// store calls fail fast during the outage and work again after it.
func TestRedisOutageFailsFastAndRecovers(t *testing.T) {
	srv := redistest.Start(t)
	a := openRedisTest(t, srv.URL(), RedisOptions{})
	b := openRedisTest(t, srv.URL(), RedisOptions{})
	w := newWatchRecorder()
	b.Watch(w.onRevoke, w.onReset)
	if !w.waitFor(5*time.Second, func() bool { return w.resets == 1 }) {
		t.Fatal("the subscription never confirmed")
	}
	ctx := context.Background()
	if err := a.SaveTokens(ctx, issue("a0", "r0", "g0")); err != nil {
		t.Fatal(err)
	}

	srv.Stop()
	for _, op := range []struct {
		name string
		run  func() error
	}{
		{"GetAccess", func() error { _, err := a.GetAccess(ctx, HashOf("a0")); return err }},
		{"SaveTokens", func() error { return a.SaveTokens(ctx, issue("a1", "r1", "g1")) }},
		{"RotateRefresh", func() error {
			_, _, _, err := a.RotateRefresh(ctx, HashOf("r0"), accept, issue("a2", "r2", ""), false)
			return err
		}},
		{"TakeCode", func() error { _, _, err := a.TakeCode(ctx, HashOf("c"), nil); return err }},
	} {
		start := time.Now()
		err := op.run()
		took := time.Since(start)
		if err == nil || errors.Is(err, ErrNotFound) || errors.Is(err, ErrReplayed) {
			t.Errorf("%s with Redis down: %v, want a backend error", op.name, err)
		}
		if took > 2*time.Second {
			t.Errorf("%s with Redis down took %v, want under 2s", op.name, took)
		}
	}

	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	// Redis came back empty (no persistence): the store works again within
	// seconds, without reopening.
	deadline := time.Now().Add(10 * time.Second)
	var err error
	for time.Now().Before(deadline) {
		if err = a.SaveTokens(ctx, issue("a5", "r5", "g5")); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("store did not recover within 10s: %v", err)
	}
	if !w.waitFor(10*time.Second, func() bool { return w.resets >= 2 }) {
		t.Fatal("the watcher did not reset after the subscription came back")
	}
	if _, err := a.RevokeAccess(ctx, HashOf("a5")); err != nil {
		t.Fatal(err)
	}
	if !w.waitFor(5*time.Second, func() bool { _, ok := w.revoked[HashOf("a5")]; return ok }) {
		t.Fatal("no revocation heard after the subscription came back")
	}
}

func TestOpenRedisRefusesBadURLsAndAuth(t *testing.T) {
	srv := redistest.Start(t, "--requirepass", "right-pw-4711")
	tests := []struct {
		name, url string
		want      string // in the error
	}{
		{"not a URL", "redis://:pw-secret@[::1", "does not parse"},
		{"bad scheme", "http://127.0.0.1:6379", "scheme"},
		{"bad db", "redis://127.0.0.1:6379/abc", "database"},
		{"bad option", "redis://127.0.0.1:6379?frobnicate=1", "frobnicate"},
		{"bad host list", "redis://127.0.0.1:1,nohost/0", "host:port"},
		{"empty", "", "empty"},
		{"wrong password", "redis://:wrong-pw-0815@" + srv.Addr(), "WRONGPASS"},
		{"no password", srv.URL(), "NOAUTH"},
		{"nobody listening", "redis://127.0.0.1:1", "connecting"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			// Nobody listening is retried for the start-up window (see
			// redis_startup_test.go); a short one keeps this table quick.
			s, err := OpenRedis(tc.url, RedisOptions{StartupWindow: time.Second})
			if err == nil {
				s.Close()
				t.Fatal("opened")
			}
			t.Logf("%v", err)
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
			for _, secret := range []string{"pw-secret", "wrong-pw-0815", "right-pw-4711"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q shows a password", err)
				}
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("took %v to fail", d)
			}
		})
	}
	s, err := OpenRedis("redis://:right-pw-4711@"+srv.Addr()+"/2", RedisOptions{})
	if err != nil {
		t.Fatalf("right password: %v", err)
	}
	s.Close()
}

// The URL forms name the right kind of client.
func TestRedisURLForms(t *testing.T) {
	tests := []struct {
		url     string
		kind    string
		cluster bool
	}{
		{"redis://127.0.0.1:6379/1?dial_timeout=1s", "*redis.Client", false},
		{"rediss://user:pw@cache.example:6380", "*redis.Client", false},
		{"unix:///run/redis.sock?db=2", "*redis.Client", false},
		{"redis://:pw@10.0.0.1:26379,10.0.0.2:26379?master_name=mymaster", "*redis.Client", false},
		{"redis://10.0.0.1:7000,10.0.0.2:7001,10.0.0.3:7002", "*redis.ClusterClient", true},
		{"redis://10.0.0.1:7000?addr=10.0.0.2:7001", "*redis.ClusterClient", true},
		{"redis+cluster://10.0.0.1:7000", "*redis.ClusterClient", true},
	}
	for _, tc := range tests {
		c, cluster, err := newRedisClient(tc.url, time.Second)
		if err != nil {
			t.Errorf("%s: %v", tc.url, err)
			continue
		}
		if got := fmt.Sprintf("%T", c); got != tc.kind || cluster != tc.cluster {
			t.Errorf("%s: %s (cluster %v), want %s (cluster %v)", tc.url, got, cluster, tc.kind, tc.cluster)
		}
		c.Close()
	}
}

// startCluster runs a three-master Redis Cluster on loopback and returns its
// seed list.
func startCluster(t *testing.T) []string {
	t.Helper()
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatal("redis-cli is not installed (Debian package redis-tools, pulled in by redis-server)")
	}
	var addrs []string
	for range 3 {
		bus := freeLoopbackPort(t)
		srv := redistest.Start(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-port", strconv.Itoa(bus), "--cluster-node-timeout", "2000")
		addrs = append(addrs, srv.Addr())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for ctx.Err() == nil {
		ok := true
		for _, a := range addrs {
			c := redis.NewClient(&redis.Options{Addr: a})
			info, err := c.ClusterInfo(ctx).Result()
			c.Close()
			ok = ok && err == nil && strings.Contains(info, "cluster_state:ok")
		}
		if ok {
			return addrs
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("the cluster did not reach cluster_state:ok within 30s")
	return nil
}

func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// The same contract holds on Redis Cluster: the hash-tagged prefix keeps
// every key of a script in one slot, and revocations reach every instance.
func TestRedisClusterStore(t *testing.T) {
	addrs := startCluster(t)
	url := "redis://" + strings.Join(addrs, ",")
	raw := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	t.Cleanup(func() { raw.Close() })
	var n atomic.Int32
	b := backend{
		space: func(*testing.T) string { return fmt.Sprintf("cl%d:", n.Add(1)) },
		open: func(t *testing.T, prefix string) Store {
			return openRedisTest(t, url, RedisOptions{KeyPrefix: prefix})
		},
		putRaw: func(t *testing.T, s Store, key, value string) {
			if err := raw.Set(context.Background(), s.(*RedisStore).prefix+key, value, 0).Err(); err != nil {
				t.Fatal(err)
			}
		},
		dump: func(t *testing.T, prefix string) string {
			ctx := context.Background()
			var mu sync.Mutex
			var sb strings.Builder
			err := raw.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
				keys, err := c.Keys(ctx, "{"+prefix+"}*").Result()
				if err != nil {
					return err
				}
				mu.Lock()
				defer mu.Unlock()
				for _, k := range keys {
					sb.WriteString(k + "\n")
					if c.Type(ctx, k).Val() == "string" {
						sb.WriteString(c.Get(ctx, k).Val() + "\n")
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			return sb.String()
		},
	}
	runStoreSuite(t, b)

	t.Run("RevocationReachesEveryInstance", func(t *testing.T) {
		ctx := context.Background()
		var recs []*watchRecorder
		var stores []*RedisStore
		for range 2 {
			s := openRedisTest(t, url, RedisOptions{KeyPrefix: "watch:"})
			w := newWatchRecorder()
			s.Watch(w.onRevoke, w.onReset)
			stores, recs = append(stores, s), append(recs, w)
		}
		for _, w := range recs {
			if !w.waitFor(10*time.Second, func() bool { return w.resets >= 1 }) {
				t.Fatal("a subscription never confirmed")
			}
		}
		if err := stores[0].SaveTokens(ctx, issue("a0", "r0", "g0")); err != nil {
			t.Fatal(err)
		}
		if _, _, _, err := stores[1].RotateRefresh(ctx, HashOf("r0"), accept, issue("a1", "r1", ""), false); err != nil {
			t.Fatal(err)
		}
		for i, w := range recs {
			if !w.waitFor(5*time.Second, func() bool { _, ok := w.revoked[HashOf("a0")]; return ok }) {
				t.Errorf("instance %d never heard of the rotation", i)
			}
		}
	})
}

// Sentinel: the store finds the master through a Sentinel and works as on
// one node, revocations included.
func TestRedisSentinelStore(t *testing.T) {
	master := redistest.Start(t)
	conf := filepath.Join(t.TempDir(), "sentinel.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf("sentinel monitor mymaster 127.0.0.1 %d 1\nsentinel down-after-milliseconds mymaster 5000\n", master.Port)), 0o600); err != nil {
		t.Fatal(err)
	}
	sentinel := redistest.Start(t, conf, "--sentinel")
	url := fmt.Sprintf("redis://%s?master_name=mymaster", sentinel.Addr())
	// The Sentinel needs a moment to learn its master.
	var s *RedisStore
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if s, err = OpenRedis(url, RedisOptions{KeyPrefix: "sent:"}); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("opening through the Sentinel: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	other := openRedisTest(t, url, RedisOptions{KeyPrefix: "sent:"})
	w := newWatchRecorder()
	other.Watch(w.onRevoke, w.onReset)
	if !w.waitFor(5*time.Second, func() bool { return w.resets >= 1 }) {
		t.Fatal("the subscription never confirmed")
	}
	ctx := context.Background()
	if err := s.SaveTokens(ctx, issue("a0", "r0", "g0")); err != nil {
		t.Fatal(err)
	}
	// What went through the Sentinel is on the master.
	raw := rawClient(t, master)
	if raw.Exists(ctx, "sent:"+prefixAccess+HashOf("a0").String()).Val() != 1 {
		t.Fatal("the token is not on the master")
	}
	if _, err := s.RevokeAccess(ctx, HashOf("a0")); err != nil {
		t.Fatal(err)
	}
	if !w.waitFor(5*time.Second, func() bool { _, ok := w.revoked[HashOf("a0")]; return ok }) {
		t.Fatal("the other instance never heard of the revocation")
	}
}

// Sentinel failover: the master dies, the Sentinel promotes its replica, and
// the store carries on through go-redis's failover client without being
// reopened. While the failover runs, calls fail fast with a backend error and
// never answer wrongly (a revoked token found, a live one missing, one
// token's record for another's); afterwards the tokens written before (and
// replicated) are found, the revocations made before still hold, new writes
// land on the promoted replica and revocations reach the other instances
// again. The old master, restarted empty, is made a replica by the Sentinel,
// and the store never talks to it meanwhile.
func TestRedisSentinelFailover(t *testing.T) {
	begin := time.Now()
	ctx := context.Background()
	const prefix = "fo:"
	// Full syncs start at once (Redis waits 5 s for more replicas by default).
	noDelay := []string{"--repl-diskless-sync-delay", "0"}
	master := redistest.Start(t, noDelay...)
	replica := redistest.Start(t, append([]string{"--replicaof", "127.0.0.1", strconv.Itoa(master.Port)}, noDelay...)...)
	rawM, rawR := rawClient(t, master), rawClient(t, replica)
	waitUntil(t, 10*time.Second, "the replica to sync with the master", func() bool {
		r := roleOf(ctx, rawR)
		return len(r) >= 4 && r[0] == "slave" && r[2] == int64(master.Port) && r[3] == "connected"
	})

	// One Sentinel, quorum 1, short timers; started once the replica is
	// attached, so its first INFO on the master finds it. down-after is twice
	// Sentinel's 1 s ping period: right after a switch Sentinel may wait up
	// to a ping period before it reconnects to the new master, and with
	// 1000 ms it sometimes took the new master for down (see below).
	conf := filepath.Join(t.TempDir(), "sentinel.conf")
	cfg := fmt.Sprintf("sentinel monitor mymaster 127.0.0.1 %d 1\n"+
		"sentinel down-after-milliseconds mymaster 2000\n"+
		"sentinel failover-timeout mymaster 5000\n"+
		"sentinel parallel-syncs mymaster 1\n", master.Port)
	if err := os.WriteFile(conf, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	sentinel := redistest.Start(t, conf, "--sentinel")
	sc := redis.NewSentinelClient(&redis.Options{Addr: sentinel.Addr()})
	t.Cleanup(func() { sc.Close() })
	// Sentinel reads its replicas' INFO every 10 s and waits 4 publish
	// periods (8 s) before it turns a restarted old master into a replica;
	// SENTINEL DEBUG (Redis 7.0+) shortens both. Without it the test is
	// slower, not different.
	if err := sc.Process(ctx, redis.NewStatusCmd(ctx, "sentinel", "debug", "info-period", "250", "publish-period", "250")); err != nil {
		t.Logf("SENTINEL DEBUG refused (%v): running with Sentinel's default timers", err)
	}
	waitUntil(t, 10*time.Second, "the Sentinel to know the replica", func() bool {
		reps, _ := sc.Replicas(ctx, "mymaster").Result()
		for _, r := range reps {
			if r["port"] == strconv.Itoa(replica.Port) && r["flags"] == "slave" && r["master-link-status"] == "ok" {
				return true
			}
		}
		return false
	})

	url := fmt.Sprintf("redis://%s?master_name=mymaster", sentinel.Addr())
	s := openRedisTest(t, url, RedisOptions{KeyPrefix: prefix})
	other := openRedisTest(t, url, RedisOptions{KeyPrefix: prefix})
	w := newWatchRecorder()
	other.Watch(w.onRevoke, w.onReset)
	if !w.waitFor(5*time.Second, func() bool { return w.resets >= 1 }) {
		t.Fatal("the subscription never confirmed")
	}

	// Tokens of every kind, and revocations of every kind, before the failover.
	for _, iss := range []Issue{
		issue("a0", "r0", "g0"), issue("a1", "r1", "g1"),
		issue("cc0", "", ""), // client_credentials: one SET, no script, no family
		issue("x0", "rx0", "gx0"), issue("x1", "rx1", "gx1"), issue("x2", "rx2", "gx2"),
	} {
		if err := s.SaveTokens(ctx, iss); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.RevokeAccess(ctx, HashOf("x0")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RevokeRefresh(ctx, HashOf("rx1")); err != nil { // takes x1 along
		t.Fatal(err)
	}
	if _, err := s.RevokeGrant(ctx, "gx2"); err != nil {
		t.Fatal(err)
	}
	// token is how the store must answer for one token: a live one with its
	// grant and the token issued with it, a revoked one never.
	type token struct {
		name, link, gid string // test fixtures, not secrets
		refresh         bool
	}
	live := []token{
		{name: "a0", link: "r0", gid: "g0"}, {name: "r0", link: "a0", gid: "g0", refresh: true},
		{name: "a1", link: "r1", gid: "g1"}, {name: "r1", link: "a1", gid: "g1", refresh: true},
		{name: "cc0"},
		{name: "rx0", link: "x0", gid: "gx0", refresh: true}, // only its access token was revoked
	}
	revoked := []token{{name: "x0"}, {name: "x1"}, {name: "rx1", refresh: true}, {name: "x2"}, {name: "rx2", refresh: true}}
	key := func(tk token) string {
		if tk.refresh {
			return prefix + prefixRefresh + HashOf(tk.name).String()
		}
		return prefix + prefixAccess + HashOf(tk.name).String()
	}

	// replicated checks that every live token written through master is on
	// replica: a write of our own, acknowledged by WAIT, comes after every
	// write of the store in the replication stream.
	replicated := func(master, replica *redis.Client, what string) {
		t.Helper()
		if err := master.Set(ctx, "fo-test:marker", what, 0).Err(); err != nil {
			t.Fatal(err)
		}
		if n, err := master.Wait(ctx, 1, 5*time.Second).Result(); err != nil || n != 1 {
			t.Fatalf("WAIT 1 (%s): %d replicas acknowledged, %v", what, n, err)
		}
		for _, tk := range live {
			if replica.Exists(ctx, key(tk)).Val() != 1 {
				t.Fatalf("%s is not on the %s", tk.name, what)
			}
		}
	}
	replicated(rawM, rawR, "replica")
	for _, tk := range revoked {
		if rawR.Exists(ctx, key(tk)).Val() != 0 {
			t.Fatalf("revoked %s is still on the replica", tk.name)
		}
	}
	if !rawR.SIsMember(ctx, prefix+prefixFamily+"gx2", "!").Val() {
		t.Fatal("the revoked family is not marked revoked on the replica")
	}

	// callBound: each call gives up within the store's own bound (3 × the
	// 500 ms timeout), whatever the failover client does underneath.
	const callBound = 2 * time.Second
	var slowest time.Duration
	timed := func(what string, f func() error) error {
		t.Helper()
		start := time.Now()
		err := f()
		d := time.Since(start)
		slowest = max(slowest, d)
		if d > callBound {
			t.Fatalf("%s took %v, want under %v", what, d, callBound)
		}
		return err
	}
	// lookup reads one token through the store, within callBound.
	lookup := func(phase string, tk token) (r Record, err error) {
		err = timed(phase+": looking "+tk.name+" up", func() (err error) {
			if tk.refresh {
				r, err = s.GetRefresh(ctx, HashOf(tk.name))
			} else {
				r, err = s.GetAccess(ctx, HashOf(tk.name))
			}
			return err
		})
		return r, err
	}
	// checkAll looks every token up once. A wrong answer fails the test at
	// once; backend errors (Redis away) are returned.
	checkAll := func(phase string) []error {
		t.Helper()
		var errs []error
		for _, tk := range live {
			r, err := lookup(phase, tk)
			switch {
			case errors.Is(err, ErrNotFound):
				addr, _ := sc.GetMasterAddrByName(ctx, "mymaster").Result()
				t.Fatalf("%s: live token %s is not found (the Sentinel names %v as master)", phase, tk.name, addr)
			case err != nil:
				errs = append(errs, err)
				continue
			}
			link, want := r.RefreshHash, ""
			if tk.refresh {
				link = r.AccessHash
			}
			if tk.link != "" {
				want = HashOf(tk.link).String()
			}
			if r.ClientID != "c1" || r.GrantID != tk.gid || link != want {
				t.Fatalf("%s: %s reads another token's record (grant %q, client %q)", phase, tk.name, r.GrantID, r.ClientID)
			}
		}
		for _, tk := range revoked {
			_, err := lookup(phase, tk)
			switch {
			case err == nil:
				t.Fatalf("%s: revoked token %s is found", phase, tk.name)
			case !errors.Is(err, ErrNotFound):
				errs = append(errs, err)
			}
		}
		return errs
	}
	if errs := checkAll("before the failover"); len(errs) > 0 {
		t.Fatal(errs)
	}

	// The master dies. Keep using the store until it works again.
	master.Stop()
	down := time.Now()
	failed, seen := 0, map[string]bool{}
	for {
		errs := checkAll("during the failover")
		if err := timed("saving b0 during the failover", func() error { return s.SaveTokens(ctx, issue("b0", "rb0", "gb0")) }); err != nil {
			errs = append(errs, err)
		}
		if len(errs) == 0 {
			break
		}
		failed += len(errs)
		for _, err := range errs {
			seen[err.Error()] = true
		}
		if time.Since(down) > 30*time.Second {
			t.Fatalf("the store did not work again within 30s of the master's death: %q", slices.Sorted(maps.Keys(seen)))
		}
		time.Sleep(50 * time.Millisecond)
	}
	took := time.Since(down)
	if failed == 0 {
		t.Fatal("no call failed while the master was gone: the outage was not observed")
	}
	t.Logf("the store worked again %v after the master stopped; %d calls failed meanwhile, slowest call %v; errors seen: %q",
		took.Round(time.Millisecond), failed, slowest.Round(time.Millisecond), slices.Sorted(maps.Keys(seen)))

	// The former replica is the master, per the Sentinel and per itself, and
	// the write made after the failover is on it.
	if addr, err := sc.GetMasterAddrByName(ctx, "mymaster").Result(); err != nil || len(addr) != 2 || addr[1] != strconv.Itoa(replica.Port) {
		t.Fatalf("the Sentinel names %v (%v) as master, want the former replica on port %d", addr, err, replica.Port)
	}
	if r := roleOf(ctx, rawR); len(r) == 0 || r[0] != "master" {
		t.Fatalf("the former replica's ROLE is %v, want master", r)
	}
	b0 := token{name: "b0", link: "rb0", gid: "gb0"}
	if rawR.Exists(ctx, key(b0)).Val() != 1 {
		t.Fatal("the token written after the failover is not on the promoted replica")
	}
	live = append(live, b0)
	// Scripts run on the new master too (its script cache is empty: go-redis
	// falls back from EVALSHA to EVAL): rotation, codes, a revoked family.
	if _, _, _, err := s.RotateRefresh(ctx, HashOf("rb0"), accept, issue("b1", "rb1", ""), false); err != nil {
		t.Fatalf("rotating after the failover: %v", err)
	}
	live[len(live)-1] = token{name: "b1", link: "rb1", gid: "gb0"}
	live = append(live, token{name: "rb1", link: "b1", gid: "gb0", refresh: true})
	revoked = append(revoked, token{name: "b0"}, token{name: "rb0", refresh: true})
	if _, _, replay, err := s.RotateRefresh(ctx, HashOf("rb0"), accept, issue("b2", "rb2", ""), false); !errors.Is(err, ErrReplayed) || replay == nil || replay.GrantID != "gb0" {
		t.Fatalf("replaying a refresh token rotated after the failover: %v, %+v", err, replay)
	}
	if err := s.SaveTokens(ctx, issue("x3", "rx3", "gx2")); err != nil {
		t.Fatal(err)
	}
	revoked = append(revoked, token{name: "x3"}, token{name: "rx3", refresh: true}) // born revoked into gx2
	if err := s.SaveCode(ctx, HashOf("code0"), rec("c1", time.Minute), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.TakeCode(ctx, HashOf("code0"), nil); err != nil {
		t.Fatalf("taking a code after the failover: %v", err)
	}
	if _, _, err := s.TakeCode(ctx, HashOf("code0"), nil); !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrReplayed) {
		t.Fatalf("taking a code twice after the failover: %v", err)
	}
	// The other instance's subscription came back (and reset its cache), and
	// a revocation made now reaches it.
	if !w.waitFor(10*time.Second, func() bool { return w.resets >= 2 }) {
		t.Fatal("the revocation subscription did not come back after the failover")
	}
	if _, err := s.RevokeAccess(ctx, HashOf("a0")); err != nil {
		t.Fatal(err)
	}
	live = slices.DeleteFunc(live, func(tk token) bool { return tk.name == "a0" })
	revoked = append(revoked, token{name: "a0"})
	if !w.waitFor(5*time.Second, func() bool { _, ok := w.revoked[HashOf("a0")]; return ok }) {
		t.Fatal("the other instance never heard of a revocation made after the failover")
	}
	if errs := checkAll("after the failover"); len(errs) > 0 {
		t.Fatal(errs)
	}

	// The old master comes back, empty and a master. The Sentinel makes it a
	// replica of the new master; meanwhile every call of the store goes to
	// the new master: a write landing on the old one would be wiped by its
	// resync, a read there would miss every token.
	//
	// First let the Sentinel settle on the new master: switched to it and
	// heard it answer a PING since. Should it take the new master for down
	// while the empty old one is up and not yet converted, quorum 1 promotes
	// the empty one and the new master resyncs from it: every token is lost,
	// in Redis, whatever the client does (seen twice in some 75 runs with
	// down-after 1000 ms and Sentinel's default timers, the restart coming
	// before Sentinel had reconnected to the new master). That is why
	// Redis's replication docs warn against restarting a master without
	// persistence automatically.
	waitUntil(t, 10*time.Second, "the Sentinel to settle on the new master", func() bool {
		m, err := sc.Master(ctx, "mymaster").Result()
		return err == nil && m["port"] == strconv.Itoa(replica.Port) && m["flags"] == "master" &&
			m["role-reported"] == "master" && m["last-ping-sent"] == "0"
	})
	restarted := time.Now()
	if err := master.Restart(); err != nil {
		t.Fatal(err)
	}
	var written []token
	for n := 0; ; n++ {
		if errs := checkAll("while the old master rejoins"); len(errs) > 0 {
			t.Fatal(errs)
		}
		tk := token{name: fmt.Sprint("c", n)}
		if err := timed("saving "+tk.name, func() error { return s.SaveTokens(ctx, issue(tk.name, "", "")) }); err != nil {
			t.Fatalf("saving %s while the old master rejoins: %v", tk.name, err)
		}
		written = append(written, tk)
		r := roleOf(ctx, rawM)
		if len(r) >= 4 && r[0] == "slave" && r[2] == int64(replica.Port) && r[3] == "connected" {
			break
		}
		if time.Since(restarted) > 20*time.Second {
			t.Fatalf("the old master is not a synced replica of the new one 20s after its restart: ROLE %v", r)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("the old master was a synced replica %v after its restart", time.Since(restarted).Round(time.Millisecond))
	live = append(live, written...)
	if errs := checkAll("after the old master rejoined"); len(errs) > 0 {
		t.Fatal(errs)
	}
	// What was written after the failover reached the old master by
	// replication.
	replicated(rawR, rawM, "old master, now a replica")
	if addr, err := sc.GetMasterAddrByName(ctx, "mymaster").Result(); err != nil || len(addr) != 2 || addr[1] != strconv.Itoa(replica.Port) {
		t.Fatalf("after the old master rejoined, the Sentinel names %v (%v) as master, want the former replica on port %d", addr, err, replica.Port)
	}
	t.Logf("done %v after the test began", time.Since(begin).Round(time.Millisecond))
}

// waitUntil polls cond every 50 ms and fails t if it is not true within d.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", d, what)
		}
	}
}

// roleOf is the server's ROLE reply ("master", …, or "slave", host, port,
// link state, offset), or nil when it does not answer.
func roleOf(ctx context.Context, c *redis.Client) []any {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	r, _ := c.Do(ctx, "ROLE").Slice()
	return r
}

// A Redis that accepts connections but does not answer (CLIENT PAUSE plays
// a hung server or a black-holed network): every store call gives up within
// its bound instead of hanging the request.
func TestRedisHungServerAnswersWithinBound(t *testing.T) {
	srv := redistest.Start(t)
	s := openRedisTest(t, srv.URL(), RedisOptions{})
	ctx := context.Background()
	if err := s.SaveTokens(ctx, issue("a0", "r0", "g0")); err != nil {
		t.Fatal(err)
	}
	raw := rawClient(t, srv)
	if err := raw.Do(ctx, "CLIENT", "PAUSE", "4000", "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	for _, op := range []struct {
		name string
		run  func() error
	}{
		{"GetAccess", func() error { _, err := s.GetAccess(ctx, HashOf("a0")); return err }},
		{"SaveTokens", func() error { return s.SaveTokens(ctx, issue("a1", "r1", "g1")) }},
		{"RotateRefresh", func() error {
			_, _, _, err := s.RotateRefresh(ctx, HashOf("r0"), accept, issue("a2", "r2", ""), false)
			return err
		}},
	} {
		start := time.Now()
		err := op.run()
		took := time.Since(start)
		if err == nil || errors.Is(err, ErrNotFound) {
			t.Errorf("%s on a hung Redis: %v, want a backend error", op.name, err)
		}
		if took > 2*time.Second {
			t.Errorf("%s on a hung Redis took %v, want under 2s", op.name, took)
		}
		t.Logf("%s gave up after %v: %v", op.name, took.Round(time.Millisecond), err)
	}
	_ = raw.Do(ctx, "CLIENT", "UNPAUSE").Err() // else the pause ends by itself
	deadline := time.Now().Add(8 * time.Second)
	for {
		_, err := s.GetAccess(ctx, HashOf("a0"))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("store did not recover after the pause: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRedisFailureCountersAreShared: brute-force limits hold across instances.
func TestRedisFailureCountersAreShared(t *testing.T) {
	srv := redistest.Start(t)
	a := openRedisTest(t, srv.URL(), RedisOptions{})
	b := openRedisTest(t, srv.URL(), RedisOptions{})
	ctx := context.Background()
	now := time.Now()
	a.now = func() time.Time { return now }
	b.now = func() time.Time { return now }
	keys := []string{"user\x00alice\x00198.51.100.7", "ip\x00198.51.100.7"}
	for i := range 3 {
		st := a
		if i%2 == 1 {
			st = b
		}
		if w, err := st.TakeFailure(ctx, keys, 3, 10*time.Second); err != nil || w != 0 {
			t.Fatalf("failure %d: wait %v, %v", i, w, err)
		}
	}
	w, err := b.TakeFailure(ctx, keys, 3, 10*time.Second)
	if err != nil || w <= 0 || w > 10*time.Second {
		t.Fatalf("after 3 failures on two instances: wait %v, %v", w, err)
	}
	// A refused take took nothing from the other keys: another user from
	// the same address is refused by the address's bucket, but a key of its
	// own was not charged.
	if w, _ := a.TakeFailure(ctx, []string{"user\x00alice\x00203.0.113.9"}, 3, 10*time.Second); w != 0 {
		t.Fatal("another IP is limited by someone else's failures")
	}
	// A refund (the password was right) gives one failure back.
	if err := a.RefundFailure(ctx, keys, 3, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if w, err := b.TakeFailure(ctx, keys, 3, 10*time.Second); err != nil || w != 0 {
		t.Fatalf("after a refund: wait %v, %v", w, err)
	}
	if w, _ := b.TakeFailure(ctx, keys, 3, 10*time.Second); w <= 0 {
		t.Fatal("the refund gave back more than one failure")
	}
	now = now.Add(10 * time.Second)
	if w, _ := a.TakeFailure(ctx, keys, 3, 10*time.Second); w != 0 {
		t.Fatalf("still limited after Retry-After: %v", w)
	}
	n, err := a.c.Keys(ctx, a.prefix+"f:*").Result()
	if err != nil || len(n) != 3 {
		t.Fatalf("counter keys %v, %v", n, err)
	}
	for _, k := range n {
		if ttl, _ := a.c.PTTL(ctx, k).Result(); ttl <= 0 {
			t.Fatalf("counter %s never expires (%v)", k, ttl)
		}
		if strings.Contains(k, "alice") {
			t.Fatal("a username is in a Redis key")
		}
	}
	// Refunding a full bucket forgets it.
	for range 3 {
		if err := a.RefundFailure(ctx, []string{"user\x00alice\x00203.0.113.9"}, 3, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := a.c.Keys(ctx, a.prefix+"f:*").Result(); len(n) != 2 {
		t.Fatalf("a refilled counter is kept: %v", n)
	}
}

// TestRedisFailureTakeIsAtomic: 200 simultaneous takes from two instances
// get exactly the burst (finding 2 of the security review: a check made
// before the hash let every simultaneous guess through).
func TestRedisFailureTakeIsAtomic(t *testing.T) {
	srv := redistest.Start(t)
	a := openRedisTest(t, srv.URL(), RedisOptions{})
	b := openRedisTest(t, srv.URL(), RedisOptions{})
	keys := []string{"user\x00bob\x00198.51.100.8", "ip\x00198.51.100.8"}
	var wg sync.WaitGroup
	var granted, refused atomic.Int64
	for i := range 200 {
		st := a
		if i%2 == 1 {
			st = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			w, err := st.TakeFailure(context.Background(), keys, 10, time.Hour)
			switch {
			case err != nil:
				t.Error(err)
			case w == 0:
				granted.Add(1)
			default:
				refused.Add(1)
			}
		}()
	}
	wg.Wait()
	if granted.Load() != 10 || refused.Load() != 190 {
		t.Fatalf("200 simultaneous takes with a burst of 10: %d granted, %d refused", granted.Load(), refused.Load())
	}
}
