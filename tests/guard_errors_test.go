package tests

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestGuardRefusalReachesHandleErrors: like Caddy's own auth handlers, oauth2_guard hands its
// refusals to a site's handle_errors routes, with the RFC 6750 challenge already set, so an
// operator can shape the error page; without handle_errors the guard answers its JSON body.
func TestGuardRefusalReachesHandleErrors(t *testing.T) {
	t.Parallel()
	svc := clientSpec{ID: "svc", Secret: randomSecret("svc-"), Grants: "client_credentials", Scopes: "read write"}
	upstream := startEchoUpstream(t)
	port := freePorts(t, 1)[0]
	api := fmt.Sprintf("http://127.0.0.1:%d", port)
	site := fmt.Sprintf(`%s {
	oauth2_guard {
		scope GET read
		scope POST write
	}
	reverse_proxy %s
	handle_errors {
		respond "custom {err.status_code} {err.message}" {err.status_code}
	}
}
`, api, upstream)
	in := startGateWith(t, gateSpec{Clients: []clientSpec{svc}}, siteOptions{BasePath: "/o", ExtraSites: site})
	read := in.token(t, tokenCall{Form: form("grant_type", "client_credentials", "scope", "read"), Basic: basic(svc.ID, svc.Secret)}).mustToken(t)

	cases := []struct {
		name, method, bearer string
		status               int
		challenge            string
	}{
		{"no token", "GET", "", 401, `Bearer realm="oauth2gate"`},
		{"unknown token", "GET", "not-a-token", 401, `error="invalid_token"`},
		{"lacking scope", "POST", read.Access, 403, `scope="write"`},
		{"lower-case method", "get", read.Access, 400, `error="invalid_request"`},
	}
	for _, c := range cases {
		req, _ := http.NewRequest(c.method, api+"/orders", nil)
		if c.bearer != "" {
			req.Header.Set("Authorization", "Bearer "+c.bearer)
		}
		resp, err := in.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body := readAll(t, resp)
		if resp.StatusCode != c.status || !strings.HasPrefix(body, fmt.Sprintf("custom %d ", c.status)) {
			t.Errorf("%s: %d %q, want %d from handle_errors", c.name, resp.StatusCode, body, c.status)
		}
		if wa := resp.Header.Get("WWW-Authenticate"); !strings.Contains(wa, c.challenge) {
			t.Errorf("%s: WWW-Authenticate %q lacks %s", c.name, wa, c.challenge)
		}
	}
	req, _ := http.NewRequest("GET", api+"/orders", nil)
	req.Header.Set("Authorization", "Bearer "+read.Access)
	resp, err := in.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, resp); resp.StatusCode != 200 || !strings.Contains(body, `"upstream":true`) {
		t.Errorf("a good token: %d %s", resp.StatusCode, body)
	}
}
