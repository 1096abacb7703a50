package authz

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"

	"github.com/oauth2gate/oauth2gate/authz/internal/gooauth2"
	"github.com/oauth2gate/oauth2gate/authz/tokenstore"
)

// grantCode is RFC 6749 §4.1.3: a code for tokens, and an id_token when
// openid was granted (the code carries the nonce and auth_time).
func (s *Server) grantCode(ctx context.Context, c *Client, p params) (*tokenResponse, *Error) {
	if p["code"] == "" {
		return nil, ErrInvalidRequest.WithDescription("code is required")
	}
	cr := &codeRedemption{clientID: c.ID, redirectURI: p["redirect_uri"], verifier: p["code_verifier"]}
	is, err := s.engine.Exchange(ctx, gooauth2.Redemption{
		Client: engineClient(c), Code: p["code"], RedirectURI: cr.redirectURI, Verifier: cr.verifier,
		Check: cr.check, Refresh: c.Allows(GrantRefreshToken),
	})
	if err != nil {
		return nil, fromIssueError(err)
	}
	resp := responseOf(is)
	if e := s.addIDToken(resp, c.ID, is.Record.Subject, is.Record.Nonce, is.Record.AuthTime, is.At); e != nil {
		return nil, e
	}
	return resp, nil
}

// codeRedemption is what the token request says of the code it redeems;
// the store's take checks it before the code is consumed.
type codeRedemption struct {
	clientID, redirectURI, verifier string
}

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

var _ tokenstore.CodeCheck = (*codeRedemption)(nil).check
