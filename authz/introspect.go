package authz

import (
	"context"
	"errors"
	"net/http"

	"go.uber.org/zap"

	"github.com/oauth2gate/oauth2gate/authz/gateway"
	"github.com/oauth2gate/oauth2gate/authz/tokenstore"
)

// introspection is RFC 7662 §2.2's answer.
type introspection struct {
	Active    bool   `json:"active"`
	Scope     string `json:"scope,omitempty"`
	ClientID  string `json:"client_id,omitempty"`
	Username  string `json:"username,omitempty"`
	TokenType string `json:"token_type,omitempty"`
	Exp       int64  `json:"exp,omitempty"`
	Iat       int64  `json:"iat,omitempty"`
	Sub       string `json:"sub,omitempty"`
	Aud       string `json:"aud,omitempty"`
	Iss       string `json:"iss,omitempty"`
}

// handleIntrospect answers RFC 7662 for authenticated (confidential) clients,
// through the same cache as the guard.
func (s *Server) handleIntrospect(w http.ResponseWriter, r *http.Request) {
	p, e := s.tokenParams(w, r)
	if e != nil {
		s.writeTokenError(w, e, false)
		return
	}
	c, basic, e := s.authenticateClient(r, p)
	if e == nil && c.Public {
		e = ErrInvalidClient.WithDescription("introspection needs client authentication")
	}
	if e != nil {
		if e.Code == "invalid_client" {
			basic = true // RFC 7662 §2.1: the endpoint is protected; say how to authenticate
		}
		s.writeTokenError(w, e, basic)
		return
	}
	tok, ok := s.tokenParam(w, p, basic)
	if !ok {
		return
	}
	ctx := r.Context()
	var out introspection
	var err error
	if p["token_type_hint"] == "refresh_token" {
		out, err = s.introspectRefresh(ctx, tok)
		if err == nil && !out.Active {
			out, err = s.introspectAccess(ctx, tok)
		}
	} else {
		out, err = s.introspectAccess(ctx, tok)
		if err == nil && !out.Active {
			out, err = s.introspectRefresh(ctx, tok)
		}
	}
	if err != nil {
		s.writeTokenError(w, asError(err), basic)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) introspectAccess(ctx context.Context, tok string) (introspection, error) {
	if !gateway.WellFormed(tok) {
		return introspection{}, nil
	}
	e, err := s.Verify(ctx, tok)
	if errors.Is(err, ErrInvalidToken) {
		return introspection{}, nil
	} else if err != nil {
		return introspection{}, err
	}
	return introspection{
		Active: true, Scope: e.Scope, ClientID: e.ClientID, Username: e.Username, TokenType: "Bearer",
		Exp: e.ExpiresAt.Unix(), Iat: e.IssuedAt, Sub: e.Subject, Aud: e.ClientID, Iss: s.cfg.Issuer,
	}, nil
}

func (s *Server) introspectRefresh(ctx context.Context, tok string) (introspection, error) {
	rec, err := s.store.GetRefresh(ctx, tokenstore.HashOf(tok))
	if errors.Is(err, tokenstore.ErrNotFound) {
		return introspection{}, nil
	} else if err != nil {
		return introspection{}, err
	}
	sub := rec.Subject
	if sub == "" {
		sub = rec.ClientID
	}
	return introspection{
		Active: true, Scope: rec.Scope, ClientID: rec.ClientID, Username: rec.Subject, TokenType: "refresh_token",
		Exp: rec.ExpiresAt, Iat: rec.IssuedAt, Sub: sub, Aud: rec.ClientID, Iss: s.cfg.Issuer,
	}, nil
}

// handleRevoke answers RFC 7009: the client's own access or refresh token is
// ended (a refresh token with its whole grant, so the access tokens issued
// with it go too), and every instance's cache drops it at once. Unknown
// tokens, and tokens of other clients, get 200 and nothing happens (§2.2).
func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request) {
	p, c, basic, ok := s.clientRequest(w, r)
	if !ok {
		return
	}
	tok, ok := s.tokenParam(w, p, basic)
	if !ok {
		return
	}
	ctx := r.Context()
	h := tokenstore.HashOf(tok)
	var err error
	// try looks the token up with get and, if it is the caller's, ends it;
	// another client's token counts as found and is left alone (§2.2).
	try := func(kind string, get func(context.Context, tokenstore.Hash) (tokenstore.Record, error), end func(tokenstore.Record) error) func() (bool, error) {
		return func() (bool, error) {
			rec, err := get(ctx, h)
			if errors.Is(err, tokenstore.ErrNotFound) {
				return false, nil
			} else if err != nil {
				return false, err
			}
			if rec.ClientID != c.ID {
				return true, nil
			}
			if err := end(rec); err != nil {
				return true, err
			}
			s.revokedAtEndpoint(r, &rec, h, kind)
			return true, nil
		}
	}
	tryAccess := try("access_token", s.store.GetAccess, func(tokenstore.Record) error { return s.RevokeAccessToken(ctx, tok) })
	tryRefresh := try("refresh_token", s.store.GetRefresh, func(rec tokenstore.Record) error {
		if rec.GrantID != "" {
			return s.revokeGrant(ctx, rec.GrantID) // the refresh token with its whole grant
		}
		return s.RevokeRefreshToken(ctx, tok)
	})
	first, second := tryAccess, tryRefresh
	if p["token_type_hint"] == "refresh_token" {
		first, second = tryRefresh, tryAccess
	}
	var found bool
	if found, err = first(); err == nil && !found {
		_, err = second()
	}
	if err != nil {
		s.logger.Error("revocation failed", zap.String("error", err.Error()))
		s.writeTokenError(w, asError(err), basic)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}
