package tests

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestCrashUnderIssuingLoadLosesNoToken: while clients are being issued
// tokens, Caddy is killed with SIGKILL and started again on the same store;
// every token a client received must still be valid (introspection says
// active). RFC 6749 §5.1: a token the server answered with must hold.
func TestCrashUnderIssuingLoadLosesNoToken(t *testing.T) {
	t.Parallel()
	g := startGuardGate(t, guardOpts{Settings: "failure_limit off"})
	var mu sync.Mutex
	var received []string
	var stop atomic.Bool
	var wg sync.WaitGroup
	deadline := time.Now().Add(10 * time.Second)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5000 && !stop.Load() && time.Now().Before(deadline); i++ {
				r, err := g.in.send(tokenCall{Form: form("grant_type", "client_credentials", "scope", "read"), Basic: basic(g.svc.ID, g.svc.Secret)})
				if err != nil {
					return // the process is gone
				}
				if r.Status == 200 {
					if tok := r.str("access_token"); tok != "" {
						mu.Lock()
						received = append(received, tok)
						mu.Unlock()
					}
				}
			}
		}()
	}
	// Let the load run, then kill -9 in the middle of it.
	for time.Now().Before(deadline) {
		mu.Lock()
		n := len(received)
		mu.Unlock()
		if n >= 500 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	g.in.kill()
	stop.Store(true)
	wg.Wait()
	if len(received) < 100 {
		t.Fatalf("only %d tokens issued before the kill", len(received))
	}
	g.in.start()
	lost := 0
	for _, tok := range received {
		r := g.in.token(t, tokenCall{Path: "/introspect", Form: form("token", tok), Basic: basic(g.svc.ID, g.svc.Secret)})
		if r.Status != 200 || r.JSON["active"] != true {
			lost++
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d tokens a client received were lost by kill -9", lost, len(received))
	}
	t.Logf("%d tokens issued under load before kill -9, all valid after restart", len(received))
}

// TestReloadUnderGuardLoad: `caddy reload` with a changed configuration while
// clients call a guarded API: no request fails, no token is lost.
func TestReloadUnderGuardLoad(t *testing.T) {
	t.Parallel()
	g := startGuardGate(t, guardOpts{Settings: "failure_limit off"})
	toks := make([]string, 20)
	for i := range toks {
		toks[i] = g.ccToken(t, "read")
	}
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20000 && ctx.Err() == nil; i++ {
				r, err := g.send(apiCall{Path: "/rw/orders", Bearer: toks[(w*7+i)%len(toks)]})
				if err != nil || r.Status != 200 {
					failed.Add(1)
					if err != nil {
						firstErr.CompareAndSwap(nil, err.Error())
					} else {
						firstErr.CompareAndSwap(nil, r.String())
					}
					continue
				}
				ok.Add(1)
			}
		}()
	}
	// moreServed waits until n more guarded requests than now have succeeded (bounded), so the
	// load runs across each step however loaded the machine is.
	moreServed := func(n int64, what string) {
		t.Helper()
		want := ok.Load() + n
		for dl := time.Now().Add(20 * time.Second); ok.Load() < want; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(dl) || ctx.Err() != nil {
				t.Fatalf("fewer than %d guarded requests succeeded %s (%d failed; first: %v)", n, what, failed.Load(), firstErr.Load())
			}
		}
	}
	moreServed(50, "before the reload")
	// A real change: one more client, and a different realm on a route.
	cf := g.in.caddyfileText()
	changed := strings.Replace(cf, "oauth2 {", "oauth2 {\n\t\tclient reloaded-client {\n\t\t\tpublic\n\t\t\tgrants password\n\t\t}", 1)
	if changed == cf {
		t.Fatal("could not change the Caddyfile")
	}
	if err := os.WriteFile(g.in.file, []byte(changed), 0o600); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		out, err := exec.Command(caddyBin, "reload", "--config", g.in.file, "--adapter", "caddyfile",
			"--address", fmt.Sprintf("127.0.0.1:%d", g.in.adminPort), "--force").CombinedOutput()
		if err != nil {
			t.Fatalf("caddy reload #%d: %v\n%s", i+1, err, out)
		}
		moreServed(50, fmt.Sprintf("after reload #%d", i+1))
	}
	cancel()
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d guarded requests failed across the reloads; first: %v", failed.Load(), failed.Load()+ok.Load(), firstErr.Load())
	}
	if ok.Load() < 100 {
		t.Fatalf("only %d requests ran", ok.Load())
	}
	// No token lost, and the new configuration is live.
	for _, tok := range toks {
		g.do(t, apiCall{Path: "/rw/orders", Bearer: tok}).mustPass(t)
	}
	r := g.in.token(t, tokenCall{Form: url.Values{"grant_type": {"password"}, "client_id": {"reloaded-client"}, "username": {g.alice.Name}, "password": {g.alice.Password}}})
	if r.Status != 200 {
		t.Fatalf("the reloaded config is not live: %v", r)
	}
	t.Logf("%d guarded requests across 2 reloads, none failed", ok.Load())
}
