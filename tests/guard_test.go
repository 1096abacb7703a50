package tests

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oauth2gate/oauth2gate/internal/proclog"
)

const formCT = "application/x-www-form-urlencoded"

// auth is a header set with one Authorization value sent as is.
func auth(v string) http.Header { return http.Header{"Authorization": {v}} }

// TestGuardRefusals covers the refusing rows of the guard's RFC 6750 contract, end to end: status,
// the WWW-Authenticate challenge and the JSON body, on different handle blocks of one site.
func TestGuardRefusals(t *testing.T) {
	t.Parallel()
	g := startGuardGate(t, guardOpts{})
	read := g.ccToken(t, "read")
	write := g.ccToken(t, "write")
	rw := g.ccToken(t, "read write")
	all := g.ccToken(t, "read write admin")
	unknown := (randomSecret("") + randomSecret(""))[:43] // shaped like a real token
	last := byte('A')
	if read[len(read)-1] == 'A' {
		last = 'B'
	}
	tampered := read[:len(read)-1] + string(last)

	cases := []struct {
		name string
		call apiCall
		want denial
	}{
		// No token: 401 and a bare challenge (RFC 6750 §3.1: no error attribute).
		{"no token", apiCall{Path: "/rw/x"}, denial{Status: 401}},
		{"no token on POST", apiCall{Method: "POST", Path: "/admin/x", Body: "{}", ContentType: "application/json"}, denial{Status: 401}},
		{"no token on a guard without scopes", apiCall{Path: "/any/x"}, denial{Status: 401}},
		{"another auth scheme is no token", apiCall{Path: "/rw/x", Header: auth("Basic YWxpY2U6c2VjcmV0")}, denial{Status: 401}},
		{"access_token in a JSON body is no token", apiCall{Method: "POST", Path: "/rw/x", Body: `{"access_token":"` + write + `"}`, ContentType: "application/json"}, denial{Status: 401}},
		{"query token with query_token off is no token", apiCall{Path: "/noquery/x?access_token=" + read}, denial{Status: 401}},

		// Token in more than one place: 400 invalid_request (RFC 6750 §2).
		{"header and query", apiCall{Path: "/rw/x?access_token=" + read, Bearer: read}, denial{Status: 400, Code: "invalid_request"}},
		{"header and query, different tokens", apiCall{Path: "/rw/x?access_token=" + rw, Bearer: read}, denial{Status: 400, Code: "invalid_request"}},
		{"header and form body", apiCall{Method: "POST", Path: "/rw/x", Bearer: write, Body: "access_token=" + write + "&x=1", ContentType: formCT}, denial{Status: 400, Code: "invalid_request"}},
		{"query and form body", apiCall{Method: "POST", Path: "/rw/x?access_token=" + write, Body: "access_token=" + write + "&x=1", ContentType: formCT}, denial{Status: 400, Code: "invalid_request"}},

		// Unknown or broken tokens: 401 invalid_token.
		{"unknown token in header", apiCall{Path: "/rw/x", Bearer: unknown}, denial{Status: 401, Code: "invalid_token"}},
		{"unknown token in query", apiCall{Path: "/rw/x?access_token=" + unknown}, denial{Status: 401, Code: "invalid_token"}},
		{"unknown token in form body", apiCall{Method: "POST", Path: "/rw/x", Body: "access_token=" + unknown, ContentType: formCT}, denial{Status: 401, Code: "invalid_token"}},
		{"garbage token", apiCall{Path: "/any/x", Bearer: "garbage"}, denial{Status: 401, Code: "invalid_token"}},
		{"token with its last character changed", apiCall{Path: "/rw/x", Bearer: tampered}, denial{Status: 401, Code: "invalid_token"}},
		{"token with a suffix", apiCall{Path: "/rw/x", Bearer: read + "x"}, denial{Status: 401, Code: "invalid_token"}},
		{"token prefix", apiCall{Path: "/rw/x", Bearer: read[:20]}, denial{Status: 401, Code: "invalid_token"}},

		// Valid token without the route's scopes: 403 insufficient_scope naming what is needed.
		{"read token POSTs to a write route", apiCall{Method: "POST", Path: "/rw/x", Bearer: read, Body: "{}", ContentType: "application/json"}, denial{Status: 403, Code: "insufficient_scope", Scope: "write"}},
		{"write token GETs a read route", apiCall{Path: "/rw/x", Bearer: write}, denial{Status: 403, Code: "insufficient_scope", Scope: "read"}},
		{"read write token on the admin route", apiCall{Path: "/admin/x", Bearer: rw}, denial{Status: 403, Code: "insufficient_scope", Scope: "admin"}},
		{"read token on a route needing read and write", apiCall{Path: "/both/x", Bearer: read}, denial{Status: 403, Code: "insufficient_scope", Scope: "read write"}},
		{"query token without the scope", apiCall{Path: "/admin/x?access_token=" + read}, denial{Status: 403, Code: "insufficient_scope", Scope: "admin"}},
		{"PATCH not named and no * line: fail closed", apiCall{Method: "PATCH", Path: "/partial/x", Bearer: all, Body: "{}", ContentType: "application/json"}, denial{Status: 403, Code: "insufficient_scope"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g.do(t, c.call).mustDeny(t, c.want)
		})
	}
}

// TestGuardPassesAndStrips covers the passing row: the upstream sees neither the token nor a
// forged identity, and does see who called; and the query_token, strip_token and header_up options.
func TestGuardPassesAndStrips(t *testing.T) {
	t.Parallel()
	g := startGuardGate(t, guardOpts{})
	pw := g.pwToken(t, "read write")
	cc := g.ccToken(t, "read write")

	// noToken asserts that nothing the upstream saw carries tok.
	noToken := func(t *testing.T, e *echoed, tok string) {
		t.Helper()
		if v := e.Header.Values("Authorization"); len(v) != 0 {
			t.Errorf("upstream saw Authorization %q", v)
		}
		if strings.Contains(e.URI, "access_token") {
			t.Errorf("upstream saw access_token in the URI %q", e.URI)
		}
		raw, _ := json.Marshal(e)
		if strings.Contains(string(raw), tok) {
			t.Errorf("the token reached the upstream: %s", raw)
		}
	}
	identity := func(t *testing.T, e *echoed, sub, client, scope string) {
		t.Helper()
		if v := e.Header.Values("X-Auth-Subject"); len(v) != 1 || v[0] != sub {
			t.Errorf("X-Auth-Subject = %q, want [%q]", v, sub)
		}
		if v := e.Header.Values("X-Auth-Client-Id"); len(v) != 1 || v[0] != client {
			t.Errorf("X-Auth-Client-Id = %q, want [%q]", v, client)
		}
		if v := e.Header.Values("X-Auth-Scope"); len(v) != 1 || !sameScopes(v[0], scope) {
			t.Errorf("X-Auth-Scope = %q, want [%q]", v, scope)
		}
	}

	t.Run("password grant token in the header", func(t *testing.T) {
		e := g.do(t, apiCall{Path: "/rw/items/7?b=2&a=1", Bearer: pw.Access}).mustPass(t)
		noToken(t, e, pw.Access)
		identity(t, e, g.alice.Name, g.app.ID, "read write")
		if e.Method != "GET" || e.URI != "/rw/items/7?b=2&a=1" {
			t.Errorf("upstream saw %s %s, want GET /rw/items/7?b=2&a=1", e.Method, e.URI)
		}
	})

	t.Run("client_credentials token: subject is the client", func(t *testing.T) {
		e := g.do(t, apiCall{Path: "/rw/x", Bearer: cc}).mustPass(t)
		noToken(t, e, cc)
		identity(t, e, g.svc.ID, g.svc.ID, "read write")
	})

	t.Run("query token stripped, other parameters kept in order", func(t *testing.T) {
		for _, c := range []struct{ query, want string }{
			{"a=1&access_token=" + cc + "&b=2&a=3", "/rw/q?a=1&b=2&a=3"},
			{"access_token=" + cc + "&z=%20x&y", "/rw/q?z=%20x&y"},
			{"c=3&b=2&access_token=" + cc, "/rw/q?c=3&b=2"},
			{"access_token=" + cc, "/rw/q"},
		} {
			e := g.do(t, apiCall{Path: "/rw/q?" + c.query}).mustPass(t)
			noToken(t, e, cc)
			identity(t, e, g.svc.ID, g.svc.ID, "read write")
			if e.URI != c.want {
				t.Errorf("?%s: upstream saw URI %q, want %q", strings.Replace(c.query, cc, "<token>", 1), e.URI, c.want)
			}
		}
	})

	t.Run("form body token stripped", func(t *testing.T) {
		e := g.do(t, apiCall{Method: "POST", Path: "/rw/f?k=v", Body: "access_token=" + pw.Access + "&x=1", ContentType: formCT}).mustPass(t)
		noToken(t, e, pw.Access)
		identity(t, e, g.alice.Name, g.app.ID, "read write")
		if e.Method != "POST" || e.URI != "/rw/f?k=v" {
			t.Errorf("upstream saw %s %s, want POST /rw/f?k=v", e.Method, e.URI)
		}
		if e.Body != "x=1" {
			t.Errorf("upstream body = %q, want x=1", e.Body)
		}
		if cl := e.Header.Get("Content-Length"); cl != "" && cl != "3" {
			t.Errorf("upstream Content-Length = %q for a 3-byte body", cl)
		}
	})

	t.Run("chunked form body token stripped", func(t *testing.T) {
		e := g.do(t, apiCall{Method: "POST", Path: "/rw/f", Body: "x=1&access_token=" + pw.Access, ContentType: formCT, Chunked: true}).mustPass(t)
		noToken(t, e, pw.Access)
		if e.Body != "x=1" {
			t.Errorf("upstream body = %q, want x=1", e.Body)
		}
	})

	t.Run("form body without a token is passed on unchanged", func(t *testing.T) {
		body := "z=1&a=%C3%A9&m=x+y"
		e := g.do(t, apiCall{Method: "PUT", Path: "/rw/f", Bearer: pw.Access, Body: body, ContentType: formCT}).mustPass(t)
		noToken(t, e, pw.Access)
		if e.Body != body {
			t.Errorf("upstream body = %q, want %q unchanged", e.Body, body)
		}
	})

	t.Run("non-form body is passed on unchanged", func(t *testing.T) {
		body := `{"access_token":"not-mine","n":1}`
		e := g.do(t, apiCall{Method: "POST", Path: "/rw/j", Bearer: pw.Access, Body: body, ContentType: "application/json"}).mustPass(t)
		if e.Body != body {
			t.Errorf("upstream body = %q, want %q", e.Body, body)
		}
	})

	t.Run("forged identity headers are replaced", func(t *testing.T) {
		h := http.Header{
			"X-Auth-Subject":   {"admin", "root"},
			"X-Auth-Client-Id": {"evil"},
			"x-auth-scope":     {"admin"}, // sent as is, lower-case
			"X-Other":          {"kept"},
			// What php_fastcgi and other CGI-style upstreams read as
			// X-Auth-*: Caddy drops these before any handler runs.
			"X_Auth_Subject":   {"admin"},
			"x-auth_client-id": {"evil"},
			"X.Auth.Scope":     {"admin"},
		}
		e := g.do(t, apiCall{Path: "/rw/x", Bearer: pw.Access, Header: h}).mustPass(t)
		identity(t, e, g.alice.Name, g.app.ID, "read write")
		if e.Header.Get("X-Other") != "kept" {
			t.Errorf("an unrelated header was lost: %v", e.Header)
		}
		for k, v := range e.Header {
			cgi := strings.NewReplacer("-", "_", ".", "_").Replace(strings.ToUpper(k))
			if strings.HasPrefix(cgi, "X_AUTH_") && strings.ContainsAny(k, "_.") {
				t.Errorf("the upstream got %s: %q, an identity header in CGI spelling", k, v)
			}
		}
		// With the query token too.
		e = g.do(t, apiCall{Path: "/rw/x?access_token=" + cc, Header: h}).mustPass(t)
		identity(t, e, g.svc.ID, g.svc.ID, "read write")
	})

	t.Run("strip_token off keeps Authorization", func(t *testing.T) {
		e := g.do(t, apiCall{Path: "/nostrip/x", Bearer: pw.Access}).mustPass(t)
		if got := e.Header.Values("Authorization"); len(got) != 1 || got[0] != "Bearer "+pw.Access {
			t.Errorf("upstream Authorization = %q, want the caller's Bearer header", got)
		}
		identity(t, e, g.alice.Name, g.app.ID, "read write")
	})

	t.Run("header_up adds headers from placeholders and removes a default", func(t *testing.T) {
		h := http.Header{"X-User": {"mallory"}, "X-Who": {"forged"}, "X-Auth-Scope": {"admin"}}
		e := g.do(t, apiCall{Path: "/hdr/x", Bearer: pw.Access, Header: h}).mustPass(t)
		noToken(t, e, pw.Access)
		if v := e.Header.Values("X-User"); len(v) != 1 || v[0] != g.alice.Name {
			t.Errorf("X-User = %q, want [%q]", v, g.alice.Name)
		}
		if v := e.Header.Values("X-Who"); len(v) != 1 || v[0] != g.app.ID+" as "+g.alice.Name {
			t.Errorf("X-Who = %q, want [%q]", v, g.app.ID+" as "+g.alice.Name)
		}
		if v := e.Header.Values("X-Auth-Scope"); len(v) != 0 {
			t.Errorf("`header_up -X-Auth-Scope`: upstream still saw X-Auth-Scope %q (a client-sent one must be dropped too)", v)
		}
		if v := e.Header.Values("X-Auth-Subject"); len(v) != 1 || v[0] != g.alice.Name {
			t.Errorf("X-Auth-Subject = %q, want [%q]", v, g.alice.Name)
		}
	})

	t.Run("query_token off: the header still works", func(t *testing.T) {
		e := g.do(t, apiCall{Path: "/noquery/x", Bearer: cc}).mustPass(t)
		noToken(t, e, cc)
		g.do(t, apiCall{Path: "/noquery/x?access_token=" + cc}).mustDeny(t, denial{Status: 401})
	})

	t.Run("unguarded route is not reached through a guard", func(t *testing.T) {
		r := g.do(t, apiCall{Path: "/elsewhere"})
		if r.Status != http.StatusNotFound || r.Echo != nil {
			t.Errorf("fallback handle: want 404 not guarded, got %s", r)
		}
	})
}

// TestGuardMethodScopes checks the scope rules across handle blocks that carry different guards,
// and the CVE-2021-32701 regression: the cache holds facts about a token, never a verdict.
func TestGuardMethodScopes(t *testing.T) {
	t.Parallel()
	g := startGuardGate(t, guardOpts{})
	toks := map[string]string{}
	for _, s := range []string{"read", "write", "admin", "read write", "read write admin"} {
		toks[s] = g.ccToken(t, s)
	}
	const pass = 200
	cases := []struct {
		path, method, scope string
		status              int    // 200 or 403
		need                string // the scope attribute of a 403, "" when none is asserted
	}{
		// /rw: GET read; POST, PUT, DELETE write; nothing else.
		{"/rw/x", "GET", "read", pass, ""},
		{"/rw/x", "GET", "write", 403, "read"},
		{"/rw/x", "POST", "write", pass, ""},
		{"/rw/x", "POST", "read", 403, "write"},
		{"/rw/x", "PUT", "write", pass, ""},
		{"/rw/x", "PUT", "read", 403, "write"},
		{"/rw/x", "DELETE", "write", pass, ""},
		{"/rw/x", "DELETE", "read", 403, "write"},
		{"/rw/x", "HEAD", "read", pass, ""},
		{"/rw/x", "HEAD", "write", 403, "read"},
		{"/rw/x", "PATCH", "read write admin", 403, ""},
		{"/rw/x", "OPTIONS", "read write admin", 403, ""},
		// /partial: only GET and POST named: the rest fail closed.
		{"/partial/x", "GET", "read", pass, ""},
		{"/partial/x", "POST", "write", pass, ""},
		{"/partial/x", "HEAD", "read", pass, ""},
		{"/partial/x", "PATCH", "read write admin", 403, ""},
		{"/partial/x", "PUT", "read write admin", 403, ""},
		{"/partial/x", "DELETE", "read write admin", 403, ""},
		// /headnamed: a HEAD line wins over following GET.
		{"/headnamed/x", "HEAD", "read", 403, "admin"},
		{"/headnamed/x", "HEAD", "admin", pass, ""},
		{"/headnamed/x", "GET", "read", pass, ""},
		// /star: the line naming the method, else *.
		{"/star/x", "GET", "read", pass, ""},
		{"/star/x", "PATCH", "read", pass, ""},
		{"/star/x", "POST", "admin", 403, "read"},
		{"/star/x", "DELETE", "read", 403, "admin"},
		{"/star/x", "DELETE", "admin", pass, ""},
		// /admin (its own handle with `oauth2_guard admin`): admin on every method.
		{"/admin/x", "GET", "admin", pass, ""},
		{"/admin/x", "DELETE", "admin", pass, ""},
		{"/admin/x", "GET", "read write", 403, "admin"},
		{"/admin/x", "POST", "read write", 403, "admin"},
		// /both: inline scopes are all required.
		{"/both/x", "GET", "read write", pass, ""},
		{"/both/x", "PATCH", "read write", pass, ""},
		{"/both/x", "GET", "write", 403, "read write"},
		// /any: no scopes, any valid token.
		{"/any/x", "GET", "admin", pass, ""},
		{"/any/x", "DELETE", "read", pass, ""},
	}
	for _, c := range cases {
		t.Run(fmt.Sprintf("%s %s with %s", c.method, c.path, c.scope), func(t *testing.T) {
			call := apiCall{Method: c.method, Path: c.path, Bearer: toks[c.scope]}
			if c.method == "POST" || c.method == "PUT" || c.method == "PATCH" {
				call.Body, call.ContentType = `{"k":1}`, "application/json"
			}
			r := g.do(t, call)
			if c.status == pass {
				e := r.mustPass(t)
				if c.method != "HEAD" && e.Method != c.method {
					t.Errorf("upstream saw method %s", e.Method)
				}
				return
			}
			r.mustDeny(t, denial{Status: 403, Code: "insufficient_scope", Scope: c.need})
		})
	}

	// CVE-2021-32701 (ORY Oathkeeper): a verdict cached for one route was reused on another.
	t.Run("CVE-2021-32701 cache holds facts, not verdicts", func(t *testing.T) {
		read := g.ccToken(t, "read")
		g.do(t, apiCall{Path: "/rw/x", Bearer: read}).mustPass(t) // now cached
		g.do(t, apiCall{Method: "POST", Path: "/rw/x", Bearer: read, Body: "{}", ContentType: "application/json"}).
			mustDeny(t, denial{Status: 403, Code: "insufficient_scope", Scope: "write"})
		g.do(t, apiCall{Method: "DELETE", Path: "/rw/x?access_token=" + read}).
			mustDeny(t, denial{Status: 403, Code: "insufficient_scope", Scope: "write"})
		g.do(t, apiCall{Path: "/admin/x", Bearer: read}).mustDeny(t, denial{Status: 403, Code: "insufficient_scope", Scope: "admin"})
		g.do(t, apiCall{Path: "/rw/x", Bearer: read}).mustPass(t)

		write := g.ccToken(t, "write")
		g.do(t, apiCall{Method: "POST", Path: "/rw/x", Bearer: write, Body: "{}", ContentType: "application/json"}).mustPass(t)
		g.do(t, apiCall{Path: "/rw/x", Bearer: write}).mustDeny(t, denial{Status: 403, Code: "insufficient_scope", Scope: "read"})
	})
}

// TestGuardRevokedTokenRefusedOnNextRequest: refresh rotation revokes the old access token, and the
// guard, which has that token in its cache, refuses it on the very next request.
func TestGuardRevokedTokenRefusedOnNextRequest(t *testing.T) {
	t.Parallel()
	g := startGuardGate(t, guardOpts{})
	old := g.pwToken(t, "read write")
	for range 3 {
		g.do(t, apiCall{Path: "/rw/x", Bearer: old.Access}).mustPass(t) // cached now
	}
	g.do(t, apiCall{Path: "/rw/x?access_token=" + old.Access}).mustPass(t)
	fresh := g.in.token(t, g.refreshCall(old.Refresh)).mustToken(t)
	if fresh.Access == old.Access {
		t.Fatal("refresh returned the same access token")
	}
	g.do(t, apiCall{Path: "/rw/x", Bearer: old.Access}).mustDeny(t, denial{Status: 401, Code: "invalid_token"})
	g.do(t, apiCall{Path: "/rw/x?access_token=" + old.Access}).mustDeny(t, denial{Status: 401, Code: "invalid_token"})
	g.do(t, apiCall{Method: "POST", Path: "/rw/x", Body: "access_token=" + old.Access, ContentType: formCT}).mustDeny(t, denial{Status: 401, Code: "invalid_token"})
	e := g.do(t, apiCall{Path: "/rw/x", Bearer: fresh.Access}).mustPass(t)
	if e.Header.Get("X-Auth-Subject") != g.alice.Name {
		t.Errorf("X-Auth-Subject = %q after refresh", e.Header.Get("X-Auth-Subject"))
	}
}

// TestGuardExpiredToken: a token past its lifetime is refused even though the guard cached it.
func TestGuardExpiredToken(t *testing.T) {
	t.Parallel()
	g := startGuardGate(t, guardOpts{Settings: "access_token {\n\tttl 2s\n}"})
	issuedAt := time.Now()
	r := g.in.token(t, tokenCall{Form: form("grant_type", "client_credentials", "scope", "read"), Basic: basic(g.svc.ID, g.svc.Secret)})
	tok := r.mustToken(t)
	if tok.ExpiresIn > 2 {
		t.Errorf("expires_in = %d with access_token ttl 2s", tok.ExpiresIn)
	}
	g.do(t, apiCall{Path: "/rw/x", Bearer: tok.Access}).mustPass(t) // cached now
	time.Sleep(time.Until(issuedAt.Add(3 * time.Second)))
	g.do(t, apiCall{Path: "/rw/x", Bearer: tok.Access}).mustDeny(t, denial{Status: 401, Code: "invalid_token"})
	g.do(t, apiCall{Path: "/rw/x?access_token=" + tok.Access}).mustDeny(t, denial{Status: 401, Code: "invalid_token"})
	g.do(t, apiCall{Path: "/rw/x", Bearer: g.ccToken(t, "read")}).mustPass(t)
}

// TestGuardBadInput: malformed bearer input gets a clear 4xx RFC 6750 answer, never a 5xx or a
// panic, and Caddy keeps answering.
func TestGuardBadInput(t *testing.T) {
	t.Parallel()
	g := startGuardGate(t, guardOpts{})
	good := g.ccToken(t, "read write")
	huge := strings.Repeat("A", 1<<20)
	long := strings.Repeat("B", 9<<10) // beyond the guard's 8 KiB bound, within Caddy's header limit

	type want struct {
		pass    bool     // 200 from the upstream is the answer
		deny    []denial // else one of these refusals
		any4xx  bool     // else any 4xx (a limit of Caddy/net/http may answer before the guard)
		passToo bool     // 200 is acceptable as well as deny
	}
	bad := func(d ...denial) want { return want{deny: d} }
	cases := []struct {
		name string
		call apiCall
		want want
	}{
		{"lower-case bearer", apiCall{Path: "/rw/x", Header: auth("bearer " + good)}, want{pass: true}},
		{"upper-case BEARER", apiCall{Path: "/rw/x", Header: auth("BEARER " + good)}, want{pass: true}},
		{"extra spaces after Bearer", apiCall{Path: "/rw/x", Header: auth("Bearer    " + good)}, want{passToo: true, deny: []denial{{Status: 400, Code: "invalid_request"}, {Status: 401, Code: "invalid_token"}}}},
		{"tab after Bearer", apiCall{Path: "/rw/x", Header: auth("Bearer\t" + good)}, want{passToo: true, deny: []denial{{Status: 400, Code: "invalid_request"}, {Status: 401, Code: "invalid_token"}, {Status: 401}}}},
		{"trailing spaces", apiCall{Path: "/rw/x", Header: auth("Bearer " + good + "   ")}, want{passToo: true, deny: []denial{{Status: 401, Code: "invalid_token"}}}},
		{"Bearer without a token", apiCall{Path: "/rw/x", Header: auth("Bearer")}, bad(denial{Status: 400, Code: "invalid_request"})},
		{"Bearer and a space, no token", apiCall{Path: "/rw/x", Header: auth("Bearer ")}, bad(denial{Status: 400, Code: "invalid_request"})},
		{"Bearer and spaces, no token", apiCall{Path: "/rw/x", Header: auth("Bearer     ")}, bad(denial{Status: 400, Code: "invalid_request"})},
		{"no space after Bearer", apiCall{Path: "/rw/x", Header: auth("Bearer" + good)}, bad(denial{Status: 401}, denial{Status: 400, Code: "invalid_request"}, denial{Status: 401, Code: "invalid_token"})},
		{"space inside the token", apiCall{Path: "/rw/x", Header: auth("Bearer abc def")}, bad(denial{Status: 401, Code: "invalid_token"})},
		{"quote inside the token", apiCall{Path: "/rw/x", Header: auth(`Bearer a"b`)}, bad(denial{Status: 401, Code: "invalid_token"})},
		{"non-UTF-8 bytes", apiCall{Path: "/rw/x", Header: auth("Bearer \xff\xfe\xfd")}, bad(denial{Status: 401, Code: "invalid_token"})},
		{"valid token with a non-UTF-8 tail", apiCall{Path: "/rw/x", Header: auth("Bearer " + good + "\xff")}, bad(denial{Status: 401, Code: "invalid_token"})},
		{"non-ASCII UTF-8", apiCall{Path: "/rw/x", Header: auth("Bearer tökén")}, bad(denial{Status: 401, Code: "invalid_token"})},
		{"padding in the middle", apiCall{Path: "/rw/x", Header: auth("Bearer ab=cd")}, bad(denial{Status: 401, Code: "invalid_token"})},
		{"only padding", apiCall{Path: "/rw/x", Header: auth("Bearer ===")}, bad(denial{Status: 401, Code: "invalid_token"})},
		{"two Authorization headers", apiCall{Path: "/rw/x", Header: http.Header{"Authorization": {"Bearer " + good, "Bearer " + good}}}, bad(denial{Status: 400, Code: "invalid_request"})},
		{"9 KiB token in the header", apiCall{Path: "/rw/x", Header: auth("Bearer " + long)}, bad(denial{Status: 401, Code: "invalid_token"})},
		{"1 MB token in the header", apiCall{Path: "/rw/x", Header: auth("Bearer " + huge)}, want{any4xx: true}},
		{"1 MB token in the query", apiCall{Path: "/rw/x?access_token=" + huge}, want{any4xx: true}},
		{"1 MB token in a form body", apiCall{Method: "POST", Path: "/rw/x", Body: "access_token=" + huge + "&x=1", ContentType: formCT}, bad(denial{Status: 400, Code: "invalid_request"}, denial{Status: 413, Code: "invalid_request"}, denial{Status: 401, Code: "invalid_token"})},
		{"9 KiB token in the query", apiCall{Path: "/rw/x?access_token=" + long}, bad(denial{Status: 401, Code: "invalid_token"})},
		{"query token with an encoded space", apiCall{Path: "/rw/x?access_token=abc%20def"}, bad(denial{Status: 401, Code: "invalid_token"})},
		{"query token with non-UTF-8 bytes", apiCall{Path: "/rw/x?access_token=%FF%FE%FD"}, bad(denial{Status: 401, Code: "invalid_token"})},
		{"query token with broken percent-encoding", apiCall{Path: "/rw/x?access_token=%zz" + good[:10]}, bad(denial{Status: 400, Code: "invalid_request"}, denial{Status: 401, Code: "invalid_token"})},
		{"empty query token", apiCall{Path: "/rw/x?access_token="}, bad(denial{Status: 400, Code: "invalid_request"})},
		{"query parameter without a value", apiCall{Path: "/rw/x?access_token"}, bad(denial{Status: 400, Code: "invalid_request"})},
		{"repeated query token, same value", apiCall{Path: "/rw/x?access_token=" + good + "&access_token=" + good}, bad(denial{Status: 400, Code: "invalid_request"})},
		{"repeated query token, second empty", apiCall{Path: "/rw/x?access_token=" + good + "&access_token="}, bad(denial{Status: 400, Code: "invalid_request"})},
		{"repeated query token, different values", apiCall{Path: "/rw/x?a=1&access_token=" + good + "&b=2&access_token=other"}, bad(denial{Status: 400, Code: "invalid_request"})},
		{"repeated form token", apiCall{Method: "POST", Path: "/rw/x", Body: "access_token=" + good + "&access_token=" + good, ContentType: formCT}, bad(denial{Status: 400, Code: "invalid_request"})},
		{"empty form token", apiCall{Method: "POST", Path: "/rw/x", Body: "access_token=&x=1", ContentType: formCT}, bad(denial{Status: 400, Code: "invalid_request"})},
		{"broken form encoding", apiCall{Method: "POST", Path: "/rw/x", Body: "access_token=%zz&x=1", ContentType: formCT}, bad(denial{Status: 400, Code: "invalid_request"})},
		{"form token with charset parameter", apiCall{Method: "POST", Path: "/rw/x", Body: "access_token=" + good + "&x=1", ContentType: formCT + "; charset=UTF-8"}, want{pass: true}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r, err := g.send(c.call)
			switch {
			case err != nil && c.want.any4xx:
				// net/http may close the connection while a 1 MB request is still being written.
				t.Logf("transport error (accepted for an oversized request): %v", err)
			case err != nil:
				t.Fatalf("transport error: %v", err)
			case r.Status >= 500:
				t.Errorf("answered %s: never a 5xx for client input", r)
			case c.want.pass:
				e := r.mustPass(t)
				if v := e.Header.Values("Authorization"); len(v) != 0 {
					t.Errorf("upstream saw Authorization %q", v)
				}
			case c.want.any4xx:
				if r.Status < 400 || r.Status > 499 {
					t.Errorf("want a 4xx, got %s", r)
				}
				if r.JSON != nil && r.str("error") != "" {
					r.mustDeny(t, denial{Status: r.Status, Code: r.str("error")})
				}
			case c.want.passToo && r.Status == http.StatusOK:
				r.mustPass(t)
			default:
				matched := false
				for _, d := range c.want.deny {
					if r.Status == d.Status && r.str("error") == d.Code || r.Status == d.Status && d.Code == "" && r.Header.Get("WWW-Authenticate") == `Bearer realm="oauth2gate"` {
						r.mustDeny(t, d)
						matched = true
						break
					}
				}
				if !matched {
					t.Errorf("want one of %+v, got %s", c.want.deny, r)
				}
			}
			// Caddy still answers, and still lets a good token through.
			g.do(t, apiCall{Path: "/rw/x", Bearer: good}).mustPass(t)
		})
	}
	if log := g.in.log.String(); strings.Contains(strings.ToLower(log), "panic") {
		t.Errorf("caddy log mentions a panic:\n%s", proclog.Tail(log, 4000))
	}
}

// TestGuardRevocationRace: 50 callers hammer a route with one token while the test revokes it by
// refreshing the refresh token issued with it. No request that started after the refresh response
// came back may get through.
func TestGuardRevocationRace(t *testing.T) {
	t.Parallel()
	g := startGuardGate(t, guardOpts{})
	tok := g.pwToken(t, "read write")
	g.do(t, apiCall{Path: "/rw/x", Bearer: tok.Access}).mustPass(t)

	const (
		workers   = 50
		perWorker = 2000
		maxRun    = 60 * time.Second
	)
	type result struct {
		start, end time.Time
		status     int
		code       string
		err        error
	}
	results := make([][]result, workers)
	done := make([]atomic.Int64, workers) // requests each worker has finished
	stop := make(chan struct{})
	deadline := time.Now().Add(maxRun)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perWorker {
				select {
				case <-stop:
					return
				default:
				}
				if time.Now().After(deadline) {
					return
				}
				start := time.Now()
				r, err := g.send(apiCall{Path: "/rw/x?w=" + fmt.Sprint(w), Bearer: tok.Access})
				res := result{start: start, end: time.Now(), err: err}
				if r != nil {
					res.status, res.code = r.Status, r.str("error")
				}
				results[w] = append(results[w], res)
				done[w].Add(1)
			}
		}()
	}
	// Every worker has requests before the revocation and starts some after it, however
	// loaded the machine: wait for the counts, not for a time.
	waitAll := func(want func(w int) int64, what string) {
		t.Helper()
		for dl := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			all := true
			for w := range workers {
				if n := done[w].Load(); n < want(w) && n < perWorker {
					all = false
					break
				}
			}
			if all {
				return
			}
			if time.Now().After(dl) {
				t.Fatalf("the workers did not make their requests %s within 30s", what)
			}
		}
	}
	waitAll(func(int) int64 { return 3 }, "before the refresh")
	refreshStart := time.Now()
	rr, err := g.in.send(g.refreshCall(tok.Refresh))
	revoked := time.Now()
	// A request finished after this snapshot plus two more started after the refresh returned.
	snap := make([]int64, workers)
	for w := range workers {
		snap[w] = done[w].Load()
	}
	waitAll(func(w int) int64 { return snap[w] + 3 }, "after the refresh")
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	fresh := rr.mustToken(t)

	var before, beforeOK, after, afterOK, during, errs int
	tally := map[string]int{}
	for _, rs := range results {
		for _, r := range rs {
			if r.err != nil {
				errs++
				tally["transport error: "+r.err.Error()]++
				continue
			}
			tally[fmt.Sprintf("%d %s", r.status, r.code)]++
			switch {
			case r.end.Before(refreshStart):
				before++
				if r.status == http.StatusOK {
					beforeOK++
				}
			case r.start.After(revoked):
				after++
				if r.status == http.StatusOK {
					afterOK++
				} else if r.status != http.StatusUnauthorized || r.code != "invalid_token" {
					t.Errorf("after revocation: got %d %q, want 401 invalid_token", r.status, r.code)
				}
			default:
				during++
			}
			if r.status >= 500 {
				t.Errorf("a request got %d", r.status)
			}
		}
	}
	t.Logf("requests: %d before the refresh (%d ok), %d while it ran, %d after it returned (%d ok); refresh took %v; tally %v",
		before, beforeOK, during, after, afterOK, revoked.Sub(refreshStart), tally)
	if errs > 0 {
		t.Errorf("%d transport errors", errs)
	}
	if afterOK > 0 {
		t.Errorf("%d requests that started after the revoking refresh returned got 200", afterOK)
	}
	if before < workers || beforeOK < before*9/10 {
		t.Errorf("sanity: before revocation %d of %d requests passed; want most of at least %d", beforeOK, before, workers)
	}
	if after < workers {
		t.Errorf("only %d requests started after the revocation; the race was not exercised", after)
	}
	g.do(t, apiCall{Path: "/rw/x", Bearer: tok.Access}).mustDeny(t, denial{Status: 401, Code: "invalid_token"})
	g.do(t, apiCall{Path: "/rw/x", Bearer: fresh.Access}).mustPass(t)
}

// accessLogGate runs the API site with `log` and the global `debug` option.
func accessLogGate(t *testing.T) *guardGate {
	t.Helper()
	return startGuardGate(t, guardOpts{GlobalExtra: "debug", APILog: true})
}

// waitForAccessLog waits until n access log lines of the API site were written.
func waitForAccessLog(t *testing.T, g *guardGate, n int) string {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		log := g.in.log.String()
		if strings.Count(log, "http.log.access") >= n || time.Now().After(deadline) {
			if c := strings.Count(log, "http.log.access"); c < n {
				t.Errorf("want at least %d access log lines, found %d; the check below proves little", n, c)
			}
			return log
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestGuardAccessLogNeverShowsHeaderToken: with the access log and debug logging on, a bearer token
// sent in the Authorization header appears in no log line (whether let through, passed upstream
// with strip_token off, or refused).
func TestGuardAccessLogNeverShowsHeaderToken(t *testing.T) {
	t.Parallel()
	g := accessLogGate(t)
	tok := g.ccToken(t, "read write")
	bogus := randomSecret("bogus-")
	g.in.remember("unknown bearer token", bogus)
	g.do(t, apiCall{Path: "/rw/x", Bearer: tok}).mustPass(t)
	g.do(t, apiCall{Path: "/nostrip/x", Bearer: tok}).mustPass(t)
	g.do(t, apiCall{Path: "/admin/x", Bearer: tok}).mustDeny(t, denial{Status: 403, Code: "insufficient_scope", Scope: "admin"})
	g.do(t, apiCall{Path: "/rw/x", Bearer: bogus}).mustDeny(t, denial{Status: 401, Code: "invalid_token"})
	g.do(t, apiCall{Method: "POST", Path: "/rw/x", Body: "access_token=" + tok + "&x=1", ContentType: formCT}).mustPass(t)
	g.in.assertLogClean(t, waitForAccessLog(t, g, 5))
}

// TestGuardAccessLogNeverShowsQueryToken: a token sent as ?access_token= (RFC 6750 §2.3) must not
// end up in the access log either (RFC 6750 §5.3 warns that URIs get logged).
func TestGuardAccessLogNeverShowsQueryToken(t *testing.T) {
	t.Parallel()
	g := accessLogGate(t)
	tok := g.ccToken(t, "read write")
	bogus := randomSecret("bogus-")
	g.in.remember("unknown query token", bogus)
	g.do(t, apiCall{Path: "/rw/x?a=1&access_token=" + url.QueryEscape(tok) + "&b=2"}).mustPass(t)
	g.do(t, apiCall{Path: "/admin/x?access_token=" + tok}).mustDeny(t, denial{Status: 403, Code: "insufficient_scope", Scope: "admin"})
	g.do(t, apiCall{Path: "/rw/x?access_token=" + bogus}).mustDeny(t, denial{Status: 401, Code: "invalid_token"})
	g.in.assertLogClean(t, waitForAccessLog(t, g, 3))
}

// TestGuardLargeFormBodyWithHeaderToken: a request whose token is in the Authorization header (or
// the query) and that has the route's scopes is passed on whatever the size of its form body; the
// guard's bound on reading a form body is about finding a token there (RFC 6750 §2.2), not a
// limit on uploads that do not use that method.
func TestGuardLargeFormBodyWithHeaderToken(t *testing.T) {
	t.Parallel()
	g := startGuardGate(t, guardOpts{})
	tok := g.ccToken(t, "read write")
	body := "a=1&data=" + strings.Repeat("x", 100<<10) + "&z=2"
	for _, c := range []struct {
		name string
		call apiCall
	}{
		{"header token", apiCall{Method: "POST", Path: "/rw/upload", Bearer: tok, Body: body, ContentType: formCT}},
		{"header token, chunked", apiCall{Method: "POST", Path: "/rw/upload", Bearer: tok, Body: body, ContentType: formCT, Chunked: true}},
		{"query token", apiCall{Method: "PUT", Path: "/rw/upload?access_token=" + tok, Body: body, ContentType: formCT}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := g.do(t, c.call).mustPass(t)
			if e.Body != body {
				t.Errorf("upstream body: %d bytes, want the %d bytes sent", len(e.Body), len(body))
			}
		})
	}
}
