package caddymodule

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/oauth2gate/oauth2gate/authz/gateway"
	"github.com/oauth2gate/oauth2gate/authz/metrics"
	"github.com/oauth2gate/oauth2gate/authz/oautherr"
)

func init() {
	caddy.RegisterModule(Guard{})
}

// Guard is `http.handlers.oauth2_guard`: it lets a request through only with
// a valid bearer token that has the scopes the route needs (RFC 6750), strips
// the token and tells the upstream who called.
type Guard struct {
	// Scopes are required on every method (the inline arguments).
	Scopes []string `json:"scopes,omitempty"`
	// MethodScopes are per-method requirements (`scope <METHODS|*> <scopes...>`).
	MethodScopes []MethodScope `json:"method_scopes,omitempty"`
	// QueryToken accepts ?access_token= (RFC 6750 §2.3). Default true.
	QueryToken *bool `json:"query_token,omitempty"`
	// StripToken removes the token before the request goes on. Default true.
	StripToken *bool `json:"strip_token,omitempty"`
	// HeaderUp sets identity headers for the upstream from placeholders. The
	// defaults X-Auth-Subject, X-Auth-Client-Id and X-Auth-Scope are always
	// set unless a key "-Name" removes one.
	HeaderUp map[string]string `json:"header_up,omitempty"`
	// Realm is the realm of WWW-Authenticate. Default oauth2gate.
	Realm string `json:"realm,omitempty"`
	// CORS are the origins (scheme://host[:port]) whose scripts may call
	// the route: the guard answers their preflights itself and owns the
	// CORS headers of every answer (guardcors.go).
	CORS []string `json:"cors,omitempty"`
	// Issuers, when set, are the only issuers whose tokens pass here (trusted
	// ones or this server's); default every trusted issuer and this server.
	Issuers []string `json:"issuers,omitempty"`
	// Claims must all hold, else 403 insufficient_scope.
	Claims []ClaimRule `json:"claims,omitempty"`

	guard   *gateway.Guard
	cors    *gateway.CORS // nil without a cors line
	strip   bool
	headers []identityHeader
	drop    []string // removed defaults and header_up names, deleted first
	logger  *zap.Logger
	qlog    *queryTokenLog // nil unless the server keeps access logs
	// errorRoutes: the site has handle_errors, which then answers refusals.
	errorRoutes bool
}

// MethodScope is one per-method scope line.
type MethodScope struct {
	Methods []string `json:"methods"`
	Scopes  []string `json:"scopes,omitempty"`
}

type identityHeader struct {
	name  string
	value string // a placeholder template
	fixed func(*gateway.Identity) string
}

// CaddyModule returns the Caddy module information.
func (Guard) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.oauth2_guard",
		New: func() caddy.Module { return new(Guard) },
	}
}

var defaultIdentity = []identityHeader{
	{name: "X-Auth-Subject", fixed: func(e *gateway.Identity) string { return e.Subject }},
	{name: "X-Auth-Client-Id", fixed: func(e *gateway.Identity) string { return e.ClientID }},
	{name: "X-Auth-Scope", fixed: func(e *gateway.Identity) string { return e.Scope }},
}

// Provision builds the scope rules and finds the oauth2 app.
func (g *Guard) Provision(ctx caddy.Context) error {
	g.logger = ctx.Logger()
	g.qlog = newQueryTokenLog(ctx)
	g.errorRoutes = hasErrorRoutes(ctx)
	appIface, err := ctx.App("oauth2")
	if err != nil {
		return fmt.Errorf("oauth2_guard: loading oauth2 app: %v", err)
	}
	v, err := appIface.(*App).RouteVerifier(g.Issuers)
	if err != nil {
		return fmt.Errorf("oauth2_guard: %v", err)
	}
	for _, c := range g.Claims {
		if c.Name == "" || len(c.Values) == 0 {
			return fmt.Errorf("oauth2_guard: claim needs a name and at least one value")
		}
	}
	return g.setup(v)
}

// setup builds the scope rules and identity headers around v.
func (g *Guard) setup(v gateway.Verifier) error {
	var lines []gateway.MethodScopes
	for _, ms := range g.MethodScopes {
		lines = append(lines, gateway.MethodScopes{Methods: ms.Methods, Scopes: ms.Scopes})
	}
	rules, err := gateway.NewScopeRules(g.Scopes, lines)
	if err != nil {
		return fmt.Errorf("oauth2_guard: %v", err)
	}
	opt := gateway.Options{
		Realm:      g.Realm,
		QueryToken: g.QueryToken == nil || *g.QueryToken,
		FormToken:  true,
		Observer:   metrics.Default.Observer(),
	}
	if len(g.Claims) > 0 {
		claims := g.Claims
		opt.Admit = func(id *gateway.Identity) *oautherr.Error { return checkClaims(claims, id) }
	}
	g.guard = gateway.New(v, rules, opt)
	if len(g.CORS) > 0 {
		if g.cors, err = gateway.NewCORS(g.CORS, g.guard.Rules()); err != nil {
			return fmt.Errorf("oauth2_guard: cors: %v", err)
		}
	}
	g.strip = g.StripToken == nil || *g.StripToken
	removed := map[string]bool{}
	for name := range g.HeaderUp {
		if strings.HasPrefix(name, "-") {
			removed[http.CanonicalHeaderKey(name[1:])] = true
		}
	}
	for _, h := range defaultIdentity {
		if !removed[h.name] {
			g.headers = append(g.headers, h)
		}
	}
	for name, val := range g.HeaderUp {
		if strings.HasPrefix(name, "-") {
			continue
		}
		g.headers = append(g.headers, identityHeader{name: http.CanonicalHeaderKey(name), value: val})
	}
	for _, h := range g.headers {
		if h.fixed == nil {
			g.drop = append(g.drop, h.name)
		}
	}
	for name := range removed {
		g.drop = append(g.drop, name)
	}
	return nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (g *Guard) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if g.qlog.redacts(r) {
		return g.qlog.around(w, r, next, g.serve)
	}
	return g.serve(w, r, next)
}

func (g *Guard) serve(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if g.cors != nil {
		var done bool
		if w, done = g.withCORS(w, r); done {
			return nil
		}
	}
	e, src, d := g.guard.Check(r)
	if d != nil {
		return g.refuse(w, r, d)
	}
	// A caller must not be able to claim an identity. The default headers
	// set below overwrite a client's copy; removed defaults and header_up
	// names are deleted first (names canonical since Provision), so a
	// template never reads a client's value of the header it sets.
	// Spellings a CGI-style upstream reads as the same name (X_Auth_Subject,
	// X.Auth.Subject) never get this far: Caddy's server drops headers with
	// '_' or '.' unless they are allowlisted.
	for _, name := range g.drop {
		delete(r.Header, name)
	}
	if conn, ok := r.Header["Connection"]; ok {
		g.keepIdentityHeaders(r.Header, conn)
	}
	if g.strip {
		gateway.Strip(r, src)
	}
	repl, _ := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if repl != nil {
		// One provider, values made only when a placeholder is used.
		repl.Map(func(key string) (any, bool) {
			switch key {
			case "oauth2.subject", "http.auth.user.id":
				return e.Subject, true
			case "oauth2.client_id":
				return e.ClientID, true
			case "oauth2.scope":
				return e.Scope, true
			case "oauth2.expires_at":
				return strconv.FormatInt(e.ExpiresAt.Unix(), 10), true
			case "oauth2.issuer":
				return e.Issuer, true
			}
			if name, ok := strings.CutPrefix(key, "oauth2.claim."); ok {
				return claimText(e.Claims, name)
			}
			return nil, false
		})
	}
	// One backing array for every identity header's value. Each header gets
	// its own capped slice of it, so a later append or Set cannot reach into
	// a neighbour, and nothing is shared across requests.
	vals := make([]string, len(g.headers))
	for i, h := range g.headers {
		if h.fixed != nil {
			vals[i] = h.fixed(e)
		} else if repl != nil {
			vals[i] = repl.ReplaceAll(h.value, "")
			if vals[i] == "" {
				continue // a claim the token lacks sends no header
			}
		}
		r.Header[h.name] = vals[i : i+1 : i+1]
	}
	return next.ServeHTTP(w, r)
}

// refuse answers a refusal as RFC 6750 §3 says. When the site has
// handle_errors, the challenge is set and the refusal returned as a
// caddyhttp.Error, as Caddy's own auth handlers do, so the user's error
// routes write the answer ({http.error.status_code} and friends); otherwise
// the guard writes its JSON body itself.
func (g *Guard) refuse(w http.ResponseWriter, r *http.Request, e *oautherr.Error) error {
	if e.Status >= 500 {
		if c := g.logger.Check(zap.WarnLevel, "token could not be verified"); c != nil {
			fields := []zap.Field{zap.String("error", e.Code)}
			if cause := e.Cause(); cause != nil {
				fields = append(fields, zap.String("cause", cause.Error()))
			}
			c.Write(fields...)
		}
	}
	// A request whose log entry the guard writes itself (a token in the
	// query) never reaches Caddy's error routes, which would log its URI.
	if redacted, _ := caddyhttp.GetVar(r.Context(), redactedLogVar).(bool); g.errorRoutes && !redacted {
		gateway.SetHeaders(w.Header(), g.guard.Realm(), e)
		return caddyhttp.Error(e.Status, e)
	}
	gateway.WriteRefusal(w, g.guard.Realm(), e)
	return nil
}

// keepIdentityHeaders takes the identity headers out of the request's
// Connection header: reverse_proxy drops every header that Connection names
// (RFC 9110 §7.6.1), so `Connection: X-Auth-Subject` would strip the caller's
// identity on the way upstream, and an upstream that reads a missing header
// as "internal caller" would be open. Other options (close, Upgrade) stay.
func (g *Guard) keepIdentityHeaders(h http.Header, conn []string) {
	kept := conn[:0:0]
	for _, v := range conn {
		var b strings.Builder
		for _, opt := range strings.Split(v, ",") {
			opt = strings.TrimSpace(opt)
			if opt == "" || g.isIdentityHeader(http.CanonicalHeaderKey(opt)) {
				continue
			}
			if b.Len() > 0 {
				b.WriteString(", ")
			}
			b.WriteString(opt)
		}
		if b.Len() > 0 {
			kept = append(kept, b.String())
		}
	}
	if len(kept) == 0 {
		delete(h, "Connection")
		return
	}
	h["Connection"] = kept
}

func (g *Guard) isIdentityHeader(name string) bool {
	for _, h := range g.headers {
		if h.name == name {
			return true
		}
	}
	return false
}

var (
	_ caddy.Provisioner           = (*Guard)(nil)
	_ caddyhttp.MiddlewareHandler = (*Guard)(nil)
)
