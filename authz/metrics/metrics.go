// Package metrics holds oauth2gate's Prometheus collectors (DESIGN.md,
// "Operating it"). They are process-wide, as Caddy's own HTTP metrics are:
// a config reload gives Caddy a new registry, the same collectors are
// registered in it (Register), and counts go on across reloads.
//
// Label values are bounded: outcomes, lookup results, RFC error codes,
// revocation reasons and store operations are fixed lists, and the client
// label takes only the id of a client the server knows (configured or
// registered), never an id a caller sent.
package metrics

import (
	"errors"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oauth2gate/oauth2gate/authz/gateway"
)

// Revocation reasons (oauth2gate_revocations_total{reason}).
const (
	ReasonRotation = "rotation" // a refresh rotated out its refresh token and access token
	ReasonReplay   = "replay"   // a replayed code or refresh token ended its grant
	ReasonEndpoint = "endpoint" // the /revoke endpoint (RFC 7009)
	ReasonAdmin    = "admin"    // the admin API (a subject, a client, a deleted client)
)

// Metrics are the collectors.
type Metrics struct {
	issued       *prometheus.CounterVec
	tokenErrors  *prometheus.CounterVec
	revocations  *prometheus.CounterVec
	storeSeconds *prometheus.HistogramVec
	rateLimited  prometheus.Counter
	guard        *guardCollector
}

// Default is the process's metrics; Caddy's registries get these. It is
// nil, and every count is skipped, when the environment has
// OAUTH2GATE_METRICS=off: the benchmarks (tests/bench/guard.sh) run a twin
// Caddy that way to measure what the metrics cost.
var Default = defaultMetrics(os.Getenv(EnvSwitch))

// EnvSwitch is the environment variable that turns the metrics off ("off").
const EnvSwitch = "OAUTH2GATE_METRICS"

func defaultMetrics(v string) *Metrics {
	if strings.EqualFold(strings.TrimSpace(v), "off") {
		return nil
	}
	return New()
}

// New makes a set of collectors (tests make their own).
func New() *Metrics {
	return &Metrics{
		issued: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oauth2gate_tokens_issued_total",
			Help: "Successful token responses, by grant type and client.",
		}, []string{"grant", "client"}),
		tokenErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oauth2gate_token_errors_total",
			Help: "Error answers of the token, introspection and revocation endpoints, by RFC 6749 error code.",
		}, []string{"error"}),
		revocations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oauth2gate_revocations_total",
			Help: "Revocations, by reason (rotation, replay, endpoint, admin).",
		}, []string{"reason"}),
		storeSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "oauth2gate_store_seconds",
			Help:    "Token store call latency, by operation.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1},
		}, []string{"op"}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "oauth2gate_rate_limited_total",
			Help: "Attempts refused by the brute-force limits (429).",
		}),
		guard: newGuardCollector(),
	}
}

// Register puts the collectors in reg. A registry that has them already
// (a second app, a module provisioned twice on one config) is left as it is.
func (m *Metrics) Register(reg prometheus.Registerer) error {
	if m == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{m.issued, m.tokenErrors, m.revocations, m.storeSeconds, m.rateLimited, m.guard} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				continue
			}
			return err
		}
	}
	return nil
}

// Issued counts a successful token response. client must be the id of a
// client the server knows.
func (m *Metrics) Issued(grant, client string) {
	if m != nil {
		m.issued.WithLabelValues(grant, client).Inc()
	}
}

// TokenError counts an error answer by its RFC code (a fixed list).
func (m *Metrics) TokenError(code string) {
	if m != nil {
		m.tokenErrors.WithLabelValues(code).Inc()
	}
}

// Revoked counts n revocations for reason.
func (m *Metrics) Revoked(reason string, n int) {
	if m != nil && n > 0 {
		m.revocations.WithLabelValues(reason).Add(float64(n))
	}
}

// RateLimited counts a refusal by the brute-force limits.
func (m *Metrics) RateLimited() {
	if m != nil {
		m.rateLimited.Inc()
	}
}

// StoreObserver is the latency histogram of one store operation.
func (m *Metrics) StoreObserver(op string) prometheus.Observer {
	return m.storeSeconds.WithLabelValues(op)
}

// Since observes the time since start on o.
func Since(o prometheus.Observer, start time.Time) { o.Observe(time.Since(start).Seconds()) }

// Observe implements gateway.Observer: one atomic add per guarded request
// counts both its outcome and its cache lookup. Give a guard m only when m
// is not nil (Observer below).
func (m *Metrics) Observe(o gateway.Outcome, l gateway.Lookup) {
	m.guard.n[o][l].Add(1)
}

// Observer is m as a guard's Observer, or nil (no observer, not a nil
// *Metrics in an interface) when the metrics are off.
func (m *Metrics) Observer() gateway.Observer {
	if m == nil {
		return nil
	}
	return m
}

// CacheLookup counts a cache lookup outside a guard (userinfo,
// introspection through the verifier).
func (m *Metrics) CacheLookup(l gateway.Lookup) {
	if m != nil && l != gateway.LookupNone {
		m.guard.other[l].Add(1)
	}
}

// guardCollector exposes oauth2gate_guard_requests_total{outcome} and
// oauth2gate_cache_lookups_total{result} from one table of counts indexed by
// (outcome, lookup), summed at scrape time.
type guardCollector struct {
	n      [gateway.NumOutcomes][gateway.NumLookups]atomic.Uint64
	other  [gateway.NumLookups]atomic.Uint64
	guard  *prometheus.Desc
	lookup *prometheus.Desc
}

func newGuardCollector() *guardCollector {
	return &guardCollector{
		guard: prometheus.NewDesc("oauth2gate_guard_requests_total",
			"Requests the guard decided, by outcome.", []string{"outcome"}, nil),
		lookup: prometheus.NewDesc("oauth2gate_cache_lookups_total",
			"Token cache lookups, by result (hit, miss).", []string{"result"}, nil),
	}
}

func (c *guardCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.guard
	ch <- c.lookup
}

func (c *guardCollector) Collect(ch chan<- prometheus.Metric) {
	var looked [gateway.NumLookups]uint64
	for o := range gateway.NumOutcomes {
		var sum uint64
		for l := range gateway.NumLookups {
			v := c.n[o][l].Load()
			sum += v
			looked[l] += v
		}
		ch <- prometheus.MustNewConstMetric(c.guard, prometheus.CounterValue, float64(sum), gateway.OutcomeNames[o])
	}
	ch <- prometheus.MustNewConstMetric(c.lookup, prometheus.CounterValue, float64(looked[gateway.LookupHit]+c.other[gateway.LookupHit].Load()), "hit")
	ch <- prometheus.MustNewConstMetric(c.lookup, prometheus.CounterValue, float64(looked[gateway.LookupMiss]+c.other[gateway.LookupMiss].Load()), "miss")
}
