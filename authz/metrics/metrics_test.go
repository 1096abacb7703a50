package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oauth2gate/oauth2gate/authz/gateway"
	"github.com/oauth2gate/oauth2gate/authz/tokenstore"
)

// TestMetricsOff: OAUTH2GATE_METRICS=off (any case, spaces around) gives no
// collectors at all: every count is a no-op on the nil *Metrics, a guard gets
// no Observer (not a nil pointer in an interface, which would panic on its
// first request), a store is not wrapped, and a registry stays empty. Any
// other value keeps them on.
func TestMetricsOff(t *testing.T) {
	for _, v := range []string{"off", "OFF", " Off "} {
		if m := defaultMetrics(v); m != nil {
			t.Errorf("%s=%q: metrics still on", EnvSwitch, v)
		}
	}
	for _, v := range []string{"", "on", "0", "false", "of"} {
		if m := defaultMetrics(v); m == nil {
			t.Errorf("%s=%q: metrics turned off", EnvSwitch, v)
		}
	}
	var m *Metrics
	m.Issued("client_credentials", "bench")
	m.TokenError("invalid_client")
	m.Revoked(ReasonAdmin, 3)
	m.RateLimited()
	m.CacheLookup(gateway.LookupHit)
	if o := m.Observer(); o != nil {
		t.Errorf("a nil *Metrics gives the guard the observer %#v", o)
	}
	var st tokenstore.Store = &someStore{}
	if got := m.WrapStore(st); got != st {
		t.Errorf("with the metrics off the store is wrapped: %T", got)
	}
	reg := prometheus.NewRegistry()
	if err := m.Register(reg); err != nil {
		t.Fatal(err)
	}
	if mfs, err := reg.Gather(); err != nil || len(mfs) != 0 {
		t.Errorf("with the metrics off the registry has %d families (%v)", len(mfs), err)
	}
	on := New()
	if on.Observer() == nil {
		t.Errorf("metrics on: no observer for the guard")
	}
	if _, ok := on.WrapStore(st).(*Store); !ok {
		t.Errorf("metrics on: the store is not timed")
	}
}

// someStore is a Store whose methods are never called here.
type someStore struct{ tokenstore.Store }
