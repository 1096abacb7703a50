// Command caddy is Caddy with its standard modules plus oauth2gate: what
// `xcaddy build --with github.com/oauth2gate/oauth2gate` produces.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/oauth2gate/oauth2gate"
)

func main() {
	caddycmd.Main()
}
