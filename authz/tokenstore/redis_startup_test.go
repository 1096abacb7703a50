package tokenstore

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/oauth2gate/oauth2gate/authz/tokenstore/redistest"
)

// stall makes srv answer nothing for d: DEBUG SLEEP blocks Redis's one
// command thread, as a busy disk under appendfsync always or a dataset still
// loading does. It returns once the sleep has begun.
func stall(t *testing.T, srv *redistest.Server, d time.Duration) {
	t.Helper()
	raw := rawClient(t, srv)
	ctx := context.Background()
	if err := raw.Ping(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	slept := make(chan error, 1)
	go func() {
		slept <- raw.Do(context.Background(), "DEBUG", "SLEEP", strconv.FormatFloat(d.Seconds(), 'f', 3, 64)).Err()
	}()
	// The sleep has begun when a second connection's PING goes unanswered.
	probe := redis.NewClient(&redis.Options{Addr: srv.Addr(), ReadTimeout: 50 * time.Millisecond, MaxRetries: -1})
	defer probe.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		select {
		case err := <-slept:
			t.Fatalf("DEBUG SLEEP returned before it was seen stalling: %v", err)
		default:
		}
		if err := probe.Ping(ctx).Err(); err != nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("DEBUG SLEEP never stalled the server")
		}
	}
}

// TestRedisStartupRidesOutASlowFirstAnswer: Caddy starting while its Redis
// answers its first commands late (seen under load with appendfsync always:
// "loading session key: i/o timeout") opens the store and reads its secrets
// once Redis answers, within the start-up window, instead of failing.
func TestRedisStartupRidesOutASlowFirstAnswer(t *testing.T) {
	srv := redistest.Start(t, "--enable-debug-command", "local")
	opts := RedisOptions{KeyPrefix: "slow:", Timeout: 100 * time.Millisecond, ReplayWindow: time.Hour}

	stall(t, srv, 1500*time.Millisecond)
	s, err := OpenRedis(srv.URL(), opts)
	if err != nil {
		t.Fatalf("OpenRedis while Redis stalls 1.5s (timeout 100ms, window %v): %v", DefaultStartupWindow, err)
	}
	defer s.Close()

	stall(t, srv, 1500*time.Millisecond)
	key, err := s.Secret(context.Background(), "session_key", func() ([]byte, error) { return []byte("generated-once"), nil })
	if err != nil || string(key) != "generated-once" {
		t.Fatalf("Secret while Redis stalls: %q, %v", key, err)
	}
	stall(t, srv, 1500*time.Millisecond)
	if err := s.SetSecret(context.Background(), "session_key", []byte("replaced")); err != nil {
		t.Fatalf("SetSecret while Redis stalls: %v", err)
	}
	again, err := s.Secret(context.Background(), "session_key", func() ([]byte, error) { return []byte("never"), nil })
	if err != nil || string(again) != "replaced" {
		t.Fatalf("Secret after the stalls: %q, %v", again, err)
	}
}

// TestRedisStartupWindowIsBounded: a Redis that never answers still fails
// start-up, within the window and with the message naming the server.
func TestRedisStartupWindowIsBounded(t *testing.T) {
	srv := redistest.Start(t)
	srv.Stop()
	start := time.Now()
	_, err := OpenRedis(srv.URL(), RedisOptions{Timeout: 100 * time.Millisecond, StartupWindow: 1500 * time.Millisecond})
	took := time.Since(start)
	if err == nil {
		t.Fatal("OpenRedis succeeded with Redis stopped")
	}
	if !strings.Contains(err.Error(), "connecting to redis://127.0.0.1:") {
		t.Errorf("error %q does not name the server", err)
	}
	if took < time.Second || took > 5*time.Second {
		t.Errorf("OpenRedis gave up after %v; want about the 1.5s window", took)
	}
}

// TestRedisStartupDoesNotRetryAWrongPassword: waiting does not mend AUTH.
func TestRedisStartupDoesNotRetryAWrongPassword(t *testing.T) {
	srv := redistest.Start(t, "--requirepass", "right")
	start := time.Now()
	_, err := OpenRedis("redis://:wrong@"+srv.Addr(), RedisOptions{Timeout: 100 * time.Millisecond})
	if err == nil {
		t.Fatal("OpenRedis succeeded with a wrong password")
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("a refused AUTH took %v to fail; it should not be retried", took)
	}
}
