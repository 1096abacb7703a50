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
	"github.com/oauth2gate/oauth2gate/authz/cors"
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

// The adapter checks syntax and names the line of a mistake; what a value
// means is checked when the configuration is provisioned, by the same rule
// (authz.ClientConfig.Check, authz.CheckAccessTokenFormat), so the JSON form
// gets the same refusals.

// parseGlobalOption parses the global `oauth2` block:
//
//	oauth2 {
//		issuer        <url>
//		store         file [<dir>]
//		store         redis <url> { key_prefix <p> }
//		cache { max_tokens <n>; ttl <duration> }
//		access_token  { ttl <duration>; format opaque|jwt [ES256|RS256] }
//		refresh_token { ttl <duration>; rotate on|off; reuse_grace <duration> }
//		code_ttl      <duration>
//		signing_key   <pem-file>
//		secrets_key   <base64 32 bytes>        # {env.NAME}, {file./path}; required with store redis
//		secrets_key_retired <key>...           # older keys, read and replaced at start-up
//		allow_get_token_request
//		pkce_plain    on|off
//		failure_limit <burst> <interval> | off
//		client <id> { secret <hash>; public; grants …; redirect_uris …; allowed_origins …; scopes …; name <text>; skip_consent }
//		user <name> <hash> { claim <name> <value> }
//		trust <issuer-url> { jwks_uri …; audience …; algorithms …; introspection <url> { client_id …; client_secret … }; scope_claim …; subject_claim …; leeway …; cache_ttl … }
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

// oneArg reads the one argument of the current directive.
func oneArg(d *caddyfile.Dispenser) (string, error) {
	if !d.NextArg() {
		return "", d.ArgErr()
	}
	v := d.Val()
	if d.NextArg() {
		return "", d.ArgErr()
	}
	return v, nil
}

// noArgs refuses arguments after the current directive.
func noArgs(d *caddyfile.Dispenser) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

// someArgs reads one or more arguments.
func someArgs(d *caddyfile.Dispenser) ([]string, error) {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return nil, d.ArgErr()
	}
	return args, nil
}

func oneDuration(d *caddyfile.Dispenser) (caddy.Duration, error) {
	v, err := oneArg(d)
	if err != nil {
		return 0, err
	}
	dur, err := caddy.ParseDuration(v)
	if err != nil {
		return 0, d.Errf("invalid duration %q: %v", v, err)
	}
	if dur <= 0 {
		return 0, d.Errf("duration %q must be positive", v)
	}
	return caddy.Duration(dur), nil
}

func onOff(d *caddyfile.Dispenser) (bool, error) {
	v, err := oneArg(d)
	if err != nil {
		return false, err
	}
	switch v {
	case "on":
		return true, nil
	case "off":
		return false, nil
	}
	return false, d.Errf("want on or off, got %q", v)
}

// onceChecker refuses a subdirective given twice in one block.
func onceChecker(d *caddyfile.Dispenser, what string) func(name string) error {
	seen := map[string]bool{}
	return func(name string) error {
		if seen[name] {
			return d.Errf("%s%s is set more than once", what, name)
		}
		seen[name] = true
		return nil
	}
}

// UnmarshalCaddyfile fills the app from the global block.
func (a *App) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the option name
	if err := noArgs(d); err != nil {
		return err
	}
	once := onceChecker(d, "")
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		dir := d.Val()
		switch dir {
		case "client", "user", "trust":
		default:
			if err := once(dir); err != nil {
				return err
			}
		}
		var err error
		switch dir {
		case "issuer":
			a.Issuer, err = oneArg(d)
		case "code_ttl":
			a.CodeTTL, err = oneDuration(d)
		case "signing_key":
			a.SigningKey, err = oneArg(d)
		case "secrets_key":
			if a.SecretsKey, err = oneArg(d); err == nil {
				err = checkSecretsKey(d, dir, a.SecretsKey)
			}
		case "secrets_key_retired":
			if a.SecretsKeyRetired, err = someArgs(d); err == nil {
				for _, k := range a.SecretsKeyRetired {
					if err = checkSecretsKey(d, dir, k); err != nil {
						break
					}
				}
			}
		case "allow_get_token_request":
			a.AllowGetTokenRequest, err = true, noArgs(d)
		case "failure_limit":
			a.FailureLimit, err = parseFailureLimit(d)
		case "pkce_plain":
			var on bool
			if on, err = onOff(d); err == nil {
				a.PKCEPlain = &on
			}
		case "store":
			a.Store, err = parseStore(d)
		case "cache":
			a.Cache, err = parseCache(d)
		case "access_token":
			a.AccessToken, err = parseAccessToken(d)
		case "refresh_token":
			a.RefreshToken, err = parseRefreshToken(d)
		case "client":
			var c Client
			if c, err = parseClient(d); err == nil {
				for _, other := range a.Clients {
					if other.ID == c.ID {
						return d.Errf("client %q is defined twice", c.ID)
					}
				}
				a.Clients = append(a.Clients, c)
			}
		case "trust":
			var tc TrustConfig
			if tc, err = parseTrust(d); err == nil {
				for _, other := range a.Trust {
					if other.Issuer == tc.Issuer {
						return d.Errf("trust %s is defined twice", tc.Issuer)
					}
				}
				a.Trust = append(a.Trust, tc)
			}
		case "user":
			var u User
			if u, err = parseUser(d); err == nil {
				for _, other := range a.Users {
					if other.Username == u.Username {
						return d.Errf("user %q is defined twice", u.Username)
					}
				}
				a.Users = append(a.Users, u)
			}
		default:
			return d.Errf("unrecognized oauth2 subdirective %q", dir)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// checkSecretsKey refuses a literal key that is not 32 bytes of base64; one
// with a placeholder ({env.*}, {file.*}) is checked when it is expanded.
func checkSecretsKey(d *caddyfile.Dispenser, dir, key string) error {
	if strings.Contains(key, "{") {
		return nil
	}
	if _, err := authz.ParseSecretsKey(key); err != nil {
		return d.Errf("%s: %v", dir, err)
	}
	return nil
}

func parseFailureLimit(d *caddyfile.Dispenser) (*FailureLimitConfig, error) {
	args := d.RemainingArgs()
	switch {
	case len(args) == 1 && args[0] == "off":
		return &FailureLimitConfig{Off: true}, nil
	case len(args) == 2:
		n, err := strconv.Atoi(args[0])
		if err != nil || n <= 0 {
			return nil, d.Errf("failure_limit burst must be a positive integer, got %q", args[0])
		}
		dur, err := caddy.ParseDuration(args[1])
		if err != nil || dur <= 0 {
			return nil, d.Errf("failure_limit interval must be a positive duration, got %q", args[1])
		}
		return &FailureLimitConfig{Burst: n, Every: caddy.Duration(dur)}, nil
	}
	return nil, d.Errf("failure_limit takes <burst> <interval> (e.g. 10 30s), or off")
}

func parseStore(d *caddyfile.Dispenser) (*StoreConfig, error) {
	if !d.NextArg() {
		return nil, d.ArgErr()
	}
	sc := &StoreConfig{Backend: d.Val()}
	switch sc.Backend {
	case "file":
		if d.NextArg() {
			sc.Dir = d.Val()
		}
		if err := noArgs(d); err != nil {
			return nil, err
		}
		if d.NextBlock(d.Nesting()) {
			return nil, d.Errf("store file takes no block")
		}
	case "redis":
		var err error
		if sc.URL, err = oneArg(d); err != nil {
			return nil, d.Errf("store redis takes one URL")
		}
		for nesting := d.Nesting(); d.NextBlock(nesting); {
			switch d.Val() {
			case "key_prefix":
				if sc.KeyPrefix, err = oneArg(d); err != nil {
					return nil, err
				}
			default:
				return nil, d.Errf("unrecognized store redis subdirective %q", d.Val())
			}
		}
	default:
		return nil, d.Errf("unknown store %q: want file or redis", sc.Backend)
	}
	return sc, nil
}

func parseCache(d *caddyfile.Dispenser) (*CacheConfig, error) {
	if err := noArgs(d); err != nil {
		return nil, err
	}
	cc := &CacheConfig{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "max_tokens":
			var v string
			if v, err = oneArg(d); err == nil {
				n, perr := strconv.ParseInt(v, 10, 64)
				if perr != nil || n <= 0 {
					return nil, d.Errf("max_tokens must be a positive integer, got %q", v)
				}
				cc.MaxTokens = n
			}
		case "ttl":
			cc.TTL, err = oneDuration(d)
		default:
			return nil, d.Errf("unrecognized cache subdirective %q", d.Val())
		}
		if err != nil {
			return nil, err
		}
	}
	return cc, nil
}

func parseAccessToken(d *caddyfile.Dispenser) (*AccessTokenConfig, error) {
	if err := noArgs(d); err != nil {
		return nil, err
	}
	at := &AccessTokenConfig{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "ttl":
			at.TTL, err = oneDuration(d)
		case "format":
			args := d.RemainingArgs()
			if len(args) < 1 || len(args) > 2 || (len(args) == 2 && args[0] != "jwt") {
				return nil, d.Errf("format takes opaque, or jwt [ES256|RS256]")
			}
			at.Format = args[0]
			if cerr := authz.CheckAccessTokenFormat(at.Format); cerr != nil {
				return nil, d.Err(cerr.Error())
			}
			if len(args) == 2 {
				at.Algorithm = args[1]
				if cerr := authz.CheckAccessTokenAlg(at.Algorithm); cerr != nil {
					return nil, d.Err(cerr.Error())
				}
			}
		default:
			return nil, d.Errf("unrecognized access_token subdirective %q", d.Val())
		}
		if err != nil {
			return nil, err
		}
	}
	return at, nil
}

func parseRefreshToken(d *caddyfile.Dispenser) (*RefreshTokenConfig, error) {
	if err := noArgs(d); err != nil {
		return nil, err
	}
	rt := &RefreshTokenConfig{}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		var err error
		switch d.Val() {
		case "ttl":
			rt.TTL, err = oneDuration(d)
		case "rotate":
			var on bool
			if on, err = onOff(d); err == nil {
				rt.Rotate = &on
			}
		case "reuse_grace":
			var v string
			if v, err = oneArg(d); err == nil {
				dur, perr := caddy.ParseDuration(v)
				if perr != nil || dur < 0 {
					return nil, d.Errf("invalid reuse_grace %q", v)
				}
				rt.ReuseGrace = caddy.Duration(dur)
			}
		default:
			return nil, d.Errf("unrecognized refresh_token subdirective %q", d.Val())
		}
		if err != nil {
			return nil, err
		}
	}
	return rt, nil
}

func parseClient(d *caddyfile.Dispenser) (Client, error) {
	var c Client
	id, err := oneArg(d)
	if err != nil {
		return c, d.Errf("client needs one ID")
	}
	c.ID = id
	once := onceChecker(d, "client "+strconv.Quote(c.ID)+": ")
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		if err := once(sub); err != nil {
			return c, err
		}
		switch sub {
		case "secret":
			if c.Secret, err = oneArg(d); err != nil {
				return c, d.Errf("client %q: secret takes one hash", c.ID)
			}
		case "public":
			c.Public, err = true, noArgs(d)
		case "grants":
			c.Grants, err = someArgs(d)
		case "redirect_uris":
			c.RedirectURIs, err = someArgs(d)
		case "allowed_origins":
			if c.AllowedOrigins, err = someArgs(d); err == nil {
				for _, o := range c.AllowedOrigins {
					if cerr := cors.CheckOrigin(o); cerr != nil {
						return c, d.Errf("client %q: allowed_origins: %v", c.ID, cerr)
					}
				}
			}
		case "scopes":
			c.Scopes, err = someArgs(d)
		case "name":
			if c.Name, err = oneArg(d); err != nil {
				return c, d.Errf("client %q: name takes one (quoted) argument", c.ID)
			}
		case "skip_consent":
			c.SkipConsent, err = true, noArgs(d)
		default:
			return c, d.Errf("client %q: unrecognized subdirective %q", c.ID, sub)
		}
		if err != nil {
			return c, err
		}
	}
	if err := c.clientConfig(c.Secret).Check(); err != nil {
		return c, d.Err(err.Error())
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
	if err := s.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	return h.NewRoute(nil, s), nil
}

// UnmarshalCaddyfile parses `oauth2_server [<base_path>]`.
func (s *Server) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() {
		s.BasePath = d.Val()
		if !strings.HasPrefix(s.BasePath, "/") {
			return d.Errf("oauth2_server base path %q must start with /", s.BasePath)
		}
	}
	if err := noArgs(d); err != nil {
		return err
	}
	if d.NextBlock(d.Nesting()) {
		return d.Errf("oauth2_server takes no block")
	}
	return nil
}

func parseGuardDirective(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	g := new(Guard)
	err := g.UnmarshalCaddyfile(h.Dispenser)
	return g, err
}

// UnmarshalCaddyfile parses
//
//	oauth2_guard [<matcher>] [<scope>...] {
//		scope <METHOD[,METHOD...]|*> <scope>...
//		query_token on|off
//		strip_token on|off
//		header_up <Header-Name> <placeholder>
//		header_up -<Header-Name>
//		realm <name>
//		cors <origin>...
//		issuer <issuer-url>...
//		claim <name> <value>...
//	}
func (g *Guard) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	g.Scopes = d.RemainingArgs()
	once := onceChecker(d, "")
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		var err error
		switch sub {
		case "scope":
			var ms MethodScope
			if ms, err = parseScopeLine(d); err == nil {
				g.MethodScopes = append(g.MethodScopes, ms)
			}
		case "query_token", "strip_token":
			if err = once(sub); err != nil {
				return err
			}
			var on bool
			if on, err = onOff(d); err == nil {
				if sub == "query_token" {
					g.QueryToken = &on
				} else {
					g.StripToken = &on
				}
			}
		case "realm":
			if err = once(sub); err == nil {
				g.Realm, err = oneArg(d)
			}
		case "cors":
			if err = once(sub); err != nil {
				return err
			}
			if g.CORS, err = someArgs(d); err == nil {
				for _, o := range g.CORS {
					if cerr := cors.CheckOrigin(o); cerr != nil {
						return d.Errf("cors: %v", cerr)
					}
				}
			}
		case "issuer":
			if err = once(sub); err == nil {
				g.Issuers, err = someArgs(d)
			}
		case "claim":
			args := d.RemainingArgs()
			if len(args) < 2 {
				return d.Errf("claim takes a name and one or more values")
			}
			g.Claims = append(g.Claims, ClaimRule{Name: args[0], Values: args[1:]})
		case "header_up":
			args := d.RemainingArgs()
			if g.HeaderUp == nil {
				g.HeaderUp = map[string]string{}
			}
			switch {
			case len(args) == 1 && strings.HasPrefix(args[0], "-"):
				g.HeaderUp[args[0]] = ""
			case len(args) == 2:
				g.HeaderUp[args[0]] = args[1]
			default:
				return d.Errf("header_up takes <Header-Name> <placeholder>, or -<Header-Name>")
			}
		default:
			return d.Errf("unrecognized oauth2_guard subdirective %q", sub)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// parseScopeLine reads `scope <METHOD[,METHOD...]|*> <scope>...`.
func parseScopeLine(d *caddyfile.Dispenser) (MethodScope, error) {
	args := d.RemainingArgs()
	if len(args) < 1 {
		return MethodScope{}, d.Errf("scope needs methods (or *) and scopes")
	}
	var ms MethodScope
	for _, m := range strings.Split(args[0], ",") {
		m = strings.TrimSpace(m)
		if m == "" {
			return ms, d.Errf("empty method in %q", args[0])
		}
		if m != "*" {
			m = strings.ToUpper(m)
		}
		ms.Methods = append(ms.Methods, m)
	}
	ms.Scopes = args[1:]
	return ms, nil
}

var (
	_ caddyfile.Unmarshaler = (*App)(nil)
	_ caddyfile.Unmarshaler = (*Server)(nil)
	_ caddyfile.Unmarshaler = (*Guard)(nil)
)
