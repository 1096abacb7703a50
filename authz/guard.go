package authz

import (
	"bytes"
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/oauth2gate/oauth2gate/authz/cache"
	"github.com/oauth2gate/oauth2gate/authz/scope"
)

// TokenVerifier says what a bearer token is; *Server implements it through
// the cache and store.
type TokenVerifier interface {
	Lookup(ctx context.Context, token string) (*cache.Entry, error)
}

// MethodScopes is one `scope <METHODS|*> <scopes...>` line.
type MethodScopes struct {
	Methods []string // upper-case methods, or "*"
	Scopes  []string
}

// ScopeRules decide which scopes a request needs (shared/DESIGN.md): the line
// that names the method, else the `*` line; HEAD follows GET unless named; with
// lines but no match and no `*`, the request is refused (fail closed).
type ScopeRules struct {
	byMethod map[string]scope.Set
	any      scope.Set
	hasAny   bool
	none     bool // no rules at all: any valid token passes
}

// NewScopeRules builds rules from inline scopes (the `*` line) and lines.
func NewScopeRules(inline []string, lines []MethodScopes) (ScopeRules, error) {
	r := ScopeRules{byMethod: map[string]scope.Set{}}
	add := func(method string, scopes []string) error {
		set, err := scope.Parse(strings.Join(scopes, " "))
		if err != nil {
			return errorf("scope %q: %v", strings.Join(scopes, " "), err)
		}
		if method == "*" {
			r.any = append(r.any, set...)
			r.hasAny = true
			return nil
		}
		if _, dup := r.byMethod[method]; dup {
			return errorf("method %s is named by two scope lines", method)
		}
		r.byMethod[method] = set
		return nil
	}
	if len(inline) > 0 {
		if err := add("*", inline); err != nil {
			return r, err
		}
	}
	for _, l := range lines {
		for _, m := range l.Methods {
			m = strings.ToUpper(m)
			if m == "*" && r.hasAny && len(inline) > 0 {
				return r, errorf("inline scopes and a `scope *` line both set the default")
			}
			if err := add(m, l.Scopes); err != nil {
				return r, err
			}
		}
	}
	r.none = !r.hasAny && len(r.byMethod) == 0
	return r, nil
}

// Required returns the scopes method needs, or ok=false when no rule admits it.
func (r *ScopeRules) Required(method string) (scope.Set, bool) {
	if r.none {
		return nil, true
	}
	if s, ok := r.byMethod[method]; ok {
		return s, true
	}
	if method == http.MethodHead {
		if s, ok := r.byMethod[http.MethodGet]; ok {
			return s, true
		}
	}
	if r.hasAny {
		return r.any, true
	}
	return nil, false
}

// TokenSource says where a request carried its token.
type TokenSource uint8

// Where a bearer token came from (RFC 6750 §2.1–2.3).
const (
	FromNone TokenSource = iota
	FromHeader
	FromForm
	FromQuery
)

// GuardOptions configure a Guard.
type GuardOptions struct {
	Realm      string
	QueryToken bool // accept ?access_token= (RFC 6750 §2.3)
	FormToken  bool // accept a form-encoded body's access_token (RFC 6750 §2.2)
}

// maxTokenLen bounds what is hashed and looked up: our tokens are 43
// characters, JWT access tokens a few KiB.
const maxTokenLen = 8 << 10

// Guard checks bearer tokens and the scopes a route needs.
type Guard struct {
	v     TokenVerifier
	rules ScopeRules
	opt   GuardOptions
	// pre-built WWW-Authenticate values
	challenge string
}

// NewGuard builds a guard.
func NewGuard(v TokenVerifier, rules ScopeRules, opt GuardOptions) *Guard {
	if opt.Realm == "" {
		opt.Realm = "oauth2gate"
	}
	return &Guard{v: v, rules: rules, opt: opt, challenge: `Bearer realm="` + quoteSafe(opt.Realm) + `"`}
}

// Denial is the answer to a refused request (RFC 6750 §3).
type Denial struct {
	Status          int
	Code            string // "" when no token was sent (§3.1: no error attribute)
	Description     string
	Scope           string // for insufficient_scope
	WWWAuthenticate string
}

func (g *Guard) deny(status int, code, desc, sc string) *Denial {
	d := &Denial{Status: status, Code: code, Description: desc, Scope: sc}
	var b strings.Builder
	b.WriteString(g.challenge)
	if code != "" {
		b.WriteString(`, error="` + code + `"`)
		if desc != "" {
			b.WriteString(`, error_description="` + quoteSafe(desc) + `"`)
		}
		if sc != "" {
			b.WriteString(`, scope="` + quoteSafe(sc) + `"`)
		}
	}
	d.WWWAuthenticate = b.String()
	return d
}

// quoteSafe keeps only characters RFC 6750 §3 allows inside quoted values.
func quoteSafe(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c <= 0x7E && c != '"' && c != '\\' {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// b64tokenChar marks RFC 6750 §2.1's b64token characters but '='.
var b64tokenChar = func() (t [256]bool) {
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for _, c := range "-._~+/" {
		t[c] = true
	}
	return t
}()

// isB64Token checks RFC 6750 §2.1's b64token: 1*( ALPHA / DIGIT / "-" / "." /
// "_" / "~" / "+" / "/" ) *"=".
func isB64Token(s string) bool {
	i := 0
	for i < len(s) && b64tokenChar[s[i]] {
		i++
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
}

var errMalformed = errors.New("malformed")

// bearerFromHeader reads `Authorization: Bearer <token>`, the scheme
// case-insensitive (RFC 9110 §11.1). ok=false when no Bearer header was sent.
func bearerFromHeader(h http.Header) (tok string, ok bool, err error) {
	vals := h["Authorization"]
	if len(vals) == 0 {
		return "", false, nil
	}
	if len(vals) > 1 {
		return "", true, errMalformed
	}
	v := vals[0]
	if len(v) < 6 || !strings.EqualFold(v[:6], "bearer") {
		return "", false, nil // another scheme: not ours
	}
	if len(v) == 6 {
		return "", true, errMalformed
	}
	if v[6] != ' ' {
		return "", false, nil // e.g. "BearerX"
	}
	tok = strings.Trim(v[7:], " ")
	return tok, true, nil
}

// tokenFromQuery finds access_token in a raw query without decoding the rest.
func tokenFromQuery(raw string) (tok string, n int, err error) {
	for raw != "" {
		var part string
		part, raw, _ = strings.Cut(raw, "&")
		k, v, _ := strings.Cut(part, "=")
		if k != "access_token" && unescapeName(k) != "access_token" {
			continue
		}
		n++
		if n > 1 {
			return "", n, errMalformed
		}
		tok, err = url.QueryUnescape(v)
		if err != nil {
			return "", n, errMalformed
		}
	}
	return tok, n, nil
}

// Check extracts the bearer token, validates it and checks the route's
// scopes. The entry describes the token; src says where it was found.
func (g *Guard) Check(r *http.Request) (*cache.Entry, TokenSource, *Denial) {
	if !isCanonicalMethod(r.Method) {
		// Scope lines name methods in upper case. Upstreams that upper-case
		// what they receive (Werkzeug, Django, PHP frameworks) would run
		// `delete` as DELETE after it was checked against another line.
		return nil, FromNone, g.deny(http.StatusBadRequest, "invalid_request", "the request method must be upper case", "")
	}
	tok, src, d := g.extract(r)
	if d != nil {
		return nil, FromNone, d
	}
	if src == FromNone {
		return nil, FromNone, g.deny(http.StatusUnauthorized, "", "", "")
	}
	if len(tok) > maxTokenLen || !isB64Token(tok) {
		return nil, src, g.deny(http.StatusUnauthorized, "invalid_token", "the access token is malformed", "")
	}
	e, err := g.v.Lookup(r.Context(), tok)
	if err != nil {
		var ae *Error
		if errors.As(err, &ae) && ae.Code == "invalid_token" {
			return nil, src, g.deny(http.StatusUnauthorized, "invalid_token", "the access token is invalid, expired or revoked", "")
		}
		return nil, src, &Denial{Status: http.StatusServiceUnavailable, Code: "temporarily_unavailable", Description: "the token store is unavailable"}
	}
	need, allowed := g.rules.Required(r.Method)
	if !allowed {
		return nil, src, g.deny(http.StatusForbidden, "insufficient_scope", "no scope admits method "+r.Method+" here", "")
	}
	for _, s := range need {
		if !scope.In(e.Scope, s) {
			return nil, src, g.deny(http.StatusForbidden, "insufficient_scope", "the access token lacks a required scope", need.String())
		}
	}
	return e, src, nil
}

// isCanonicalMethod accepts methods spelled as RFC 9110 §9 registers them:
// upper-case letters, and '-' (M-SEARCH, BASELINE-CONTROL).
func isCanonicalMethod(m string) bool {
	if m == "" {
		return false
	}
	for i := 0; i < len(m); i++ {
		if c := m[i]; (c < 'A' || c > 'Z') && c != '-' {
			return false
		}
	}
	return true
}

// extract finds the one token of a request: in the header, the query or a
// form body, never in more than one (RFC 6750 §2).
func (g *Guard) extract(r *http.Request) (string, TokenSource, *Denial) {
	var tok string
	src := FromNone
	found := 0
	h, ok, err := bearerFromHeader(r.Header)
	if err != nil {
		return "", FromNone, g.deny(http.StatusBadRequest, "invalid_request", "malformed Authorization header", "")
	}
	if ok {
		tok, src, found = h, FromHeader, 1
		if tok == "" {
			return "", FromNone, g.deny(http.StatusBadRequest, "invalid_request", "empty bearer token", "")
		}
	}
	if g.opt.QueryToken && r.URL.RawQuery != "" {
		q, n, err := tokenFromQuery(r.URL.RawQuery)
		if err != nil {
			return "", FromNone, g.deny(http.StatusBadRequest, "invalid_request", "access_token must appear once", "")
		}
		if n > 0 {
			if q == "" {
				return "", FromNone, g.deny(http.StatusBadRequest, "invalid_request", "empty access_token", "")
			}
			tok, src = q, FromQuery
			found++
		}
	}
	if g.opt.FormToken && isFormBody(r) {
		f, n, err := tokenFromForm(r, found > 0)
		if err != nil {
			return "", FromNone, g.deny(http.StatusBadRequest, "invalid_request", err.Error(), "")
		}
		if n > 0 {
			tok, src = f, FromForm
			found++
		}
	}
	if found > 1 {
		return "", FromNone, g.deny(http.StatusBadRequest, "invalid_request", "the access token was sent in more than one place", "")
	}
	return tok, src, nil
}

func isFormBody(r *http.Request) bool {
	if r.Body == nil || r.Method == http.MethodGet || r.Method == http.MethodHead {
		return false
	}
	ct := r.Header.Get("Content-Type")
	if !strings.HasPrefix(strings.ToLower(ct), "application/x-www-form-urlencoded") {
		return false
	}
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "application/x-www-form-urlencoded"
}

// maxGuardForm bounds the form body the guard reads to find access_token; the
// body is then handed on unchanged (or without the token).
const maxGuardForm = 64 << 10

type formBody struct {
	raw string
}

type formKey struct{}

// tokenFromForm reads a bounded form body, keeps it for the upstream, and
// returns its access_token. A body too large to be a token's carrier is passed
// on untouched when the token came in the header or query (an upload), and
// refused when it would be the only place to look.
func tokenFromForm(r *http.Request, haveToken bool) (string, int, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxGuardForm+1))
	if err != nil {
		return "", 0, errors.New("unreadable body")
	}
	if len(b) > maxGuardForm {
		if haveToken {
			r.Body = struct {
				io.Reader
				io.Closer
			}{io.MultiReader(bytes.NewReader(b), r.Body), r.Body}
			return "", 0, nil
		}
		return "", 0, errors.New("form body too large to carry the access token (RFC 6750 §2.2); send it in the Authorization header")
	}
	r.Body.Close()
	raw := string(b)
	r.Body = io.NopCloser(strings.NewReader(raw))
	r.ContentLength = int64(len(raw))
	vals, err := url.ParseQuery(raw)
	if err != nil {
		return "", 0, errors.New("malformed form body")
	}
	toks := vals["access_token"]
	if len(toks) > 1 {
		return "", len(toks), errors.New("access_token must appear once")
	}
	*r = *r.WithContext(context.WithValue(r.Context(), formKey{}, &formBody{raw: raw}))
	if len(toks) == 0 {
		return "", 0, nil
	}
	if toks[0] == "" {
		return "", 1, errors.New("empty access_token")
	}
	return toks[0], 1, nil
}

// StripToken removes the token from where it was found, so the upstream
// never sees it.
func StripToken(r *http.Request, src TokenSource) {
	switch src {
	case FromHeader:
		delete(r.Header, "Authorization")
	case FromQuery:
		r.URL.RawQuery = removeQueryParam(r.URL.RawQuery, "access_token")
		r.RequestURI = r.URL.RequestURI()
	case FromForm:
		fb, _ := r.Context().Value(formKey{}).(*formBody)
		if fb == nil {
			return
		}
		raw := removeQueryParam(fb.raw, "access_token") // keeps order and encoding
		r.Body = io.NopCloser(strings.NewReader(raw))
		r.ContentLength = int64(len(raw))
		r.Header.Set("Content-Length", itoa(len(raw)))
	}
}

// removeQueryParam returns raw (a query or form body) without the parameter
// name, the rest in its order and encoding.
func removeQueryParam(raw, name string) string {
	var b strings.Builder
	for raw != "" {
		var part string
		part, raw, _ = strings.Cut(raw, "&")
		k, _, _ := strings.Cut(part, "=")
		if k == name || part == "" || unescapeName(k) == name {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(part)
	}
	return b.String()
}

func itoa(n int) string {
	var buf [20]byte
	i := len(buf)
	if n == 0 {
		return "0"
	}
	for n > 0 {
		i--
		buf[i] = byte('0' + n%10)
		n /= 10
	}
	return string(buf[i:])
}

// WriteDenial answers an RFC 6750 §3 refusal: status, WWW-Authenticate and
// a small JSON body. An API client is never redirected to a login page.
func WriteDenial(w http.ResponseWriter, d *Denial) {
	h := w.Header()
	if d.WWWAuthenticate != "" {
		h.Set("WWW-Authenticate", d.WWWAuthenticate)
	}
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(d.Status)
	_, _ = w.Write(denialBody(d))
}

// denialBody is the small JSON body of a refusal.
func denialBody(d *Denial) []byte {
	code := d.Code
	desc := d.Description
	if code == "" {
		code = "invalid_request"
		desc = "an access token is required"
	}
	return []byte(`{"error":"` + code + `","error_description":"` + quoteSafe(desc) + `"}` + "\n")
}

// SecretParams are the query parameters whose values never reach a log:
// tokens (RFC 6750 §2.3), and what allow_get_token_request lets into URLs.
var SecretParams = []string{"access_token", "refresh_token", "code", "code_verifier", "client_secret", "password", "token",
	"id_token", "id_token_hint", "client_assertion", "assertion", "subject_token", "actor_token"}

// HasSecretParam reports whether a raw query carries one of SecretParams.
func HasSecretParam(rawQuery string) bool {
	for rawQuery != "" {
		var part string
		part, rawQuery, _ = strings.Cut(rawQuery, "&")
		k, _, _ := strings.Cut(part, "=")
		if isSecretParam(k) {
			return true
		}
	}
	return false
}

// unescapeName decodes a query parameter name as url.ParseQuery does.
func unescapeName(raw string) string {
	if !strings.ContainsAny(raw, "%+") {
		return raw
	}
	k, err := url.QueryUnescape(raw)
	if err != nil {
		return raw
	}
	return k
}

// isSecretParam matches a raw (possibly percent-encoded) parameter name the
// way url.ParseQuery would decode it.
func isSecretParam(raw string) bool {
	k := unescapeName(raw)
	for _, n := range SecretParams {
		if k == n {
			return true
		}
	}
	return false
}

// RedactQueryToken replaces the value of every SecretParams parameter in a
// request URI, for logs.
func RedactQueryToken(uri string) string {
	path, q, ok := strings.Cut(uri, "?")
	if !ok {
		return uri
	}
	parts := strings.Split(q, "&")
	for i, p := range parts {
		if k, _, _ := strings.Cut(p, "="); isSecretParam(k) {
			parts[i] = k + "=REDACTED"
		}
	}
	return path + "?" + strings.Join(parts, "&")
}
