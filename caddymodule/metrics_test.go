package caddymodule

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/oauth2gate/oauth2gate/authz/gateway"
	"github.com/oauth2gate/oauth2gate/authz/metrics"
)

// metricValue reads one counter of the default metrics by name and label.
func metricValue(t testing.TB, name, label, value string) float64 {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := metrics.Default.Register(reg); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.Metric {
			for _, lp := range m.Label {
				if lp.GetName() == label && lp.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// TestGuardMetrics: each decision is counted by outcome, and a cached
// token's lookup as a hit, a first lookup as a miss.
func TestGuardMetrics(t *testing.T) {
	f := newGuardFixture(t)
	tok := f.issue(t, "write") // no read: GET needs read
	good := f.issue(t, "read")
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
	type snap struct{ pass, noTok, invTok, scope, hit, miss float64 }
	read := func() snap {
		return snap{
			metricValue(t, "oauth2gate_guard_requests_total", "outcome", "pass"),
			metricValue(t, "oauth2gate_guard_requests_total", "outcome", "no_token"),
			metricValue(t, "oauth2gate_guard_requests_total", "outcome", "invalid_token"),
			metricValue(t, "oauth2gate_guard_requests_total", "outcome", "insufficient_scope"),
			metricValue(t, "oauth2gate_cache_lookups_total", "result", "hit"),
			metricValue(t, "oauth2gate_cache_lookups_total", "result", "miss"),
		}
	}
	before := read()
	serve := func(r *http.Request) {
		if err := f.guard.ServeHTTP(httptest.NewRecorder(), r, next); err != nil {
			t.Fatal(err)
		}
	}
	serve(guardRequest(good)) // miss, pass
	f.cache.Wait()
	serve(guardRequest(good))                                  // hit, pass
	serve(guardRequest(tok))                                   // miss, insufficient_scope
	serve(guardRequest("not-a-token-we-issued"))               // miss, invalid_token
	serve(httptest.NewRequest(http.MethodGet, "/orders", nil)) // no token
	after := read()
	got := snap{after.pass - before.pass, after.noTok - before.noTok, after.invTok - before.invTok,
		after.scope - before.scope, after.hit - before.hit, after.miss - before.miss}
	want := snap{pass: 2, noTok: 1, invTok: 1, scope: 1, hit: 1, miss: 3}
	if got != want {
		t.Fatalf("metric deltas %+v, want %+v", got, want)
	}
}

// TestGuardMetricsNoAllocation: counting a decision allocates nothing; the
// guarded hot path allocates as much with metrics as without.
func TestGuardMetricsNoAllocation(t *testing.T) {
	f := newGuardFixture(t)
	reqs, auth := f.warmRequests(t, 16)
	w := httptest.NewRecorder()
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
	i := 0
	run := func() {
		r := reqs[i%len(reqs)]
		r.Header["Authorization"] = auth[i%len(reqs)]
		i++
		if err := f.guard.ServeHTTP(w, r, next); err != nil {
			t.Fatal(err)
		}
	}
	with := testing.AllocsPerRun(500, run)
	f.guard.guard = withoutObserver(f)
	without := testing.AllocsPerRun(500, run)
	if with != without {
		t.Fatalf("allocations per request: %v with metrics, %v without", with, without)
	}
	if n := testing.AllocsPerRun(100, func() { metrics.Default.Observe(gateway.OutcomePass, gateway.LookupHit) }); n != 0 {
		t.Fatalf("Observe allocates %v", n)
	}
}

func withoutObserver(f *guardFixture) *gateway.Guard {
	return gateway.New(f.srv, *f.guard.guard.Rules(), gateway.Options{QueryToken: true, FormToken: true})
}

// BenchmarkGuardHandlerMetrics is BenchmarkGuardHandler with the metrics on
// and off, side by side in one run.
func BenchmarkGuardHandlerMetrics(b *testing.B) {
	for _, on := range []bool{true, false} {
		name := "on"
		if !on {
			name = "off"
		}
		b.Run(name, func(b *testing.B) {
			f := newGuardFixture(b)
			if !on {
				f.guard.guard = withoutObserver(f)
			}
			const n = 1024
			reqs, auth := f.warmRequests(b, n)
			w := httptest.NewRecorder()
			next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil })
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				r := reqs[i%n]
				r.Header["Authorization"] = auth[i%n]
				if err := f.guard.ServeHTTP(w, r, next); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestGuardMetricsCountClaimRefusals: a token refused by a claim line is
// counted as insufficient_scope, never as a pass.
func TestGuardMetricsCountClaimRefusals(t *testing.T) {
	f := newGuardFixture(t)
	g := &Guard{
		MethodScopes: []MethodScope{{Methods: []string{"GET"}, Scopes: []string{"read"}}},
		Claims:       []ClaimRule{{Name: "tenant", Values: []string{"acme"}}},
	}
	if err := g.setup(f.srv); err != nil {
		t.Fatal(err)
	}
	tok := f.issue(t, "read") // our own tokens carry no tenant claim
	passBefore := metricValue(t, "oauth2gate_guard_requests_total", "outcome", "pass")
	scopeBefore := metricValue(t, "oauth2gate_guard_requests_total", "outcome", "insufficient_scope")
	reached := false
	next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { reached = true; return nil })
	w := httptest.NewRecorder()
	if err := g.ServeHTTP(w, guardRequest(tok), next); err != nil {
		t.Fatal(err)
	}
	if reached || w.Code != http.StatusForbidden {
		t.Fatalf("a token without the claim: %d, upstream reached %v", w.Code, reached)
	}
	if d := metricValue(t, "oauth2gate_guard_requests_total", "outcome", "pass") - passBefore; d != 0 {
		t.Fatalf("a claim refusal counted %v passes", d)
	}
	if d := metricValue(t, "oauth2gate_guard_requests_total", "outcome", "insufficient_scope") - scopeBefore; d != 1 {
		t.Fatalf("a claim refusal counted %v insufficient_scope, want 1", d)
	}
}
