package gateway

import (
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/oauth2gate/oauth2gate/authz/oautherr"
	"github.com/oauth2gate/oauth2gate/authz/scope"
)

// Options configure a Guard.
type Options struct {
	Realm      string // WWW-Authenticate realm; default oauth2gate
	QueryToken bool   // accept ?access_token= (RFC 6750 §2.3)
	FormToken  bool   // accept a form-encoded body's access_token (RFC 6750 §2.2)
	// Observer, when set, counts every decision (metrics).
	Observer Observer
	// Admit, when set, is a last check of a verified identity that holds
	// the route's scopes (the guard's claim lines); its refusal is counted
	// as the guard's own.
	Admit func(*Identity) *oautherr.Error
}

// Guard checks bearer tokens and the scopes a route needs.
type Guard struct {
	v     Verifier
	lv    LookupVerifier // v, when it says whether its cache answered
	rules ScopeRules
	opt   Options
}

// New builds a guard that asks v about tokens.
func New(v Verifier, rules ScopeRules, opt Options) *Guard {
	if opt.Realm == "" {
		opt.Realm = "oauth2gate"
	}
	lv, _ := v.(LookupVerifier)
	return &Guard{v: v, lv: lv, rules: rules, opt: opt}
}

// Realm is the guard's WWW-Authenticate realm.
func (g *Guard) Realm() string { return g.opt.Realm }

// Rules are the guard's scope rules.
func (g *Guard) Rules() *ScopeRules { return &g.rules }

// Check extracts the bearer token, verifies it and checks the route's
// scopes. The identity describes the token; src says where it was found.
// A refusal is an *oautherr.Error with its RFC 6750 status and code.
func (g *Guard) Check(r *http.Request) (*Identity, Source, *oautherr.Error) {
	id, src, lk, e := g.check(r)
	if g.opt.Observer != nil {
		g.opt.Observer.Observe(OutcomeOf(e), lk)
	}
	return id, src, e
}

func (g *Guard) check(r *http.Request) (*Identity, Source, Lookup, *oautherr.Error) {
	if !isCanonicalMethod(r.Method) {
		// Scope lines name methods in upper case. Upstreams that upper-case
		// what they receive (Werkzeug, Django, PHP frameworks) would run
		// `delete` as DELETE after it was checked against another line.
		return nil, FromNone, LookupNone, badRequest("the request method must be upper case")
	}
	tok, src, e := Extract(r, g.opt.QueryToken, g.opt.FormToken)
	if e != nil {
		return nil, FromNone, LookupNone, e
	}
	if src == FromNone {
		return nil, FromNone, LookupNone, oautherr.NoToken
	}
	if !WellFormed(tok) {
		return nil, src, LookupNone, errMalformedToken
	}
	var id *Identity
	var err error
	lk := LookupNone
	if g.lv != nil {
		id, lk, err = g.lv.VerifyLookup(r.Context(), tok)
	} else {
		id, err = g.v.Verify(r.Context(), tok)
	}
	if err != nil {
		return nil, src, lk, refusalOf(err)
	}
	if e := g.Authorize(r.Method, id); e != nil {
		return nil, src, lk, e
	}
	if g.opt.Admit != nil {
		if e := g.opt.Admit(id); e != nil {
			return nil, src, lk, e
		}
	}
	return id, src, lk, nil
}

// Authorize checks id against the scopes the method needs.
func (g *Guard) Authorize(method string, id *Identity) *oautherr.Error {
	need, allowed := g.rules.Required(method)
	if !allowed {
		return oautherr.InsufficientScope.WithDescription("no scope admits method " + method + " here")
	}
	for _, s := range need {
		if !scope.In(id.Scope, s) {
			return oautherr.InsufficientScope.WithDescription("the access token lacks a required scope").WithScope(need.String())
		}
	}
	return nil
}

var (
	errMalformedToken = oautherr.InvalidToken.WithDescription("the access token is malformed")
	errInvalidToken   = oautherr.InvalidToken.WithDescription("the access token is invalid, expired or revoked")
)

// refusalOf maps a Verifier's error: a refused token is invalid_token (its
// own description kept when the Verifier gave one); anything else is 503,
// the cause kept for the log.
func refusalOf(err error) *oautherr.Error {
	if errors.Is(err, oautherr.InvalidToken) {
		if e := oautherr.As(err); e != nil && e.Description != "" {
			return e
		}
		return errInvalidToken.WithWrap(err)
	}
	if e := oautherr.As(err); e != nil && e.Status == http.StatusServiceUnavailable {
		return e
	}
	return oautherr.TemporarilyUnavailable.WithDescription("the token could not be verified now").WithWrap(err)
}

// Challenge is the WWW-Authenticate value for a refusal (RFC 6750 §3).
func Challenge(realm string, e *oautherr.Error) string {
	var b strings.Builder
	b.WriteString(`Bearer realm="`)
	b.WriteString(quoteSafe(realm))
	b.WriteByte('"')
	if e.Code != "" && e.Status != http.StatusServiceUnavailable {
		b.WriteString(`, error="` + e.Code + `"`)
		if e.Description != "" {
			b.WriteString(`, error_description="` + quoteSafe(e.Description) + `"`)
		}
		if e.Scope != "" {
			b.WriteString(`, scope="` + quoteSafe(e.Scope) + `"`)
		}
	}
	return b.String()
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

// SetHeaders puts a refusal's headers on h: the challenge (not on 503,
// where the token was not judged), no-store, and Retry-After when set.
func SetHeaders(h http.Header, realm string, e *oautherr.Error) {
	if e.Status != http.StatusServiceUnavailable {
		h.Set("WWW-Authenticate", Challenge(realm, e))
	}
	h.Set("Cache-Control", "no-store")
	if e.RetryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(e.RetryAfter.Seconds())))))
	}
}

// WriteRefusal answers a refusal: status, headers and a small JSON body. An
// API client is never redirected to a login page.
func WriteRefusal(w http.ResponseWriter, realm string, e *oautherr.Error) {
	h := w.Header()
	SetHeaders(h, realm, e)
	h.Set("Content-Type", "application/json")
	w.WriteHeader(e.Status)
	_, _ = w.Write(RefusalBody(e))
}

// RefusalBody is the JSON body of a refusal.
func RefusalBody(e *oautherr.Error) []byte {
	code, desc := e.Code, e.Description
	if code == "" {
		code, desc = "invalid_request", "an access token is required"
	}
	return []byte(`{"error":"` + code + `","error_description":"` + quoteSafe(desc) + `"}` + "\n")
}
