// Package gateway is oauth2gate's API gateway core: it takes the bearer
// token out of a request (RFC 6750 §2), asks a Verifier who the token
// stands for, checks the scopes the route needs and refuses with RFC 6750
// §3's answers. It knows neither the authorization server nor go-oauth2 nor
// Caddy: this server's token store, another issuer's JWKS or introspection
// endpoint are Verifiers, as caddyauth's providers are Authenticators.
package gateway

import (
	"context"
	"time"

	"github.com/oauth2gate/oauth2gate/authz/oautherr"
)

// Identity is who a valid access token stands for.
type Identity struct {
	Subject  string // sub: the user, or the client acting for itself
	Username string // the resource owner; "" when a client acts for itself
	ClientID string
	Scope    string // as granted, space-separated (scope.In tests one)
	Issuer   string // iss: this server's issuer or a trusted one
	IssuedAt int64  // unix seconds; 0 when unknown
	// ExpiresAt is the token's expiry; no cache keeps an identity past it.
	ExpiresAt time.Time
	// Claims are the token's claims when it carries them (a JWT, an
	// introspection answer), for claim rules and placeholders; nil for this
	// server's opaque tokens.
	Claims map[string]any
}

// Verifier says who a bearer token stands for. A token that is not (or no
// longer) valid gives an error that errors.Is InvalidToken (401); any other
// error means the answer could not be had (503 temporarily_unavailable).
type Verifier interface {
	Verify(ctx context.Context, token string) (*Identity, error)
}

// VerifierFunc adapts a function to Verifier.
type VerifierFunc func(ctx context.Context, token string) (*Identity, error)

// Verify implements Verifier.
func (f VerifierFunc) Verify(ctx context.Context, token string) (*Identity, error) {
	return f(ctx, token)
}

// InvalidToken is what a Verifier answers for a token it does not accept.
var InvalidToken = oautherr.InvalidToken
