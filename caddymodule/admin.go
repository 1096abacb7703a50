package caddymodule

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"

	"github.com/caddyserver/caddy/v2"

	"github.com/oauth2gate/oauth2gate/authz"
	"github.com/oauth2gate/oauth2gate/authz/tokenstore"
)

func init() {
	caddy.RegisterModule(AdminAPI{})
}

// AdminAPI is `admin.api.oauth2`: the oauth2 app's admin routes on Caddy's
// admin endpoint (DESIGN.md, "Operating it"). It inherits the endpoint's
// access controls: a local socket or loopback address by default, remote
// admin only with mutual TLS and its permissions.
type AdminAPI struct{}

// CaddyModule returns the Caddy module information.
func (AdminAPI) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.oauth2",
		New: func() caddy.Module { return new(AdminAPI) },
	}
}

// running is the started oauth2 app the admin routes act on: the admin
// endpoint outlives a config (it is provisioned before the apps), so the
// routes look the app up on each request.
var running atomic.Pointer[App]

// maxAdminBody bounds an admin request body.
const maxAdminBody = 64 << 10

// Routes implements caddy.AdminRouter.
func (AdminAPI) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{
		{Pattern: "/oauth2/clients", Handler: caddy.AdminHandlerFunc(handleClients)},
		{Pattern: "/oauth2/clients/", Handler: caddy.AdminHandlerFunc(handleClient)},
		{Pattern: "/oauth2/grants", Handler: caddy.AdminHandlerFunc(handleGrants)},
		{Pattern: "/oauth2/revoke", Handler: caddy.AdminHandlerFunc(handleAdminRevoke)},
	}
}

func apiError(status int, format string, args ...any) error {
	return caddy.APIError{HTTPStatus: status, Err: fmt.Errorf(format, args...)}
}

// adminServer is the running authorization server, or a 503.
func adminServer() (*authz.Server, error) {
	a := running.Load()
	if a == nil || a.Server() == nil {
		return nil, apiError(http.StatusServiceUnavailable, "no oauth2 authorization server is running")
	}
	return a.Server(), nil
}

func methodNotAllowed(w http.ResponseWriter, allow string) error {
	w.Header().Set("Allow", allow)
	return apiError(http.StatusMethodNotAllowed, "method not allowed; use %s", allow)
}

// decodeBody reads a JSON object into v: bounded size, no unknown fields,
// nothing after it.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	if mt := r.Header.Get("Content-Type"); mt != "" && !strings.HasPrefix(strings.ToLower(mt), "application/json") {
		return apiError(http.StatusBadRequest, "Content-Type must be application/json")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxAdminBody))
	if err != nil {
		return apiError(http.StatusBadRequest, "request body unreadable or over %d bytes", maxAdminBody)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return apiError(http.StatusBadRequest, "invalid JSON body: %v", err)
	}
	if dec.More() {
		return apiError(http.StatusBadRequest, "invalid JSON body: more than one value")
	}
	return nil
}

func writeAdminJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// registration is the body of POST /oauth2/clients.
type registration struct {
	ClientID     string   `json:"client_id"`
	Grants       []string `json:"grants"`
	Scopes       []string `json:"scopes"`
	RedirectURIs []string `json:"redirect_uris"`
	Name         string   `json:"name"`
	Public       bool     `json:"public"`
}

// registered is the answer of POST /oauth2/clients: the client and, for a
// confidential one, its secret, shown this once.
type registered struct {
	authz.ClientInfo
	ClientSecret string `json:"client_secret,omitempty"`
}

func handleClients(w http.ResponseWriter, r *http.Request) error {
	srv, err := adminServer()
	if err != nil {
		return err
	}
	switch r.Method {
	case http.MethodGet:
		list, err := srv.Clients(r.Context())
		if err != nil {
			return apiError(http.StatusServiceUnavailable, "reading clients: %v", err)
		}
		if list == nil {
			list = []authz.ClientInfo{}
		}
		return writeAdminJSON(w, http.StatusOK, map[string]any{"clients": list})
	case http.MethodPost:
		var reg registration
		if err := decodeBody(w, r, &reg); err != nil {
			return err
		}
		info, secret, err := srv.RegisterClient(r.Context(), r, authz.ClientInfo{
			ClientID: reg.ClientID, Grants: reg.Grants, Scopes: reg.Scopes, RedirectURIs: reg.RedirectURIs, Name: reg.Name, Public: reg.Public,
		})
		switch {
		case errors.Is(err, authz.ErrBadClient), errors.Is(err, authz.ErrClientExists):
			return apiError(http.StatusBadRequest, "%v", err)
		case err != nil:
			return apiError(http.StatusServiceUnavailable, "registering the client: %v", err)
		}
		return writeAdminJSON(w, http.StatusCreated, registered{ClientInfo: info, ClientSecret: secret})
	}
	return methodNotAllowed(w, "GET, POST")
}

func handleClient(w http.ResponseWriter, r *http.Request) error {
	srv, err := adminServer()
	if err != nil {
		return err
	}
	id := strings.TrimPrefix(r.URL.Path, "/oauth2/clients/")
	if id == "" || strings.Contains(id, "/") {
		return apiError(http.StatusNotFound, "no such client")
	}
	if r.Method != http.MethodDelete {
		return methodNotAllowed(w, "DELETE")
	}
	_, err = srv.DeleteClient(r.Context(), r, id)
	switch {
	case errors.Is(err, authz.ErrConfiguredClient):
		return apiError(http.StatusConflict, "%v", err)
	case errors.Is(err, authz.ErrNoClient):
		return apiError(http.StatusNotFound, "%v", err)
	case err != nil:
		return apiError(http.StatusServiceUnavailable, "deleting the client: %v", err)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func handleGrants(w http.ResponseWriter, r *http.Request) error {
	srv, err := adminServer()
	if err != nil {
		return err
	}
	if r.Method != http.MethodGet {
		return methodNotAllowed(w, "GET")
	}
	q := r.URL.Query()
	for k, v := range q {
		if (k != "subject" && k != "client_id") || len(v) != 1 {
			return apiError(http.StatusBadRequest, "query takes subject and client_id, once each")
		}
	}
	m := tokenstore.Match{Subject: q.Get("subject"), ClientID: q.Get("client_id")}
	if m.Empty() {
		return apiError(http.StatusBadRequest, "subject or client_id is required")
	}
	grants, err := srv.Grants(r.Context(), m)
	if err != nil {
		return apiError(http.StatusServiceUnavailable, "reading grants: %v", err)
	}
	if grants == nil {
		grants = []tokenstore.Grant{}
	}
	return writeAdminJSON(w, http.StatusOK, map[string]any{"grants": grants})
}

func handleAdminRevoke(w http.ResponseWriter, r *http.Request) error {
	srv, err := adminServer()
	if err != nil {
		return err
	}
	if r.Method != http.MethodPost {
		return methodNotAllowed(w, "POST")
	}
	var body struct {
		Subject  string `json:"subject"`
		ClientID string `json:"client_id"`
	}
	if err := decodeBody(w, r, &body); err != nil {
		return err
	}
	m := tokenstore.Match{Subject: body.Subject, ClientID: body.ClientID}
	if m.Empty() {
		return apiError(http.StatusBadRequest, "subject or client_id is required")
	}
	n, err := srv.RevokeMatching(r.Context(), r, m)
	if err != nil {
		return apiError(http.StatusServiceUnavailable, "revoking: %v (%d tokens revoked)", err, n)
	}
	return writeAdminJSON(w, http.StatusOK, map[string]int{"revoked": n})
}

var (
	_ caddy.Module      = (*AdminAPI)(nil)
	_ caddy.AdminRouter = (*AdminAPI)(nil)
)
