package tests

// Issue 15, attacked through the real binary: every spelling of an origin, null, odd preflights,
// an upstream that speaks CORS itself, a burst of hundreds of preflights and requests at once,
// and configurations a browser could never match.

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// corsGate is a Caddy with a public client allowed from spaOrigin and a guarded API listing it.
type corsGate struct {
	in       *instance
	api      string
	origin   string
	upstream *methodRecorder
	client   clientSpec
	user     userSpec
}

func startCORSGate(t *testing.T) *corsGate {
	t.Helper()
	ports := freePorts(t, 2)
	origin := fmt.Sprintf("http://127.0.0.1:%d", ports[0]) // nothing listens there: only a name
	api := fmt.Sprintf("127.0.0.1:%d", ports[1])
	up := &methodRecorder{}
	upstream := up.start(t)
	spa := clientSpec{ID: "spa", Grants: "authorization_code password refresh_token", RedirectURIs: origin + "/", Scopes: "read", AllowedOrigins: origin}
	user := bob()
	site := fmt.Sprintf("http://%s {\n\toauth2_guard {\n\t\tscope GET read\n\t\tscope POST,PUT,DELETE write\n\t\tcors %s\n\t}\n\treverse_proxy %s\n}\n", api, origin, upstream)
	in := startGateWith(t, gateSpec{Clients: []clientSpec{spa}, Users: []userSpec{user}, Settings: "failure_limit off"}, siteOptions{BasePath: "/o", ExtraSites: site})
	return &corsGate{in: in, api: "http://" + api, origin: origin, upstream: up, client: spa, user: user}
}

func (g *corsGate) do(t *testing.T, method, target string, hdr map[string][]string, body string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, target, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := g.in.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(b)
}

// originVariants are spellings (spaces around a value are not: HTTP strips them) of origin that a browser never sends for it, and origins that are
// not it: none may be answered with CORS headers.
func originVariants(origin string) [][]string {
	up := strings.ToUpper(origin)
	host := strings.TrimPrefix(origin, "http://")
	return [][]string{
		{"null"}, {""}, {up}, {"HTTP://" + host}, {origin + "/"}, {origin + "/app"}, {origin + ":80"},
		{"https://" + host}, {origin + ".evil.test"}, {origin + "0"}, {origin + "%00"}, {origin + "#"}, {origin + "?"}, {"http://localhost" + host[strings.Index(host, ":"):]},
		{origin, origin}, {origin + ", https://evil.test"}, {"*"}, {"https://evil.test"},
	}
}

// TestCORSOriginSpellings: the endpoints and the guard answer the listed origin, byte for byte,
// and nothing else: no other spelling, no null, no two Origin headers get a CORS header, on a
// preflight or a real request, from the token endpoint, userinfo or the guard.
func TestCORSOriginSpellings(t *testing.T) {
	t.Parallel()
	g := startCORSGate(t)
	tok := g.in.token(t, tokenCall{Form: form("grant_type", "password", "client_id", g.client.ID, "username", g.user.Name, "password", g.user.Password, "scope", "read")}).mustToken(t)
	g.in.remember("access token", tok.Access)
	g.in.remember("refresh token", tok.Refresh)
	pre := func(m string) map[string][]string {
		return map[string][]string{"Access-Control-Request-Method": {m}, "Access-Control-Request-Headers": {"authorization"}}
	}
	type call struct {
		name, method, target, body string
		hdr                        map[string][]string
	}
	calls := []call{
		{"token preflight", "OPTIONS", g.in.url("/token"), "", pre("POST")},
		{"token request", "POST", g.in.url("/token"), "grant_type=refresh_token&client_id=spa&refresh_token=nope", nil},
		{"userinfo preflight", "OPTIONS", g.in.url("/userinfo"), "", pre("GET")},
		{"revoke preflight", "OPTIONS", g.in.url("/revoke"), "", pre("POST")},
		{"guard preflight", "OPTIONS", g.api + "/orders", "", pre("DELETE")},
		{"guard refusal", "GET", g.api + "/orders", "", map[string][]string{"Authorization": {"Bearer not-a-token"}}},
		{"guard pass", "GET", g.api + "/orders", "", map[string][]string{"Authorization": {"Bearer " + tok.Access}}},
	}
	for _, c := range calls {
		for _, o := range append(originVariants(g.origin), []string{g.origin}) {
			listed := len(o) == 1 && o[0] == g.origin
			hdr := map[string][]string{"Origin": o}
			for k, v := range c.hdr {
				hdr[k] = v
			}
			resp, body := g.do(t, c.method, c.target, hdr, c.body)
			acao := resp.Header.Values("Access-Control-Allow-Origin")
			if resp.StatusCode >= 500 {
				t.Errorf("%s, Origin %q: %d %s", c.name, o, resp.StatusCode, body)
			}
			if resp.Header.Get("Access-Control-Allow-Credentials") != "" {
				t.Errorf("%s, Origin %q: Allow-Credentials", c.name, o)
			}
			if !listed {
				if len(acao) != 0 || resp.Header.Get("Access-Control-Allow-Methods") != "" || resp.Header.Get("Access-Control-Expose-Headers") != "" {
					t.Errorf("%s, Origin %q: CORS headers %v", c.name, o, resp.Header)
				}
				continue
			}
			if len(acao) != 1 || acao[0] != g.origin {
				t.Errorf("%s from the listed origin: Allow-Origin %q (status %d)", c.name, acao, resp.StatusCode)
			}
			if c.method == "OPTIONS" && (resp.StatusCode != 204 || resp.Header.Get("Access-Control-Max-Age") != "600") {
				t.Errorf("%s from the listed origin: %d %v", c.name, resp.StatusCode, resp.Header)
			}
		}
	}
	for _, m := range g.upstream.seen() {
		if m == http.MethodOptions {
			t.Fatalf("a preflight reached the upstream: %q", g.upstream.seen())
		}
	}
}

// TestCORSOddPreflights: preflights that ask for odd methods and headers get the guard's fixed
// lists, never an echo of what is not admitted, and never reach the upstream.
func TestCORSOddPreflights(t *testing.T) {
	t.Parallel()
	g := startCORSGate(t)
	long := strings.Repeat("x-h,", 40) + "x-last"
	tests := []struct {
		name, acrm, acrh string
		methods, headers string
	}{
		{"DELETE", "DELETE", "authorization", "DELETE, GET, POST, PUT", "authorization, content-type"},
		{"PATCH no line names", "PATCH", "", "DELETE, GET, POST, PUT", "authorization, content-type"},
		{"lower-case put", "put", "", "DELETE, GET, POST, PUT", "authorization, content-type"},
		{"CONNECT", "CONNECT", "", "DELETE, GET, POST, PUT", "authorization, content-type"},
		{"list as method", "GET, PATCH", "", "DELETE, GET, POST, PUT", "authorization, content-type"},
		{"8 KiB method", strings.Repeat("A", 8<<10), "", "DELETE, GET, POST, PUT", "authorization, content-type"},
		{"headers echoed, normalized", "GET", "X-Request-ID , x-trace,AUTHORIZATION", "DELETE, GET, POST, PUT", "authorization, content-type, x-request-id, x-trace"},
		{"malformed headers", "GET", "x-a, x(b)", "DELETE, GET, POST, PUT", "authorization, content-type"},
		{"repeats deduplicated", "GET", long, "DELETE, GET, POST, PUT", "authorization, content-type, x-h, x-last"},
	}
	for _, tt := range tests {
		hdr := map[string][]string{"Origin": {g.origin}, "Access-Control-Request-Method": {tt.acrm}}
		if tt.acrh != "" {
			hdr["Access-Control-Request-Headers"] = []string{tt.acrh}
		}
		resp, body := g.do(t, "OPTIONS", g.api+"/orders", hdr, "")
		if resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Methods") != tt.methods || resp.Header.Get("Access-Control-Allow-Headers") != tt.headers {
			t.Errorf("%s: %d %q, Allow-Methods %q, Allow-Headers %q; want 204, %q, %q", tt.name, resp.StatusCode, body,
				resp.Header.Get("Access-Control-Allow-Methods"), resp.Header.Get("Access-Control-Allow-Headers"), tt.methods, tt.headers)
		}
	}
	if n := len(g.upstream.seen()); n != 0 {
		t.Errorf("preflights reached the upstream %d times", n)
	}
}

// TestCORSUpstreamHeadersGiveWay: the upstream answers with its own wildcard Allow-Origin and
// Allow-Credentials; a browser at the listed origin gets one Allow-Origin (its own), no
// credentials, and the upstream's answer; another origin gets none of them.
func TestCORSUpstreamHeadersGiveWay(t *testing.T) {
	t.Parallel()
	g := startCORSGate(t)
	tok := g.in.token(t, tokenCall{Form: form("grant_type", "password", "client_id", g.client.ID, "username", g.user.Name, "password", g.user.Password, "scope", "read")}).mustToken(t)
	g.in.remember("access token", tok.Access)
	g.in.remember("refresh token", tok.Refresh)
	for _, origin := range []string{g.origin, "https://evil.test"} {
		resp, body := g.do(t, "GET", g.api+"/orders", map[string][]string{"Origin": {origin}, "Authorization": {"Bearer " + tok.Access}}, "")
		want := []string(nil)
		if origin == g.origin {
			want = []string{g.origin}
		}
		if got := resp.Header.Values("Access-Control-Allow-Origin"); resp.StatusCode != 200 || strings.Join(got, "|") != strings.Join(want, "|") ||
			resp.Header.Get("Access-Control-Allow-Credentials") != "" || !strings.Contains(body, `"subject":"bob"`) {
			t.Errorf("from %s: %d Allow-Origin %q, credentials %q, body %s", origin, resp.StatusCode, got, resp.Header.Get("Access-Control-Allow-Credentials"), body)
		}
	}
}

// TestCORSBurst: 600 preflights and requests at once, from the listed origin and others, to the
// guard and the token endpoint; every answer is the one its origin gets alone, none is a 5xx,
// and no preflight reaches the upstream.
func TestCORSBurst(t *testing.T) {
	t.Parallel()
	g := startCORSGate(t)
	const n = 600
	origins := append(originVariants(g.origin), []string{g.origin})
	var wg sync.WaitGroup
	errs := make(chan string, n)
	start := make(chan struct{})
	deadline := time.Now().Add(60 * time.Second)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			o := origins[i%len(origins)]
			if i%3 == 0 {
				o = []string{g.origin}
			}
			target := g.api + "/orders"
			if i%2 == 1 {
				target = g.in.url("/token")
			}
			req, _ := http.NewRequest("OPTIONS", target, nil)
			req.Header["Origin"] = o
			req.Header.Set("Access-Control-Request-Method", "POST")
			if i%5 == 0 {
				req.Method = "POST" // a real request, refused: no token / no grant
			}
			if time.Now().After(deadline) {
				errs <- "burst ran past its 60s bound"
				return
			}
			resp, err := g.in.http.Do(req)
			if err != nil {
				errs <- err.Error()
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			listed := len(o) == 1 && o[0] == g.origin
			acao := resp.Header.Values("Access-Control-Allow-Origin")
			switch {
			case resp.StatusCode >= 500:
				errs <- fmt.Sprintf("%s %s from %q: %d", req.Method, target, o, resp.StatusCode)
			case listed && (len(acao) != 1 || acao[0] != g.origin):
				errs <- fmt.Sprintf("%s %s from the listed origin: Allow-Origin %q", req.Method, target, acao)
			case !listed && len(acao) != 0:
				errs <- fmt.Sprintf("%s %s from %q: Allow-Origin %q", req.Method, target, o, acao)
			case listed && req.Method == "OPTIONS" && resp.StatusCode != 204:
				errs <- fmt.Sprintf("preflight to %s from the listed origin: %d", target, resp.StatusCode)
			}
		}(i)
	}
	close(start)
	wg.Wait()
	close(errs)
	var count int
	for e := range errs {
		if count++; count <= 10 {
			t.Error(e)
		}
	}
	for _, m := range g.upstream.seen() {
		if m == http.MethodOptions {
			t.Fatalf("a preflight reached the upstream")
		}
	}
}

// TestCORSConfigurationRefused: `caddy validate` refuses origins a browser never sends, naming the
// file, the line and the reason.
func TestCORSConfigurationRefused(t *testing.T) {
	t.Parallel()
	home := t.TempDir()
	tests := []struct {
		name, client, guard, want, line string
	}{
		{"wildcard", "allowed_origins https://*.example.com", "", `client "spa": allowed_origins: origin "https://*.example.com": wildcards are not allowed; list each origin`, "Caddyfile:7"},
		{"trailing slash", "allowed_origins https://spa.example.com/", "", `client "spa": allowed_origins: origin "https://spa.example.com/": remove the trailing slash`, "Caddyfile:7"},
		{"null", "allowed_origins null", "", `origin "null" cannot be allowed`, "Caddyfile:7"},
		{"upper case", "allowed_origins https://SPA.example.com", "", `write it in lower case ("https://spa.example.com")`, "Caddyfile:7"},
		{"guard path", "", "cors https://spa.example.com/app", `cors: origin "https://spa.example.com/app": an origin has no path`, "Caddyfile:14"},
		{"guard star", "", "cors *", `cors: origin "*": wildcards are not allowed`, "Caddyfile:14"},
	}
	for _, tt := range tests {
		cf := fmt.Sprintf("{\n\tadmin off\n\toauth2 {\n\t\tclient spa {\n\t\t\tpublic\n\t\t\tredirect_uris https://spa.example.com/\n\t\t\t%s\n\t\t}\n\t}\n}\n\nhttp://127.0.0.1:1 {\n\toauth2_guard {\n\t\t%s\n\t}\n\trespond ok\n}\n", tt.client, tt.guard)
		file := filepath.Join(home, "Caddyfile")
		if err := os.WriteFile(file, []byte(cf), 0o600); err != nil {
			t.Fatal(err)
		}
		_, stderr, err := caddyCLI(t, home, "validate", "--config", file, "--adapter", "caddyfile")
		msg := strings.ReplaceAll(stderr, `\"`, `"`) // the log line is JSON
		if err == nil || !strings.Contains(msg, tt.want) || !strings.Contains(msg, tt.line) {
			t.Errorf("%s: caddy validate: %v\n%s\nwant %q at %s", tt.name, err, stderr, tt.want, tt.line)
		}
	}
}
