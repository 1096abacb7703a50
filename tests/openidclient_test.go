package tests

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oauth2gate/oauth2gate/internal/proclog"
)

// TestOpenIDClient runs panva's openid-client (npm), the strictest common OIDC relying party
// library, against the real binary: discovery (OIDC and RFC 8414), the code flow with PKCE S256,
// state, nonce and iss (RFC 9207) checks, id_token validation, userinfo, refresh, introspection
// and revocation. The script is tests/oidcclient/check.mjs; this test plays the browser. Whatever
// openid-client rejects is a bug in oauth2gate. Fails when node is not on PATH.
func TestOpenIDClient(t *testing.T) {
	t.Parallel()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatal("node is not on PATH; the openid-client interop check needs Node.js: run tests/install-deps.sh (make test-deps) to install it")
	}
	dir := filepath.Join(repoRoot, "tests", "oidcclient")
	ensureNpmPackage(t, dir, "openid-client")
	for _, c := range []struct{ name, settings string }{
		{"defaults", ""},
		{"JWT access tokens, reuse_grace, pkce_plain off", "access_token {\n\tformat jwt\n}\nrefresh_token {\n\treuse_grace 5s\n}\npkce_plain off"},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			runOpenIDClient(t, node, dir, c.settings)
		})
	}
}

// runOpenIDClient starts Caddy with settings, runs check.mjs against it and checks every step.
func runOpenIDClient(t *testing.T, node, dir, settings string) {
	redirect := fmt.Sprintf("http://127.0.0.1:%d/cb", freePorts(t, 1)[0])
	web := clientSpec{ID: "oidc-web", Secret: randomSecret("oidc-web-"), Grants: "authorization_code refresh_token",
		RedirectURIs: redirect, Scopes: "openid email profile", Name: "openid-client"}
	user := opUser()
	in := startGate(t, gateSpec{Settings: settings, Clients: []clientSpec{web}, Users: []userSpec{user}})

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "check.mjs", in.base, web.ID, web.Secret, redirect)
	cmd.Dir = dir
	cmd.WaitDelay = 5 * time.Second
	stderr := &proclog.Buffer{}
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting node: %v", err)
	}
	waited := false
	wait := func() error {
		if waited {
			return nil
		}
		waited = true
		return cmd.Wait()
	}
	defer func() {
		cancel()
		_ = wait()
	}()

	var steps []string
	var result map[string]any
	var failure string
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		kind, rest, _ := strings.Cut(line, " ")
		switch kind {
		case "STEP":
			steps = append(steps, rest)
		case "AUTHZ":
			au, err := url.Parse(rest)
			if err != nil {
				t.Fatalf("openid-client built an unparsable authorization URL %q: %v", rest, err)
			}
			if au.Host != in.host() || au.Path != in.url("/authorize")[len(in.base):] {
				t.Errorf("authorization URL %s is not the discovered endpoint %s", au, in.url("/authorize"))
			}
			q := au.Query()
			for k, want := range map[string]string{"response_type": "code", "client_id": web.ID, "redirect_uri": redirect, "code_challenge_method": "S256"} {
				if q.Get(k) != want {
					t.Errorf("authorization URL %s = %q, want %q", k, q.Get(k), want)
				}
			}
			for _, k := range []string{"code_challenge", "state", "nonce", "scope"} {
				if q.Get(k) == "" {
					t.Errorf("authorization URL has no %s", k)
				}
			}
			res := in.newBrowser(t).authorizeURL(rest, user.Name, user.Password, "allow")
			mustCode(t, res, redirect, q.Get("state"))
			if res.Redirect.Query().Get("iss") != in.base {
				t.Errorf("callback %s has no iss=%s", res.Redirect.Redacted(), in.base)
			}
			if _, err := fmt.Fprintln(stdin, res.Redirect.String()); err != nil {
				t.Fatalf("writing the callback URL to the script: %v", err)
			}
			_ = stdin.Close()
		case "RESULT":
			if err := json.Unmarshal([]byte(rest), &result); err != nil {
				t.Fatalf("unparsable RESULT line: %v\n%s", err, rest)
			}
		case "ERROR":
			failure = rest
		default:
			t.Logf("check.mjs: %s", line)
		}
	}
	werr := wait()
	if failure != "" {
		t.Fatalf("openid-client rejected oauth2gate: %s\nsteps: %v\nstderr: %s", failure, steps, proclog.Tail(stderr.String(), 4000))
	}
	if werr != nil || result == nil {
		t.Fatalf("check.mjs ended with %v, no result; steps %v\nstderr: %s", werr, steps, proclog.Tail(stderr.String(), 4000))
	}
	remember := func(obj any, keys ...string) {
		m, _ := obj.(map[string]any)
		for _, k := range keys {
			if s, ok := m[k].(string); ok {
				in.remember(k, s)
			}
		}
	}
	remember(result["code"], "access_token", "refresh_token")
	remember(result["refresh"], "access_token", "refresh_token")

	get := func(path string) any {
		var cur any = result
		for _, p := range strings.Split(path, ".") {
			m, ok := cur.(map[string]any)
			if !ok {
				return nil
			}
			cur = m[p]
		}
		return cur
	}
	expect := func(path string, want any) {
		t.Helper()
		if got := get(path); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s = %v, want %v", path, got, want)
		}
	}
	expect("discovery.issuer", in.base)
	expect("discovery.authorization_endpoint", in.url("/authorize"))
	expect("discovery.token_endpoint", in.url("/token"))
	expect("discovery.userinfo_endpoint", in.url("/userinfo"))
	expect("discovery.jwks_uri", in.url("/jwks"))
	expect("discovery.introspection_endpoint", in.url("/introspect"))
	expect("discovery.revocation_endpoint", in.url("/revoke"))
	expect("discovery.supportsPKCE", true)
	expect("discovery.iss_parameter", true)
	expect("discovery_oauth2.issuer", in.base)
	expect("callback.has_iss", true)
	expect("callback.has_state", true)

	expect("code.has_id_token", true)
	if tt, _ := get("code.token_type").(string); !strings.EqualFold(tt, "bearer") {
		t.Errorf("code.token_type = %q", tt)
	}
	if s, _ := get("code.scope").(string); !sameScopes(s, "openid email profile") {
		t.Errorf("code.scope = %q", s)
	}
	expect("code.claims.iss", in.base)
	expect("code.claims.sub", "alice")
	expect("code.claims.aud", web.ID)
	expect("code.claims.email", "alice@example.com")
	expect("code.claims.email_verified", true)
	expect("code.claims.name", "Alice Liddell")
	for _, k := range []string{"nonce", "at_hash", "auth_time", "iat", "exp"} {
		if get("code.claims."+k) == nil {
			t.Errorf("id_token has no %s", k)
		}
	}
	if get("code.claims.groups") != nil || get("code.claims.phone_number") != nil {
		t.Errorf("id_token releases claims of scopes not granted: %v", get("code.claims"))
	}
	expect("userinfo.sub", "alice")
	expect("userinfo.email", "alice@example.com")
	expect("userinfo.name", "Alice Liddell")

	expect("refresh.has_id_token", true)
	expect("refresh.claims.sub", "alice")
	expect("refresh.claims.aud", web.ID)
	if get("refresh.access_token") == get("code.access_token") || get("refresh.refresh_token") == get("code.refresh_token") {
		t.Errorf("refresh returned the old tokens")
	}
	expect("userinfo_after_refresh.sub", "alice")

	expect("introspect_access.active", true)
	expect("introspect_access.client_id", web.ID)
	expect("introspect_access.username", "alice")
	expect("introspect_access.sub", "alice")
	expect("introspect_access.token_type", "Bearer")
	if s, _ := get("introspect_access.scope").(string); !sameScopes(s, "openid email profile") {
		t.Errorf("introspect_access.scope = %q", s)
	}
	for _, k := range []string{"exp", "iat"} {
		if _, ok := get("introspect_access." + k).(float64); !ok {
			t.Errorf("introspect_access.%s = %v, want a number", k, get("introspect_access."+k))
		}
	}
	expect("introspect_refresh.active", true)
	expect("introspect_refresh.token_type", "refresh_token")
	expect("introspect_refresh.client_id", web.ID)
	expect("introspect_rotated_out.active", false)

	expect("revoke_access", true)
	expect("introspect_after_revoke.active", false)
	expect("userinfo_after_revoke.ok", false)
	if b, _ := json.Marshal(get("userinfo_after_revoke")); !strings.Contains(string(b), "invalid_token") {
		t.Errorf("userinfo after revocation failed without invalid_token: %s", b)
	}
	expect("revoke_refresh", true)
	expect("introspect_refresh_after_revoke.active", false)
	expect("refresh_after_revoke.ok", false)
	expect("refresh_after_revoke.error", "invalid_grant")
	expect("revoke_unknown", true)

	if t.Failed() {
		b, _ := json.MarshalIndent(result, "", "  ")
		t.Logf("openid-client results:\n%s", b)
	}
}
