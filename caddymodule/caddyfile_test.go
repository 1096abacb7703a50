package caddymodule

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
)

func TestGlobalOptionParsing(t *testing.T) {
	tests := []struct {
		name    string
		input   string
		wantErr string
		check   func(t *testing.T, a *App)
	}{
		{name: "full", input: `oauth2 {
			issuer https://auth.example.com
			store file /var/lib/oauth2
			cache {
				max_tokens 5000
				ttl 2m
			}
			access_token {
				ttl 30m
				format jwt
			}
			refresh_token {
				ttl 48h
				rotate off
				reuse_grace 10s
			}
			code_ttl 2m
			signing_key /etc/key.pem
			pkce_plain off
			allow_get_token_request
			client app {
				secret $2a$10$abc
				grants authorization_code refresh_token
				redirect_uris https://app/cb https://app/cb2
				scopes read write
				name "My App"
				skip_consent
			}
			client spa {
				public
				grants authorization_code
				redirect_uris https://spa/cb
			}
			user alice $2a$10$def {
				claim email alice@example.com
				claim name "Alice L"
			}
		}`, check: func(t *testing.T, a *App) {
			if a.Issuer != "https://auth.example.com" || a.Store.Dir != "/var/lib/oauth2" || a.Cache.MaxTokens != 5000 {
				t.Fatalf("%+v", a)
			}
			if a.AccessToken.Format != "jwt" || a.RefreshToken.Rotate == nil || *a.RefreshToken.Rotate || a.RefreshToken.ReuseGrace == 0 {
				t.Fatalf("token settings: %+v %+v", a.AccessToken, a.RefreshToken)
			}
			if a.PKCEPlain == nil || *a.PKCEPlain || !a.AllowGetTokenRequest || a.SigningKey != "/etc/key.pem" {
				t.Fatal("switches not parsed")
			}
			if len(a.Clients) != 2 || a.Clients[0].Name != "My App" || !a.Clients[0].SkipConsent || len(a.Clients[0].RedirectURIs) != 2 || !a.Clients[1].Public {
				t.Fatalf("clients: %+v", a.Clients)
			}
			if len(a.Users) != 1 || a.Users[0].Claims["name"] != "Alice L" {
				t.Fatalf("users: %+v", a.Users)
			}
		}},
		{name: "redis store", input: "oauth2 {\n store redis redis://127.0.0.1:6379/0 {\n key_prefix og:\n }\n}", check: func(t *testing.T, a *App) {
			if a.Store.Backend != "redis" || a.Store.URL != "redis://127.0.0.1:6379/0" || a.Store.KeyPrefix != "og:" {
				t.Fatalf("%+v", a.Store)
			}
		}},
		{name: "unknown subdirective", input: "oauth2 {\n colour blue\n}", wantErr: `unrecognized oauth2 subdirective "colour"`},
		{name: "unknown client subdirective", input: "oauth2 {\n client a {\n public\n colour blue\n }\n}", wantErr: "unrecognized subdirective"},
		{name: "client without secret or public", input: "oauth2 {\n client a {\n grants password\n }\n}", wantErr: "needs a secret"},
		{name: "public with secret", input: "oauth2 {\n client a {\n public\n secret x\n }\n}", wantErr: "public client has no secret"},
		{name: "duplicate client", input: "oauth2 {\n client a {\n public\n grants password\n }\n client a {\n public\n grants password\n }\n}", wantErr: "defined twice"},
		{name: "bad duration", input: "oauth2 {\n code_ttl soon\n}", wantErr: "invalid duration"},
		{name: "bad format", input: "oauth2 {\n access_token {\n format paseto\n }\n}", wantErr: "opaque or jwt"},
		{name: "bad on/off", input: "oauth2 {\n pkce_plain maybe\n}", wantErr: "want on or off"},
		{name: "set twice", input: "oauth2 {\n issuer a\n issuer b\n}", wantErr: "more than once"},
		{name: "unknown store", input: "oauth2 {\n store s3 bucket\n}", wantErr: "unknown store"},
		{name: "user without hash", input: "oauth2 {\n user bob\n}", wantErr: "username and a password hash"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := new(App)
			err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, a)
		})
	}
}

func TestGuardDirectiveParsing(t *testing.T) {
	tests := []struct {
		name    string
		input   string
		wantErr string
		check   func(t *testing.T, g *Guard)
	}{
		{name: "inline scopes", input: "oauth2_guard read write", check: func(t *testing.T, g *Guard) {
			if strings.Join(g.Scopes, " ") != "read write" {
				t.Fatalf("%+v", g)
			}
		}},
		{name: "block", input: `oauth2_guard {
			scope GET,head read
			scope * base
			query_token off
			strip_token off
			header_up X-User {oauth2.subject}
			header_up -X-Auth-Scope
			realm api
		}`, check: func(t *testing.T, g *Guard) {
			if len(g.MethodScopes) != 2 || strings.Join(g.MethodScopes[0].Methods, ",") != "GET,HEAD" || g.MethodScopes[1].Methods[0] != "*" {
				t.Fatalf("scopes: %+v", g.MethodScopes)
			}
			if *g.QueryToken || *g.StripToken || g.HeaderUp["X-User"] != "{oauth2.subject}" || g.Realm != "api" {
				t.Fatalf("%+v", g)
			}
			if _, ok := g.HeaderUp["-X-Auth-Scope"]; !ok {
				t.Fatal("header removal not parsed")
			}
		}},
		{name: "unknown", input: "oauth2_guard {\n frobnicate\n}", wantErr: "unrecognized oauth2_guard subdirective"},
		{name: "bad header_up", input: "oauth2_guard {\n header_up X-A\n}", wantErr: "header_up takes"},
		{name: "twice", input: "oauth2_guard {\n query_token on\n query_token off\n}", wantErr: "more than once"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := httpcaddyfile.Helper{Dispenser: caddyfile.NewTestDispenser(tt.input)}
			mh, err := parseGuardDirective(h)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, mh.(*Guard))
		})
	}
}

func TestAppJSONRoundTrip(t *testing.T) {
	a := new(App)
	if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser("oauth2 {\n issuer https://x\n client a {\n public\n redirect_uris https://a/cb\n }\n}")); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"issuer":"https://x","clients":[{"client_id":"a","public":true,"redirect_uris":["https://a/cb"]}]}`
	if string(b) != want {
		t.Fatalf("JSON = %s\nwant   %s", b, want)
	}
}

// TestAuthzDoesNotImportCaddy keeps the core Caddy-free (README, "Layout").
func TestAuthzDoesNotImportCaddy(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/oauth2gate/oauth2gate/authz/...").Output()
	if err != nil {
		t.Skipf("go list: %v", err)
	}
	for _, dep := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(dep, "github.com/caddyserver/") {
			t.Fatalf("authz depends on %s", dep)
		}
	}
}
