// Package trust lets the gateway accept the access tokens of identity
// providers it does not run (Keycloak, Entra ID, Auth0, Okta, Ory Hydra,
// another oauth2gate): JWTs checked against the issuer's published keys
// (RFC 9068, RFC 8725) and opaque tokens asked about by RFC 7662
// introspection. An Issuer is one `trust` block; a Set routes a token to the
// issuer that can answer for it and implements gateway.Verifier.
package trust

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"go.uber.org/zap"
)

// Config is one trusted issuer.
type Config struct {
	// Issuer is the iss its tokens carry, exactly.
	Issuer string
	// JWKSURI is where its keys are; default: from its discovery document
	// (OpenID Connect discovery, then RFC 8414 metadata).
	JWKSURI string
	// Audience: a JWT's aud must contain one of these (required when JWTs
	// are checked); an introspection answer that carries aud must too.
	Audience []string
	// Algorithms accepted; default RS256 PS256 ES256 EdDSA. None and HS*
	// are refused.
	Algorithms []string
	// Introspection, when set, answers for the issuer's opaque tokens.
	Introspection *Introspection
	// ScopeClaim names the claim with the scopes; default scope (a
	// space-separated string) or scp (an array).
	ScopeClaim string
	// SubjectClaim names the subject claim; default sub.
	SubjectClaim string
	// Leeway is the clock skew allowed on exp, nbf and iat. Default 30s.
	Leeway time.Duration
	// CacheTTL is the longest an introspection answer is trusted. Default 30s.
	CacheTTL time.Duration

	// HTTPClient fetches keys and introspects; default one with the
	// timeouts below and no redirects.
	HTTPClient *http.Client
	Logger     *zap.Logger
	Now        func() time.Time
}

// Introspection is an RFC 7662 endpoint and the credentials to call it
// with (client_secret_basic).
type Introspection struct {
	URL          string
	ClientID     string
	ClientSecret string
}

// Bounds and defaults, documented in the README ("Trusting other issuers").
const (
	DefaultLeeway   = 30 * time.Second
	DefaultCacheTTL = 30 * time.Second
	// FetchTimeout bounds one discovery, JWKS or introspection request.
	FetchTimeout = 5 * time.Second
	// IntrospectTimeout bounds an introspection call: past it, 503.
	IntrospectTimeout = 3 * time.Second
	// MaxDocument bounds a discovery document or a JWKS.
	MaxDocument = 1 << 20
	// MaxIntrospection bounds an introspection answer.
	MaxIntrospection = 64 << 10
	// Refresh bounds: a JWKS is fetched again after its Cache-Control
	// max-age, kept within [MinRefresh, MaxRefresh]; DefaultRefresh without one.
	MinRefresh     = time.Minute
	MaxRefresh     = 24 * time.Hour
	DefaultRefresh = 10 * time.Minute
	// KeysOutage is how long keys already loaded keep working while the
	// JWKS endpoint cannot be reached; past it the issuer's tokens get 503.
	KeysOutage = 12 * time.Hour
	// KidRefetchEvery: an unknown kid fetches the JWKS again at most once
	// per this interval per issuer.
	KidRefetchEvery = 30 * time.Second
	// NegativeTTL: an inactive introspection answer is remembered this long.
	NegativeTTL = 5 * time.Second
	// MaxKeys bounds the keys taken from one JWKS.
	MaxKeys = 64
	// MaxIntrospections bounds the introspection calls in flight to one
	// issuer: tokens it was never asked about, each a different one, cost
	// it at most this many at once.
	MaxIntrospections = 64
)

// IntrospectSlotWait is how long a token waits for one of the
// MaxIntrospections slots before it gets 503.
var IntrospectSlotWait = time.Second

var defaultAlgorithms = []string{"RS256", "PS256", "ES256", "EdDSA"}

// allowedAlgorithms are the signature algorithms a trust block may name:
// asymmetric ones only (RFC 8725 §3.1-3.2: no none, no HMAC with a key the
// verifier does not hold secret).
var allowedAlgorithms = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// WithDefaults fills defaults.
func (c Config) WithDefaults() Config {
	if len(c.Algorithms) == 0 {
		c.Algorithms = defaultAlgorithms
	}
	if c.Leeway == 0 {
		c.Leeway = DefaultLeeway
	}
	if c.CacheTTL == 0 {
		c.CacheTTL = DefaultCacheTTL
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.HTTPClient == nil {
		c.HTTPClient = defaultClient()
	}
	return c
}

// Check says what is wrong with the configuration, in words for the
// Caddyfile's author.
func (c Config) Check() error {
	if err := checkURL(c.Issuer, false); err != nil {
		return fmt.Errorf("trust %q: issuer %v", c.Issuer, err)
	}
	if c.JWKSURI != "" {
		if err := checkURL(c.JWKSURI, true); err != nil {
			return fmt.Errorf("trust %s: jwks_uri %v", c.Issuer, err)
		}
	}
	for _, a := range c.Algorithms {
		if !slices.Contains(allowedAlgorithms, a) {
			return fmt.Errorf("trust %s: algorithm %q is not accepted (one of %s; never none or HS*)", c.Issuer, a, strings.Join(allowedAlgorithms, " "))
		}
	}
	if len(c.Audience) == 0 && c.Introspection == nil {
		return fmt.Errorf("trust %s: audience is required (the aud its JWTs must carry)", c.Issuer)
	}
	for _, a := range c.Audience {
		if a == "" {
			return fmt.Errorf("trust %s: empty audience", c.Issuer)
		}
	}
	if in := c.Introspection; in != nil {
		if err := checkURL(in.URL, true); err != nil {
			return fmt.Errorf("trust %s: introspection %v", c.Issuer, err)
		}
		if in.ClientID == "" || in.ClientSecret == "" {
			return fmt.Errorf("trust %s: introspection needs client_id and client_secret", c.Issuer)
		}
	}
	if c.Leeway < 0 || c.Leeway > 10*time.Minute {
		return fmt.Errorf("trust %s: leeway must be between 0 and 10m", c.Issuer)
	}
	if c.CacheTTL < 0 || c.CacheTTL > time.Hour {
		return fmt.Errorf("trust %s: cache_ttl must be between 0 and 1h", c.Issuer)
	}
	return nil
}

// checkURL accepts an absolute http(s) URL without fragment (an issuer has
// no query either, RFC 8414 §2).
func checkURL(s string, query bool) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Fragment != "" || u.User != nil {
		return errors.New("must be an absolute http or https URL")
	}
	if !query && u.RawQuery != "" {
		return errors.New("must not have a query")
	}
	return nil
}

func defaultClient() *http.Client {
	return &http.Client{
		Timeout: FetchTimeout,
		// A redirect would let a provider send us elsewhere with the
		// introspection credentials: none is followed.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			MaxIdleConnsPerHost:   64,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   FetchTimeout,
			ResponseHeaderTimeout: FetchTimeout,
			ForceAttemptHTTP2:     true,
		},
	}
}

func joseAlgs(names []string) []jose.SignatureAlgorithm {
	out := make([]jose.SignatureAlgorithm, len(names))
	for i, n := range names {
		out[i] = jose.SignatureAlgorithm(n)
	}
	return out
}
