package authz

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/oauth2gate/oauth2gate/authz/cors"
)

const (
	spaOrigin   = "https://spa.test"
	otherOrigin = "https://other.test"
	evilOrigin  = "https://evil.test"
)

// corsServer has a public SPA client allowed from spaOrigin and a second
// client allowed from otherOrigin: the set is their union.
func corsServer(t *testing.T, mutate ...func(*Config)) *Server {
	return newTestServer(t, func(c *Config) {
		for _, m := range mutate {
			m(c)
		}
		c.Clients = append(c.Clients,
			ClientConfig{ID: "spa", Public: true, Grants: []string{GrantAuthorizationCode, GrantRefreshToken, GrantPassword}, RedirectURIs: []string{spaOrigin + "/"}, Scopes: []string{"openid", "read"}, AllowedOrigins: []string{spaOrigin}},
			ClientConfig{ID: "spa2", Public: true, Grants: []string{GrantAuthorizationCode}, RedirectURIs: []string{otherOrigin + "/"}, Scopes: []string{"read"}, AllowedOrigins: []string{otherOrigin}},
		)
	})
}

func serve(t *testing.T, s *Server, method, target, origin string, hdr map[string]string, body string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(method, target, strings.NewReader(body))
	if origin != "" {
		r.Header.Set("Origin", origin)
	}
	if body != "" {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	if !s.ServeEndpoint(w, r, "/oauth2") {
		t.Fatalf("%s %s not served", method, target)
	}
	return w
}

func preflightHeaders(method string) map[string]string {
	return map[string]string{cors.RequestMethod: method, cors.RequestHeaders: "authorization, content-type"}
}

// Every preflight rule of the endpoints: an allowed origin gets 204 with
// the endpoint's methods, headers and Max-Age; any other origin (another
// spelling, null, none) gets the endpoint's own answer (405) and no CORS
// header; JWKS and metadata answer every origin with a wildcard; no answer
// ever allows credentials.
func TestEndpointPreflights(t *testing.T) {
	s := corsServer(t)
	tests := []struct {
		name, path, origin, method string
		status                     int
		allowOrigin                string
		methods, headers           string
	}{
		{"token from spa", "/oauth2/token", spaOrigin, "POST", 204, spaOrigin, "POST", "authorization, content-type"},
		{"token with slash", "/oauth2/token/", spaOrigin, "POST", 204, spaOrigin, "POST", "authorization, content-type"},
		{"token from the other client's origin", "/oauth2/token", otherOrigin, "POST", 204, otherOrigin, "POST", "authorization, content-type"},
		{"token, odd method asked", "/oauth2/token", spaOrigin, "DELETE", 204, spaOrigin, "POST", "authorization, content-type"},
		{"token, garbage method asked", "/oauth2/token", spaOrigin, "GET, POST\tX", 204, spaOrigin, "POST", "authorization, content-type"},
		{"revoke from spa", "/oauth2/revoke", spaOrigin, "POST", 204, spaOrigin, "POST", "authorization, content-type"},
		{"userinfo from spa", "/oauth2/userinfo", spaOrigin, "GET", 204, spaOrigin, "GET, POST", "authorization, content-type"},
		{"token from evil", "/oauth2/token", evilOrigin, "POST", 405, "", "", ""},
		{"token from null", "/oauth2/token", "null", "POST", 405, "", "", ""},
		{"token upper case", "/oauth2/token", "HTTPS://SPA.TEST", "POST", 405, "", "", ""},
		{"token trailing slash", "/oauth2/token", spaOrigin + "/", "POST", 405, "", "", ""},
		{"token default port", "/oauth2/token", spaOrigin + ":443", "POST", 405, "", "", ""},
		{"token other scheme", "/oauth2/token", "http://spa.test", "POST", 405, "", "", ""},
		{"token suffix", "/oauth2/token", spaOrigin + ".evil.test", "POST", 405, "", "", ""},
		{"userinfo from evil", "/oauth2/userinfo", evilOrigin, "GET", 405, "", "", ""},
		{"revoke from evil", "/oauth2/revoke", evilOrigin, "POST", 405, "", "", ""},
		{"introspect is not for browsers", "/oauth2/introspect", spaOrigin, "POST", 405, "", "", ""},
		{"jwks from anywhere", "/oauth2/jwks", evilOrigin, "GET", 204, "*", "GET, HEAD", ""},
		{"jwks from null", "/oauth2/jwks", "null", "GET", 204, "*", "GET, HEAD", ""},
		{"openid-configuration", "/.well-known/openid-configuration", evilOrigin, "GET", 204, "*", "GET, HEAD", ""},
		{"oauth-authorization-server", "/.well-known/oauth-authorization-server", evilOrigin, "GET", 204, "*", "GET, HEAD", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := serve(t, s, http.MethodOptions, tt.path, tt.origin, preflightHeaders(tt.method), "")
			h := w.Result().Header
			if w.Code != tt.status {
				t.Fatalf("status %d, want %d (%v)", w.Code, tt.status, h)
			}
			if got := h.Values(cors.AllowOrigin); tt.allowOrigin == "" && len(got) != 0 || tt.allowOrigin != "" && (len(got) != 1 || got[0] != tt.allowOrigin) {
				t.Errorf("Allow-Origin %q, want %q", got, tt.allowOrigin)
			}
			if h.Get(cors.AllowMethods) != tt.methods || h.Get(cors.AllowHeaders) != tt.headers {
				t.Errorf("Allow-Methods %q, Allow-Headers %q; want %q, %q", h.Get(cors.AllowMethods), h.Get(cors.AllowHeaders), tt.methods, tt.headers)
			}
			if tt.status == 204 && h.Get(cors.MaxAge) != "600" {
				t.Errorf("Max-Age %q, want 600", h.Get(cors.MaxAge))
			}
			if h.Get(cors.AllowCredentials) != "" {
				t.Errorf("Allow-Credentials %q on a preflight", h.Get(cors.AllowCredentials))
			}
			if tt.allowOrigin != "*" && tt.path != "/oauth2/introspect" && !strings.Contains(h.Get("Vary"), "Origin") {
				t.Errorf("no Vary: Origin: %v", h)
			}
			if tt.status == 204 && w.Body.Len() != 0 {
				t.Errorf("a 204 with a body: %q", w.Body)
			}
		})
	}
}

// The headers ride on every answer to an allowed origin, errors included,
// with WWW-Authenticate exposed so a script can read a refusal; an answer to
// any other origin carries none but Vary.
func TestEndpointCORSHeadersOnEveryAnswer(t *testing.T) {
	s := corsServer(t, func(c *Config) { c.FailureBurst = -1 })
	basic := map[string]string{"Authorization": "Basic " + basicValue("conf", "wrong")}
	bearer := func(tok string) map[string]string { return map[string]string{"Authorization": "Bearer " + tok} }
	pw := tokenRequest(t, s, url.Values{"grant_type": {"password"}, "client_id": {"spa"}, "username": {"alice"}, "password": {"wonderland"}, "scope": {"openid read"}})
	access, _ := pw.body["access_token"].(string)
	if access == "" {
		t.Fatalf("no token: %v", pw.body)
	}
	tests := []struct {
		name, method, path string
		hdr                map[string]string
		body               string
		status             int
		code               string // the error, "" for success
	}{
		{"token ok", "POST", "/oauth2/token", nil, "grant_type=password&client_id=spa&username=alice&password=wonderland", 200, ""},
		{"token invalid_request", "POST", "/oauth2/token", nil, "client_id=spa", 400, "invalid_request"},
		{"token invalid_client basic", "POST", "/oauth2/token", basic, "grant_type=client_credentials", 401, "invalid_client"},
		{"token invalid_client public with secret", "POST", "/oauth2/token", nil, "grant_type=password&client_id=spa&client_secret=x&username=alice&password=wonderland", 401, "invalid_client"},
		{"token invalid_grant", "POST", "/oauth2/token", nil, "grant_type=authorization_code&client_id=spa&code=nope&redirect_uri=https%3A%2F%2Fspa.test%2F&code_verifier=" + strings.Repeat("a", 43), 400, "invalid_grant"},
		{"token unsupported_grant_type", "POST", "/oauth2/token", nil, "grant_type=urn:x&client_id=spa", 400, "unsupported_grant_type"},
		{"token unauthorized_client", "POST", "/oauth2/token", nil, "grant_type=password&client_id=spa2&username=alice&password=wonderland", 400, "unauthorized_client"},
		{"token invalid_scope", "POST", "/oauth2/token", nil, "grant_type=password&client_id=spa&username=alice&password=wonderland&scope=admin", 400, "invalid_scope"},
		{"token GET", "GET", "/oauth2/token", nil, "", 405, "invalid_request"},
		{"revoke ok", "POST", "/oauth2/revoke", nil, "client_id=spa&token=unknown", 200, ""},
		{"revoke invalid_request", "POST", "/oauth2/revoke", nil, "client_id=spa", 400, "invalid_request"},
		{"revoke invalid_client", "POST", "/oauth2/revoke", basic, "token=x", 401, "invalid_client"},
		{"userinfo ok", "GET", "/oauth2/userinfo", bearer(access), "", 200, ""},
		{"userinfo no token", "GET", "/oauth2/userinfo", nil, "", 401, ""},
		{"userinfo invalid_token", "GET", "/oauth2/userinfo", bearer("unknown-token-abcdefgh"), "", 401, "invalid_token"},
		{"userinfo PUT", "PUT", "/oauth2/userinfo", nil, "", 405, "invalid_request"},
		{"plain OPTIONS to token", "OPTIONS", "/oauth2/token", nil, "", 405, "invalid_request"},
	}
	for _, tt := range tests {
		for _, origin := range []string{spaOrigin, evilOrigin, "null", ""} {
			t.Run(tt.name+" from "+origin, func(t *testing.T) {
				w := serve(t, s, tt.method, tt.path, origin, tt.hdr, tt.body)
				h := w.Result().Header
				var body map[string]any
				_ = json.Unmarshal(w.Body.Bytes(), &body)
				if w.Code != tt.status || tt.code != "" && body["error"] != tt.code {
					t.Fatalf("%d %s, want %d %s", w.Code, w.Body, tt.status, tt.code)
				}
				if !strings.Contains(h.Get("Vary"), "Origin") {
					t.Errorf("no Vary: Origin: %v", h)
				}
				if h.Get(cors.AllowCredentials) != "" {
					t.Errorf("Allow-Credentials on an answer")
				}
				got := h.Values(cors.AllowOrigin)
				if origin != spaOrigin {
					if len(got) != 0 || h.Get(cors.ExposeHeaders) != "" {
						t.Errorf("origin %q got CORS headers: %v", origin, h)
					}
					return
				}
				if len(got) != 1 || got[0] != spaOrigin {
					t.Errorf("Allow-Origin %q, want %q", got, spaOrigin)
				}
				if h.Get(cors.ExposeHeaders) != "WWW-Authenticate, Retry-After" {
					t.Errorf("Expose-Headers %q", h.Get(cors.ExposeHeaders))
				}
			})
		}
	}
}

// A script told to slow down can read for how long.
func TestEndpointCORSOnRateLimit(t *testing.T) {
	s := corsServer(t, func(c *Config) { c.FailureBurst = 1 })
	basic := map[string]string{"Authorization": "Basic " + basicValue("conf", "wrong")}
	var w *httptest.ResponseRecorder
	for i := 0; i < 3; i++ {
		w = serve(t, s, "POST", "/oauth2/token", spaOrigin, basic, "grant_type=client_credentials")
	}
	h := w.Result().Header
	if w.Code != 429 || h.Get("Retry-After") == "" || h.Get(cors.AllowOrigin) != spaOrigin || !strings.Contains(h.Get(cors.ExposeHeaders), "Retry-After") {
		t.Errorf("rate-limited answer %d %v", w.Code, h)
	}
}

// JWKS and both metadata documents are public: a wildcard on every answer,
// with no origin at all too, never with credentials.
func TestPublicDocumentsAllowAnyOrigin(t *testing.T) {
	s := corsServer(t)
	for _, p := range []string{"/oauth2/jwks", "/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"} {
		for _, origin := range []string{spaOrigin, evilOrigin, "null", ""} {
			for _, m := range []string{"GET", "HEAD", "POST"} {
				w := serve(t, s, m, p, origin, nil, "")
				h := w.Result().Header
				if h.Get(cors.AllowOrigin) != "*" || h.Get(cors.AllowCredentials) != "" {
					t.Errorf("%s %s from %q: %d %v", m, p, origin, w.Code, h)
				}
			}
		}
	}
	// The metadata is still served.
	if w := serve(t, s, "GET", "/.well-known/openid-configuration", evilOrigin, nil, ""); w.Code != 200 || !strings.Contains(w.Body.String(), `"issuer"`) {
		t.Errorf("discovery %d %s", w.Code, w.Body)
	}
}

// A client with no allowed_origins adds none; the endpoints of a server with
// none answer no origin.
func TestNoAllowedOriginsNoCORS(t *testing.T) {
	s := newTestServer(t, nil)
	w := serve(t, s, http.MethodOptions, "/oauth2/token", "https://pub.test", preflightHeaders("POST"), "")
	if w.Code != 405 || w.Result().Header.Get(cors.AllowOrigin) != "" {
		t.Errorf("preflight without allowed_origins: %d %v", w.Code, w.Result().Header)
	}
}

func TestClientAllowedOriginsChecked(t *testing.T) {
	for _, bad := range []string{"*", "null", "https://spa.test/", "HTTPS://spa.test", "https://spa.test/cb", "https://spa.test:443"} {
		cc := ClientConfig{ID: "x", Public: true, Grants: []string{GrantAuthorizationCode}, RedirectURIs: []string{"https://spa.test/cb"}, AllowedOrigins: []string{bad}}
		err := cc.Check()
		if err == nil || !strings.Contains(err.Error(), `client "x": allowed_origins`) {
			t.Errorf("allowed_origins %q: Check = %v", bad, err)
		}
	}
}

func basicValue(id, secret string) string {
	r := httptest.NewRequest("GET", "/", nil)
	r.SetBasicAuth(id, secret)
	return strings.TrimPrefix(r.Header.Get("Authorization"), "Basic ")
}
