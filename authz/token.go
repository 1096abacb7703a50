package authz

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/go-oauth2/oauth2/v4"
	"go.uber.org/zap"

	"github.com/oauth2gate/oauth2gate/authz/jsonenc"
	urlparams "github.com/oauth2gate/oauth2gate/authz/params"
	"github.com/oauth2gate/oauth2gate/authz/scope"
	"github.com/oauth2gate/oauth2gate/authz/tokenstore"
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
	ctx := withAuthenticatedClient(withRequest(r.Context(), r), c)
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
			resp, e = s.grantCode(ctx, r, c, p)
		case GrantPassword:
			resp, e = s.grantPassword(ctx, r, c, p)
		case GrantClientCredentials:
			resp, e = s.grantClientCredentials(ctx, r, c, p)
		case GrantRefreshToken:
			resp, e = s.grantRefresh(withRequest(r.Context(), r), c, p)
		}
	default:
		e = ErrUnsupportedGrantType.WithDescription("grant_type is not supported")
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

func (s *Server) grantCode(ctx context.Context, r *http.Request, c *Client, p params) (*tokenResponse, *Error) {
	if p["code"] == "" {
		return nil, ErrInvalidRequest.WithDescription("code is required")
	}
	tgr := &oauth2.TokenGenerateRequest{
		ClientID:     c.ID,
		RedirectURI:  p["redirect_uri"],
		Code:         p["code"],
		CodeVerifier: p["code_verifier"],
		Request:      r,
	}
	ctx = context.WithValue(ctx, codeRedemptionKey{}, &codeRedemption{clientID: c.ID, redirectURI: tgr.RedirectURI, verifier: tgr.CodeVerifier})
	ti, err := s.manager(c).GenerateAccessToken(ctx, oauth2.AuthorizationCode, tgr)
	if err != nil {
		return nil, fromManagerError(err)
	}
	resp := s.responseOf(ti)
	var nonce string
	var authTime int64
	if eti, ok := ti.(oauth2.ExtendableTokenInfo); ok {
		ext := eti.GetExtension()
		nonce = ext.Get(extNonce)
		authTime, _ = strconv.ParseInt(ext.Get(extAuthTime), 10, 64)
	}
	if e := s.addIDToken(resp, c.ID, ti.GetUserID(), nonce, authTime, ti.GetAccessCreateAt()); e != nil {
		return nil, e
	}
	return resp, nil
}

func (s *Server) grantPassword(ctx context.Context, r *http.Request, c *Client, p params) (*tokenResponse, *Error) {
	username, password := p["username"], p["password"]
	if username == "" || password == "" {
		return nil, ErrInvalidRequest.WithDescription("username and password are required")
	}
	sc, e := requestedScope(c, p["scope"])
	if e != nil {
		return nil, e
	}
	u, e := s.authenticateUser(r.Context(), s.ClientIP(r), username, password)
	s.loginAttempt(r, c.ID, GrantPassword, username, u, e)
	if e != nil {
		return nil, e
	}
	if u == nil {
		return nil, ErrInvalidGrant.WithDescription("invalid username or password")
	}
	tgr := &oauth2.TokenGenerateRequest{
		ClientID: c.ID, UserID: u.Username, Scope: sc.String(), Request: r,
	}
	ti, err := s.manager(c).GenerateAccessToken(ctx, oauth2.PasswordCredentials, tgr)
	if err != nil {
		return nil, fromManagerError(err)
	}
	return s.responseOf(ti), nil
}

func (s *Server) grantClientCredentials(ctx context.Context, r *http.Request, c *Client, p params) (*tokenResponse, *Error) {
	sc, e := requestedScope(c, p["scope"])
	if e != nil {
		return nil, e
	}
	tgr := &oauth2.TokenGenerateRequest{
		ClientID: c.ID, UserID: c.ID, Scope: sc.String(), Request: r,
	}
	ti, err := s.manager(c).GenerateAccessToken(ctx, oauth2.ClientCredentials, tgr)
	if err != nil {
		return nil, fromManagerError(err)
	}
	return s.responseOf(ti), nil
}

func (s *Server) responseOf(ti oauth2.TokenInfo) *tokenResponse {
	return &tokenResponse{
		AccessToken:  ti.GetAccess(),
		TokenType:    "Bearer",
		ExpiresIn:    int64(ti.GetAccessExpiresIn().Seconds()),
		RefreshToken: ti.GetRefresh(),
		Scope:        ti.GetScope(),
		subject:      ti.GetUserID(),
	}
}

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
		iss.Access = tokenstore.HashOf(access)
		iss.AccessRecord = tokenstore.Record{
			ClientID: rec.ClientID, Subject: rec.Subject, Scope: granted, AuthTime: rec.AuthTime,
			IssuedAt: now.Unix(), ExpiresAt: now.Add(s.cfg.AccessTokenTTL).Unix(),
		}
		// The refresh token keeps the scope originally granted (RFC 6749 §6).
		iss.RefreshRecord = *rec
		iss.RefreshRecord.IssuedAt = now.Unix()
		iss.RefreshRecord.ExpiresAt = now.Add(s.cfg.RefreshTokenTTL).Unix()
		iss.RefreshRecord.AccessHash = ""
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
		arec := tokenstore.Record{ClientID: c.ID, Subject: rrec.Subject, Scope: rrec.Scope, AuthTime: rrec.AuthTime,
			GrantID: rrec.GrantID, IssuedAt: now.Unix(), ExpiresAt: exp.Unix()}
		if err := s.store.SaveTokens(ctx, tokenstore.Issue{Access: tokenstore.HashOf(access), AccessRecord: arec}); err != nil {
			return nil, false
		}
		resp.AccessToken, resp.Scope, resp.ExpiresIn = access, rrec.Scope, int64(s.cfg.AccessTokenTTL.Seconds())
	}
	if s.addIDToken(resp, c.ID, rrec.Subject, "", rrec.AuthTime, now) != nil {
		return nil, false
	}
	return resp, true
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
