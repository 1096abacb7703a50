package caddymodule

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
)

// allowed_origins and the guard's cors line: parsed, and every origin a
// browser could never send refused with the line and the reason.
func TestCORSDirectives(t *testing.T) {
	client := func(origins string) string {
		return "oauth2 {\n client spa {\n public\n redirect_uris https://spa.test/\n allowed_origins " + origins + "\n }\n}"
	}
	guard := func(origins string) string { return "oauth2_guard read {\n cors " + origins + "\n}" }
	tests := []struct {
		name, input, wantErr string
		guard                bool
	}{
		{name: "client ok", input: client("https://spa.test http://127.0.0.1:8081")},
		{name: "guard ok", input: guard("https://spa.test http://localhost:3000"), guard: true},
		{name: "client wildcard", input: client("https://*.spa.test"), wantErr: "client \"spa\": allowed_origins: origin \"https://*.spa.test\": wildcards are not allowed; list each origin, at Testfile:5"},
		{name: "client star", input: client("*"), wantErr: "wildcards are not allowed"},
		{name: "client null", input: client("null"), wantErr: "cannot be allowed"},
		{name: "client path", input: client("https://spa.test/app"), wantErr: "no path"},
		{name: "client trailing slash", input: client("https://spa.test/"), wantErr: "remove the trailing slash"},
		{name: "client upper case", input: client("https://SPA.test"), wantErr: `write it in lower case ("https://spa.test")`},
		{name: "client default port", input: client("https://spa.test:443"), wantErr: "leave out the default port"},
		{name: "client no args", input: "oauth2 {\n client spa {\n public\n redirect_uris https://spa.test/\n allowed_origins\n }\n}", wantErr: "wrong argument count or unexpected line ending after 'allowed_origins', at Testfile:5"},
		{name: "client twice", input: "oauth2 {\n client spa {\n public\n redirect_uris https://spa.test/\n allowed_origins https://a.test\n allowed_origins https://b.test\n }\n}", wantErr: "more than once"},
		{name: "guard wildcard", input: guard("*"), guard: true, wantErr: "cors: origin \"*\": wildcards are not allowed; list each origin, at Testfile:2"},
		{name: "guard null", input: guard("null"), guard: true, wantErr: "cannot be allowed"},
		{name: "guard path", input: guard("https://spa.test/x"), guard: true, wantErr: "no path"},
		{name: "guard no args", input: "oauth2_guard {\n cors\n}", guard: true, wantErr: "wrong argument count"},
		{name: "guard twice", input: "oauth2_guard {\n cors https://a.test\n cors https://b.test\n}", guard: true, wantErr: "more than once"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			var g *Guard
			var a *App
			if tt.guard {
				var mh any
				mh, err = parseGuardDirective(httpcaddyfile.Helper{Dispenser: caddyfile.NewTestDispenser(tt.input)})
				g, _ = mh.(*Guard)
			} else {
				a = new(App)
				err = a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.guard && strings.Join(g.CORS, " ") != "https://spa.test http://localhost:3000" {
				t.Fatalf("cors = %q", g.CORS)
			}
			if !tt.guard && strings.Join(a.Clients[0].AllowedOrigins, " ") != "https://spa.test http://127.0.0.1:8081" {
				t.Fatalf("allowed_origins = %q", a.Clients[0].AllowedOrigins)
			}
		})
	}
}

// The JSON form gets the same refusal as the Caddyfile when provisioned.
func TestCORSJSONChecked(t *testing.T) {
	f := newGuardFixture(t)
	g := &Guard{CORS: []string{"https://spa.test/"}}
	if err := g.setup(f.srv); err == nil || !strings.Contains(err.Error(), "oauth2_guard: cors: origin \"https://spa.test/\": remove the trailing slash") {
		t.Fatalf("setup = %v", err)
	}
	c := Client{ID: "spa", Public: true, RedirectURIs: []string{"https://spa.test/"}, AllowedOrigins: []string{"null"}}
	if err := c.clientConfig("").Check(); err == nil || !strings.Contains(err.Error(), "allowed_origins") {
		t.Fatalf("Check = %v", err)
	}
}
