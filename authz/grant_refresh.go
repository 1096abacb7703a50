package authz

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/oauth2gate/oauth2gate/authz/scope"
	"github.com/oauth2gate/oauth2gate/authz/tokenstore"
)

// grantRefresh rotates a refresh token (RFC 6749 §6, RFC 9700 §4.14.2) in one
// store transaction: of concurrent uses of one refresh token exactly one wins,
// and a rotated-out token presented again ends its whole family, unless it
// comes back within refresh_token reuse_grace, when it yields the same new
// pair (see graceReplay).
func (s *Server) grantRefresh(ctx context.Context, c *Client, p params) (*tokenResponse, *Error) {
	old := p["refresh_token"]
	if old == "" {
		return nil, ErrInvalidRequest.WithDescription("refresh_token is required")
	}
	want, err := scope.Parse(p["scope"])
	if err != nil {
		return nil, ErrInvalidScope.WithDescription("malformed scope")
	}
	now := s.now()
	keep := s.cfg.RefreshRotateOff
	grace := s.cfg.RefreshReuseGrace > 0 && !keep
	refresh := old
	switch {
	case grace:
		refresh = s.deriveFromRefresh(old, "refresh")
	case !keep:
		refresh = randomToken()
	}
	var access, granted, subject string
	var authTime int64
	check := func(rec *tokenstore.Record, iss *tokenstore.Issue) error {
		if rec.ClientID != c.ID {
			// The same words as an unknown token: the caller learns nothing
			// of a token that is not its own.
			return ErrInvalidGrant.WithDescription("the refresh token is invalid or expired")
		}
		had, _ := scope.Parse(rec.Scope)
		sc := had
		if len(want) > 0 {
			if !had.Contains(want) {
				return ErrInvalidScope.WithDescription("scope exceeds what was originally granted")
			}
			sc = want
		}
		granted, subject, authTime = sc.String(), rec.Subject, rec.AuthTime
		opaque := ""
		if grace {
			opaque = s.deriveFromRefresh(old, "access")
		}
		var err error
		if access, err = s.mintAccess(rec.ClientID, rec.Subject, granted, rec.AuthTime, now, now.Add(s.cfg.AccessTokenTTL), opaque); err != nil {
			return err
		}
		// The refresh token keeps the scope originally granted (RFC 6749 §6).
		*iss = tokenstore.NewIssue(access, tokenstore.Record{ClientID: rec.ClientID, Subject: rec.Subject, Scope: granted, AuthTime: rec.AuthTime},
			refresh, *rec, now, s.cfg.AccessTokenTTL, s.cfg.RefreshTokenTTL)
		return nil
	}
	iss := tokenstore.Issue{Refresh: tokenstore.HashOf(refresh)}
	_, rev, replayed, rerr := s.store.RotateRefresh(ctx, tokenstore.HashOf(old), check, iss, keep)
	s.dropFromCache(rev)
	switch {
	case errors.Is(rerr, tokenstore.ErrReplayed):
		if grace && replayed != nil && now.Sub(replayed.RotatedAt) <= s.cfg.RefreshReuseGrace {
			if resp, ok := s.graceReplay(ctx, c, old, now); ok {
				return resp, nil
			}
		}
		s.logger.Warn("rotated-out refresh token presented again; revoking its grant", zap.String("client_id", c.ID))
		s.replayDetected(ctx, GrantRefreshToken, c.ID, replayed.GrantID)
		if err := s.revokeGrant(ctx, replayed.GrantID); err != nil {
			return nil, asError(err)
		}
		return nil, ErrInvalidGrant.WithDescription("the refresh token is invalid or expired")
	case errors.Is(rerr, tokenstore.ErrNotFound):
		return nil, ErrInvalidGrant.WithDescription("the refresh token is invalid or expired")
	case rerr != nil:
		return nil, asError(rerr)
	}
	resp := &tokenResponse{
		AccessToken:  access,
		TokenType:    "Bearer",
		ExpiresIn:    int64(s.cfg.AccessTokenTTL.Seconds()),
		RefreshToken: refresh,
		Scope:        granted,
		subject:      subject,
	}
	if e := s.addIDToken(resp, c.ID, subject, "", authTime, now); e != nil {
		return nil, e
	}
	return resp, nil
}

// deriveFromRefresh makes the tokens that replace a refresh token when a
// reuse grace is set: an HMAC of it under a server key, so a retry within the
// grace gets the same pair without the store keeping any token in clear.
func (s *Server) deriveFromRefresh(old, purpose string) string {
	m := hmac.New(sha256.New, s.graceKey)
	m.Write([]byte(purpose))
	m.Write([]byte{0})
	m.Write([]byte(old))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// graceReplay answers a retried refresh within the grace with the pair the
// first one got, if that pair is still alive and the client's.
func (s *Server) graceReplay(ctx context.Context, c *Client, old string, now time.Time) (*tokenResponse, bool) {
	refresh := s.deriveFromRefresh(old, "refresh")
	rrec, err := s.store.GetRefresh(ctx, tokenstore.HashOf(refresh))
	if err != nil || rrec.ClientID != c.ID {
		return nil, false
	}
	resp := &tokenResponse{TokenType: "Bearer", RefreshToken: refresh, subject: rrec.Subject}
	if s.cfg.AccessTokenFormat != "jwt" {
		access := s.deriveFromRefresh(old, "access")
		arec, err := s.store.GetAccess(ctx, tokenstore.HashOf(access))
		if err != nil {
			return nil, false
		}
		resp.AccessToken, resp.Scope = access, arec.Scope
		resp.ExpiresIn = arec.ExpiresAt - now.Unix()
	} else {
		// ECDSA signatures are randomised: the same claims give another JWT.
		// The retry gets the same refresh token and a new access token.
		exp := now.Add(s.cfg.AccessTokenTTL)
		access, err := s.mintAccess(c.ID, rrec.Subject, rrec.Scope, rrec.AuthTime, now, exp, "")
		if err != nil {
			return nil, false
		}
		arec := tokenstore.Record{ClientID: c.ID, Subject: rrec.Subject, Scope: rrec.Scope, AuthTime: rrec.AuthTime, GrantID: rrec.GrantID}
		if err := s.store.SaveTokens(ctx, tokenstore.NewIssue(access, arec, "", tokenstore.Record{}, now, s.cfg.AccessTokenTTL, 0)); err != nil {
			return nil, false
		}
		resp.AccessToken, resp.Scope, resp.ExpiresIn = access, rrec.Scope, int64(s.cfg.AccessTokenTTL.Seconds())
	}
	if s.addIDToken(resp, c.ID, rrec.Subject, "", rrec.AuthTime, now) != nil {
		return nil, false
	}
	return resp, true
}
