package tests

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/oauth2gate/oauth2gate/authz/tokenstore/redistest"
)

// oauth2CLI runs `caddy oauth2 <args>` against in's admin endpoint.
func oauth2CLI(t *testing.T, in *instance, args ...string) (string, string, error) {
	t.Helper()
	full := append([]string{"oauth2"}, args...)
	if in != nil {
		full = append(full, "--address", fmt.Sprintf("127.0.0.1:%d", in.adminPort))
	}
	return caddyCLI(t, t.TempDir(), full...)
}

var cliField = regexp.MustCompile(`(?m)^(client_id|client_secret): (\S+)$`)

// TestAdminCLI: `caddy oauth2 register | clients | grants | revoke` through
// the real binary: their effects, their output, --help for each, and a
// non-zero exit with one line on stderr for every error.
func TestAdminCLI(t *testing.T) {
	g := startGuardGate(t, guardOpts{})
	out, errOut, err := oauth2CLI(t, g.in, "register", "--id", "batch", "--grants", "client_credentials", "--scopes", "read,write", "--name", "Batch job")
	if err != nil {
		t.Fatalf("register: %v %s", err, errOut)
	}
	got := map[string]string{}
	for _, m := range cliField.FindAllStringSubmatch(out, -1) {
		got[m[1]] = m[2]
	}
	if got["client_id"] != "batch" || len(got["client_secret"]) < 22 {
		t.Fatalf("register printed %q", out)
	}
	g.in.remember("registered client secret", got["client_secret"])
	cc := g.in.token(t, tokenCall{Form: form("grant_type", "client_credentials", "scope", "read"), Basic: basic("batch", got["client_secret"])}).mustToken(t)
	g.do(t, apiCall{Path: "/any/x", Bearer: cc.Access}).mustPass(t)

	out, _, err = oauth2CLI(t, g.in, "clients")
	if err != nil || !regexp.MustCompile(`(?m)^batch\s+registered\s+confidential\s+client_credentials\s+read,write`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^svc\s+config\s`).MatchString(out) || strings.Contains(out, got["client_secret"]) {
		t.Fatalf("clients: %v\n%s", err, out)
	}

	p1, p2 := g.pwToken(t, "read"), g.pwToken(t, "write")
	out, _, err = oauth2CLI(t, g.in, "grants", "--subject", "alice")
	if err != nil || strings.Count(out, "\napp ") != 2 || strings.Contains(out, p1.Access) {
		t.Fatalf("grants: %v\n%s", err, out)
	}
	out, _, err = oauth2CLI(t, g.in, "revoke", "--subject", "alice")
	if err != nil || strings.TrimSpace(out) != "revoked 4 tokens" {
		t.Fatalf("revoke: %v %q", err, out)
	}
	for _, a := range []string{p1.Access, p2.Access} {
		g.do(t, apiCall{Path: "/any/x", Bearer: a}).mustDeny(t, denial{Status: http.StatusUnauthorized, Code: "invalid_token"})
	}
	g.do(t, apiCall{Path: "/any/x", Bearer: cc.Access}).mustPass(t)
	if out, _, err = oauth2CLI(t, g.in, "revoke", "--client", "batch"); err != nil || strings.TrimSpace(out) != "revoked 1 tokens" {
		t.Fatalf("revoke --client: %v %q", err, out)
	}
	g.do(t, apiCall{Path: "/any/x", Bearer: cc.Access}).mustDeny(t, denial{Status: http.StatusUnauthorized, Code: "invalid_token"})

	errs := []struct {
		name string
		args []string
		in   *instance
		want string
	}{
		{"no selector", []string{"revoke"}, g.in, "--subject or --client is required"},
		{"grants without selector", []string{"grants"}, g.in, "--subject or --client is required"},
		{"unknown grant", []string{"register", "--grants", "magic"}, g.in, "HTTP 400"},
		{"relative redirect", []string{"register", "--grants", "authorization_code", "--redirect-uri", "/cb"}, g.in, "absolute"},
		{"duplicate id", []string{"register", "--id", "batch", "--grants", "client_credentials"}, g.in, "HTTP 400"},
		{"nothing listening", []string{"clients", "--address", fmt.Sprintf("127.0.0.1:%d", freePorts(t, 1)[0])}, nil, "caddy oauth2 clients:"},
		{"stray argument", []string{"clients", "extra"}, g.in, "unexpected argument"},
	}
	for _, c := range errs {
		out, errOut, err := oauth2CLI(t, c.in, c.args...)
		lines := strings.Split(strings.TrimSpace(errOut), "\n")
		if err == nil || len(lines) != 1 || !strings.Contains(errOut, c.want) || !strings.HasPrefix(lines[0], "caddy oauth2 ") {
			t.Errorf("%s: err %v, stdout %q, stderr %q: want a non-zero exit and one line naming %q", c.name, err, out, errOut, c.want)
		}
	}
	for _, sub := range []string{"clients", "register", "grants", "revoke"} {
		out, _, err := caddyCLI(t, t.TempDir(), "oauth2", sub, "--help")
		if err != nil || !strings.Contains(out, "--address") {
			t.Errorf("oauth2 %s --help: %v\n%s", sub, err, out)
		}
	}
	if out, _, err := caddyCLI(t, t.TempDir(), "oauth2", "--help"); err != nil || !strings.Contains(out, "register") {
		t.Errorf("oauth2 --help: %v\n%s", err, out)
	}
}

// TestAdminRedisTwoInstances: two instances on one real redis-server. A
// client registered on A gets tokens on B at the next request; alice's
// tokens, cached on B, are refused by B at its next request after A revokes
// her; deleting the client on B ends its token at A and its next token
// request at A.
func TestAdminRedisTwoInstances(t *testing.T) {
	srv := redistest.Start(t)
	const prefix = "e2e-admin:"
	gates := sharedGates(t, 2, "store redis "+srv.URL()+" {\n\tkey_prefix "+prefix+"\n}", "")
	a, b := gates[0], gates[1]
	raw := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer raw.Close()

	rc := register(t, a.in, `{"client_id":"batch","grants":["client_credentials"],"scopes":["read"]}`)
	b.in.remember("registered client secret", rc.ClientSecret)
	cc := b.in.token(t, tokenCall{Form: form("grant_type", "client_credentials"), Basic: basic("batch", rc.ClientSecret)}).mustToken(t)
	status, list := adminDo(t, b.in, http.MethodGet, "/oauth2/clients", "")
	if status != http.StatusOK || !strings.Contains(string(list), `"client_id":"batch"`) {
		t.Fatalf("B does not list the client registered on A: %d %s", status, list)
	}

	p1 := a.pwToken(t, "read")
	p2 := b.pwToken(t, "read")
	waitCachedOn(t, b, raw, redisKey(prefix, p1.Access), p1.Access, true)
	waitCachedOn(t, b, raw, redisKey(prefix, p2.Access), p2.Access, true)
	if gr := grantsOf(t, b.in, "subject=alice"); len(gr) != 2 {
		t.Fatalf("B sees %d grants of alice, want 2", len(gr))
	}
	if n := adminRevoke(t, a.in, `{"subject":"alice"}`); n != 4 {
		t.Fatalf("revoked %d tokens, want 4", n)
	}
	for _, tok := range []string{p1.Access, p2.Access} {
		b.do(t, apiCall{Path: "/rw/orders", Bearer: tok}).mustDeny(t, denial{Status: http.StatusUnauthorized, Code: "invalid_token"})
	}
	b.in.token(t, b.refreshCall(p1.Refresh)).mustError(t, outcome{http.StatusBadRequest, "invalid_grant"})

	waitCachedOn(t, a, raw, redisKey(prefix, cc.Access), cc.Access, true)
	if status, b := adminDo(t, b.in, http.MethodDelete, "/oauth2/clients/batch", ""); status != http.StatusNoContent {
		t.Fatalf("delete on B: %d %s", status, b)
	}
	a.do(t, apiCall{Path: "/rw/orders", Bearer: cc.Access}).mustDeny(t, denial{Status: http.StatusUnauthorized, Code: "invalid_token"})
	if r := a.in.token(t, tokenCall{Form: form("grant_type", "client_credentials"), Basic: basic("batch", rc.ClientSecret)}); r.Status != http.StatusUnauthorized {
		t.Fatalf("A still issues to the client deleted on B: %s", r)
	}
}
