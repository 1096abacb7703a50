package tests

// Issue 15 (browser applications): the example single-page app (docs/spa) in headless chromium,
// with the app on one origin and oauth2gate and the guarded API on others, so every cross-origin
// call is a real browser's CORS decision.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oauth2gate/oauth2gate/internal/proclog"
)

// spaScreenshotEnv names where TestSPAExampleInChromium saves its screenshot of the app (the
// README's docs/spa.png: OAUTH2GATE_SPA_SCREENSHOT=$PWD/docs/spa.png); unset, it goes to the
// test's temporary directory and is checked there.
const spaScreenshotEnv = "OAUTH2GATE_SPA_SCREENSHOT"

// spaInput is what spa.mjs reads on stdin.
type spaInput struct {
	AppURL           string   `json:"app_url"`
	EvilURL          string   `json:"evil_url,omitempty"`
	ImplicitClientID string   `json:"implicit_client_id,omitempty"`
	Username         string   `json:"username"`
	Password         string   `json:"password"`
	Screenshot       string   `json:"screenshot,omitempty"`
	Steps            []string `json:"steps"`
}

// spaCall is one API call the app made.
type spaCall struct {
	WithCredentials string         `json:"withCredentials"`
	Status          int            `json:"status"`
	Body            map[string]any `json:"body"`
	WWWAuthenticate string         `json:"wwwAuthenticate"`
}

// spaSignIn is what the app holds after a sign-in.
type spaSignIn struct {
	Answer       map[string]any `json:"answer"`
	Scope        string         `json:"scope"`
	Access       string         `json:"access"`
	Refresh      string         `json:"refresh"`
	URL          string         `json:"url"`
	AuthorizeURL string         `json:"authorize_url"`
	Exchange     *spaCall       `json:"exchange"`
	Shown        struct {
		Who    string `json:"who"`
		Answer string `json:"answer"`
	} `json:"shown"`
}

type spaFetch struct {
	Blocked bool   `json:"blocked"`
	Status  int    `json:"status"`
	Error   string `json:"error"`
}

// spaRun is what spa.mjs reports.
type spaRun struct {
	Steps struct {
		Code     *spaSignIn `json:"code"`
		Implicit *spaSignIn `json:"implicit"`
		Refusal  *spaCall   `json:"refusal"`
		Refresh  *struct {
			Old   string `json:"old"`
			First struct {
				Status  int    `json:"status"`
				Refresh string `json:"refresh"`
				Access  string `json:"access"`
				Error   string `json:"error"`
			} `json:"first"`
			After  int `json:"after"`
			Replay struct {
				Status int    `json:"status"`
				Error  string `json:"error"`
			} `json:"replay"`
			AfterReplay int `json:"afterReplay"`
		} `json:"refresh"`
		Evil *struct {
			Origin  string   `json:"origin"`
			Token   spaFetch `json:"token"`
			API     spaFetch `json:"api"`
			JWKS    spaFetch `json:"jwks"`
			Console []string `json:"console"`
		} `json:"evil"`
		Revoke *struct {
			Status          int    `json:"status"`
			API             int    `json:"api"`
			WWWAuthenticate string `json:"wwwAuthenticate"`
		} `json:"revoke"`
		Inject *struct {
			Access *string  `json:"access"`
			Events []string `json:"events"`
		} `json:"inject"`
		Signout *struct {
			Status int `json:"status"`
		} `json:"signout"`
	} `json:"steps"`
	Log     []string `json:"log"`
	Console []string `json:"console"`
}

// runSPA runs spa.mjs; any failure of the script ends the test.
func runSPA(t *testing.T, in spaInput) spaRun {
	t.Helper()
	node := requireChromium(t)
	dir := filepath.Join(repoRoot, "tests", "browserclient")
	ensureNpmPackage(t, dir, "playwright-core")
	var run spaRun
	took := runNodeScript(t, node, dir, "spa.mjs", 150*time.Second, in, &run)
	t.Logf("chromium (%v): app log %q", took.Round(time.Millisecond), run.Log)
	return run
}

// methodRecorder is an upstream that records the methods it receives and answers with CORS
// headers of its own (a wildcard and credentials), as an API that once spoke CORS itself does:
// the guard's cors line must leave the browser exactly one Allow-Origin.
type methodRecorder struct {
	mu      sync.Mutex
	methods []string
}

func (m *methodRecorder) start(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.mu.Lock()
		m.methods = append(m.methods, r.Method)
		m.mu.Unlock()
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("Access-Control-Allow-Credentials", "true")
		w.Header().Set("Content-Type", "application/json")
		out, _ := json.Marshal(map[string]string{"method": r.Method, "uri": r.RequestURI, "subject": r.Header.Get("X-Auth-Subject"),
			"client": r.Header.Get("X-Auth-Client-Id"), "scope": r.Header.Get("X-Auth-Scope"), "authorization": r.Header.Get("Authorization")})
		_, _ = w.Write(out)
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return l.Addr().String()
}

func (m *methodRecorder) seen() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.methods...)
}

// spaSite serves docs/spa on addr, and config.json from configDir (written once the issuer's
// address is known, by writeSPAConfig).
func spaSite(addr, configDir string) string {
	return fmt.Sprintf("http://%s {\n\thandle /config.json {\n\t\troot * %s\n\t\tfile_server\n\t}\n\troot * %s\n\tfile_server\n}\n",
		addr, configDir, filepath.Join(repoRoot, "docs", "spa"))
}

// writeSPAConfig writes the app's config.json into dir.
func writeSPAConfig(t *testing.T, dir, issuer, clientID, api string) {
	t.Helper()
	cfg, _ := json.Marshal(map[string]string{"issuer": issuer, "client_id": clientID, "scope": "read", "api": api})
	if err := os.WriteFile(filepath.Join(dir, "config.json"), cfg, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestSPAInChromium: the code flow with PKCE S256 through the real login and consent pages, the
// code exchanged by fetch(), the guarded API called by fetch() with an Authorization header (so
// the browser sends a preflight, which the guard answers and the upstream never sees) answering
// 200; a refusal whose WWW-Authenticate the script reads; refresh rotation and replay from the
// browser for a public client; from an origin no client allows, the browser blocks the script's
// fetch() to the token endpoint and to the API (the public JWKS stays readable); the implicit
// flow, the token read from the fragment and sent to the API; revocation from the browser.
func TestSPAInChromium(t *testing.T) {
	t.Parallel()
	ports := freePorts(t, 3)
	appAddr, evilAddr, apiAddr := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1]), fmt.Sprintf("127.0.0.1:%d", ports[2])
	appURL, apiURL := "http://"+appAddr+"/", "http://"+apiAddr
	appOrigin := "http://" + appAddr
	up := &methodRecorder{}
	upstream := up.start(t)
	spa := clientSpec{ID: "spa", Grants: "authorization_code refresh_token", RedirectURIs: appURL, Scopes: "read", Name: "Browser app", AllowedOrigins: appOrigin}
	implicit := clientSpec{ID: "spa-implicit", Grants: "implicit", RedirectURIs: appURL, Scopes: "read", Name: "Browser app (implicit)", AllowedOrigins: appOrigin}
	user := alice()
	configDir := t.TempDir()
	sites := fmt.Sprintf("http://%s {\n\tlog\n\toauth2_guard {\n\t\tscope GET read\n\t\tscope POST,PUT,DELETE write\n\t\tcors %s\n\t}\n\treverse_proxy %s\n}\n",
		apiAddr, appOrigin, upstream) + spaSite(appAddr, configDir) + spaSite(evilAddr, configDir)
	in := startGateWith(t, gateSpec{Clients: []clientSpec{spa, implicit}, Users: []userSpec{user}}, siteOptions{BasePath: "/o", ExtraSites: sites})
	writeSPAConfig(t, configDir, in.base, spa.ID, apiURL)

	run := runSPA(t, spaInput{
		AppURL: appURL, EvilURL: "http://" + evilAddr + "/", ImplicitClientID: implicit.ID,
		Username: user.Name, Password: user.Password,
		Steps: []string{"code", "refusal", "refresh", "evil", "implicit", "revoke", "inject"},
	})
	s := run.Steps
	for _, v := range []*spaSignIn{s.Code, s.Implicit} {
		if v != nil {
			in.remember("access token", v.Access)
			in.remember("refresh token", v.Refresh)
		}
	}
	if s.Refresh != nil {
		in.remember("refresh token", s.Refresh.First.Refresh)
		in.remember("access token", s.Refresh.First.Access)
	}
	checkSPAConsole(t, run)

	t.Run("code flow with PKCE S256, exchanged and API called by fetch", func(t *testing.T) {
		c := s.Code
		if c == nil {
			t.Fatal("no code step")
		}
		au, err := url.Parse(c.AuthorizeURL)
		if err != nil || au.Query().Get("code_challenge_method") != "S256" || len(au.Query().Get("code_challenge")) != 43 || au.Query().Get("client_id") != spa.ID {
			t.Errorf("the app's authorization request %s: want PKCE S256 for %s", c.AuthorizeURL, spa.ID)
		}
		if c.Exchange == nil || c.Exchange.Status != 200 || c.Exchange.Body["token_type"] != "Bearer" || c.Refresh == "" {
			t.Fatalf("code exchange by fetch(): %+v", c.Exchange)
		}
		if c.URL != appURL {
			t.Errorf("the app left the code in its address: %s", c.URL)
		}
		if c.Answer["status"] != float64(200) || c.Answer["subject"] != user.Name || c.Answer["client"] != spa.ID || c.Answer["authorization"] != "" || c.Answer["method"] != "GET" {
			t.Errorf("API answer the app read: %v", c.Answer)
		}
		if c.Shown.Who != user.Name || !strings.Contains(c.Shown.Answer, `"subject": "alice"`) {
			t.Errorf("the page shows %q and %q", c.Shown.Who, c.Shown.Answer)
		}
	})

	t.Run("the browser sent preflights; the guard answered them, the upstream never saw one", func(t *testing.T) {
		var preflights int
		for _, line := range strings.Split(in.log.String(), "\n") {
			if strings.Contains(line, `"method":"OPTIONS"`) && strings.Contains(line, `"uri":"/orders"`) && strings.Contains(line, `"Origin":["`+appOrigin+`"]`) {
				preflights++
				if !strings.Contains(line, `"status":204`) {
					t.Errorf("a preflight not answered 204: %s", line)
				}
			}
		}
		if preflights == 0 {
			t.Errorf("the access log shows no preflight to the API: the browser never sent one")
		}
		for _, m := range up.seen() {
			if m == http.MethodOptions {
				t.Errorf("a preflight reached the upstream: %q", up.seen())
			}
		}
	})

	t.Run("a refusal the script can read", func(t *testing.T) {
		r := s.Refusal
		if r == nil || r.Status != 401 || !strings.Contains(r.WWWAuthenticate, `error="invalid_token"`) || r.Body["error"] != "invalid_token" {
			t.Fatalf("refusal read by the script: %+v", r)
		}
		if !strings.Contains(r.WithCredentials, "Failed to fetch") {
			t.Errorf("fetch() with credentials: 'include': %q, want blocked (no answer allows credentials)", r.WithCredentials)
		}
	})

	t.Run("refresh rotation from the browser", func(t *testing.T) {
		r := s.Refresh
		if r == nil {
			t.Fatal("no refresh step")
		}
		if r.First.Status != 200 || r.First.Refresh == "" || r.First.Refresh == r.Old {
			t.Errorf("refresh: %d %q, old %q: want 200 and a new refresh token", r.First.Status, r.First.Error, short(r.Old))
		}
		if r.After != 200 {
			t.Errorf("API with the refreshed access token: %d", r.After)
		}
		if r.Replay.Status != 400 || r.Replay.Error != "invalid_grant" {
			t.Errorf("replaying the rotated-out refresh token: %d %q, want 400 invalid_grant", r.Replay.Status, r.Replay.Error)
		}
		if r.AfterReplay != 401 {
			t.Errorf("API after the replay: %d, want 401 (a replay ends the grant)", r.AfterReplay)
		}
	})

	t.Run("an origin no client allows is blocked by the browser", func(t *testing.T) {
		e := s.Evil
		if e == nil {
			t.Fatal("no evil step")
		}
		if !e.Token.Blocked || !strings.Contains(e.Token.Error, "Failed to fetch") {
			t.Errorf("fetch() to the token endpoint from %s: %+v, want blocked", e.Origin, e.Token)
		}
		if !e.API.Blocked {
			t.Errorf("fetch() to the API from %s: %+v, want blocked", e.Origin, e.API)
		}
		if e.JWKS.Blocked || e.JWKS.Status != 200 {
			t.Errorf("fetch() to the JWKS from %s: %+v, want readable", e.Origin, e.JWKS)
		}
		var cors int
		for _, m := range e.Console {
			if strings.Contains(m, "blocked by CORS policy") {
				cors++
			}
		}
		if cors < 2 {
			t.Errorf("chromium did not say CORS blocked the two fetches: %q", e.Console)
		}
	})

	t.Run("implicit flow: the token from the fragment sent to the API", func(t *testing.T) {
		c := s.Implicit
		if c == nil {
			t.Fatal("no implicit step")
		}
		if c.Answer["status"] != float64(200) || c.Answer["subject"] != user.Name || c.Answer["client"] != implicit.ID || c.Refresh != "" {
			t.Errorf("implicit: %+v", c)
		}
		if c.URL != appURL {
			t.Errorf("the app left the token in its address: %s", c.URL)
		}
		if au, err := url.Parse(c.AuthorizeURL); err != nil || au.Query().Get("response_type") != "token" || au.Query().Get("state") == "" {
			t.Errorf("the app's implicit request %s: want response_type=token with a state", c.AuthorizeURL)
		}
	})

	t.Run("a token in the fragment with a state the app never sent is not taken", func(t *testing.T) {
		j := s.Inject
		if j == nil || j.Access != nil || len(j.Events) == 0 || !strings.Contains(j.Events[len(j.Events)-1], "state does not match") {
			t.Fatalf("inject: %+v", j)
		}
	})

	t.Run("revocation from the browser", func(t *testing.T) {
		r := s.Revoke
		// A readable status is the browser's own proof that Allow-Origin matched (the header
		// itself is not exposed to scripts).
		if r == nil || r.Status != 200 || r.API != 401 || !strings.Contains(r.WWWAuthenticate, "invalid_token") {
			t.Fatalf("revoke: %+v", r)
		}
	})
}

// TestSPAExampleInChromium: Caddyfile.example as shipped (ports and paths moved), the SPA it
// serves signs alice in through the real login and consent pages and shows the legacy API's
// answer; the screenshot is the README's docs/spa.png. Then it refreshes and signs out.
func TestSPAExampleInChromium(t *testing.T) {
	t.Parallel()
	example, err := os.ReadFile(filepath.Join(repoRoot, "Caddyfile.example"))
	if err != nil {
		t.Fatal(err)
	}
	ports := freePorts(t, 5)
	home := t.TempDir()
	hostPort := fmt.Sprintf("127.0.0.1:%d", ports[0])
	app := fmt.Sprintf("127.0.0.1:%d", ports[4])
	cf := string(example)
	for from, to := range map[string]string{
		"localhost:8000": hostPort, "localhost:8080": fmt.Sprintf("127.0.0.1:%d", ports[2]),
		"localhost:9000": fmt.Sprintf("127.0.0.1:%d", ports[3]), "localhost:8081": app,
		"admin localhost:2019":     fmt.Sprintf("admin 127.0.0.1:%d\n\tdefault_bind 127.0.0.1\n\tpersist_config off", ports[1]),
		"store file ./oauth2-data": "store file " + filepath.Join(home, "oauth2-data"),
		"root * ./docs/spa":        "root * " + filepath.Join(repoRoot, "docs", "spa"),
	} {
		if !strings.Contains(cf, from) {
			t.Fatalf("Caddyfile.example no longer has %q, which this test moves", from)
		}
		cf = strings.ReplaceAll(cf, from, to)
	}
	in := &instance{
		t: t, home: home, storeDir: filepath.Join(home, "oauth2-data"), file: filepath.Join(home, "Caddyfile"),
		port: ports[0], adminPort: ports[1], log: &proclog.Buffer{}, transport: &http.Transport{},
		secrets: map[string]string{}, base: "http://" + hostPort,
	}
	in.http = &http.Client{Transport: in.transport, Timeout: requestTimeout}
	in.remember("README secret", "wonderland")
	if err := os.WriteFile(in.file, []byte(cf), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(in.cleanup)
	in.start()

	shot := os.Getenv(spaScreenshotEnv)
	if shot == "" {
		shot = filepath.Join(t.TempDir(), "spa.png")
	}
	run := runSPA(t, spaInput{AppURL: "http://" + app + "/", Username: "alice", Password: "wonderland",
		Screenshot: shot, Steps: []string{"code", "screenshot", "refresh", "signout"}})
	checkSPAConsole(t, run)
	c := run.Steps.Code
	if c == nil || c.Answer["status"] != float64(200) || c.Answer["subject"] != "alice" || c.Answer["client"] != "spa-demo" || c.Answer["scope"] != "read" {
		t.Fatalf("the example SPA's API answer: %+v", c)
	}
	in.remember("access token", c.Access)
	in.remember("refresh token", c.Refresh)
	png, err := os.ReadFile(shot)
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) || len(png) < 10_000 {
		t.Errorf("screenshot %s: %d bytes, %v", shot, len(png), err)
	}
	if r := run.Steps.Refresh; r == nil || r.First.Status != 200 || r.First.Refresh == r.Old || r.Replay.Status != 400 {
		t.Errorf("refresh in the example: %+v", r)
	} else {
		in.remember("refresh token", r.First.Refresh)
	}
	if so := run.Steps.Signout; so == nil || so.Status != 200 {
		t.Errorf("sign out (revocation by fetch()): %+v", so)
	}
}

// short names a token in a failure message without printing it.
func short(tok string) string {
	if len(tok) < 8 {
		return tok
	}
	return tok[:4] + "…"
}

// checkSPAConsole fails on anything chromium logged on the app but the refusals the steps ask
// for: 401s and the replayed refresh token's 400 (logged as failed resources), and the blocked
// fetch() with credentials (its CORS message, and one net::ERR_FAILED for it).
func checkSPAConsole(t *testing.T, run spaRun) {
	t.Helper()
	blocked := 0
	for _, m := range run.Console {
		if strings.Contains(m, "blocked by CORS policy") && strings.Contains(m, "'Access-Control-Allow-Credentials' header in the response is ''") {
			blocked++
		}
	}
	for _, m := range run.Console {
		switch {
		case strings.Contains(m, "status of 401 (Unauthorized)"), strings.Contains(m, "status of 400 (Bad Request)"):
		case strings.Contains(m, "'Access-Control-Allow-Credentials' header in the response is ''"):
		case strings.Contains(m, "net::ERR_FAILED") && blocked > 0:
			blocked--
		default:
			t.Errorf("chromium console on the app: %s", m)
		}
	}
}
