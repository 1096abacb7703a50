package authz

import (
	"context"
	"errors"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/oauth2gate/oauth2gate/authz/internal/gooauth2"
	urlparams "github.com/oauth2gate/oauth2gate/authz/params"
	"github.com/oauth2gate/oauth2gate/authz/scope"
)

// checkRedirectURI accepts an absolute URI without a fragment (RFC 6749
// §3.1.2): http and https with a host, a native app's private-use scheme
// (RFC 8252 §7.1, reverse domain name: com.example.app:/cb), urn. Schemes
// a browser runs or renders instead of navigating to (javascript:, data:,
// vbscript:, file:, blob:) are refused whatever their shape (RFC 9700
// §4.1.3: the redirect would run the attacker's script with the code).
func checkRedirectURI(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	switch strings.ToLower(u.Scheme) {
	case "javascript", "data", "vbscript", "file", "blob", "filesystem", "about":
		return errors.New("must not use the " + strings.ToLower(u.Scheme) + ": scheme")
	case "http", "https":
		if u.Host == "" {
			return errors.New("must be an absolute URI with a host")
		}
	}
	if u.Scheme == "" || u.Host == "" && u.Scheme != "urn" && !strings.Contains(u.Scheme, ".") {
		return errors.New("must be an absolute URI")
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		return errors.New("must not have a fragment")
	}
	return nil
}

// authRequest is a validated authorization request (RFC 6749 §4.1.1, §4.2.1).
type authRequest struct {
	client       *Client
	redirectURI  string // where to send the answer
	givenURI     string // redirect_uri as sent; "" when the default was used
	responseType string
	scope        scope.Set
	state        string
	nonce        string
	challenge    string
	method       string
	useFragment  bool
	maxAge       int64 // -1: not asked
}

// redirectError is an error that goes back to the client's redirect URI.
type redirectError struct {
	e   *Error
	req *authRequest
}

var allowedPrompts = map[string]bool{"none": true, "login": true, "consent": true, "select_account": true}

// parseAuthRequest validates the request. Until client and redirect URI are
// known good, errors are shown on a page and never redirected (RFC 6749
// §4.1.2.1); after that they go back to the client.
func (s *Server) parseAuthRequest(q url.Values) (*authRequest, *Error, *redirectError) {
	for _, k := range []string{"client_id", "redirect_uri"} {
		if len(q[k]) > 1 {
			return nil, ErrInvalidRequest.WithDescription(k + " is repeated"), nil
		}
	}
	c, ok := s.lookupClient(context.Background(), q.Get("client_id"))
	if !ok {
		return nil, ErrInvalidClient.WithDescription("unknown client_id"), nil
	}
	req := &authRequest{client: c, givenURI: q.Get("redirect_uri"), state: q.Get("state")}
	switch {
	case req.givenURI != "":
		if !c.HasRedirectURI(req.givenURI) {
			return nil, ErrInvalidRequest.WithDescription("redirect_uri is not registered for this client"), nil
		}
		req.redirectURI = req.givenURI
	case len(c.RedirectURIs) == 1:
		req.redirectURI = c.RedirectURIs[0]
	default:
		return nil, ErrInvalidRequest.WithDescription("redirect_uri is required"), nil
	}
	req.responseType = q.Get("response_type")
	req.useFragment = req.responseType == "token"
	fail := func(e *Error) (*authRequest, *Error, *redirectError) {
		return nil, nil, &redirectError{e: e, req: req}
	}
	for k, vs := range q {
		if len(vs) > 1 {
			req.state = ""
			if k != "state" {
				req.state = q.Get("state")
			}
			return fail(ErrInvalidRequest.WithDescription("parameter " + safeName(k) + " is repeated"))
		}
	}
	switch req.responseType {
	case "":
		return fail(ErrInvalidRequest.WithDescription("response_type is required"))
	case "code":
		if !c.Allows(GrantAuthorizationCode) {
			return fail(ErrUnauthorizedClient.WithDescription("the client may not use the authorization code flow"))
		}
	case "token":
		if !c.Allows(GrantImplicit) {
			return fail(ErrUnauthorizedClient.WithDescription("the client may not use the implicit flow"))
		}
	default:
		return fail(ErrUnsupportedResponseType.WithDescription("response_type must be code or token"))
	}
	if q.Get("request") != "" || q.Get("request_uri") != "" {
		return fail(&Error{Code: "request_not_supported", Description: "request objects are not supported", Status: http.StatusBadRequest})
	}
	prompts := strings.Fields(q.Get("prompt"))
	for _, p := range prompts {
		if !allowedPrompts[p] {
			return fail(ErrInvalidRequest.WithDescription("unsupported prompt value"))
		}
		if p == "none" && len(prompts) > 1 {
			// OIDC Core §3.1.2.1: none with any other value is an error.
			return fail(ErrInvalidRequest.WithDescription("prompt=none cannot be combined with other values"))
		}
	}
	req.maxAge = -1
	if v := q.Get("max_age"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return fail(ErrInvalidRequest.WithDescription("max_age must be a non-negative integer"))
		}
		req.maxAge = n
	}
	var e *Error
	if req.scope, e = requestedScope(c, q.Get("scope")); e != nil {
		return fail(e)
	}
	req.nonce = q.Get("nonce")
	req.challenge = q.Get("code_challenge")
	req.method = q.Get("code_challenge_method")
	if req.responseType == "code" {
		if req.challenge == "" {
			if req.method != "" {
				return fail(ErrInvalidRequest.WithDescription("code_challenge_method without code_challenge"))
			}
			if c.Public {
				return fail(ErrInvalidRequest.WithDescription("public clients must use PKCE (code_challenge)"))
			}
		} else {
			if req.method == "" {
				req.method = "plain" // RFC 7636 §4.3
			}
			if req.method != "S256" && req.method != "plain" {
				return fail(ErrInvalidRequest.WithDescription("code_challenge_method must be S256 or plain"))
			}
			if req.method == "plain" && s.cfg.PKCEPlainOff {
				return fail(ErrInvalidRequest.WithDescription("code_challenge_method plain is not allowed here; use S256"))
			}
			if !validChallenge(req.challenge) {
				return fail(ErrInvalidRequest.WithDescription("code_challenge must be 43 to 128 unreserved characters"))
			}
		}
	}
	return req, nil, nil
}

// validChallenge checks RFC 7636 §4.2's grammar.
func validChallenge(s string) bool {
	if len(s) < 43 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~') {
			return false
		}
	}
	return true
}

// redirect sends the answer to the client: in the query for the code flow,
// in the fragment for the implicit flow, with state and iss (RFC 9207).
func (s *Server) redirect(w http.ResponseWriter, r *http.Request, req *authRequest, vals url.Values) {
	if req.state != "" {
		vals.Set("state", req.state)
	}
	vals.Set("iss", s.cfg.Issuer)
	u, _ := url.Parse(req.redirectURI) // checked when the client was configured
	if req.useFragment {
		u.Fragment = ""
		u.RawFragment = ""
		loc := u.String() + "#" + vals.Encode()
		s.sendTo(w, r, loc)
		return
	}
	q := u.Query()
	for k, vs := range vals {
		q[k] = vs
	}
	u.RawQuery = q.Encode()
	s.sendTo(w, r, u.String())
}

// sendTo redirects with 302 after a GET and 303 after a POST, never 307,
// which would make the browser re-post the password (RFC 9700 §4.12).
func (s *Server) sendTo(w http.ResponseWriter, r *http.Request, loc string) {
	status := http.StatusFound
	if r.Method == http.MethodPost {
		status = http.StatusSeeOther
	}
	h := w.Header()
	h.Set("Location", loc)
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(status)
	// Caddy's access log records the response headers as they stand when the
	// request ends, and the Location carries a code or token. Once the header
	// is on the wire, the logged copy can be redacted without touching what
	// the browser received.
	if redacted := redactLocation(loc); redacted != loc {
		if err := http.NewResponseController(w).Flush(); err == nil {
			h.Set("Location", redacted)
		}
	}
}

// redactLocation replaces the values of urlparams.Secret (code, access_token,
// id_token, …) in a redirect URI's query and fragment.
func redactLocation(loc string) string {
	out := loc
	for _, p := range urlparams.Secret {
		for _, sep := range []string{"?", "&", "#"} {
			marker := sep + p + "="
			i := strings.Index(out, marker)
			for i >= 0 {
				start := i + len(marker)
				end := strings.IndexAny(out[start:], "&#")
				if end < 0 {
					end = len(out) - start
				}
				out = out[:start] + "REDACTED" + out[start+end:]
				next := strings.Index(out[start:], marker)
				if next < 0 {
					break
				}
				i = start + next
			}
		}
	}
	return out
}

func (s *Server) redirectError(w http.ResponseWriter, r *http.Request, re *redirectError) {
	v := url.Values{"error": {re.e.Code}}
	if re.e.Description != "" {
		v.Set("error_description", re.e.Description)
	}
	s.redirect(w, r, re.req, v)
}

func (s *Server) handleAuthorize(w http.ResponseWriter, r *http.Request, basePath string) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		s.errorPage(w, http.StatusMethodNotAllowed, "Method not allowed", "The authorization endpoint takes GET and POST.")
		return
	}
	q, err := urlparams.ParseAll(r.URL.RawQuery)
	if err != nil {
		s.errorPage(w, http.StatusBadRequest, "Invalid request", "The request's query string is malformed.")
		return
	}
	req, perr, rerr := s.parseAuthRequest(q)
	if perr != nil {
		s.errorPage(w, http.StatusBadRequest, "Invalid request", perr.Description)
		return
	}
	if rerr != nil {
		s.redirectError(w, r, rerr)
		return
	}
	var form url.Values
	if r.Method == http.MethodPost {
		if form, err = readPostForm(w, r); err != nil {
			s.errorPage(w, http.StatusBadRequest, "Invalid request", "The form is malformed.")
			return
		}
		if !s.checkCSRF(r, form.Get("csrf_token")) {
			s.errorPage(w, http.StatusForbidden, "Request refused", "The form expired or did not come from this site. Go back and try again.")
			return
		}
	}
	user, sess := s.readSession(r)
	action := r.URL.RequestURI()
	// OIDC Core §3.1.2.1: prompt=login and an exceeded max_age ask the user
	// to log in again, whatever session there is.
	if user != nil && (strings.Contains(" "+q.Get("prompt")+" ", " login ") ||
		req.maxAge >= 0 && s.now().Unix()-sess.AuthTime > req.maxAge) {
		user, sess = nil, nil
	}
	if user == nil {
		if strings.Contains(" "+q.Get("prompt")+" ", " none ") {
			s.redirectError(w, r, &redirectError{e: &Error{Code: "login_required", Status: http.StatusBadRequest}, req: req})
			return
		}
		if form.Get("action") == "login" {
			name := form.Get("username")
			u, e := s.authenticateUser(r.Context(), s.ClientIP(r), name, form.Get("password"))
			s.loginAttempt(r, req.client.ID, "login_form", name, u, e)
			if e != nil {
				s.logCause("login", e)
				if e.RetryAfter > 0 {
					w.Header().Set("Retry-After", retryAfter(e.RetryAfter))
				}
				msg := "Too many failed attempts. Wait a little and try again."
				if e.Status != http.StatusTooManyRequests {
					msg = "Sign-in is unavailable for a moment. Try again shortly."
				}
				s.loginPageStatus(w, r, e.Status, basePath, req, name, msg)
				return
			}
			if u != nil {
				s.setSession(w, r, basePath, u.Username)
				// 303: the browser comes back with GET, the re-login asked by
				// prompt=login or max_age now done.
				s.sendTo(w, r, withoutReauth(r.URL))
				return
			}
			s.loginPage(w, r, basePath, req, name, "Invalid username or password.")
			return
		}
		s.loginPage(w, r, basePath, req, "", "")
		return
	}
	if !req.client.SkipConsent {
		switch {
		case form.Get("action") == "consent" && form.Get("decision") == "allow":
			s.consent(r, req.client.ID, user.Username, req.scope.String(), true)
		case form.Get("action") == "consent" && form.Get("decision") == "deny":
			s.consent(r, req.client.ID, user.Username, req.scope.String(), false)
			s.redirectError(w, r, &redirectError{e: ErrAccessDenied.WithDescription("the user denied the request"), req: req})
			return
		default:
			if strings.Contains(" "+q.Get("prompt")+" ", " none ") {
				s.redirectError(w, r, &redirectError{e: &Error{Code: "consent_required", Status: http.StatusBadRequest}, req: req})
				return
			}
			writePage(w, http.StatusOK, s.pages.consent, &pageData{
				Title: "Allow access", ClientName: clientName(req.client), Username: user.Username,
				Scopes: req.scope, Action: action, CSRF: s.csrfToken(w, r, basePath),
			})
			return
		}
	}
	vals, e := s.issueFromAuthorize(r.Context(), req, user, sess)
	if e == nil && !s.stillRegistered(r.Context(), req.client) {
		e = ErrUnauthorizedClient.WithDescription("the client was deleted")
	}
	if e != nil {
		s.redirectError(w, r, &redirectError{e: e, req: req})
		return
	}
	s.authorizeIssued(r, req.client, user.Username, req.scope.String(), vals.Get("code"), vals.Get("access_token"))
	s.redirect(w, r, req, vals)
}

// readPostForm reads the login or consent form (at most maxFormBytes) with
// the one parameter reader; a body of another type is an empty form.
func readPostForm(w http.ResponseWriter, r *http.Request) (url.Values, error) {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/x-www-form-urlencoded" {
		return url.Values{}, nil
	}
	body, err := readBody(w, r)
	if err != nil {
		return nil, err
	}
	return urlparams.ParseAll(body)
}

// withoutReauth is the authorization request without prompt=login and
// max_age, which a login just satisfied.
func withoutReauth(u *url.URL) string {
	q, _ := urlparams.ParseAll(u.RawQuery)
	if p := strings.Fields(q.Get("prompt")); len(p) > 0 {
		var keep []string
		for _, v := range p {
			if v != "login" {
				keep = append(keep, v)
			}
		}
		if len(keep) == 0 {
			q.Del("prompt")
		} else {
			q.Set("prompt", strings.Join(keep, " "))
		}
	}
	q.Del("max_age")
	c := *u
	c.RawQuery = q.Encode()
	return c.RequestURI()
}

func clientName(c *Client) string {
	if c.Name != "" {
		return c.Name
	}
	return c.ID
}

func (s *Server) loginPage(w http.ResponseWriter, r *http.Request, basePath string, req *authRequest, username, msg string) {
	s.loginPageStatus(w, r, http.StatusOK, basePath, req, username, msg)
}

func (s *Server) loginPageStatus(w http.ResponseWriter, r *http.Request, status int, basePath string, req *authRequest, username, msg string) {
	writePage(w, status, s.pages.login, &pageData{
		Title: "Sign in", ClientName: clientName(req.client), Username: username,
		Action: r.URL.RequestURI(), CSRF: s.csrfToken(w, r, basePath), Error: msg,
	})
}

// issueFromAuthorize makes the code (or, implicit, the token).
func (s *Server) issueFromAuthorize(ctx context.Context, req *authRequest, user *User, sess *session) (url.Values, *Error) {
	ir := gooauth2.Request{
		Client: engineClient(req.client), Subject: user.Username, Scope: req.scope.String(),
		RedirectURI: req.givenURI, CodeChallenge: req.challenge, CodeChallengeMethod: req.method,
		Nonce: req.nonce, AuthTime: sess.AuthTime,
	}
	if req.responseType != "token" {
		is, err := s.engine.Code(ctx, ir)
		if err != nil {
			return nil, fromIssueError(err)
		}
		return url.Values{"code": {is.Code}}, nil
	}
	is, err := s.engine.Implicit(ctx, ir)
	if err != nil {
		return nil, fromIssueError(err)
	}
	return url.Values{
		"access_token": {is.Access},
		"token_type":   {"Bearer"},
		"expires_in":   {strconv.FormatInt(int64(is.ExpiresIn.Seconds()), 10)},
		"scope":        {is.Record.Scope},
	}, nil
}
