// Package scope parses and compares OAuth 2.0 scope strings (RFC 6749 §3.3):
// space-delimited, case-sensitive tokens of %x21 / %x23-5B / %x5D-7E.
package scope

import (
	"errors"
	"slices"
	"strings"
)

// Set is a list of distinct scope tokens in the order first seen.
type Set []string

// ErrMalformed is returned for a scope string with a character outside
// RFC 6749's scope-token grammar.
var ErrMalformed = errors.New("malformed scope")

// Parse splits a scope string. Repeated tokens are kept once; empty input gives
// an empty set. Any whitespace other than a single space is tolerated as a
// separator, but characters outside the scope-token grammar are refused.
func Parse(s string) (Set, error) {
	if s == "" {
		return nil, nil
	}
	fields := strings.Fields(s)
	out := make(Set, 0, len(fields))
	for _, f := range fields {
		for i := 0; i < len(f); i++ {
			c := f[i]
			if c < 0x21 || c == 0x22 || c == 0x5C || c > 0x7E {
				return nil, ErrMalformed
			}
		}
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out, nil
}

// String joins the set with single spaces.
func (s Set) String() string { return strings.Join(s, " ") }

// In reports whether tok is one of the space-separated scopes in list (as
// granted and stored), without splitting it.
func In(list, tok string) bool {
	for len(list) > 0 {
		i := strings.IndexByte(list, ' ')
		if i < 0 {
			return list == tok
		}
		if list[:i] == tok {
			return true
		}
		list = list[i+1:]
	}
	return false
}

// Has reports whether tok is in the set.
func (s Set) Has(tok string) bool { return slices.Contains(s, tok) }

// Contains reports whether every token of sub is in s.
func (s Set) Contains(sub Set) bool {
	for _, t := range sub {
		if !s.Has(t) {
			return false
		}
	}
	return true
}

// Missing returns the tokens of want that s lacks.
func (s Set) Missing(want Set) Set {
	var out Set
	for _, t := range want {
		if !s.Has(t) {
			out = append(out, t)
		}
	}
	return out
}
