package caddymodule

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	caddy.RegisterModule(Server{})
}

// Server is `http.handlers.oauth2_server`: it answers the authorization
// server's endpoints under BasePath and passes every other request on.
type Server struct {
	// BasePath is where the endpoints live. Default /oauth2.
	BasePath string `json:"base_path,omitempty"`

	app  *App
	qlog *queryTokenLog // nil unless the server keeps access logs
}

// CaddyModule returns the Caddy module information.
func (Server) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.oauth2_server",
		New: func() caddy.Module { return new(Server) },
	}
}

// Provision finds the oauth2 app.
func (s *Server) Provision(ctx caddy.Context) error {
	if s.BasePath == "" {
		s.BasePath = "/oauth2"
	}
	if !strings.HasPrefix(s.BasePath, "/") {
		return fmt.Errorf("oauth2_server: base path %q must start with /", s.BasePath)
	}
	s.BasePath = strings.TrimSuffix(s.BasePath, "/")
	appIface, err := ctx.App("oauth2")
	if err != nil {
		return fmt.Errorf("oauth2_server: loading oauth2 app: %v", err)
	}
	s.app = appIface.(*App)
	if _, err := s.app.requireServer(); err != nil {
		return err
	}
	s.qlog = newQueryTokenLog(ctx)
	return nil
}

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	// /userinfo?access_token=… (the seed's call) or, with
	// allow_get_token_request, /token?client_secret=…&code=…: the access log
	// gets the URI with those values redacted.
	if s.qlog.redacts(r) {
		return s.qlog.around(w, r, next, s.serve)
	}
	return s.serve(w, r, next)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if s.app.Server().ServeEndpoint(w, r, s.BasePath) {
		return nil
	}
	return next.ServeHTTP(w, r)
}

var (
	_ caddy.Provisioner           = (*Server)(nil)
	_ caddyhttp.MiddlewareHandler = (*Server)(nil)
)
