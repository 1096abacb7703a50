package tests

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oauth2gate/oauth2gate/internal/proclog"
)

// hydraVersion is the Ory Hydra that tests/hydra/build.sh builds (tests/install-deps.sh runs it).
const hydraVersion = "v2.3.0"

// hydraBin finds the cached Hydra binary, as build.sh names it.
func hydraBin(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("OAUTH2GATE_CACHE")
	if dir == "" {
		c, err := os.UserCacheDir()
		if err != nil {
			t.Fatal(err)
		}
		dir = filepath.Join(c, "oauth2gate")
	}
	bin := filepath.Join(dir, "hydra-"+hydraVersion)
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("Ory Hydra %s is not built (%v): run tests/install-deps.sh (or tests/hydra/build.sh), which `make test` does", hydraVersion, err)
	}
	return bin
}

// hydra is one running `hydra serve all --dev` with an in-memory database.
type hydra struct {
	public, admin string // http://127.0.0.1:<port>
	log           *proclog.Buffer
	cmd           *exec.Cmd
	exited        chan struct{}
}

func startHydra(t *testing.T, strategy string) *hydra {
	t.Helper()
	ports := freePorts(t, 2)
	h := &hydra{
		public: fmt.Sprintf("http://127.0.0.1:%d", ports[0]),
		admin:  fmt.Sprintf("http://127.0.0.1:%d", ports[1]),
		log:    &proclog.Buffer{},
		exited: make(chan struct{}),
	}
	cmd := exec.Command(hydraBin(t), "serve", "all", "--dev")
	cmd.Env = append(os.Environ(),
		"DSN=memory",
		"SECRETS_SYSTEM="+randomSecret("hydra-system-"),
		fmt.Sprintf("SERVE_PUBLIC_PORT=%d", ports[0]), "SERVE_PUBLIC_HOST=127.0.0.1",
		fmt.Sprintf("SERVE_ADMIN_PORT=%d", ports[1]), "SERVE_ADMIN_HOST=127.0.0.1",
		"URLS_SELF_ISSUER="+h.public,
		"STRATEGIES_ACCESS_TOKEN="+strategy,
		"LOG_LEVEL=warn",
	)
	cmd.Stdout, cmd.Stderr = h.log, h.log
	cmd.Dir = t.TempDir()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h.cmd = cmd
	go func() { _ = cmd.Wait(); close(h.exited) }()
	t.Cleanup(func() {
		h.stop()
		if t.Failed() {
			t.Logf("hydra (%s) log:\n%s", strategy, proclog.Tail(h.log.String(), 8000))
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(h.admin + "/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return h
			}
		}
		select {
		case <-h.exited:
			t.Fatalf("hydra exited at start-up:\n%s", h.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("hydra not ready within 30s:\n%s", h.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (h *hydra) stop() {
	if h.cmd == nil {
		return
	}
	_ = h.cmd.Process.Signal(os.Interrupt)
	select {
	case <-h.exited:
	case <-time.After(shutdownTimeout):
		_ = h.cmd.Process.Kill()
		<-h.exited
	}
	h.cmd = nil
}

// client registers a client_credentials client through Hydra's admin API.
func (h *hydra) client(t *testing.T, id, secret, scope string, audience ...string) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{
		"client_id": id, "client_secret": secret, "grant_types": []string{"client_credentials"},
		"scope": scope, "audience": audience, "token_endpoint_auth_method": "client_secret_basic",
	})
	resp, err := http.Post(h.admin+"/admin/clients", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("hydra: creating client %s: %d", id, resp.StatusCode)
	}
}

// token is a client_credentials access token from Hydra.
func (h *hydra) token(t *testing.T, id, secret, scope, audience string) string {
	t.Helper()
	f := url.Values{"grant_type": {"client_credentials"}, "scope": {scope}}
	if audience != "" {
		f.Set("audience", audience)
	}
	req, _ := http.NewRequest(http.MethodPost, h.public+"/oauth2/token", strings.NewReader(f.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(id, secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != 200 || out.AccessToken == "" {
		t.Fatalf("hydra token: %d %v", resp.StatusCode, err)
	}
	return out.AccessToken
}

func (h *hydra) revoke(t *testing.T, id, secret, tok string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, h.public+"/oauth2/revoke", strings.NewReader(url.Values{"token": {tok}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(id, secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("hydra revoke: %d", resp.StatusCode)
	}
}

// TestHydra: Ory Hydra, built from its module and run for real, as the identity provider of a
// Caddy that only guards: its JWT access tokens (strategies.access_token jwt) checked against
// its JWKS found by discovery, its opaque tokens by RFC 7662 introspection.
func TestHydra(t *testing.T) {
	hj := startHydra(t, "jwt")
	ho := startHydra(t, "opaque")
	secret := randomSecret("hydra-svc-")
	for _, h := range []*hydra{hj, ho} {
		h.client(t, "svc", secret, "read write", "api")
	}
	upstream := startEchoUpstream(t)
	gate := newInstance(t)
	cfg := "{\n" + gate.globalOptions() + fmt.Sprintf(`	oauth2 {
		trust %[1]s {
			audience api
		}
		trust %[2]s {
			audience api
			introspection %[3]s/admin/oauth2/introspect {
				client_id gate
				client_secret unused-by-hydra-admin
			}
			cache_ttl 1s
		}
	}
}

%[4]s {
	handle /jwt/* {
		oauth2_guard read {
			issuer %[1]s
			header_up X-Iss {oauth2.issuer}
		}
		reverse_proxy %[5]s
	}
	handle /opaque/* {
		oauth2_guard read {
			issuer %[2]s
			header_up X-Iss {oauth2.issuer}
		}
		reverse_proxy %[5]s
	}
	handle {
		respond "not guarded" 404
	}
}
`, hj.public, ho.public, ho.admin, gate.base, upstream)
	if err := os.WriteFile(gate.file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gate.cleanup)
	gate.start()
	g := &guardGate{in: gate, api: gate.base}

	t.Run("JWT strategy", func(t *testing.T) {
		tok := hj.token(t, "svc", secret, "read", "api")
		gate.remember("access_token", tok)
		// The keys load in the background after start-up: 503 until then, never a pass.
		r := waitReply(t, g, apiCall{Path: "/jwt/x", Bearer: tok}, "Hydra's keys", func(r *apiReply) bool { return r.Status != 503 })
		echo := r.mustPass(t)
		if echo.Header.Get("X-Auth-Subject") != "svc" || echo.Header.Get("X-Auth-Scope") != "read" || echo.Header.Get("X-Iss") != hj.public {
			t.Fatalf("identity headers from Hydra's JWT (scp array): %v", echo.Header)
		}
		g.do(t, apiCall{Path: "/jwt/x", Bearer: hj.token(t, "svc", secret, "write", "api")}).mustDeny(t, denial{Status: 403, Code: "insufficient_scope", Scope: "read"})
		g.do(t, apiCall{Path: "/jwt/x", Bearer: hj.token(t, "svc", secret, "read", "")}).mustDeny(t, denial{Status: 401, Code: "invalid_token"}) // no aud
		parts := strings.Split(tok, ".")
		sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
		sig[0] ^= 1
		g.do(t, apiCall{Path: "/jwt/x", Bearer: parts[0] + "." + parts[1] + "." + base64.RawURLEncoding.EncodeToString(sig)}).mustDeny(t, denial{Status: 401, Code: "invalid_token"})
		// Hydra's JWT is not accepted where only the opaque issuer is.
		g.do(t, apiCall{Path: "/opaque/x", Bearer: tok}).mustDeny(t, denial{Status: 401, Code: "invalid_token"})
	})

	t.Run("opaque strategy by introspection", func(t *testing.T) {
		tok := ho.token(t, "svc", secret, "read", "api")
		gate.remember("access_token", tok)
		echo := g.do(t, apiCall{Path: "/opaque/x", Bearer: tok}).mustPass(t)
		if echo.Header.Get("X-Auth-Subject") != "svc" || echo.Header.Get("X-Iss") != ho.public {
			t.Fatalf("identity headers from Hydra's introspection: %v", echo.Header)
		}
		g.do(t, apiCall{Path: "/opaque/x", Bearer: ho.token(t, "svc", secret, "write", "api")}).mustDeny(t, denial{Status: 403, Code: "insufficient_scope", Scope: "read"})
		g.do(t, apiCall{Path: "/opaque/x", Bearer: ho.token(t, "svc", secret, "read", "")}).mustDeny(t, denial{Status: 401, Code: "invalid_token"}) // aud [] is not api
		g.do(t, apiCall{Path: "/opaque/x", Bearer: tok + "x"}).mustDeny(t, denial{Status: 401, Code: "invalid_token"})

		ho.revoke(t, "svc", secret, tok)
		start := time.Now()
		waitReply(t, g, apiCall{Path: "/opaque/x", Bearer: tok}, "the revoked token's 401", func(r *apiReply) bool { return r.Status == 401 }).
			mustDeny(t, denial{Status: 401, Code: "invalid_token"})
		if d := time.Since(start); d > 3*time.Second {
			t.Fatalf("a token Hydra revoked passed for %v with cache_ttl 1s", d)
		}

		fresh := ho.token(t, "svc", secret, "read", "api")
		ho.stop()
		r, err := g.send(apiCall{Path: "/opaque/x", Bearer: fresh})
		if err != nil {
			t.Fatal(err)
		}
		must503(t, r, "Hydra down")
	})
}
