package tests

// Issue 12 ("One room per concern"): the gateway stands on its own, and a reload that changes the
// cache takes effect while the store stays open.

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/oauth2gate/oauth2gate/authz/tokenstore/redistest"
)

// TestGuardOnlyOnSharedRedis: a Caddy whose oauth2 block names only a shared Redis store (no
// client, no user, no secrets_key, no oauth2_server) runs the gateway alone. It accepts what the
// issuing instance issues, refuses what it revokes at its next request, and serves no endpoint.
func TestGuardOnlyOnSharedRedis(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	issuer := sharedGates(t, 1, "store redis "+srv.URL(), "")[0]

	upstream := startEchoUpstream(t)
	api := fmt.Sprintf("http://127.0.0.1:%d", freePorts(t, 1)[0])
	site := fmt.Sprintf("%[2]s {\n"+guardRoutes+"}\n", upstream, api)
	guardIn := startCaddyWith(t, "", siteOptions{Store: "store redis " + srv.URL(), NoServer: true, Issuer: issuer.in.base, ExtraSites: site})
	if strings.Contains(guardIn.caddyfileText(), "secrets_key") || strings.Contains(guardIn.caddyfileText(), "oauth2_server") {
		t.Fatalf("the guard-only Caddyfile is not guard-only:\n%s", guardIn.caddyfileText())
	}
	g := &guardGate{in: guardIn, api: api, upstream: upstream, svc: issuer.svc, app: issuer.app, alice: issuer.alice}

	cc := issuer.ccToken(t, "read")
	e := g.do(t, apiCall{Path: "/rw/orders", Bearer: cc}).mustPass(t)
	if e.Header.Get("X-Auth-Subject") != issuer.svc.ID || e.Header.Get("Authorization") != "" {
		t.Errorf("the upstream saw %v", e.Header)
	}
	g.do(t, apiCall{Method: "POST", Path: "/rw/orders", Bearer: cc}).mustDeny(t, denial{Status: http.StatusForbidden, Code: "insufficient_scope", Scope: "write"})
	g.do(t, apiCall{Path: "/rw/orders", Bearer: "unknown-token"}).mustDeny(t, denial{Status: http.StatusUnauthorized, Code: "invalid_token"})

	pw := issuer.pwToken(t, "read")
	g.do(t, apiCall{Path: "/rw/orders", Bearer: pw.Access}).mustPass(t)
	issuer.in.token(t, issuer.refreshCall(pw.Refresh)).mustToken(t) // rotation revokes pw.Access
	g.do(t, apiCall{Path: "/rw/orders", Bearer: pw.Access}).mustDeny(t, denial{Status: http.StatusUnauthorized, Code: "invalid_token"})

	// No authorization server runs here.
	for _, p := range []string{"/o/token", "/oauth2/token", "/.well-known/openid-configuration"} {
		resp, err := guardIn.http.Post(guardIn.base+p, "application/x-www-form-urlencoded", strings.NewReader("grant_type=client_credentials"))
		if err != nil {
			t.Fatal(err)
		}
		if body := readAll(t, resp); resp.StatusCode != http.StatusNotFound {
			t.Errorf("POST %s on the guard-only Caddy: %d %s", p, resp.StatusCode, body)
		}
	}
	// And no server secret was created or read: the guard-only Caddy holds no secrets_key.
	if strings.Contains(guardIn.log.String(), "secrets key") || strings.Contains(guardIn.log.String(), "secrets_key") {
		t.Errorf("the guard-only Caddy dealt with secrets:\n%s", guardIn.log.String())
	}
}

// reloadCaddy runs `caddy reload` with in's Caddyfile rewritten by edit.
func reloadCaddy(t *testing.T, in *instance, edit func(string) string) {
	t.Helper()
	cf := in.caddyfileText()
	changed := edit(cf)
	if changed == cf {
		t.Fatal("the edit changed nothing in the Caddyfile")
	}
	if err := os.WriteFile(in.file, []byte(changed), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(caddyBin, "reload", "--config", in.file, "--adapter", "caddyfile",
		"--address", fmt.Sprintf("127.0.0.1:%d", in.adminPort)).CombinedOutput()
	if err != nil {
		t.Fatalf("caddy reload: %v\n%s", err, out)
	}
}

// TestReloadTakesNewCacheSettings: `caddy reload` with another cache ttl builds a cache with that
// ttl (a token deleted from Redis behind the guard's back is refused once the new ttl has passed,
// which the old ttl of an hour would not do), and the open store is kept: it is opened once, and
// tokens issued before the reload still work.
func TestReloadTakesNewCacheSettings(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	raw := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer raw.Close()
	const prefix = "reload-cache:"
	g := sharedGates(t, 1, "store redis "+srv.URL()+" {\n\tkey_prefix "+prefix+"\n}", "cache {\n\tttl 1h\n}")[0]
	before := g.ccToken(t, "read")
	waitCachedOn(t, g, raw, redisKey(prefix, before), before, true)

	reloadCaddy(t, g.in, func(cf string) string { return strings.Replace(cf, "ttl 1h", "ttl 2s", 1) })
	g.do(t, apiCall{Path: "/rw/orders", Bearer: before}).mustPass(t)

	// The new cache holds the token for 2s, not an hour.
	tok := g.ccToken(t, "read")
	key := redisKey(prefix, tok)
	waitCachedOn(t, g, raw, key, tok, false) // cached, and now gone from Redis
	deadline := time.Now().Add(15 * time.Second)
	for {
		r := g.do(t, apiCall{Path: "/rw/orders", Bearer: tok})
		if r.Status == http.StatusUnauthorized {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("15s after the reload to cache ttl 2s, the guard still answers a token deleted from Redis from its cache: %s", r)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := strings.Count(g.in.log.String(), `"msg":"token store opened"`); n != 1 {
		t.Errorf("the token store was opened %d times across the reload, want once", n)
	}
	if n := raw.Exists(context.Background(), redisKey(prefix, before)).Val(); n != 1 {
		t.Fatal("the token issued before the reload is gone from Redis")
	}
}

// TestReloadKeepsTheStoreFileOpen: with the file store, a reload that changes the cache size and
// ttl and the refresh token lifetime (the store's replay window) keeps the one open store: the
// file is not opened a second time (it cannot be), and every token lives on.
func TestReloadKeepsTheStoreFileOpen(t *testing.T) {
	t.Parallel()
	g := startGuardGate(t, guardOpts{Settings: "cache {\n\tmax_tokens 1000\n\tttl 1m\n}\nrefresh_token {\n\tttl 48h\n}"})
	cc := g.ccToken(t, "read")
	pw := g.pwToken(t, "read")
	g.do(t, apiCall{Path: "/rw/orders", Bearer: cc}).mustPass(t)
	reloadCaddy(t, g.in, func(cf string) string {
		cf = strings.Replace(cf, "max_tokens 1000", "max_tokens 2000", 1)
		cf = strings.Replace(cf, "ttl 1m", "ttl 30s", 1)
		return strings.Replace(cf, "ttl 48h", "ttl 24h", 1)
	})
	g.do(t, apiCall{Path: "/rw/orders", Bearer: cc}).mustPass(t)
	g.do(t, apiCall{Path: "/rw/orders", Bearer: pw.Access}).mustPass(t)
	next := g.in.token(t, g.refreshCall(pw.Refresh)).mustToken(t)
	if next.Refresh == "" {
		t.Fatal("no refresh token after the reload")
	}
	// The refresh lifetime of the new configuration is in force.
	r := g.in.token(t, tokenCall{Path: "/introspect", Form: form("token", next.Refresh, "token_type_hint", "refresh_token"), Basic: basic(g.app.ID, g.app.Secret)})
	exp, _ := strconv.ParseInt(fmt.Sprint(r.JSON["exp"]), 10, 64)
	if left := time.Until(time.Unix(exp, 0)); r.JSON["active"] != true || left < 23*time.Hour || left > 24*time.Hour+time.Minute {
		t.Errorf("the refresh token issued after the reload lives %v (%s), want the new 24h", left, r)
	}
	g.do(t, apiCall{Path: "/rw/orders", Bearer: pw.Access}).mustDeny(t, denial{Status: http.StatusUnauthorized, Code: "invalid_token"})
	if n := strings.Count(g.in.log.String(), `"msg":"token store opened"`); n != 1 {
		t.Errorf("the token store was opened %d times across the reload, want once", n)
	}
}

// TestPackagesKeepToTheirRooms: the layout the README's "Layout" section describes, checked on the
// import graph rather than on file names: go-oauth2 is imported by authz/internal/gooauth2 alone
// (and by the benchmark's stock go-oauth2 server, which is the baseline), and the gateway
// (authz/gateway) depends neither on the authorization server (authz) nor on go-oauth2, so a
// Caddy that only guards links none of it in its path.
func TestPackagesKeepToTheirRooms(t *testing.T) {
	t.Parallel()
	root, err := findRepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	list := func(format string, pkgs ...string) map[string][]string {
		cmd := exec.Command("go", append([]string{"list", "-f", format}, pkgs...)...)
		cmd.Dir = root
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go list: %v", err)
		}
		m := map[string][]string{}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			f := strings.Fields(line)
			if len(f) > 0 {
				m[f[0]] = f[1:]
			}
		}
		return m
	}
	const mod = "github.com/oauth2gate/oauth2gate"
	imports := list(`{{.ImportPath}} {{join .Imports " "}} {{join .TestImports " "}}`, "./...")
	if len(imports) < 10 {
		t.Fatalf("go list found %d packages", len(imports))
	}
	for pkg, imps := range imports {
		if pkg == mod+"/authz/internal/gooauth2" || pkg == mod+"/tests/bench/stockserver" {
			continue
		}
		for _, imp := range imps {
			if strings.HasPrefix(pkg, mod+"/authz") && strings.HasPrefix(imp, "github.com/caddyserver/") {
				t.Errorf("%s imports %s: authz is a Caddy-free library; Caddy belongs in caddymodule", pkg, imp)
			}
			if strings.HasPrefix(imp, "github.com/go-oauth2/") {
				t.Errorf("%s imports %s: go-oauth2 belongs behind authz/internal/gooauth2", pkg, imp)
			}
		}
	}
	// The rooms of the README's table, top to bottom: a package imports only
	// rooms below its own (rooms on one row share a level and do not import
	// each other).
	rooms := [][]string{
		{"authz"},
		{"authz/internal/gooauth2"},
		{"authz/backend"},
		{"authz/metrics"},
		{"authz/trust"},
		{"authz/cache"},
		{"authz/gateway"},
		{"authz/tokenstore", "authz/tokenstore/redistest"},
		{"authz/cors", "authz/params", "authz/oautherr", "authz/scope", "authz/jsonenc", "authz/ui"},
	}
	level := map[string]int{}
	for i, row := range rooms {
		for _, p := range row {
			level[mod+"/"+p] = i
		}
	}
	prod := list(`{{.ImportPath}} {{join .Imports " "}}`, "./authz/...")
	for pkg, imps := range prod {
		lp, ok := level[pkg]
		if !ok {
			t.Errorf("%s is in no room of the README's Layout table (add it there and here)", pkg)
			continue
		}
		for _, imp := range imps {
			if li, ok := level[imp]; ok && li <= lp {
				t.Errorf("%s imports %s: a room imports only the rooms below it in the README's Layout table", pkg, imp)
			}
		}
	}
	deps := list(`{{.ImportPath}} {{join .Deps " "}}`, "./authz/gateway")
	for _, d := range deps[mod+"/authz/gateway"] {
		if d == mod+"/authz" || strings.HasPrefix(d, "github.com/go-oauth2/") || d == mod+"/authz/tokenstore" {
			t.Errorf("authz/gateway depends on %s: the gateway stands on its own", d)
		}
	}
}
