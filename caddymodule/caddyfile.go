package caddymodule

import (
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/oauth2gate/oauth2gate/authz"
)

func init() {
	httpcaddyfile.RegisterGlobalOption("oauth2", parseGlobalOption)
	// Not RegisterHandlerDirective: it would read the base path as a path matcher.
	httpcaddyfile.RegisterDirective("oauth2_server", parseServerDirective)
	// After rewrite/uri/try_files, before basic_auth and every handler that
	// responds, so users need no `order` line.
	httpcaddyfile.RegisterDirectiveOrder("oauth2_server", httpcaddyfile.Before, "basicauth")
	// Beside basic_auth and forward_auth: after oauth2_server, before handle,
	// route, respond, reverse_proxy, php_fastcgi and file_server.
	httpcaddyfile.RegisterHandlerDirective("oauth2_guard", parseGuardDirective)
	httpcaddyfile.RegisterDirectiveOrder("oauth2_guard", httpcaddyfile.After, "forward_auth")
}

// parseGlobalOption parses the global `oauth2` block:
//
//	oauth2 {
//		issuer        <url>
//		store         file [<dir>]
//		store         redis <url> { key_prefix <p> }
//		cache { max_tokens <n>; ttl <duration> }
//		access_token  { ttl <duration>; format opaque|jwt }
//		refresh_token { ttl <duration>; rotate on|off; reuse_grace <duration> }
//		code_ttl      <duration>
//		signing_key   <pem-file>
//		secrets_key   <base64 32 bytes>        # {env.NAME}, {file./path}; required with store redis
//		secrets_key_retired <key>...           # older keys, read and replaced at start-up
//		allow_get_token_request
//		pkce_plain    on|off
//		failure_limit <burst> <interval> | off
//		client <id> { secret <hash>; public; grants …; redirect_uris …; scopes …; name <text>; skip_consent }
//		user <name> <hash> { claim <name> <value> }
//	}
func parseGlobalOption(d *caddyfile.Dispenser, existing any) (any, error) {
	if existing != nil {
		return nil, d.Err("the oauth2 global option may appear only once")
	}
	app := new(App)
	if err := app.UnmarshalCaddyfile(d); err != nil {
		return nil, err
	}
	return httpcaddyfile.App{Name: "oauth2", Value: caddyconfig.JSON(app, nil)}, nil
}

// UnmarshalCaddyfile fills the app from the global block.
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the option name
	if d.NextArg() {
		return d.ArgErr()
	}
	seen := map[string]bool{}
	once := func(name string) error {
		if seen[name] {
			return d.Errf("%s is set more than once", name)
		}
		seen[name] = true
		return nil
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		dir := d.Val()
		switch dir {
		case "issuer", "code_ttl", "signing_key", "secrets_key", "secrets_key_retired", "store", "cache", "access_token", "refresh_token", "allow_get_token_request", "pkce_plain", "failure_limit":
			if err := once(dir); err != nil {
				return err
			}
		}
		switch dir {
		case "issuer":
			if !d.NextArg() {
				return d.ArgErr()
			}
			a.Issuer = d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
		case "code_ttl":
			dur, err := oneDuration(d)
			if err != nil {
				return err
			}
			a.CodeTTL = dur
		case "signing_key":
			if !d.NextArg() {
				return d.ArgErr()
			}
			a.SigningKey = d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
		case "secrets_key":
			if !d.NextArg() {
				return d.ArgErr()
			}
			if err := checkSecretsKey(d, "secrets_key"); err != nil {
				return err
			}
			a.SecretsKey = d.Val()
			if d.NextArg() {
				return d.ArgErr()
			}
		case "secrets_key_retired":
			if !d.NextArg() {
				return d.ArgErr()
			}
			for {
				if err := checkSecretsKey(d, "secrets_key_retired"); err != nil {
					return err
				}
				a.SecretsKeyRetired = append(a.SecretsKeyRetired, d.Val())
				if !d.NextArg() {
					break
				}
			}
		case "allow_get_token_request":
			if d.NextArg() {
				return d.ArgErr()
			}
			a.AllowGetTokenRequest = true
		case "failure_limit":
			args := d.RemainingArgs()
			switch {
			case len(args) == 1 && args[0] == "off":
				a.FailureLimit = &FailureLimitConfig{Off: true}
			case len(args) == 2:
				n, err := strconv.Atoi(args[0])
				if err != nil || n <= 0 {
					return d.Errf("failure_limit burst must be a positive integer, got %q", args[0])
				}
				dur, err := caddy.ParseDuration(args[1])
				if err != nil || dur <= 0 {
					return d.Errf("failure_limit interval must be a positive duration, got %q", args[1])
				}
				a.FailureLimit = &FailureLimitConfig{Burst: n, Every: caddy.Duration(dur)}
			default:
				return d.Errf("failure_limit takes <burst> <interval> (e.g. 10 30s), or off")
			}
		case "pkce_plain":
			on, err := onOff(d)
			if err != nil {
				return err
			}
			a.PKCEPlain = &on
		case "store":
			if err := a.parseStore(d); err != nil {
				return err
			}
		case "cache":
			if err := a.parseCache(d); err != nil {
				return err
			}
		case "access_token":
			if err := a.parseAccessToken(d); err != nil {
				return err
			}
		case "refresh_token":
			if err := a.parseRefreshToken(d); err != nil {
				return err
			}
		case "client":
			c, err := parseClient(d)
			if err != nil {
				return err
			}
			for _, other := range a.Clients {
				if other.ID == c.ID {
					return d.Errf("client %q is defined twice", c.ID)
				}
			}
			a.Clients = append(a.Clients, c)
		case "user":
			u, err := parseUser(d)
			if err != nil {
				return err
			}
			for _, other := range a.Users {
				if other.Username == u.Username {
					return d.Errf("user %q is defined twice", u.Username)
				}
			}
			a.Users = append(a.Users, u)
		default:
			return d.Errf("unrecognized oauth2 subdirective %q", dir)
		}
	}
	return nil
}

// checkSecretsKey refuses a literal key that is not 32 bytes of base64; one
// with a placeholder ({env.*}, {file.*}) is checked when it is expanded.
func checkSecretsKey(d *caddyfile.Dispenser, dir string) error {
	if strings.Contains(d.Val(), "{") {
		return nil
	}
	if _, err := authz.ParseSecretsKey(d.Val()); err != nil {
		return d.Errf("%s: %v", dir, err)
	}
	return nil
}

func oneDuration(d *caddyfile.Dispenser) (caddy.Duration, error) {
	if !d.NextArg() {
		return 0, d.ArgErr()
	}
	dur, err := caddy.ParseDuration(d.Val())
	if err != nil {
		return 0, d.Errf("invalid duration %q: %v", d.Val(), err)
	}
	if dur <= 0 {
		return 0, d.Errf("duration %q must be positive", d.Val())
	}
	if d.NextArg() {
		return 0, d.ArgErr()
	}
	return caddy.Duration(dur), nil
}

func onOff(d *caddyfile.Dispenser) (bool, error) {
	if !d.NextArg() {
		return false, d.ArgErr()
	}
	v := d.Val()
	if d.NextArg() {
		return false, d.ArgErr()
	}
	switch v {
	case "on":
		return true, nil
	case "off":
		return false, nil
	}
	return false, d.Errf("want on or off, got %q", v)
}

func (a *App) parseStore(d *caddyfile.Dispenser) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	sc := &StoreConfig{Backend: d.Val()}
	switch sc.Backend {
	case "file":
		if d.NextArg() {
			sc.Dir = d.Val()
		}
		if d.NextArg() {
			return d.ArgErr()
		}
		if d.NextBlock(d.Nesting()) {
			return d.Errf("store file takes no block")
		}
	case "redis":
		if !d.NextArg() {
			return d.Errf("store redis needs a URL")
		}
		sc.URL = d.Val()
		if d.NextArg() {
			return d.ArgErr()
		}
		for nesting := d.Nesting(); d.NextBlock(nesting); {
			switch d.Val() {
			case "key_prefix":
				if !d.NextArg() {
					return d.ArgErr()
				}
				sc.KeyPrefix = d.Val()
				if d.NextArg() {
					return d.ArgErr()
				}
			default:
				return d.Errf("unrecognized store redis subdirective %q", d.Val())
			}
		}
	default:
		return d.Errf("unknown store %q: want file or redis", sc.Backend)
	}
	a.Store = sc
	return nil
}

func (a *App) parseCache(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	cc := &CacheConfig{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "max_tokens":
			if !d.NextArg() {
				return d.ArgErr()
			}
			n, err := strconv.ParseInt(d.Val(), 10, 64)
			if err != nil || n <= 0 {
				return d.Errf("max_tokens must be a positive integer, got %q", d.Val())
			}
			cc.MaxTokens = n
			if d.NextArg() {
				return d.ArgErr()
			}
		case "ttl":
			dur, err := oneDuration(d)
			if err != nil {
				return err
			}
			cc.TTL = dur
		default:
			return d.Errf("unrecognized cache subdirective %q", d.Val())
		}
	}
	a.Cache = cc
	return nil
}

func (a *App) parseAccessToken(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	at := &AccessTokenConfig{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "ttl":
			dur, err := oneDuration(d)
			if err != nil {
				return err
			}
			at.TTL = dur
		case "format":
			if !d.NextArg() {
				return d.ArgErr()
			}
			at.Format = d.Val()
			if at.Format != "opaque" && at.Format != "jwt" {
				return d.Errf("access_token format must be opaque or jwt, got %q", at.Format)
			}
			if d.NextArg() {
				return d.ArgErr()
			}
		default:
			return d.Errf("unrecognized access_token subdirective %q", d.Val())
		}
	}
	a.AccessToken = at
	return nil
}

func (a *App) parseRefreshToken(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	rt := &RefreshTokenConfig{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "ttl":
			dur, err := oneDuration(d)
			if err != nil {
				return err
			}
			rt.TTL = dur
		case "rotate":
			on, err := onOff(d)
			if err != nil {
				return err
			}
			rt.Rotate = &on
		case "reuse_grace":
			if !d.NextArg() {
				return d.ArgErr()
			}
			dur, err := caddy.ParseDuration(d.Val())
			if err != nil || dur < 0 {
				return d.Errf("invalid reuse_grace %q", d.Val())
			}
			rt.ReuseGrace = caddy.Duration(dur)
			if d.NextArg() {
				return d.ArgErr()
			}
		default:
			return d.Errf("unrecognized refresh_token subdirective %q", d.Val())
		}
	}
	a.RefreshToken = rt
	return nil
}

func parseClient(d *caddyfile.Dispenser) (Client, error) {
	var c Client
	if !d.NextArg() {
		return c, d.Errf("client needs an ID")
	}
	c.ID = d.Val()
	if d.NextArg() {
		return c, d.ArgErr()
	}
	seen := map[string]bool{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		if seen[sub] {
			return c, d.Errf("client %q: %s is set more than once", c.ID, sub)
		}
		seen[sub] = true
		args := d.RemainingArgs()
		switch sub {
		case "secret":
			if len(args) != 1 {
				return c, d.Errf("client %q: secret takes one hash", c.ID)
			}
			c.Secret = args[0]
		case "public":
			if len(args) != 0 {
				return c, d.ArgErr()
			}
			c.Public = true
		case "grants":
			if len(args) == 0 {
				return c, d.ArgErr()
			}
			c.Grants = args
		case "redirect_uris":
			if len(args) == 0 {
				return c, d.ArgErr()
			}
			c.RedirectURIs = args
		case "scopes":
			if len(args) == 0 {
				return c, d.ArgErr()
			}
			c.Scopes = args
		case "name":
			if len(args) != 1 {
				return c, d.Errf("client %q: name takes one (quoted) argument", c.ID)
			}
			c.Name = args[0]
		case "skip_consent":
			if len(args) != 0 {
				return c, d.ArgErr()
			}
			c.SkipConsent = true
		default:
			return c, d.Errf("client %q: unrecognized subdirective %q", c.ID, sub)
		}
	}
	if c.Public && c.Secret != "" {
		return c, d.Errf("client %q: a public client has no secret", c.ID)
	}
	if !c.Public && c.Secret == "" {
		return c, d.Errf("client %q: needs a secret, or public", c.ID)
	}
	return c, nil
}

func parseUser(d *caddyfile.Dispenser) (User, error) {
	var u User
	args := d.RemainingArgs()
	if len(args) != 2 {
		return u, d.Errf("user takes a username and a password hash")
	}
	u.Username, u.Password = args[0], args[1]
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		switch d.Val() {
		case "claim":
			args := d.RemainingArgs()
			if len(args) != 2 {
				return u, d.Errf("user %q: claim takes a name and a value", u.Username)
			}
			if u.Claims == nil {
				u.Claims = map[string]string{}
			}
			u.Claims[args[0]] = args[1]
		default:
			return u, d.Errf("user %q: unrecognized subdirective %q", u.Username, d.Val())
		}
	}
	return u, nil
}

// parseServerDirective parses `oauth2_server [<base_path>]`.
func parseServerDirective(h httpcaddyfile.Helper) ([]httpcaddyfile.ConfigValue, error) {
	s := new(Server)
	h.Next()
	if h.NextArg() {
		s.BasePath = h.Val()
		if !strings.HasPrefix(s.BasePath, "/") {
			return nil, h.Errf("oauth2_server base path %q must start with /", s.BasePath)
		}
	}
	if h.NextArg() {
		return nil, h.ArgErr()
	}
	if h.NextBlock(h.Nesting()) {
		return nil, h.Errf("oauth2_server takes no block")
	}
	return h.NewRoute(nil, s), nil
}

// parseGuardDirective parses
//
//	oauth2_guard [<matcher>] [<scope>...] {
//		scope <METHOD[,METHOD...]|*> <scope>...
//		query_token on|off
//		strip_token on|off
//		header_up <Header-Name> <placeholder>
//		header_up -<Header-Name>
//	}
func parseGuardDirective(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	g := new(Guard)
	h.Next()
	g.Scopes = h.RemainingArgs()
	seen := map[string]bool{}
	for nesting := h.Nesting(); h.NextBlock(nesting); {
		sub := h.Val()
		switch sub {
		case "scope":
			args := h.RemainingArgs()
			if len(args) < 1 {
				return nil, h.Errf("scope needs methods (or *) and scopes")
			}
			var methods []string
			for _, m := range strings.Split(args[0], ",") {
				m = strings.TrimSpace(m)
				if m == "" {
					return nil, h.Errf("empty method in %q", args[0])
				}
				if m != "*" {
					m = strings.ToUpper(m)
				}
				methods = append(methods, m)
			}
			g.MethodScopes = append(g.MethodScopes, MethodScope{Methods: methods, Scopes: args[1:]})
		case "query_token", "strip_token", "realm":
			if seen[sub] {
				return nil, h.Errf("%s is set more than once", sub)
			}
			seen[sub] = true
			if sub == "realm" {
				if !h.NextArg() {
					return nil, h.ArgErr()
				}
				g.Realm = h.Val()
				if h.NextArg() {
					return nil, h.ArgErr()
				}
				continue
			}
			on, err := onOff(h.Dispenser)
			if err != nil {
				return nil, err
			}
			if sub == "query_token" {
				g.QueryToken = &on
			} else {
				g.StripToken = &on
			}
		case "header_up":
			args := h.RemainingArgs()
			if g.HeaderUp == nil {
				g.HeaderUp = map[string]string{}
			}
			switch {
			case len(args) == 1 && strings.HasPrefix(args[0], "-"):
				g.HeaderUp[args[0]] = ""
			case len(args) == 2:
				g.HeaderUp[args[0]] = args[1]
			default:
				return nil, h.Errf("header_up takes <Header-Name> <placeholder>, or -<Header-Name>")
			}
		default:
			return nil, h.Errf("unrecognized oauth2_guard subdirective %q", sub)
		}
	}
	return g, nil
}
