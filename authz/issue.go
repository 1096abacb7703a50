package authz

import (
	"context"
	"errors"
	"time"

	"github.com/oauth2gate/oauth2gate/authz/internal/gooauth2"
	"github.com/oauth2gate/oauth2gate/authz/tokenstore"
)

// issueBackend is what the go-oauth2 engine (authz/internal/gooauth2) sees
// of the server: the token generator, the store, and the answer to a
// replayed code.
type issueBackend struct{ s *Server }

func (b issueBackend) MintAccess(rec *tokenstore.Record, iat, exp time.Time) (string, error) {
	return b.s.mintAccess(rec.ClientID, rec.Subject, rec.Scope, rec.AuthTime, iat, exp, "")
}

func (issueBackend) NewToken() string { return randomToken() }

func (b issueBackend) SaveCode(ctx context.Context, code tokenstore.Hash, rec tokenstore.Record, ttl time.Duration) error {
	return b.s.store.SaveCode(ctx, code, rec, ttl)
}

func (b issueBackend) SaveTokens(ctx context.Context, iss tokenstore.Issue) error {
	return b.s.store.SaveTokens(ctx, iss)
}

// TakeCode takes the code; a replayed code revokes every token issued from
// it (RFC 6749 §4.1.2) and then reads as unknown.
func (b issueBackend) TakeCode(ctx context.Context, code tokenstore.Hash, check tokenstore.CodeCheck) (tokenstore.Record, error) {
	rec, replayedGrant, err := b.s.store.TakeCode(ctx, code, check)
	if errors.Is(err, tokenstore.ErrReplayed) {
		b.s.logger.Warn("authorization code replayed; revoking the tokens issued from it")
		b.s.replayDetected(ctx, "authorization_code", authenticatedClientID(ctx), replayedGrant)
		if rerr := b.s.revokeGrant(ctx, replayedGrant); rerr != nil {
			return tokenstore.Record{}, rerr
		}
		return tokenstore.Record{}, tokenstore.ErrNotFound
	}
	return rec, err
}

func (s *Server) newEngine() *gooauth2.Engine {
	return gooauth2.New(issueBackend{s}, gooauth2.Lifetimes{Code: s.cfg.CodeTTL, Access: s.cfg.AccessTokenTTL, Refresh: s.cfg.RefreshTokenTTL})
}

// engineClient is what the engine needs of c.
func engineClient(c *Client) gooauth2.Client {
	return gooauth2.Client{ID: c.ID, Public: c.Public, RedirectURIs: c.RedirectURIs}
}

// fromIssueError maps the engine's errors onto RFC codes (RFC 6749 §5.2);
// an *Error (a code check's, say) stays as it is, anything else is the
// store's or the signer's: 503.
func fromIssueError(err error) *Error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, gooauth2.ErrClient):
		return ErrInvalidClient.WithDescription("client authentication failed")
	case errors.Is(err, gooauth2.ErrRedirectURI):
		return ErrInvalidGrant.WithDescription("redirect_uri does not match")
	case errors.Is(err, gooauth2.ErrInvalidCode):
		return ErrInvalidGrant.WithDescription("the authorization code is invalid, expired or was already used")
	case errors.Is(err, gooauth2.ErrCodeVerifier):
		return ErrInvalidGrant.WithDescription("code_verifier does not match the code_challenge")
	}
	return asError(err)
}

// responseOf is the token response of an issuance.
func responseOf(is gooauth2.Issued) *tokenResponse {
	return &tokenResponse{
		AccessToken:  is.Access,
		TokenType:    "Bearer",
		ExpiresIn:    int64(is.ExpiresIn.Seconds()),
		RefreshToken: is.Refresh,
		Scope:        is.Record.Scope,
		subject:      is.Record.Subject,
	}
}
