package authz

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/oauth2gate/oauth2gate/authz/jsonenc"
	urlparams "github.com/oauth2gate/oauth2gate/authz/params"
	"github.com/oauth2gate/oauth2gate/authz/scope"
)

// maxFormBytes caps the body of the token endpoint: a token request is a
// handful of short parameters.
const maxFormBytes = 64 << 10

// tokenResponse is RFC 6749 §5.1's answer, in the seeds' shape.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	RefreshToken string `json:"refresh_token,omitempty"`
	Scope        string `json:"scope,omitempty"`
	IDToken      string `json:"id_token,omitempty"`
	subject      string // for the audit line, never sent
}

type errorResponse struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

// params is a parsed request where every parameter appears at most once.
type params map[string]string

// readBody reads a form body of at most maxFormBytes; with a Content-Length
// it reads exactly that much into one buffer.
func readBody(w http.ResponseWriter, r *http.Request) (string, error) {
	if n := r.ContentLength; n >= 0 && n <= maxFormBytes {
		buf := make([]byte, n)
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			return "", err
		}
		return string(buf), nil
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxFormBytes))
	return string(b), err
}

// parseForm reads application/x-www-form-urlencoded into p with the one
// parameter reader: a repeated parameter is an error (RFC 6749 §3.1), and so
// is an undecodable pair (malformed names it); an empty value is no value.
func parseForm(raw string, p params, malformed string) *Error {
	res, err := urlparams.Parse(raw, urlparams.Values(p))
	if err != nil {
		return ErrInvalidRequest.WithDescription(malformed)
	}
	if len(res.Repeated) > 0 {
		return ErrInvalidRequest.WithDescription("parameter " + safeName(res.Repeated[0]) + " is repeated")
	}
	// RFC 6749 §3.1: a parameter sent without a value is treated as omitted.
	for k, v := range p {
		if v == "" {
			delete(p, k)
		}
	}
	return nil
}

// safeName keeps a client-chosen parameter name printable and short for an
// error description.
func safeName(k string) string {
	if len(k) > 40 {
		k = k[:40]
	}
	return strconv.Quote(k)
}

// tokenParams reads a token request: a form-encoded POST body, or, only with
// allow_get_token_request, the query string (RFC 6749 §3.2 says POST).
func (s *Server) tokenParams(w http.ResponseWriter, r *http.Request) (params, *Error) {
	p := make(params, 8)
	switch r.Method {
	case http.MethodPost:
		if r.URL.RawQuery != "" && !s.cfg.AllowGetTokenRequest {
			return nil, ErrInvalidRequest.WithDescription("token request parameters must be in the POST body, not the URL")
		}
		mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if err != nil || mt != "application/x-www-form-urlencoded" {
			return nil, ErrInvalidRequest.WithDescription("Content-Type must be application/x-www-form-urlencoded")
		}
		body, err := readBody(w, r)
		if err != nil {
			return nil, ErrInvalidRequest.WithDescription("request body too large or unreadable")
		}
		if e := parseForm(body, p, "malformed form body"); e != nil {
			return nil, e
		}
	case http.MethodGet:
		if !s.cfg.AllowGetTokenRequest {
			w.Header().Set("Allow", "POST")
			return nil, ErrMethodNotAllowed.WithDescription("token requests must use POST")
		}
	default:
		w.Header().Set("Allow", "POST")
		return nil, ErrMethodNotAllowed.WithDescription("token requests must use POST")
	}
	if s.cfg.AllowGetTokenRequest && r.URL.RawQuery != "" {
		// Same rules as the body; a parameter in both is repeated.
		if e := parseForm(r.URL.RawQuery, p, "malformed query string"); e != nil {
			return nil, e
		}
	}
	return p, nil
}

// authenticateClient implements client_secret_basic and client_secret_post
// (RFC 6749 §2.3.1) and public clients (§2.1), which send client_id alone.
// basic reports whether the Authorization header was used, for the
// WWW-Authenticate header of a 401.
func (s *Server) authenticateClient(r *http.Request, p params) (c *Client, basic bool, e *Error) {
	id, secret := p["client_id"], p["client_secret"]
	if h := r.Header.Get("Authorization"); h != "" {
		basic = true
		scheme, cred, _ := strings.Cut(h, " ")
		if !strings.EqualFold(scheme, "Basic") {
			return nil, basic, ErrInvalidClient.WithDescription("unsupported client authentication scheme")
		}
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(cred))
		if err != nil {
			return nil, basic, ErrInvalidClient.WithDescription("malformed Basic credentials")
		}
		u, pw, ok := strings.Cut(string(raw), ":")
		if !ok {
			return nil, basic, ErrInvalidClient.WithDescription("malformed Basic credentials")
		}
		// RFC 6749 §2.3.1: id and secret are form-urlencoded before Basic encoding.
		bu, err1 := url.QueryUnescape(u)
		bp, err2 := url.QueryUnescape(pw)
		if err1 != nil || err2 != nil {
			return nil, basic, ErrInvalidClient.WithDescription("malformed Basic credentials")
		}
		if secret != "" || (id != "" && id != bu) {
			return nil, basic, ErrInvalidRequest.WithDescription("more than one client authentication method")
		}
		id, secret = bu, bp
	}
	if id == "" {
		return nil, basic, ErrInvalidClient.WithDescription("client authentication is required")
	}
	ip := s.ClientIP(r)
	c, known := s.lookupClient(r.Context(), id)
	if known && c.Public {
		if secret != "" {
			// A public client has no secret to send: a failure, without a hash.
			if e := s.chargeFailure(r.Context(), "client", id, ip); e != nil {
				return nil, basic, e
			}
			return nil, basic, ErrInvalidClient.WithDescription("client authentication failed")
		}
		return c, basic, nil
	}
	if !known {
		c = nil
	}
	ok, e := s.authenticateSecret(r.Context(), ip, id, c, secret)
	if e != nil {
		return nil, basic, e
	}
	if !ok || secret == "" {
		return nil, basic, ErrInvalidClient.WithDescription("client authentication failed")
	}
	return c, basic, nil
}

func tooMany(wait time.Duration) *Error {
	e := *ErrTooManyFailures
	e.RetryAfter = wait
	return &e
}

// clientRequest reads the parameters of a token, introspection or revocation
// request and authenticates its client, answering the error itself when
// either fails (ok false).
func (s *Server) clientRequest(w http.ResponseWriter, r *http.Request) (p params, c *Client, basic, ok bool) {
	p, e := s.tokenParams(w, r)
	if e != nil {
		s.writeTokenError(w, e, false)
		return nil, nil, false, false
	}
	c, basic, e = s.authenticateClient(r, p)
	if e != nil {
		s.writeTokenError(w, e, basic)
		return nil, nil, basic, false
	}
	return p, c, basic, true
}

// tokenParam is the token parameter of introspection and revocation.
func (s *Server) tokenParam(w http.ResponseWriter, p params, basic bool) (string, bool) {
	tok := p["token"]
	if tok == "" {
		s.writeTokenError(w, ErrInvalidRequest.WithDescription("token is required"), basic)
	}
	return tok, tok != ""
}

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	p, c, basic, ok := s.clientRequest(w, r)
	if !ok {
		return
	}
	var e *Error
	gt := p["grant_type"]
	ctx := withCaller(r.Context(), r, c.ID)
	var resp *tokenResponse
	switch gt {
	case "":
		e = ErrInvalidRequest.WithDescription("grant_type is required")
	case GrantAuthorizationCode, GrantPassword, GrantClientCredentials, GrantRefreshToken:
		if !c.Allows(gt) {
			e = ErrUnauthorizedClient.WithDescription("the client may not use grant_type " + gt)
			break
		}
		switch gt {
		case GrantAuthorizationCode:
			resp, e = s.grantCode(ctx, c, p)
		case GrantPassword:
			resp, e = s.grantPassword(ctx, r, c, p)
		case GrantClientCredentials:
			resp, e = s.grantClientCredentials(ctx, c, p)
		case GrantRefreshToken:
			resp, e = s.grantRefresh(ctx, c, p)
		}
	default:
		e = ErrUnsupportedGrantType.WithDescription("grant_type is not supported")
	}
	if e == nil && !s.stillRegistered(ctx, c) {
		e = ErrInvalidClient.WithDescription("the client was deleted")
	}
	if e != nil {
		s.writeTokenError(w, e, basic)
		return
	}
	s.tokenIssued(r, c, gt, resp)
	writeTokenResponse(w, resp)
}

// writeTokenResponse answers RFC 6749 §5.1 without reflection (the token
// endpoint's hot path).
func writeTokenResponse(w http.ResponseWriter, t *tokenResponse) {
	b := make([]byte, 0, 256+len(t.IDToken))
	b = append(b, '{')
	b = jsonenc.Field(b, true, "access_token", t.AccessToken, false)
	b = jsonenc.Field(b, false, "token_type", t.TokenType, false)
	b = jsonenc.Int(b, false, "expires_in", t.ExpiresIn)
	b = jsonenc.Field(b, false, "refresh_token", t.RefreshToken, true)
	b = jsonenc.Field(b, false, "scope", t.Scope, true)
	b = jsonenc.Field(b, false, "id_token", t.IDToken, true)
	b = append(b, '}', '\n')
	h := w.Header()
	h["Content-Type"] = jsonContentType
	h["Cache-Control"] = noStore
	h["Pragma"] = noCache
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

var (
	jsonContentType = []string{"application/json;charset=UTF-8"}
	noStore         = []string{"no-store"}
	noCache         = []string{"no-cache"}
)

// requestedScope checks scope against what the client may ask; none asked
// means all of it (RFC 6749 §3.3 lets the server choose a default).
func requestedScope(c *Client, raw string) (scope.Set, *Error) {
	want, err := scope.Parse(raw)
	if err != nil {
		return nil, ErrInvalidScope.WithDescription("malformed scope")
	}
	if len(want) == 0 {
		return c.Scopes, nil
	}
	if !c.Scopes.Contains(want) {
		return nil, ErrInvalidScope.WithDescription("scope exceeds what the client may ask for")
	}
	return want, nil
}

// addIDToken adds an id_token when openid was granted (OIDC Core §3.1.3.3,
// §12.2).
func (s *Server) addIDToken(resp *tokenResponse, clientID, subject, nonce string, authTime int64, now time.Time) *Error {
	granted, _ := scope.Parse(resp.Scope)
	if !granted.Has("openid") || subject == "" || subject == clientID && s.users[subject] == nil {
		return nil
	}
	idt, err := s.idToken(clientID, subject, nonce, authTime, granted, resp.AccessToken, now)
	if err != nil {
		s.logger.Error("signing id_token", zap.String("error", err.Error()))
		return ErrTemporarilyUnavailable.WithDescription("cannot sign the id_token")
	}
	resp.IDToken = idt
	return nil
}

func (s *Server) writeTokenError(w http.ResponseWriter, e *Error, basic bool) {
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", retryAfter(e.RetryAfter))
	}
	if e.Status == http.StatusUnauthorized && basic {
		w.Header().Set("WWW-Authenticate", `Basic realm="oauth2gate", charset="UTF-8"`)
	}
	s.logCause("token endpoint", e)
	s.tokenError(e)
	writeJSON(w, e.Status, errorResponse{Error: e.Code, Description: e.Description})
}

// writeJSON answers with Cache-Control: no-store, as RFC 6749 §5.1 requires
// of every response that carries a token.
func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json;charset=UTF-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
