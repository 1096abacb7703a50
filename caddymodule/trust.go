package caddymodule

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/oauth2gate/oauth2gate/authz"
	"github.com/oauth2gate/oauth2gate/authz/gateway"
	"github.com/oauth2gate/oauth2gate/authz/oautherr"
	"github.com/oauth2gate/oauth2gate/authz/trust"
)

// TrustConfig is one `trust <issuer-url> { … }` block: an identity provider
// whose access tokens the guards accept (DESIGN.md, "Trusting other issuers").
type TrustConfig struct {
	Issuer string `json:"issuer"`
	// JWKSURI is where the keys are; default from the issuer's discovery document.
	JWKSURI string `json:"jwks_uri,omitempty"`
	// Audience: a JWT's aud must contain one (required for JWTs).
	Audience []string `json:"audience,omitempty"`
	// Algorithms accepted; default RS256 PS256 ES256 EdDSA.
	Algorithms []string `json:"algorithms,omitempty"`
	// Introspection is the RFC 7662 endpoint for the issuer's opaque tokens.
	Introspection *IntrospectionConfig `json:"introspection,omitempty"`
	ScopeClaim    string               `json:"scope_claim,omitempty"`
	SubjectClaim  string               `json:"subject_claim,omitempty"`
	// Leeway is the clock skew on exp, nbf, iat. Default 30s.
	Leeway caddy.Duration `json:"leeway,omitempty"`
	// CacheTTL is the longest an introspection answer is trusted. Default 30s.
	CacheTTL caddy.Duration `json:"cache_ttl,omitempty"`
}

// IntrospectionConfig is an introspection endpoint and its credentials.
type IntrospectionConfig struct {
	URL      string `json:"url"`
	ClientID string `json:"client_id"`
	// ClientSecret; {env.*} and {file.*} are expanded.
	ClientSecret string `json:"client_secret"`
}

// ClaimRule is a guard's `claim <name> <value>...`: the token's claim must
// equal one of the values, or (an array) contain one.
type ClaimRule struct {
	Name   string   `json:"name"`
	Values []string `json:"values"`
}

// issuers keeps trusted issuers (and the keys they loaded) across config
// reloads: a reload that keeps a trust block does not fetch its keys anew,
// and its tokens never see a 503 while it would.
var issuers = caddy.NewUsagePool()

type pooledIssuer struct{ *trust.Issuer }

func (p pooledIssuer) Destruct() error { p.Close(); return nil }

// config is the block for authz/trust, placeholders expanded.
func (tc TrustConfig) config(repl *caddy.Replacer) trust.Config {
	c := trust.Config{
		Issuer: tc.Issuer, JWKSURI: tc.JWKSURI, Audience: tc.Audience, Algorithms: tc.Algorithms,
		ScopeClaim: tc.ScopeClaim, SubjectClaim: tc.SubjectClaim,
		Leeway: time.Duration(tc.Leeway), CacheTTL: time.Duration(tc.CacheTTL),
	}
	if in := tc.Introspection; in != nil {
		c.Introspection = &trust.Introspection{
			URL: in.URL, ClientID: repl.ReplaceKnown(in.ClientID, ""), ClientSecret: repl.ReplaceKnown(in.ClientSecret, ""),
		}
	}
	return c
}

// provisionTrust builds the trusted issuers, taking those a running
// configuration already has from the pool.
func (a *App) provisionTrust(repl *caddy.Replacer) error {
	if len(a.Trust) == 0 {
		return nil
	}
	var list []*trust.Issuer
	for _, tc := range a.Trust {
		cfg := tc.config(repl)
		if err := cfg.Check(); err != nil {
			return fmt.Errorf("oauth2: %v", err)
		}
		// Keyed by the block as expanded: a changed secret is a new issuer.
		resolved := tc
		if in := cfg.Introspection; in != nil {
			resolved.Introspection = &IntrospectionConfig{URL: in.URL, ClientID: in.ClientID, ClientSecret: in.ClientSecret}
		}
		key, err := json.Marshal(resolved)
		if err != nil {
			return fmt.Errorf("oauth2: trust %s: %v", tc.Issuer, err)
		}
		k := "trust:" + string(key)
		cfg.Logger = a.logger.Named("trust")
		val, _, err := issuers.LoadOrNew(k, func() (caddy.Destructor, error) {
			is, err := trust.NewIssuer(cfg)
			if err != nil {
				return nil, fmt.Errorf("oauth2: %w", err)
			}
			return pooledIssuer{is}, nil
		})
		if err != nil {
			return err
		}
		a.trustKeys = append(a.trustKeys, k)
		list = append(list, val.(pooledIssuer).Issuer)
	}
	local := ""
	if a.store != nil {
		local = a.cfg.Issuer
	} else if !slices.ContainsFunc(list, func(is *trust.Issuer) bool { return is.Name() == a.cfg.Issuer }) {
		// Only trust blocks: this server starts later if an oauth2_server
		// asks for it, and the routes built before then answer for its
		// tokens through a.late.
		local = a.cfg.Issuer
		a.late = &lateVerifier{}
	}
	set, err := trust.NewSet(list, local)
	if err != nil {
		return fmt.Errorf("oauth2: %v", err)
	}
	a.trust = set
	return nil
}

// cleanupTrust lets go of the pooled issuers.
func (a *App) cleanupTrust() error {
	var errs []error
	for _, k := range a.trustKeys {
		_, err := issuers.Delete(k)
		errs = append(errs, err)
	}
	a.trustKeys = nil
	if a.trust != nil {
		a.trust.Close()
	}
	return errors.Join(errs...)
}

// RouteVerifier is the verifier of a guard that accepts the given issuers
// (none named: every trusted issuer and this server's own tokens).
func (a *App) RouteVerifier(accept []string) (gateway.Verifier, error) {
	if a.trust == nil {
		for _, name := range accept {
			if a.verifier == nil || name != a.cfg.Issuer {
				return nil, fmt.Errorf("issuer %s is neither trusted (no trust block) nor this server's", name)
			}
		}
		if a.verifier == nil {
			return nil, errors.New("no issuer: this Caddy has no token store and no trust block")
		}
		return a.verifier, nil
	}
	local := a.verifier
	if local == nil && a.late != nil {
		local = a.late
	}
	return a.trust.Route(local, accept)
}

// lateVerifier is this server's verifier before the server runs: every
// token is unknown to it (invalid_token, so a route goes on to its
// introspecting issuer) until set gives it the server.
type lateVerifier struct {
	v atomic.Pointer[authz.Server]
}

func (l *lateVerifier) set(s *authz.Server) { l.v.Store(s) }

// Verify implements gateway.Verifier.
func (l *lateVerifier) Verify(ctx context.Context, token string) (*gateway.Identity, error) {
	if s := l.v.Load(); s != nil {
		return s.Verify(ctx, token)
	}
	return nil, oautherr.InvalidToken
}

// parseTrust reads `trust <issuer-url> { … }`.
func parseTrust(d *caddyfile.Dispenser) (TrustConfig, error) {
	var tc TrustConfig
	var err error
	if tc.Issuer, err = oneArg(d); err != nil {
		return tc, d.Errf("trust takes one issuer URL")
	}
	once := onceChecker(d, "trust "+tc.Issuer+": ")
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		if err := once(sub); err != nil {
			return tc, err
		}
		switch sub {
		case "jwks_uri":
			tc.JWKSURI, err = oneArg(d)
		case "audience":
			tc.Audience, err = someArgs(d)
		case "algorithms":
			tc.Algorithms, err = someArgs(d)
		case "scope_claim":
			tc.ScopeClaim, err = oneArg(d)
		case "subject_claim":
			tc.SubjectClaim, err = oneArg(d)
		case "leeway":
			tc.Leeway, err = oneDurationOrZero(d)
		case "cache_ttl":
			tc.CacheTTL, err = oneDurationOrZero(d)
		case "introspection":
			tc.Introspection, err = parseIntrospection(d, tc.Issuer)
		default:
			return tc, d.Errf("trust %s: unrecognized subdirective %q", tc.Issuer, sub)
		}
		if err != nil {
			return tc, err
		}
	}
	// Secrets with placeholders are checked when expanded; the rest now.
	probe := tc.config(caddy.NewReplacer())
	if probe.Introspection != nil && probe.Introspection.ClientSecret == "" {
		probe.Introspection.ClientSecret = "-"
	}
	if err := probe.Check(); err != nil {
		return tc, d.Err(err.Error())
	}
	return tc, nil
}

func oneDurationOrZero(d *caddyfile.Dispenser) (caddy.Duration, error) {
	v, err := oneArg(d)
	if err != nil {
		return 0, err
	}
	dur, err := caddy.ParseDuration(v)
	if err != nil || dur < 0 {
		return 0, d.Errf("invalid duration %q", v)
	}
	return caddy.Duration(dur), nil
}

func parseIntrospection(d *caddyfile.Dispenser, issuer string) (*IntrospectionConfig, error) {
	in := &IntrospectionConfig{}
	var err error
	if in.URL, err = oneArg(d); err != nil {
		return nil, d.Errf("trust %s: introspection takes one URL and a block with client_id and client_secret", issuer)
	}
	once := onceChecker(d, "trust "+issuer+": introspection: ")
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		if err := once(sub); err != nil {
			return nil, err
		}
		switch sub {
		case "client_id":
			in.ClientID, err = oneArg(d)
		case "client_secret":
			in.ClientSecret, err = oneArg(d)
		default:
			return nil, d.Errf("trust %s: introspection: unrecognized subdirective %q", issuer, sub)
		}
		if err != nil {
			return nil, err
		}
	}
	return in, nil
}

// checkClaims applies a guard's claim rules to an identity: each must hold,
// else 403 insufficient_scope without scope= (DESIGN.md).
func checkClaims(rules []ClaimRule, id *gateway.Identity) *oautherr.Error {
	for _, r := range rules {
		if !claimHolds(claimValue(id.Claims, r.Name), r.Values) {
			return errClaim
		}
	}
	return nil
}

var errClaim = oautherr.InsufficientScope.WithDescription("the access token lacks a required claim")

// claimValue finds a claim by name, or by a dotted path into objects
// (Keycloak's realm_access.roles) when no claim has the whole name.
func claimValue(claims map[string]any, name string) any {
	if v, ok := claims[name]; ok {
		return v
	}
	cur := claims
	parts := strings.Split(name, ".")
	for i, p := range parts {
		v, ok := cur[p]
		if !ok {
			return nil
		}
		if i == len(parts)-1 {
			return v
		}
		if cur, ok = v.(map[string]any); !ok {
			return nil
		}
	}
	return nil
}

func claimHolds(v any, want []string) bool {
	if arr, ok := v.([]any); ok {
		for _, e := range arr {
			if s, ok := scalarString(e); ok && slices.Contains(want, s) {
				return true
			}
		}
		return false
	}
	s, ok := scalarString(v)
	return ok && slices.Contains(want, s)
}

// scalarString is a claim's value as text: strings as they are, booleans
// and numbers as JSON writes them; objects and null are no value.
func scalarString(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case bool:
		return strconv.FormatBool(v), true
	case json.Number:
		return v.String(), true
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), true
	}
	return "", false
}

// claimText is a claim for a placeholder: arrays joined with commas; ok
// false when the token lacks it.
func claimText(claims map[string]any, name string) (string, bool) {
	v := claimValue(claims, name)
	if arr, ok := v.([]any); ok {
		parts := make([]string, 0, len(arr))
		for _, e := range arr {
			if s, ok := scalarString(e); ok {
				parts = append(parts, s)
			}
		}
		return strings.Join(parts, ","), true
	}
	return scalarString(v)
}
