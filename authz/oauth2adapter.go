package authz

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/go-oauth2/oauth2/v4"
	oerrors "github.com/go-oauth2/oauth2/v4/errors"
	"github.com/go-oauth2/oauth2/v4/models"

	"github.com/oauth2gate/oauth2gate/authz/tokenstore"
)

// go-oauth2's types stay in this file: the manager sees our clients and our
// store through these adapters, and nothing else in authz names them.

// clientInfo adapts *Client to oauth2.ClientInfo and ClientPasswordVerifier,
// so the manager checks secrets with our constant-time, hash-backed check
// instead of its own `!=`.
type clientInfo struct {
	c *Client
	// authenticated: our token endpoint verified this client's secret for
	// the request already; the manager need not hash it again.
	authenticated bool
}

func (ci clientInfo) GetID() string     { return ci.c.ID }
func (ci clientInfo) GetSecret() string { return "" }

// GetDomain hands the registered redirect URIs to exactRedirectURI.
func (ci clientInfo) GetDomain() string { return strings.Join(ci.c.RedirectURIs, "\n") }
func (ci clientInfo) IsPublic() bool    { return ci.c.Public }
func (ci clientInfo) GetUserID() string { return "" }
func (ci clientInfo) VerifyPassword(secret string) bool {
	return ci.authenticated || ci.c.VerifySecret(secret)
}

// authenticatedClientKey marks a context whose client the token endpoint has
// authenticated.
type authenticatedClientKey struct{}

func withAuthenticatedClient(ctx context.Context, c *Client) context.Context {
	return context.WithValue(ctx, authenticatedClientKey{}, c)
}

// clientStore adapts our client registry to oauth2.ClientStore.
type clientStore struct{ s *Server }

func (cs clientStore) GetByID(ctx context.Context, id string) (oauth2.ClientInfo, error) {
	c, ok := cs.s.lookupClient(ctx, id)
	if !ok {
		return nil, oerrors.ErrInvalidClient
	}
	authed, _ := ctx.Value(authenticatedClientKey{}).(*Client)
	return clientInfo{c: c, authenticated: authed == c}, nil
}

// exactRedirectURI replaces go-oauth2's host-suffix check with exact matching
// (RFC 9700 §4.1.3).
func exactRedirectURI(registered, redirectURI string) error {
	for _, u := range strings.Split(registered, "\n") {
		if u == redirectURI {
			return nil
		}
	}
	return oerrors.ErrInvalidRedirectURI
}

// Extension keys carried from a code to the tokens issued from it.
const (
	extGrantID  = "gid"
	extNonce    = "nonce"
	extAuthTime = "auth_time"
)

// tokenStoreAdapter adapts tokenstore.Store to oauth2.TokenStore.
//
// go-oauth2 reads a code and then deletes it, which lets concurrent
// redemptions through; here GetByCode takes the code atomically and
// RemoveByCode has nothing left to do.
type tokenStoreAdapter struct{ s *Server }

func recordFromInfo(ti oauth2.TokenInfo) tokenstore.Record {
	rec := tokenstore.Record{
		ClientID:    ti.GetClientID(),
		Subject:     ti.GetUserID(),
		Scope:       ti.GetScope(),
		RedirectURI: ti.GetRedirectURI(),
	}
	if eti, ok := ti.(oauth2.ExtendableTokenInfo); ok {
		ext := eti.GetExtension()
		rec.GrantID = ext.Get(extGrantID)
		rec.Nonce = ext.Get(extNonce)
		rec.AuthTime, _ = strconv.ParseInt(ext.Get(extAuthTime), 10, 64)
	}
	return rec
}

func (a tokenStoreAdapter) Create(ctx context.Context, ti oauth2.TokenInfo) error {
	if code := ti.GetCode(); code != "" {
		rec := recordFromInfo(ti)
		rec.GrantID = randomToken()
		rec.CodeChallenge = ti.GetCodeChallenge()
		rec.CodeChallengeMethod = string(ti.GetCodeChallengeMethod())
		rec.IssuedAt = ti.GetCodeCreateAt().Unix()
		rec.ExpiresAt = ti.GetCodeCreateAt().Add(ti.GetCodeExpiresIn()).Unix()
		return a.s.store.SaveCode(ctx, tokenstore.HashOf(code), rec, ti.GetCodeExpiresIn())
	}
	iss := tokenstore.Issue{Access: tokenstore.HashOf(ti.GetAccess())}
	iss.AccessRecord = recordFromInfo(ti)
	iss.AccessRecord.IssuedAt = ti.GetAccessCreateAt().Unix()
	iss.AccessRecord.ExpiresAt = ti.GetAccessCreateAt().Add(ti.GetAccessExpiresIn()).Unix()
	if r := ti.GetRefresh(); r != "" {
		if iss.AccessRecord.GrantID == "" {
			iss.AccessRecord.GrantID = randomToken()
		}
		iss.Refresh = tokenstore.HashOf(r)
		iss.RefreshRecord = iss.AccessRecord
		iss.RefreshRecord.IssuedAt = ti.GetRefreshCreateAt().Unix()
		iss.RefreshRecord.ExpiresAt = ti.GetRefreshCreateAt().Add(ti.GetRefreshExpiresIn()).Unix()
	}
	return a.s.store.SaveTokens(ctx, iss)
}

// codeRedemption is what the token request says of the code it redeems;
// the store's take checks it before the code is consumed.
type codeRedemption struct {
	clientID, redirectURI, verifier string
}

type codeRedemptionKey struct{}

// check refuses, without consuming the code, a redemption by another client,
// at another redirect_uri (RFC 6749 §4.1.3) or with a wrong PKCE verifier
// (RFC 7636 §4.6): only the request that may redeem a code can burn it.
// go-oauth2 would take the code first and check after.
func (cr *codeRedemption) check(rec *tokenstore.Record) error {
	if rec.ClientID != cr.clientID {
		return ErrInvalidGrant.WithDescription("the authorization code is invalid, expired or was already used")
	}
	if rec.RedirectURI != "" && rec.RedirectURI != cr.redirectURI {
		return ErrInvalidGrant.WithDescription("redirect_uri does not match")
	}
	switch {
	case rec.CodeChallenge == "" && cr.verifier == "":
		return nil
	case rec.CodeChallenge == "" || cr.verifier == "":
		return ErrInvalidGrant.WithDescription("code_verifier is required for this code (RFC 7636 §4.5)")
	}
	if !validChallenge(cr.verifier) || !pkceMatches(rec.CodeChallengeMethod, rec.CodeChallenge, cr.verifier) {
		return ErrInvalidGrant.WithDescription("code_verifier does not match the code_challenge")
	}
	return nil
}

// pkceMatches is RFC 7636 §4.6, in constant time.
func pkceMatches(method, challenge, verifier string) bool {
	want := verifier
	if method == "S256" {
		sum := sha256.Sum256([]byte(verifier))
		want = base64.RawURLEncoding.EncodeToString(sum[:])
	} else if method != "" && method != "plain" {
		return false
	}
	return subtle.ConstantTimeCompare([]byte(want), []byte(challenge)) == 1
}

// GetByCode takes the code. A replayed code revokes every token issued from
// it (RFC 6749 §4.1.2) and then reads as unknown.
func (a tokenStoreAdapter) GetByCode(ctx context.Context, code string) (oauth2.TokenInfo, error) {
	var check tokenstore.CodeCheck
	if cr, ok := ctx.Value(codeRedemptionKey{}).(*codeRedemption); ok {
		check = cr.check
	}
	rec, replayedGrant, err := a.s.store.TakeCode(ctx, tokenstore.HashOf(code), check)
	switch {
	case errors.Is(err, tokenstore.ErrReplayed):
		a.s.logger.Warn("authorization code replayed; revoking the tokens issued from it")
		a.s.replayDetected(ctx, "authorization_code", authenticatedClientID(ctx), replayedGrant)
		if rerr := a.s.revokeGrant(ctx, replayedGrant); rerr != nil {
			return nil, rerr
		}
		return nil, nil
	case errors.Is(err, tokenstore.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, err
	}
	ti := models.NewToken()
	ti.SetCode(code)
	ti.SetClientID(rec.ClientID)
	ti.SetUserID(rec.Subject)
	ti.SetScope(rec.Scope)
	ti.SetRedirectURI(rec.RedirectURI)
	ti.SetCodeChallenge(rec.CodeChallenge)
	ti.SetCodeChallengeMethod(oauth2.CodeChallengeMethod(rec.CodeChallengeMethod))
	// The store expires codes exactly (key TTLs); the record's whole seconds
	// only back that up, rounded up so a code never dies early.
	ti.SetCodeCreateAt(timeUnix(rec.IssuedAt))
	ti.SetCodeExpiresIn(rec.Expiry().Sub(timeUnix(rec.IssuedAt)) + time.Second)
	ext := ti.GetExtension()
	if ext == nil {
		ext = make(map[string][]string)
	}
	ext.Set(extGrantID, rec.GrantID)
	if rec.Nonce != "" {
		ext.Set(extNonce, rec.Nonce)
	}
	if rec.AuthTime != 0 {
		ext.Set(extAuthTime, strconv.FormatInt(rec.AuthTime, 10))
	}
	ti.SetExtension(ext)
	return ti, nil
}

func (a tokenStoreAdapter) RemoveByCode(context.Context, string) error { return nil }

func (a tokenStoreAdapter) RemoveByAccess(ctx context.Context, access string) error {
	return a.s.RevokeAccessToken(ctx, access)
}

func (a tokenStoreAdapter) RemoveByRefresh(ctx context.Context, refresh string) error {
	return a.s.RevokeRefreshToken(ctx, refresh)
}

func (a tokenStoreAdapter) GetByAccess(ctx context.Context, access string) (oauth2.TokenInfo, error) {
	rec, err := a.s.store.GetAccess(ctx, tokenstore.HashOf(access))
	if errors.Is(err, tokenstore.ErrNotFound) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	ti := models.NewToken()
	ti.SetAccess(access)
	ti.SetClientID(rec.ClientID)
	ti.SetUserID(rec.Subject)
	ti.SetScope(rec.Scope)
	ti.SetAccessCreateAt(timeUnix(rec.IssuedAt))
	ti.SetAccessExpiresIn(rec.Expiry().Sub(timeUnix(rec.IssuedAt)))
	return ti, nil
}

func (a tokenStoreAdapter) GetByRefresh(ctx context.Context, refresh string) (oauth2.TokenInfo, error) {
	rec, err := a.s.store.GetRefresh(ctx, tokenstore.HashOf(refresh))
	if errors.Is(err, tokenstore.ErrNotFound) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	ti := models.NewToken()
	ti.SetRefresh(refresh)
	ti.SetClientID(rec.ClientID)
	ti.SetUserID(rec.Subject)
	ti.SetScope(rec.Scope)
	ti.SetRefreshCreateAt(timeUnix(rec.IssuedAt))
	ti.SetRefreshExpiresIn(rec.Expiry().Sub(timeUnix(rec.IssuedAt)))
	return ti, nil
}

// fromManagerError maps go-oauth2's errors onto RFC codes; its own mapping
// answers 401 for several 400 errors (RFC 6749 §5.2).
func fromManagerError(err error) *Error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, oerrors.ErrInvalidClient):
		return ErrInvalidClient.WithDescription("client authentication failed")
	case errors.Is(err, oerrors.ErrInvalidRedirectURI):
		return ErrInvalidGrant.WithDescription("redirect_uri does not match")
	case errors.Is(err, oerrors.ErrInvalidAuthorizeCode):
		return ErrInvalidGrant.WithDescription("the authorization code is invalid, expired or was already used")
	case errors.Is(err, oerrors.ErrMissingCodeVerifier):
		return ErrInvalidGrant.WithDescription("code_verifier is required for this code (RFC 7636 §4.5)")
	case errors.Is(err, oerrors.ErrInvalidCodeChallenge):
		return ErrInvalidGrant.WithDescription("code_verifier does not match the code_challenge")
	case errors.Is(err, oerrors.ErrInvalidAccessToken), errors.Is(err, oerrors.ErrExpiredAccessToken):
		return ErrInvalidToken
	case errors.Is(err, oerrors.ErrInvalidRefreshToken), errors.Is(err, oerrors.ErrExpiredRefreshToken):
		return ErrInvalidGrant.WithDescription("the refresh token is invalid or expired")
	}
	return asError(err)
}

var (
	_ oauth2.TokenStore             = tokenStoreAdapter{}
	_ oauth2.ClientStore            = clientStore{}
	_ oauth2.ClientPasswordVerifier = clientInfo{}
)
