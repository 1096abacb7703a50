package caddymodule

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/oauth2gate/oauth2gate/authz/cors"
)

const guardSPA = "https://spa.test"

// corsGuard is `oauth2_guard { scope GET read; scope POST,PUT,DELETE write; cors https://spa.test }`
// (or the given shape) on the fixture's server.
func corsGuard(t *testing.T, f *guardFixture, g *Guard) *Guard {
	t.Helper()
	if g == nil {
		g = &Guard{MethodScopes: []MethodScope{{Methods: []string{"GET"}, Scopes: []string{"read"}}, {Methods: []string{"POST", "PUT", "DELETE"}, Scopes: []string{"write"}}}}
	}
	if g.CORS == nil {
		g.CORS = []string{guardSPA}
	}
	if err := g.setup(f.srv); err != nil {
		t.Fatal(err)
	}
	return g
}

// upstream counts the requests that reach it and answers with CORS headers
// of its own, as an API that already speaks CORS does.
type upstream struct {
	mu    sync.Mutex
	calls int
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) error {
	u.mu.Lock()
	u.calls++
	u.mu.Unlock()
	h := w.Header()
	h.Add("Access-Control-Allow-Origin", "*")
	h.Add("Access-Control-Allow-Credentials", "true")
	h.Add("Access-Control-Expose-Headers", "X-Total-Count")
	h.Add("Vary", "Accept-Encoding")
	h.Set("Content-Type", "application/json")
	_, err := io.Copy(w, strings.NewReader(`{"ok":true}`)) // through ReadFrom, as file_server copies
	return err
}

func (u *upstream) count() int { u.mu.Lock(); defer u.mu.Unlock(); return u.calls }

func preflight(origin, method, headers string) *http.Request {
	r := guardRequest("")
	r.Method = http.MethodOptions
	r.Header.Del("Authorization")
	if origin != "" {
		r.Header.Set("Origin", origin)
	}
	r.Header.Set(cors.RequestMethod, method)
	if headers != "" {
		r.Header.Set(cors.RequestHeaders, headers)
	}
	return r
}

// Every preflight rule of the guard's cors line.
func TestGuardPreflightRules(t *testing.T) {
	f := newGuardFixture(t)
	perMethod := corsGuard(t, f, nil)
	inline := corsGuard(t, f, &Guard{Scopes: []string{"read"}})
	noScopes := corsGuard(t, f, &Guard{})
	many := strings.Repeat("x-a,", 10) + func() string {
		var s []string
		for i := 0; i < 33; i++ {
			s = append(s, "x-"+strings.Repeat("h", i+1))
		}
		return strings.Join(s, ",")
	}()
	tests := []struct {
		name            string
		g               *Guard
		origin, method  string
		reqHeaders      string
		status          int
		methods, allowH string
	}{
		{"listed, DELETE", perMethod, guardSPA, "DELETE", "authorization", 204, "DELETE, GET, POST, PUT", "authorization, content-type"},
		{"listed, GET with JSON", perMethod, guardSPA, "GET", "Authorization, Content-Type", 204, "DELETE, GET, POST, PUT", "authorization, content-type"},
		{"listed, extra headers echoed", perMethod, guardSPA, "PUT", "X-Request-Id, authorization, x-b", 204, "DELETE, GET, POST, PUT", "authorization, content-type, x-b, x-request-id"},
		{"listed, PATCH no line names (fail closed)", perMethod, guardSPA, "PATCH", "authorization", 204, "DELETE, GET, POST, PUT", "authorization, content-type"},
		{"listed, lower-case method left out", perMethod, guardSPA, "patch", "", 204, "DELETE, GET, POST, PUT", "authorization, content-type"},
		{"listed, garbage method left out", perMethod, guardSPA, "GET, PATCH", "", 204, "DELETE, GET, POST, PUT", "authorization, content-type"},
		{"listed, malformed header list", perMethod, guardSPA, "GET", "authorization, x b", 204, "DELETE, GET, POST, PUT", "authorization, content-type"},
		{"listed, too many headers", perMethod, guardSPA, "GET", many, 204, "DELETE, GET, POST, PUT", "authorization, content-type"},
		{"inline scopes admit any method", inline, guardSPA, "PATCH", "authorization", 204, "PATCH", "authorization, content-type"},
		{"no scopes admit any method", noScopes, guardSPA, "PURGE", "authorization", 204, "PURGE", "authorization, content-type"},
		{"unlisted origin", perMethod, "https://evil.test", "GET", "authorization", 401, "", ""},
		{"null origin", perMethod, "null", "GET", "authorization", 401, "", ""},
		{"upper-case spelling", perMethod, "HTTPS://SPA.TEST", "GET", "authorization", 401, "", ""},
		{"trailing slash", perMethod, guardSPA + "/", "GET", "authorization", 401, "", ""},
		{"default port", perMethod, guardSPA + ":443", "GET", "authorization", 401, "", ""},
		{"suffix", perMethod, guardSPA + ".evil.test", "GET", "authorization", 401, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up := &upstream{}
			w := httptest.NewRecorder()
			if err := tt.g.ServeHTTP(w, preflight(tt.origin, tt.method, tt.reqHeaders), up); err != nil {
				t.Fatal(err)
			}
			h := w.Result().Header
			if w.Code != tt.status || up.count() != 0 {
				t.Fatalf("status %d, upstream reached %d times; want %d and never", w.Code, up.count(), tt.status)
			}
			if h.Get(cors.AllowMethods) != tt.methods || h.Get(cors.AllowHeaders) != tt.allowH {
				t.Errorf("Allow-Methods %q, Allow-Headers %q; want %q, %q", h.Get(cors.AllowMethods), h.Get(cors.AllowHeaders), tt.methods, tt.allowH)
			}
			if h.Get(cors.AllowCredentials) != "" {
				t.Error("Allow-Credentials on a preflight")
			}
			if tt.status == 204 {
				if got := h.Values(cors.AllowOrigin); len(got) != 1 || got[0] != guardSPA || h.Get(cors.MaxAge) != "600" {
					t.Errorf("Allow-Origin %q, Max-Age %q", got, h.Get(cors.MaxAge))
				}
				return
			}
			if h.Get(cors.AllowOrigin) != "" || !strings.HasPrefix(h.Get("WWW-Authenticate"), "Bearer") || !strings.Contains(h.Get("Vary"), "Origin") {
				t.Errorf("an unlisted origin's preflight: %v", h)
			}
		})
	}
}

// Answers to a listed origin carry one Allow-Origin and expose
// WWW-Authenticate, the guard's refusals and the upstream's answers alike;
// the upstream's own CORS headers give way to the guard's (never its
// Allow-Credentials), the names it exposes are kept.
func TestGuardCORSOnEveryAnswer(t *testing.T) {
	f := newGuardFixture(t)
	g := corsGuard(t, f, nil)
	read := f.issue(t, "read")
	tests := []struct {
		name, method, token string
		status              int
		upstream            bool
	}{
		{"no token", "GET", "", 401, false},
		{"unknown token", "GET", "unknown-token-0123456789", 401, false},
		{"malformed token", "GET", "a b", 401, false},
		{"insufficient scope", "DELETE", read, 403, false},
		{"method no line names", "PATCH", read, 403, false},
		{"lower-case method", "get", read, 400, false},
		{"valid token", "GET", read, 200, true},
	}
	for _, tt := range tests {
		for _, origin := range []string{guardSPA, "https://evil.test", "null", ""} {
			t.Run(tt.name+" from "+origin, func(t *testing.T) {
				r := guardRequest(tt.token)
				r.Method = tt.method
				if tt.token == "" {
					r.Header.Del("Authorization")
				}
				if origin != "" {
					r.Header.Set("Origin", origin)
				}
				up := &upstream{}
				w := httptest.NewRecorder()
				if err := g.ServeHTTP(w, r, up); err != nil {
					t.Fatal(err)
				}
				h := w.Result().Header
				if w.Code != tt.status || (up.count() == 1) != tt.upstream {
					t.Fatalf("%d (upstream %d), want %d", w.Code, up.count(), tt.status)
				}
				if !strings.Contains(h.Get("Vary"), "Origin") || h.Get(cors.AllowCredentials) != "" {
					t.Errorf("Vary %q, Allow-Credentials %q", h.Values("Vary"), h.Get(cors.AllowCredentials))
				}
				if tt.upstream && !strings.Contains(h.Get("Vary"), "Accept-Encoding") {
					t.Errorf("the upstream's Vary was lost: %q", h.Values("Vary"))
				}
				got := h.Values(cors.AllowOrigin)
				if origin != guardSPA {
					if len(got) != 0 || h.Get(cors.ExposeHeaders) != "" {
						t.Errorf("origin %q got CORS headers %v", origin, h)
					}
					return
				}
				if len(got) != 1 || got[0] != guardSPA {
					t.Errorf("Allow-Origin %q, want exactly %q", got, guardSPA)
				}
				want := "WWW-Authenticate, Retry-After"
				if tt.upstream {
					want += ", X-Total-Count"
				}
				if e := h.Values(cors.ExposeHeaders); len(e) != 1 || e[0] != want {
					t.Errorf("Expose-Headers %q, want %q", e, want)
				}
				if !tt.upstream && h.Get("WWW-Authenticate") == "" && tt.status != 400 {
					t.Errorf("a refusal without WWW-Authenticate")
				}
			})
		}
	}
}

// Without a cors line the guard leaves the upstream's CORS headers alone
// and answers a preflight as any request without a token.
func TestGuardWithoutCORSLeavesUpstreamAlone(t *testing.T) {
	f := newGuardFixture(t)
	g := f.guard
	up := &upstream{}
	r := guardRequest(f.issue(t, "read"))
	r.Header.Set("Origin", guardSPA)
	w := httptest.NewRecorder()
	if err := g.ServeHTTP(w, r, up); err != nil {
		t.Fatal(err)
	}
	h := w.Result().Header
	if h.Get(cors.AllowOrigin) != "*" || h.Get(cors.AllowCredentials) != "true" || h.Get(cors.ExposeHeaders) != "X-Total-Count" || h.Get("Vary") != "Accept-Encoding" {
		t.Errorf("upstream CORS headers changed without a cors line: %v", h)
	}
	w = httptest.NewRecorder()
	if err := g.ServeHTTP(w, preflight(guardSPA, "GET", "authorization"), up); err != nil {
		t.Fatal(err)
	}
	if w.Code != 401 || up.count() != 1 || w.Result().Header.Get(cors.AllowOrigin) != "" {
		t.Errorf("preflight without a cors line: %d, upstream %d, %v", w.Code, up.count(), w.Result().Header)
	}
}

// With handle_errors, and when a later handler fails (a 502 from
// reverse_proxy is written by Caddy, not through the guard's writer), the
// CORS headers are already on the answer.
func TestGuardCORSOnErrorRoutes(t *testing.T) {
	f := newGuardFixture(t)
	g := corsGuard(t, f, nil)
	g.errorRoutes = true
	r := guardRequest("unknown-token-0123456789")
	r.Header.Set("Origin", guardSPA)
	w := httptest.NewRecorder()
	err := g.ServeHTTP(w, r, &upstream{})
	var he caddyhttp.HandlerError
	if !errors.As(err, &he) || he.StatusCode != 401 {
		t.Fatalf("with handle_errors: %v", err)
	}
	if h := w.Header(); h.Get(cors.AllowOrigin) != guardSPA || h.Get(cors.ExposeHeaders) == "" || h.Get("WWW-Authenticate") == "" {
		t.Errorf("headers for the error routes: %v", h)
	}
	g.errorRoutes = false
	r = guardRequest(f.issue(t, "read"))
	r.Header.Set("Origin", guardSPA)
	w = httptest.NewRecorder()
	err = g.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error {
		return caddyhttp.Error(http.StatusBadGateway, errors.New("dial tcp: connection refused"))
	}))
	if err == nil || w.Header().Get(cors.AllowOrigin) != guardSPA {
		t.Errorf("upstream failure: %v, headers %v", err, w.Header())
	}
}

// Hundreds of preflights and requests at once, listed and not: every
// answer is the one its origin gets alone.
func TestGuardCORSBurst(t *testing.T) {
	f := newGuardFixture(t)
	g := corsGuard(t, f, nil)
	read := f.issue(t, "read")
	up := &upstream{}
	const n = 400
	var wg sync.WaitGroup
	errs := make(chan string, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			listed := i%2 == 0
			origin := guardSPA
			if !listed {
				origin = "https://evil.test"
			}
			var r *http.Request
			if i%4 < 2 {
				r = preflight(origin, "DELETE", "authorization")
			} else {
				r = guardRequest(read)
				r.Header.Set("Origin", origin)
			}
			w := httptest.NewRecorder()
			if err := g.ServeHTTP(w, r, up); err != nil {
				errs <- err.Error()
				return
			}
			got := w.Result().Header.Values(cors.AllowOrigin)
			if listed && (len(got) != 1 || got[0] != guardSPA) || !listed && len(got) != 0 {
				errs <- "request " + w.Result().Status + " from " + origin + ": Allow-Origin " + strings.Join(got, "|")
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if up.count() != n/2 {
		t.Errorf("upstream reached %d times, want %d (the requests, no preflight)", up.count(), n/2)
	}
}

// benchWriter is a ResponseWriter whose header map is cleared between requests.
type benchWriter struct {
	h    http.Header
	code int
}

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *benchWriter) WriteHeader(code int)        { w.code = code }

// BenchmarkGuardHandlerCORS is BenchmarkGuardHandler's hot path (cache warm,
// scopes checked, identity set) answered through the same writer by a guard
// without a cors line ("off") and by one with a request from its listed
// origin ("on"): the price of the headers and of the writer that owns them.
func BenchmarkGuardHandlerCORS(b *testing.B) {
	for _, on := range []bool{false, true} {
		name := "off"
		if on {
			name = "on"
		}
		b.Run(name, func(b *testing.B) {
			f := newGuardFixture(b)
			if on {
				f.guard.CORS = []string{guardSPA}
				if err := f.guard.setup(f.srv); err != nil {
					b.Fatal(err)
				}
			}
			const n = 1024
			reqs, auth := f.warmRequests(b, n)
			for _, r := range reqs {
				r.Header.Set("Origin", guardSPA)
			}
			passed := 0
			next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error {
				passed++
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusOK)
				return nil
			})
			w := &benchWriter{h: http.Header{}}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				r := reqs[i%n]
				r.Header["Authorization"] = auth[i%n]
				clear(w.h)
				if err := f.guard.ServeHTTP(w, r, next); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			if passed != b.N || on && w.h.Get("Access-Control-Allow-Origin") != guardSPA {
				b.Fatalf("%d of %d requests passed; headers %v", passed, b.N, w.h)
			}
		})
	}
}

// BenchmarkGuardPreflight is a preflight from a listed origin, answered by the guard.
func BenchmarkGuardPreflight(b *testing.B) {
	f := newGuardFixture(b)
	f.guard.CORS = []string{guardSPA}
	if err := f.guard.setup(f.srv); err != nil {
		b.Fatal(err)
	}
	r := preflight(guardSPA, "GET", "authorization, content-type")
	w := &benchWriter{h: http.Header{}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		clear(w.h)
		if err := f.guard.ServeHTTP(w, r, nil); err != nil || w.code != 204 {
			b.Fatal(err, w.code)
		}
	}
}
