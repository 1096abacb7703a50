// Package oauth2gate plugs the OAuth 2.0 authorization server and API
// gateway into Caddy: import it (or build with xcaddy --with
// github.com/oauth2gate/oauth2gate) to register the `oauth2` app and the
// `oauth2_server` and `oauth2_guard` handlers.
package oauth2gate

import (
	_ "github.com/oauth2gate/oauth2gate/caddymodule"
)
