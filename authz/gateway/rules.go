package gateway

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/oauth2gate/oauth2gate/authz/scope"
)

// MethodScopes is one `scope <METHODS|*> <scopes...>` line.
type MethodScopes struct {
	Methods []string // upper-case methods, or "*"
	Scopes  []string
}

// ScopeRules decide which scopes a request needs (README, "The API gateway"): the line
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
			return fmt.Errorf("scope %q: %v", strings.Join(scopes, " "), err)
		}
		if method == "*" {
			r.any = append(r.any, set...)
			r.hasAny = true
			return nil
		}
		if !isCanonicalMethod(method) {
			return fmt.Errorf("method %q is not an HTTP method name", method)
		}
		if _, dup := r.byMethod[method]; dup {
			return fmt.Errorf("method %s is named by two scope lines", method)
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
				return r, fmt.Errorf("inline scopes and a `scope *` line both set the default")
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

// Methods lists the methods some line names, for CORS preflights.
func (r *ScopeRules) Methods() []string {
	out := make([]string, 0, len(r.byMethod))
	for m := range r.byMethod {
		out = append(out, m)
	}
	return out
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
