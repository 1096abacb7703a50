package authz

import (
	"context"

	"github.com/oauth2gate/oauth2gate/authz/internal/gooauth2"
)

// grantClientCredentials is RFC 6749 §4.4: a token for the client itself,
// whose subject is the client (no refresh token, §4.4.3).
func (s *Server) grantClientCredentials(ctx context.Context, c *Client, p params) (*tokenResponse, *Error) {
	sc, e := requestedScope(c, p["scope"])
	if e != nil {
		return nil, e
	}
	is, err := s.engine.ClientCredentials(ctx, gooauth2.Request{Client: engineClient(c), Subject: c.ID, Scope: sc.String()})
	if err != nil {
		return nil, fromIssueError(err)
	}
	return responseOf(is), nil
}
