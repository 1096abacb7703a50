package caddymodule

import (
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
)

// FuzzCaddyfile feeds arbitrary text to the oauth2 global option and the
// oauth2_guard directive: an error is fine, a panic is not.
func FuzzCaddyfile(f *testing.F) {
	for _, seed := range []string{
		"oauth2 {\n issuer https://x\n client a {\n public\n grants authorization_code\n redirect_uris https://a/cb\n }\n}",
		"oauth2 {\n store redis redis://h:1 {\n key_prefix p\n }\n cache {\n max_tokens 5\n ttl 1m\n }\n}",
		"oauth2 {\n access_token {\n ttl 1h\n format jwt\n }\n refresh_token {\n rotate off\n reuse_grace 5s\n }\n failure_limit 5 1m\n}",
		"oauth2 {\n user a $2a$10$x {\n claim email a@b\n }\n}",
		"oauth2_guard read {\n scope GET,POST write\n header_up -X-Auth-Scope\n query_token off\n}",
		"oauth2 {\n client {\n}", "oauth2 {{{", "oauth2_guard {\n scope\n}",
		"oauth2 {\n client s {\n public\n redirect_uris https://s/\n allowed_origins https://s http://127.0.0.1:8081\n }\n}",
		"oauth2_guard {\n scope GET read\n cors https://s https://[::1]:8443\n}",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, input string) {
		// Caddy's lexer refuses some inputs before our parsers see them
		// (NewTestDispenser would log.Fatal on those).
		tokens, err := caddyfile.Tokenize([]byte(input), "Caddyfile")
		if err != nil {
			return
		}
		_ = new(App).UnmarshalCaddyfile(caddyfile.NewDispenser(tokens))
		_, _ = parseGuardDirective(httpcaddyfile.Helper{Dispenser: caddyfile.NewDispenser(tokens)})
	})
}
