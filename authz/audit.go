package authz

import (
	"context"
	"encoding/hex"
	"net/http"
	"strings"

	"go.uber.org/zap"

	"github.com/oauth2gate/oauth2gate/authz/metrics"
	"github.com/oauth2gate/oauth2gate/authz/tokenstore"
)

// Audit events (DESIGN.md, "Operating it"): one JSON line each on the
// logger the Caddy glue names oauth2.audit, with event, client_id, subject
// (when there is one), remote_ip and, for tokens, token_hash: the first 8
// bytes of the token's SHA-256 in hex, enough to find the store's entry
// (tokenstore.Hash.String starts the same way) and useless as a token. Never
// a token, code, secret or password: the fields below are the only ones.
const (
	EventTokenIssued    = "token_issued"
	EventTokenRefreshed = "token_refreshed"
	EventCodeIssued     = "code_issued"
	EventReplay         = "replay_detected"
	EventRevoked        = "token_revoked"
	EventLoginSuccess   = "login_success"
	EventLoginFailure   = "login_failure"
	EventConsentGiven   = "consent_given"
	EventConsentDenied  = "consent_denied"
	EventRateLimited    = "rate_limited"
)

// tokenHash is the short hash an audit line names a token by.
func tokenHash(token string) string {
	h := tokenstore.HashOf(token)
	return hex.EncodeToString(h[:8])
}

func shortHash(h tokenstore.Hash) string { return hex.EncodeToString(h[:8]) }

// audit writes one event; r gives the remote address (nil: none).
func (s *Server) audit(event string, r *http.Request, clientID, subject string, fields ...zap.Field) {
	ce := s.auditLog().Check(zap.InfoLevel, event)
	if ce == nil {
		return
	}
	all := make([]zap.Field, 0, 4+len(fields))
	all = append(all, zap.String("event", event), zap.String("client_id", clientID))
	if subject != "" {
		all = append(all, zap.String("subject", subject))
	}
	if r != nil {
		all = append(all, zap.String("remote_ip", s.ClientIP(r)))
	}
	ce.Write(append(all, fields...)...)
}

func (s *Server) auditLog() *zap.Logger {
	if s.Audit != nil {
		return s.Audit
	}
	return zap.NewNop()
}

// tokenIssued counts and audits a successful token response.
func (s *Server) tokenIssued(r *http.Request, c *Client, grant string, resp *tokenResponse) {
	metrics.Default.Issued(grant, c.ID)
	event := EventTokenIssued
	if grant == GrantRefreshToken {
		event = EventTokenRefreshed
		if !s.cfg.RefreshRotateOff {
			metrics.Default.Revoked(metrics.ReasonRotation, 1)
		}
	}
	fields := []zap.Field{zap.String("grant", grant), zap.String("scope", resp.Scope), zap.String("token_hash", tokenHash(resp.AccessToken))}
	if resp.RefreshToken != "" {
		fields = append(fields, zap.String("refresh_token_hash", tokenHash(resp.RefreshToken)))
	}
	s.audit(event, r, c.ID, resp.subject, fields...)
}

// tokenError counts an error answer of the token endpoints.
func (s *Server) tokenError(e *Error) { metrics.Default.TokenError(e.Code) }

// replayDetected counts and audits a replayed code or refresh token whose
// grant is being revoked.
func (s *Server) replayDetected(ctx context.Context, what, clientID, grantID string) {
	metrics.Default.Revoked(metrics.ReasonReplay, 1)
	s.audit(EventReplay, requestOf(ctx), clientID, "", zap.String("presented", what), zap.String("grant_id", grantID), zap.String("action", "grant revoked"))
}

// revokedAtEndpoint counts and audits a revocation through /revoke.
func (s *Server) revokedAtEndpoint(r *http.Request, rec *tokenstore.Record, h tokenstore.Hash, kind string) {
	metrics.Default.Revoked(metrics.ReasonEndpoint, 1)
	s.audit(EventRevoked, r, rec.ClientID, rec.Subject, zap.String("reason", metrics.ReasonEndpoint), zap.String("token_type", kind), zap.String("token_hash", shortHash(h)))
}

// loginAttempt audits a password check (the login form or the password
// grant); e set means no password was checked (limit, counters down).
func (s *Server) loginAttempt(r *http.Request, clientID, via, username string, u *User, e *Error) {
	if e != nil {
		return // the limit's own event (rate_limited) or an outage
	}
	if u == nil {
		s.audit(EventLoginFailure, r, clientID, "", zap.String("via", via), zap.String("username", username))
		return
	}
	s.audit(EventLoginSuccess, r, clientID, u.Username, zap.String("via", via))
}

// consent audits the user's decision on the consent page.
func (s *Server) consent(r *http.Request, clientID, subject, scope string, allowed bool) {
	event := EventConsentDenied
	if allowed {
		event = EventConsentGiven
	}
	s.audit(event, r, clientID, subject, zap.String("scope", scope))
}

// authorizeIssued audits what the authorization endpoint issued: a code or
// (implicit) an access token, counted like a token response.
func (s *Server) authorizeIssued(r *http.Request, c *Client, subject, scope string, code, access string) {
	if access != "" {
		metrics.Default.Issued(GrantImplicit, c.ID)
		s.audit(EventTokenIssued, r, c.ID, subject, zap.String("grant", GrantImplicit), zap.String("scope", scope), zap.String("token_hash", tokenHash(access)))
		return
	}
	s.audit(EventCodeIssued, r, c.ID, subject, zap.String("scope", scope), zap.String("code_hash", tokenHash(code)))
}

// limited counts and audits an attempt refused by the brute-force limits;
// keys are failureKeys' (kind, who, IP).
func (s *Server) limited(keys []string, e *Error) *Error {
	metrics.Default.RateLimited()
	var kind, who, ip string
	if len(keys) > 0 {
		parts := strings.SplitN(keys[0], "\x00", 3)
		if len(parts) == 3 {
			kind, who, ip = parts[0], parts[1], parts[2]
		}
	}
	client, user := "", ""
	if kind == "client" {
		client = who
	} else {
		user = who
	}
	fields := []zap.Field{zap.String("remote_ip", ip), zap.String("limit", kind)}
	if user != "" {
		fields = append(fields, zap.String("username", user))
	}
	s.audit(EventRateLimited, nil, client, "", fields...)
	return e
}

type callerKey struct{}

type caller struct {
	r        *http.Request
	clientID string
}

// withCaller lets hooks deep in an issuance (a replayed code found by the
// store) name the request and its client in the audit line.
func withCaller(ctx context.Context, r *http.Request, clientID string) context.Context {
	return context.WithValue(ctx, callerKey{}, &caller{r: r, clientID: clientID})
}

func requestOf(ctx context.Context) *http.Request {
	if c, ok := ctx.Value(callerKey{}).(*caller); ok {
		return c.r
	}
	return nil
}

// authenticatedClientID is the id of the client the token endpoint
// authenticated, when ctx carries it.
func authenticatedClientID(ctx context.Context) string {
	if c, ok := ctx.Value(callerKey{}).(*caller); ok {
		return c.clientID
	}
	return ""
}
