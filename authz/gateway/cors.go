package gateway

import (
	"net/http"
	"sort"

	"github.com/oauth2gate/oauth2gate/authz/cors"
)

// CORS is a guard's `cors <origin>...` line: the guard answers preflights
// from these origins itself and owns the CORS headers of every answer.
type CORS struct {
	origins cors.Set
	rules   *ScopeRules
	named   []string // the methods scope lines name, sorted
}

// Exposed are the headers a script may read on a guarded answer beyond the
// safelisted ones: why it was refused (RFC 6750 §3), how long to wait.
const Exposed = "WWW-Authenticate, Retry-After"

// baseAllowHeaders are allowed on every preflight: the bearer token, and a
// JSON body's type.
var baseAllowHeaders = []string{"authorization", "content-type"}

// NewCORS checks origins (cors.CheckOrigin) and builds the line for a guard
// with rules.
func NewCORS(origins []string, rules *ScopeRules) (*CORS, error) {
	set, err := cors.NewSet(origins)
	if err != nil {
		return nil, err
	}
	named := rules.Methods()
	sort.Strings(named)
	return &CORS{origins: set, rules: rules, named: named}, nil
}

// Origin is r's origin when the line lists it, else "".
func (c *CORS) Origin(r *http.Request) string { return c.origins.Match(r) }

// Preflight answers a preflight from a listed origin and reports whether it
// did; no token is asked for and nothing is forwarded. Allow-Methods are the
// methods the scope lines name, and the requested method when the rules
// admit it (a `*` line, or no scopes); a method they refuse, or one not
// spelled in upper case (the guard refuses those), is left out, so the
// browser refuses the request itself. Allow-Headers are Authorization,
// Content-Type and the requested names, when the request lists at most
// cors.MaxRequestHeaders well-formed ones. A preflight from any other origin
// is not answered here: it meets the guard as any request without a token.
func (c *CORS) Preflight(w http.ResponseWriter, r *http.Request) bool {
	if !cors.IsPreflight(r) {
		return false
	}
	origin := c.origins.Match(r)
	if origin == "" {
		return false
	}
	methods := c.named
	if m := r.Header.Get(cors.RequestMethod); isCanonicalMethod(m) {
		if _, ok := c.rules.Required(m); ok && !contains(methods, m) {
			methods = append(append([]string(nil), methods...), m)
		}
	}
	headers := baseAllowHeaders
	if asked, ok := cors.RequestedHeaders(r); ok {
		headers = append([]string(nil), baseAllowHeaders...)
		for _, n := range asked {
			if !contains(headers, n) {
				headers = append(headers, n)
			}
		}
	}
	cors.Preflight{Origin: origin, Methods: methods, Headers: headers}.Write(w)
	return true
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
