package tests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape reads the admin endpoint's /metrics in the exposition format.
func scrape(t *testing.T, in *instance) map[string]*dto.MetricFamily {
	t.Helper()
	body := adminGet(t, in, "/metrics")
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v\n%s", err, body)
	}
	return mfs
}

// value is the counter (or histogram count) with the given labels; 0 if absent.
func value(mfs map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	mf := mfs[name]
	if mf == nil {
		return 0
	}
	var sum float64
next:
	for _, m := range mf.Metric {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.Label {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			sum += m.Counter.GetValue()
		case m.Histogram != nil:
			sum += float64(m.Histogram.GetSampleCount())
		}
	}
	return sum
}

// TestMetricsAfterKnownSequence: after a known sequence of token requests
// and guarded requests through the real binary, the admin endpoint's
// /metrics holds exactly the counts they make, beside Caddy's own metrics.
func TestMetricsAfterKnownSequence(t *testing.T) {
	g := startGuardGate(t, guardOpts{})
	before := scrape(t, g.in)
	if before["caddy_config_last_reload_successful"] == nil && before["go_goroutines"] == nil {
		t.Fatalf("Caddy's own metrics are missing: not Caddy's registry")
	}

	read := g.ccToken(t, "read")
	g.ccToken(t, "write")
	pw := g.pwToken(t, "read")
	g.in.token(t, g.refreshCall(pw.Refresh)).mustToken(t)
	// errors: a wrong password (invalid_grant), an unknown grant type, a wrong secret
	g.in.token(t, tokenCall{Form: form("grant_type", "password", "username", g.alice.Name, "password", "wrong-"+randomSecret("")), Basic: basic(g.app.ID, g.app.Secret)})
	g.in.token(t, tokenCall{Form: form("grant_type", "urn:nothing"), Basic: basic(g.svc.ID, g.svc.Secret)})
	g.in.token(t, tokenCall{Form: form("grant_type", "client_credentials"), Basic: basic(g.svc.ID, "wrong-"+randomSecret(""))})
	// an unknown client id never becomes a label
	g.in.token(t, tokenCall{Form: form("grant_type", "client_credentials"), Basic: basic("nobody-"+randomSecret(""), "x-"+randomSecret(""))})

	g.do(t, apiCall{Path: "/any/a", Bearer: read}).mustPass(t)
	g.do(t, apiCall{Path: "/any/b", Bearer: read}).mustPass(t)
	g.do(t, apiCall{Path: "/any/c"})                                                     // no token
	g.do(t, apiCall{Path: "/any/d", Bearer: randomSecret("bad")})                        // invalid token
	g.do(t, apiCall{Path: "/admin/x", Bearer: read})                                     // insufficient scope
	g.do(t, apiCall{Path: "/any/e?access_token=" + url.QueryEscape(read), Bearer: read}) // two places: invalid_request

	after := scrape(t, g.in)
	d := func(name string, labels ...string) float64 {
		return value(after, name, labels...) - value(before, name, labels...)
	}
	checks := []struct {
		what string
		got  float64
		want float64
	}{
		{"issued client_credentials svc", d("oauth2gate_tokens_issued_total", "grant", "client_credentials", "client", "svc"), 2},
		{"issued password app", d("oauth2gate_tokens_issued_total", "grant", "password", "client", "app"), 1},
		{"issued refresh_token app", d("oauth2gate_tokens_issued_total", "grant", "refresh_token", "client", "app"), 1},
		{"issued total", d("oauth2gate_tokens_issued_total"), 4},
		{"error invalid_grant", d("oauth2gate_token_errors_total", "error", "invalid_grant"), 1},
		{"error unsupported_grant_type", d("oauth2gate_token_errors_total", "error", "unsupported_grant_type"), 1},
		{"error invalid_client", d("oauth2gate_token_errors_total", "error", "invalid_client"), 2},
		{"guard pass", d("oauth2gate_guard_requests_total", "outcome", "pass"), 2},
		{"guard no_token", d("oauth2gate_guard_requests_total", "outcome", "no_token"), 1},
		{"guard invalid_token", d("oauth2gate_guard_requests_total", "outcome", "invalid_token"), 1},
		{"guard insufficient_scope", d("oauth2gate_guard_requests_total", "outcome", "insufficient_scope"), 1},
		{"guard invalid_request", d("oauth2gate_guard_requests_total", "outcome", "invalid_request"), 1},
		// three tokens looked up (read twice, the bad one, read for /admin): 4 lookups
		{"cache lookups", d("oauth2gate_cache_lookups_total"), 4},
		{"revocations by rotation", d("oauth2gate_revocations_total", "reason", "rotation"), 1},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: %v, want %v", c.what, c.got, c.want)
		}
	}
	if d("oauth2gate_store_seconds", "op", "save_tokens") < 3 || d("oauth2gate_store_seconds", "op", "rotate_refresh") != 1 || d("oauth2gate_store_seconds", "op", "get_access") < 1 {
		t.Errorf("store latency histogram did not count the calls: save_tokens %v, get_access %v",
			d("oauth2gate_store_seconds", "op", "save_tokens"), d("oauth2gate_store_seconds", "op", "get_access"))
	}
	for _, m := range after["oauth2gate_tokens_issued_total"].GetMetric() {
		for _, lp := range m.Label {
			if lp.GetName() == "client" && lp.GetValue() != "svc" && lp.GetValue() != "app" {
				t.Errorf("client label %q is not a configured client", lp.GetValue())
			}
		}
	}

	// A reload neither panics on registering again nor resets the counts.
	reloadSame(t, g.in)
	again := scrape(t, g.in)
	if got, want := value(again, "oauth2gate_tokens_issued_total"), value(after, "oauth2gate_tokens_issued_total"); got != want {
		t.Errorf("after a reload tokens_issued_total is %v, want %v", got, want)
	}
}

// reloadSame loads the instance's Caddyfile again through the admin API.
func reloadSame(t *testing.T, in *instance) {
	t.Helper()
	stdout, stderr, err := caddyCLI(t, in.home, "reload", "--config", in.file, "--adapter", "caddyfile", "--address", fmt.Sprintf("127.0.0.1:%d", in.adminPort), "--force")
	if err != nil {
		t.Fatalf("caddy reload: %v\n%s\n%s", err, stdout, stderr)
	}
}

// TestMetricsScrapedByPrometheus: a real Prometheus server scrapes the
// admin endpoint, and its query API returns our counter's value.
func TestMetricsScrapedByPrometheus(t *testing.T) {
	prom, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("prometheus is not installed (tests/install-deps.sh installs Debian's): %v", err)
	}
	g := startGuardGate(t, guardOpts{})
	for range 3 {
		g.ccToken(t, "read")
	}
	want := value(scrape(t, g.in), "oauth2gate_tokens_issued_total", "grant", "client_credentials", "client", "svc")

	dir := t.TempDir()
	port := freePorts(t, 1)[0]
	cfg := fmt.Sprintf("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: caddy\n    static_configs:\n      - targets: ['127.0.0.1:%d']\n", g.in.adminPort)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(prom, "--config.file="+filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path="+filepath.Join(dir, "data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port))
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	q := fmt.Sprintf("http://127.0.0.1:%d/api/v1/query?query=%s", port,
		url.QueryEscape(`oauth2gate_tokens_issued_total{grant="client_credentials",client="svc"}`))
	deadline := time.Now().Add(60 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		if got, body, ok := promQuery(q); ok {
			last = body
			if got == want {
				return
			}
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("Prometheus never returned %v for our counter; last answer %s\nprometheus log:\n%s", want, last, log.String())
}

// promQuery runs an instant query and returns the first sample's value.
func promQuery(q string) (float64, string, bool) {
	resp, err := http.Get(q)
	if err != nil {
		return 0, "", false
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var r struct {
		Status string `json:"status"`
		Data   struct {
			Result []struct {
				Value []any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if json.Unmarshal(body, &r) != nil || r.Status != "success" || len(r.Data.Result) == 0 || len(r.Data.Result[0].Value) != 2 {
		return 0, string(body), false
	}
	s, _ := r.Data.Result[0].Value[1].(string)
	v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	return v, string(body), err == nil
}
