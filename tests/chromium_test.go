package tests

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/oauth2gate/oauth2gate/internal/proclog"
)

// chromiumPath is Debian's chromium, which tests/install-deps.sh installs; playwright-core drives
// it and never downloads a browser of its own.
const chromiumPath = "/usr/bin/chromium"

// TestChromium signs in on the real login page and answers the real consent page with headless
// chromium (tests/browserclient/login.mjs), so what tests/browser_test.go's form walker takes on
// trust is checked by a browser: the labels and buttons a user sees, a non-ASCII password through
// the form's encoding, the session and CSRF cookies a browser keeps (HttpOnly, SameSite=Lax, plain
// http), the pages' CSP (no console errors), the 303s back to the client. The code it brings back
// is then redeemed with its PKCE verifier and the id_token verified with go-oidc. It fails, never
// skips, when chromium or node is missing.
func TestChromium(t *testing.T) {
	t.Parallel()
	node := requireChromium(t)
	dir := filepath.Join(repoRoot, "tests", "browserclient")
	ensureNpmPackage(t, dir, "playwright-core")

	// The redirect_uri's port stays bound and never accepts: the browser's request to it waits
	// there, seen by the script, and no other test's server can get the code.
	cb, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cb.Close() })
	redirect := fmt.Sprintf("http://%s/cb", cb.Addr())
	web := clientSpec{ID: "chromium-web", Secret: randomSecret("chromium-web-"), Grants: "authorization_code",
		RedirectURIs: redirect, Scopes: "openid profile", Name: "Chromium Test App"}
	user := opUser()
	in := startGate(t, gateSpec{Clients: []clientSpec{web}, Users: []userSpec{user}})

	// request is an authorization request with state, nonce and PKCE S256.
	type request struct{ url, state, nonce, verifier string }
	newRequest := func() request {
		r := request{state: randomSecret("st-"), nonce: randomSecret("nonce-"), verifier: oauth2.GenerateVerifier()}
		p := withPKCE(authParams(web.ID, redirect, "code", "openid profile", r.state), oauth2.S256ChallengeFromVerifier(r.verifier))
		p.Set("nonce", r.nonce)
		r.url = in.url("/authorize") + "?" + p.Encode()
		return r
	}
	// callback parses the URL the browser was sent to and checks iss (RFC 9207).
	callback := func(t *testing.T, run chromiumRun) authResult {
		t.Helper()
		if run.Outcome != "redirect" {
			t.Fatalf("want a redirect to %s, the browser ended with %q: %s (steps %v)", redirect, run.Outcome, run.Error, run.Steps)
		}
		u, err := url.Parse(run.URL)
		if err != nil {
			t.Fatalf("unparsable redirect %q: %v", run.URL, err)
		}
		for _, k := range []string{"code", "access_token", "id_token"} {
			in.remember(k, u.Query().Get(k))
		}
		if iss := u.Query().Get("iss"); iss != in.base {
			t.Errorf("redirect iss = %q, want %q (RFC 9207)", iss, in.base)
		}
		if run.Consent == nil {
			t.Errorf("the browser was redirected without seeing the consent page; steps %v", run.Steps)
		} else {
			c := run.Consent
			if c.Client != web.Name || c.User != user.Name || !slices.Contains(c.Scopes, "openid") || !slices.Contains(c.Scopes, "profile") {
				t.Errorf("consent page shows client %q, user %q, scopes %q; want %q, %q, openid and profile", c.Client, c.User, c.Scopes, web.Name, user.Name)
			}
		}
		return authResult{Redirect: u}
	}

	t.Run("sign in and allow", func(t *testing.T) {
		t.Parallel()
		r := newRequest()
		run := runChromium(t, node, dir, chromiumInput{AuthorizeURL: r.url, RedirectURI: redirect, Username: user.Name, Password: user.Password, Decision: "allow"})
		code := mustCode(t, callback(t, run), redirect, r.state)

		var session bool
		for _, c := range run.Cookies {
			if c.Name == "oauth2gate_session" {
				session = true
				if !c.HTTPOnly || c.SameSite != "Lax" || c.Path != in.basePath {
					t.Errorf("session cookie in chromium: %+v, want HttpOnly, SameSite=Lax, Path=%s", c, in.basePath)
				}
			}
		}
		if !session {
			t.Errorf("chromium holds no oauth2gate_session cookie after signing in: %+v", run.Cookies)
		}

		tok := in.token(t, tokenCall{Basic: basic(web.ID, web.Secret), Form: form(
			"grant_type", "authorization_code", "code", code, "redirect_uri", redirect, "code_verifier", r.verifier)})
		is := tok.mustToken(t)
		if !sameScopes(is.Scope, "openid profile") {
			t.Errorf("granted scope = %q, want openid profile", is.Scope)
		}
		raw := tok.str("id_token")
		if raw == "" {
			t.Fatalf("no id_token though openid was granted: %s", tok)
		}
		ctx := oidcCtx(t, in)
		provider, err := oidc.NewProvider(ctx, in.base)
		if err != nil {
			t.Fatalf("go-oidc discovery of %s: %v", in.base, err)
		}
		idt, err := provider.Verifier(&oidc.Config{ClientID: web.ID}).Verify(ctx, raw)
		if err != nil {
			t.Fatalf("go-oidc rejects the id_token: %v", err)
		}
		if idt.Nonce != r.nonce || idt.Subject != user.Name {
			t.Errorf("id_token nonce %q, sub %q; want %q, %q", idt.Nonce, idt.Subject, r.nonce, user.Name)
		}
		if err := idt.VerifyAccessToken(is.Access); err != nil {
			t.Errorf("id_token at_hash does not match the access token: %v", err)
		}
	})

	t.Run("wrong password", func(t *testing.T) {
		t.Parallel()
		r := newRequest()
		wrong := randomSecret("wrong-pässwörd-")
		in.remember("wrong password", wrong)
		run := runChromium(t, node, dir, chromiumInput{AuthorizeURL: r.url, RedirectURI: redirect, Username: user.Name, Password: wrong, Decision: "allow"})
		if run.Outcome != "login_error" {
			t.Fatalf("want the login page with an error, the browser ended with %q at %s (steps %v)", run.Outcome, run.URL, run.Steps)
		}
		if run.Error != "Invalid username or password." {
			t.Errorf("login error shown = %q, want %q", run.Error, "Invalid username or password.")
		}
		if u, err := url.Parse(run.URL); err != nil || u.Host != in.host() || u.Path != in.basePath+"/authorize" {
			t.Errorf("after a wrong password the browser is at %s, want %s", run.URL, in.url("/authorize"))
		}
		for _, v := range uniq(wrong, html.EscapeString(wrong), url.QueryEscape(wrong)) {
			if strings.Contains(run.HTML, v) {
				t.Errorf("the login page echoes the wrong password back")
			}
		}
		if run.PasswordField != "" {
			t.Errorf("the password field still holds %d characters after the failed login", len(run.PasswordField))
		}
		if run.UsernameField != user.Name {
			t.Errorf("username field = %q after the failed login, want %q kept", run.UsernameField, user.Name)
		}
	})

	t.Run("deny", func(t *testing.T) {
		t.Parallel()
		r := newRequest()
		run := runChromium(t, node, dir, chromiumInput{AuthorizeURL: r.url, RedirectURI: redirect, Username: user.Name, Password: user.Password, Decision: "deny"})
		mustRedirectError(t, callback(t, run), redirect, "access_denied", r.state)
	})
}

// requireChromium returns node's path, failing the test when chromium or node is missing.
func requireChromium(t *testing.T) string {
	t.Helper()
	const hint = "; run tests/install-deps.sh (make test-deps) to install it"
	if st, err := os.Stat(chromiumPath); err != nil || st.Mode()&0o111 == 0 {
		t.Fatalf("%s is missing (Debian package chromium)%s", chromiumPath, hint)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is not on PATH (Debian package nodejs)%s", hint)
	}
	return node
}

// ensureNpmPackage installs dir's npm packages (npm ci, from its package-lock.json) when pkg is
// missing from its node_modules: tests/oidcclient (openid-client) and tests/browserclient
// (playwright-core).
func ensureNpmPackage(t *testing.T, dir, pkg string) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(dir, "node_modules", pkg, "package.json")); err == nil {
		return
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Fatalf("npm is not on PATH; run tests/install-deps.sh (make test-deps) to install it")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm ci in %s: %v\n%s", dir, err, proclog.Tail(string(out), 4000))
	}
}

// chromiumInput is what login.mjs reads on stdin.
type chromiumInput struct {
	AuthorizeURL string `json:"authorize_url"`
	RedirectURI  string `json:"redirect_uri"`
	Username     string `json:"username"`
	Password     string `json:"password"`
	Decision     string `json:"decision"` // allow or deny, on the consent page
}

// chromiumRun is what login.mjs saw.
type chromiumRun struct {
	Outcome       string   `json:"outcome"` // redirect or login_error
	URL           string   `json:"url"`     // the redirect_uri with its parameters, or the login page's URL
	Error         string   `json:"error"`   // the login page's alert
	HTML          string   `json:"html"`    // the login page showing the error
	UsernameField string   `json:"username_field"`
	PasswordField string   `json:"password_field"`
	Steps         []string `json:"steps"`
	Console       []string `json:"console"` // console errors: CSP violations land here
	Consent       *struct {
		Client string   `json:"client"`
		User   string   `json:"user"`
		Scopes []string `json:"scopes"`
	} `json:"consent"`
	Cookies []struct {
		Name     string `json:"name"`
		Path     string `json:"path"`
		HTTPOnly bool   `json:"httpOnly"`
		Secure   bool   `json:"secure"`
		SameSite string `json:"sameSite"`
	} `json:"cookies"`
}

// runNodeScript runs a node script of tests/browserclient with in as JSON on
// its stdin, within timeout, and decodes the last line it prints into out;
// any failure of the script ends the test. It returns how long it ran.
func runNodeScript(t *testing.T, node, dir, script string, timeout time.Duration, in, out any) time.Duration {
	t.Helper()
	stdin, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script)
	cmd.Dir = dir
	cmd.Stdin = bytes.NewReader(stdin)
	// SIGTERM first: playwright closes chromium on it. WaitDelay kills node if it does not exit.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	var stdout bytes.Buffer
	stderr := &proclog.Buffer{}
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	start := time.Now()
	err = cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%s did not finish within %v\nstderr: %s", script, timeout, proclog.Tail(stderr.String(), 4000))
	}
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("running node %s: %v", script, err)
		}
		t.Fatalf("%s failed (%v): %s", script, err, proclog.Tail(stderr.String(), 4000))
	}
	line := bytes.TrimSpace(stdout.Bytes())
	if i := bytes.LastIndexByte(line, '\n'); i >= 0 {
		line = line[i+1:]
	}
	if err := json.Unmarshal(line, out); err != nil {
		t.Fatalf("%s printed no JSON result: %v\nstdout: %s\nstderr: %s", script, err, proclog.Tail(stdout.String(), 2000), proclog.Tail(stderr.String(), 2000))
	}
	return time.Since(start)
}

// runChromium runs login.mjs and returns what it reported; any failure of the script ends the test.
func runChromium(t *testing.T, node, dir string, in chromiumInput) chromiumRun {
	t.Helper()
	var run chromiumRun
	took := runNodeScript(t, node, dir, "login.mjs", 90*time.Second, in, &run)
	t.Logf("chromium (%v): %s", took.Round(time.Millisecond), strings.Join(run.Steps, "; "))
	for _, m := range run.Console {
		t.Errorf("chromium console: %s", m)
	}
	return run
}
