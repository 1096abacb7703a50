package authz

import (
	"context"
	"net/http"

	"github.com/oauth2gate/oauth2gate/authz/internal/gooauth2"
)

// grantPassword is RFC 6749 §4.3: the user's password, checked under the
// failure budget and the hash slots (credentials.go).
func (s *Server) grantPassword(ctx context.Context, r *http.Request, c *Client, p params) (*tokenResponse, *Error) {
	username, password := p["username"], p["password"]
	if username == "" || password == "" {
		return nil, ErrInvalidRequest.WithDescription("username and password are required")
	}
	sc, e := requestedScope(c, p["scope"])
	if e != nil {
		return nil, e
	}
	u, e := s.authenticateUser(ctx, s.ClientIP(r), username, password)
	s.loginAttempt(r, c.ID, GrantPassword, username, u, e)
	if e != nil {
		return nil, e
	}
	if u == nil {
		return nil, ErrInvalidGrant.WithDescription("invalid username or password")
	}
	is, err := s.engine.Password(ctx, gooauth2.Request{
		Client: engineClient(c), Subject: u.Username, Scope: sc.String(), Refresh: c.Allows(GrantRefreshToken),
	})
	if err != nil {
		return nil, fromIssueError(err)
	}
	return responseOf(is), nil
}
