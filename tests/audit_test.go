package tests

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// auditLines are the oauth2.audit lines of an instance's log, parsed. Call it after in.stop():
// only then has every line been copied from Caddy's stderr.
func auditLines(t *testing.T, in *instance) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(in.log.String()))
	sc.Buffer(make([]byte, 0, 1<<16), 1<<22)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil || m["logger"] != "oauth2.audit" {
			continue
		}
		out = append(out, m)
	}
	return out
}

// findAudit is the first audit line whose fields have the given values.
func findAudit(lines []map[string]any, kv ...string) map[string]any {
next:
	for _, m := range lines {
		for i := 0; i+1 < len(kv); i += 2 {
			if v, _ := m[kv[i]].(string); v != kv[i+1] {
				continue next
			}
		}
		return m
	}
	return nil
}

// TestAuditEvents: a full run of every audited flow through the real binary
// (code flow with login form and consent, consent denied, failed form login,
// password grant right and wrong, refresh, replay of a rotated-out refresh
// token, revocation at /revoke, the brute-force limit) writes one
// oauth2.audit line per event with its fields; and no line of the whole log
// holds a token, code, secret or password (the harness checks every line
// against every value it sent or received when the instance stops).
func TestAuditEvents(t *testing.T) {
	web := clientSpec{ID: "web", Secret: randomSecret("web-"), Grants: "authorization_code refresh_token", RedirectURIs: webCB, Scopes: "read write", Name: "Web App"}
	app := clientSpec{ID: "app", Secret: randomSecret("app-"), Grants: "password refresh_token", Scopes: "read write"}
	al := alice()
	in := startGate(t, gateSpec{Settings: "failure_limit 3 1m", Clients: []clientSpec{web, app}, Users: []userSpec{al}})

	// form login failure, then success, consent given, code, token
	b := in.newBrowser(t)
	p := b.get(in.url("/authorize") + "?" + authParams(web.ID, webCB, "code", "read", "s1").Encode())
	if p = b.submitLogin(p, al.Name, "wrong-"+randomSecret("")); p.Status != http.StatusOK {
		t.Fatalf("failed login: want the login page again, got %s", p)
	}
	code := mustCode(t, b.authorize(authParams(web.ID, webCB, "code", "read", "s2"), al.Name, al.Password, "allow"), webCB, "s2")
	in.remember("code", code)
	tok := in.token(t, tokenCall{Form: form("grant_type", "authorization_code", "code", code, "redirect_uri", webCB), Basic: basic(web.ID, web.Secret)}).mustToken(t)
	// consent denied
	b.authorize(authParams(web.ID, webCB, "code", "write", "s3"), al.Name, al.Password, "deny")
	// password grant; refresh; replay of the rotated-out token
	pw := in.token(t, tokenCall{Form: form("grant_type", "password", "username", al.Name, "password", al.Password), Basic: basic(app.ID, app.Secret)}).mustToken(t)
	in.token(t, tokenCall{Form: form("grant_type", "refresh_token", "refresh_token", pw.Refresh), Basic: basic(app.ID, app.Secret)}).mustToken(t)
	in.token(t, tokenCall{Form: form("grant_type", "refresh_token", "refresh_token", pw.Refresh), Basic: basic(app.ID, app.Secret)})
	// revocation at the endpoint
	if r := in.token(t, tokenCall{Path: "/revoke", Form: form("token", tok.Refresh), Basic: basic(web.ID, web.Secret)}); r.Status != http.StatusOK {
		t.Fatalf("revoke: %s", r)
	}
	// wrong passwords until the limit answers 429
	limited := false
	for range 6 {
		r := in.token(t, tokenCall{Form: form("grant_type", "password", "username", al.Name, "password", "bad-"+randomSecret("")), Basic: basic(app.ID, app.Secret)})
		if r.Status == http.StatusTooManyRequests {
			limited = true
			break
		}
	}
	if !limited {
		t.Fatalf("the failure limit never answered 429")
	}

	// Caddy writes a line after (not before) the answer that caused it, and the harness copies
	// the log from a pipe: stopping the instance is what guarantees every line is in.log.
	in.stop()
	lines := auditLines(t, in)
	want := [][]string{
		{"event", "login_failure", "client_id", "web", "via", "login_form", "username", "alice"},
		{"event", "login_success", "client_id", "web", "subject", "alice", "via", "login_form"},
		{"event", "consent_given", "client_id", "web", "subject", "alice", "scope", "read"},
		{"event", "code_issued", "client_id", "web", "subject", "alice"},
		{"event", "token_issued", "client_id", "web", "subject", "alice", "grant", "authorization_code"},
		{"event", "consent_denied", "client_id", "web", "subject", "alice", "scope", "write"},
		{"event", "login_success", "client_id", "app", "subject", "alice", "via", "password"},
		{"event", "token_issued", "client_id", "app", "subject", "alice", "grant", "password"},
		{"event", "token_refreshed", "client_id", "app", "subject", "alice", "grant", "refresh_token"},
		{"event", "replay_detected", "client_id", "app", "presented", "refresh_token", "action", "grant revoked"},
		{"event", "token_revoked", "client_id", "web", "subject", "alice", "reason", "endpoint", "token_type", "refresh_token"},
		{"event", "login_failure", "client_id", "app", "via", "password"},
		{"event", "rate_limited", "remote_ip", "127.0.0.1"},
	}
	for _, kv := range want {
		m := findAudit(lines, kv...)
		if m == nil {
			t.Errorf("no audit line with %v", kv)
			continue
		}
		if m["event"] != "rate_limited" && m["remote_ip"] != "127.0.0.1" {
			t.Errorf("audit line %v has no remote_ip", m)
		}
	}
	if m := findAudit(lines, "event", "token_issued", "grant", "authorization_code"); m != nil {
		if h, _ := m["token_hash"].(string); len(h) != 16 || strings.Contains(tok.Access, h) {
			t.Errorf("token_hash %q: want 16 hex digits of the SHA-256, not a piece of the token", h)
		}
	}
	// Only known fields: nothing else can carry a secret.
	allowed := map[string]bool{"level": true, "ts": true, "logger": true, "msg": true, "event": true, "client_id": true, "subject": true,
		"remote_ip": true, "grant": true, "scope": true, "token_hash": true, "refresh_token_hash": true, "code_hash": true, "via": true,
		"username": true, "presented": true, "grant_id": true, "action": true, "reason": true, "token_type": true, "revoked": true,
		"admin": true, "limit": true, "name": true, "grants": true, "redirect_uris": true, "public": true}
	for _, m := range lines {
		for k := range m {
			if !allowed[k] {
				t.Errorf("audit line has an unexpected field %q: %v", k, m)
			}
		}
	}
}
