package tests

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDefaultBasePath: `oauth2_server` without an argument serves /oauth2/…, and passes other
// requests on to the site's next handler.
func TestDefaultBasePath(t *testing.T) {
	t.Parallel()
	svc := clientSpec{ID: "svc", Secret: randomSecret("svc-"), Grants: "client_credentials", Scopes: "read"}
	web := clientSpec{ID: "web", Secret: randomSecret("web-"), Grants: "authorization_code", RedirectURIs: webCB, Scopes: "read"}
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "hello.txt"), []byte("served by file_server"), 0o644); err != nil {
		t.Fatal(err)
	}
	in := startGateWith(t, gateSpec{Clients: []clientSpec{svc, web}, Users: []userSpec{alice()}},
		siteOptions{DefaultBasePath: true, SiteExtra: "root * " + root + "\nfile_server"})
	if in.basePath != "/oauth2" {
		t.Fatalf("harness: base path %q", in.basePath)
	}

	for _, p := range []string{"/token", "/token/"} {
		t.Run("client_credentials at /oauth2"+p, func(t *testing.T) {
			in.token(t, tokenCall{Path: p, Form: form("grant_type", "client_credentials"), Basic: basic(svc.ID, svc.Secret)}).mustToken(t)
		})
	}

	t.Run("login page at /oauth2/authorize", func(t *testing.T) {
		b := in.newBrowser(t)
		p := b.get(in.url("/authorize") + "?" + authParams(web.ID, webCB, "code", "read", "s").Encode())
		if _, ok := p.loginForm(); p.Status != http.StatusOK || !ok {
			t.Fatalf("want the login page, got %s", p)
		}
	})

	t.Run("other paths reach the next handler", func(t *testing.T) {
		resp, err := in.http.Get(in.base + "/hello.txt")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(body) != "served by file_server" {
			t.Errorf("GET /hello.txt = %d %q, want the file", resp.StatusCode, body)
		}
	})

	t.Run("/o is not the base path here", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, in.base+"/o/token", strings.NewReader("grant_type=client_credentials"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(svc.ID, svc.Secret)
		resp, err := in.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(body), "access_token") {
			t.Errorf("POST /o/token issued a token although the base path is /oauth2: %s", body)
		}
	})
}

// TestNoSecretsInDebugAndAccessLogs: with Caddy's debug logging and the site's access log on,
// no secret, password, token or code reaches a log line (DESIGN: "never a token or secret in a
// log line"; the access log records URIs and response headers such as Location).
func TestNoSecretsInDebugAndAccessLogs(t *testing.T) {
	t.Parallel()
	web := clientSpec{ID: "web", Secret: randomSecret("web-"), Grants: "authorization_code refresh_token password client_credentials", RedirectURIs: webCB, Scopes: "read write"}
	spa := clientSpec{ID: "spa", Grants: "authorization_code implicit", RedirectURIs: spaCB, Scopes: "read"}
	al := alice()
	in := startGateWith(t, gateSpec{Clients: []clientSpec{web, spa}, Users: []userSpec{al}},
		siteOptions{BasePath: "/o", GlobalExtra: "debug", SiteExtra: "log"})
	auth := basic(web.ID, web.Secret)

	// Each flow is checked against the log lines it produced, so a leak names its flow.
	flows := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"client_credentials (basic and post)", func(t *testing.T) {
			in.token(t, tokenCall{Form: form("grant_type", "client_credentials"), Basic: auth}).mustToken(t)
			in.token(t, tokenCall{Form: form("grant_type", "client_credentials", "client_id", web.ID, "client_secret", web.Secret)}).mustToken(t)
		}},
		{"password and refresh", func(t *testing.T) {
			tok := in.token(t, tokenCall{Form: form("grant_type", "password", "username", "alice", "password", al.Password), Basic: auth}).mustToken(t)
			in.token(t, tokenCall{Form: form("grant_type", "refresh_token", "refresh_token", tok.Refresh), Basic: auth}).mustToken(t)
		}},
		{"failed logins and bad secrets", func(t *testing.T) {
			in.token(t, tokenCall{Form: form("grant_type", "password", "username", "alice", "password", "wrong-"+al.Password), Basic: auth})
			in.token(t, tokenCall{Form: form("grant_type", "client_credentials"), Basic: basic(web.ID, "wrong-"+web.Secret)})
			b := in.newBrowser(t)
			p := b.get(in.url("/authorize") + "?" + authParams(web.ID, webCB, "code", "read", "s").Encode())
			b.submitLogin(p, "alice", "wrong-"+al.Password)
		}},
		{"authorization code flow", func(t *testing.T) {
			b := in.newBrowser(t)
			code := mustCode(t, b.authorize(authParams(web.ID, webCB, "code", "read", "s"), "alice", al.Password, "allow"), webCB, "s")
			in.token(t, tokenCall{Form: form("grant_type", "authorization_code", "code", code, "redirect_uri", webCB), Basic: auth}).mustToken(t)
		}},
		{"implicit flow", func(t *testing.T) {
			b := in.newBrowser(t)
			res := b.authorize(authParams(spa.ID, spaCB, "token", "read", "s"), "alice", al.Password, "allow")
			if res.Redirect == nil || fragmentValues(res.Redirect).Get("access_token") == "" {
				t.Fatalf("implicit flow gave no token: %v", res.Redirect)
			}
		}},
	}
	for i, f := range flows {
		t.Run(f.name, func(t *testing.T) {
			before := in.log.Len()
			f.run(t)
			// Access log lines are written after the response; a marker request's line shows
			// the flow's own lines are in.
			marker := fmt.Sprintf("/e2e-log-marker-%d", i)
			for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); {
				if resp, err := in.http.Get(in.base + marker); err == nil {
					resp.Body.Close()
				}
				if strings.Contains(in.log.String()[before:], marker) {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			in.assertLogClean(t, in.log.String()[before:])
		})
	}
}
