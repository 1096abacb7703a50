package backend

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/oauth2gate/oauth2gate/authz/cache"
	"github.com/oauth2gate/oauth2gate/authz/gateway"
	"github.com/oauth2gate/oauth2gate/authz/metrics"
	"github.com/oauth2gate/oauth2gate/authz/oautherr"
	"github.com/oauth2gate/oauth2gate/authz/tokenstore"
)

// Verifier answers for the access tokens of a token store, through a cache:
// the authorization server's own tokens, and, in a Caddy that only guards
// (a Redis store shared with the instances that issue), the same tokens
// without the server.
type Verifier struct {
	Store tokenstore.AccessStore
	Cache *cache.Cache
	// Issuer is the issuer the store's tokens carry.
	Issuer string
	// CheckJWT, when set, refuses a JWT access token before the store looks
	// it up (signature, issuer, expiry). Without it a JWT is found, or not,
	// by its hash like any token: revocation is honoured for every format.
	CheckJWT func(token string) bool
	Now      func() time.Time
}

func (v *Verifier) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

// Verify implements gateway.Verifier; the lookup is counted in the cache
// metrics.
func (v *Verifier) Verify(ctx context.Context, token string) (*gateway.Identity, error) {
	e, l, err := v.VerifyLookup(ctx, token)
	metrics.Default.CacheLookup(l)
	return e, err
}

// VerifyLookup implements gateway.LookupVerifier: Verify, and whether the
// cache answered (the guard counts it with its decision).
func (v *Verifier) VerifyLookup(ctx context.Context, token string) (*gateway.Identity, gateway.Lookup, error) {
	h := tokenstore.HashOf(token)
	k := (*cache.Key)(&h)
	if e, ok := v.Cache.Get(k); ok {
		return e, gateway.LookupHit, nil
	}
	if v.CheckJWT != nil && strings.Count(token, ".") == 2 && !v.CheckJWT(token) {
		return nil, gateway.LookupMiss, oautherr.InvalidToken
	}
	rec, err := v.Store.GetAccess(ctx, h)
	if errors.Is(err, tokenstore.ErrNotFound) {
		return nil, gateway.LookupMiss, oautherr.InvalidToken
	} else if err != nil {
		return nil, gateway.LookupMiss, oautherr.TemporarilyUnavailable.WithDescription("the token store is unavailable").WithWrap(err)
	}
	e := IdentityOf(&rec, v.Issuer)
	if !v.now().Before(e.ExpiresAt) {
		return nil, gateway.LookupMiss, oautherr.InvalidToken
	}
	v.Cache.Set(k, e)
	return e, gateway.LookupMiss, nil
}

// IdentityOf is who a stored access token stands for.
func IdentityOf(rec *tokenstore.Record, issuer string) *gateway.Identity {
	sub := rec.Subject
	if sub == "" {
		sub = rec.ClientID
	}
	user := rec.Subject
	if user == rec.ClientID {
		user = "" // client_credentials: the client acts for itself
	}
	// The strings a request reads share one allocation: a cache hit then
	// touches a line or two of memory, not one per field.
	all := sub + "\x00" + rec.ClientID + "\x00" + rec.Scope
	i, j := len(sub), len(sub)+1+len(rec.ClientID)
	e := &gateway.Identity{
		Subject:   all[:i],
		ClientID:  all[i+1 : j],
		Scope:     all[j+1:],
		Username:  user,
		Issuer:    issuer,
		IssuedAt:  rec.IssuedAt,
		ExpiresAt: rec.Expiry(),
	}
	if user == sub {
		e.Username = e.Subject
	}
	return e
}
