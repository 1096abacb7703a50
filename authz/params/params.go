// Package params is oauth2gate's one reading of application/x-www-form-urlencoded
// data: query strings and form bodies. The token endpoint parses with it, the
// authorization endpoint reads its query with it, and the guard extracts,
// strips and redacts access_token with it, so that what the guard finds, what
// it removes before the upstream and what it hides from a log are the same
// reading of the same bytes.
//
// Pairs are separated by '&' (WHATWG URL, RFC 6749 appendix B); names and
// values are decoded as net/url decodes them ('+' is a space, %XX a byte).
// Some upstream parsers also split on ';' (Rack before 3, old PHP and Python
// configurations), so a secret parameter hidden behind a ';' is reported by
// Smuggled and redacted by Redact, never silently passed on.
package params

import (
	"errors"
	"net/url"
	"slices"
	"strings"
)

// Values holds each parameter's one value; a repeated parameter is an error
// of Parse (RFC 6749 §3.1), so a map of strings suffices.
type Values map[string]string

// Get returns the value of name ("" when absent).
func (v Values) Get(name string) string { return v[name] }

// Has reports whether name was present, even with an empty value.
func (v Values) Has(name string) bool { _, ok := v[name]; return ok }

// ErrMalformed is a pair whose name or value does not decode, or whose name
// holds a ';' (net/url refuses those too).
var ErrMalformed = errors.New("malformed parameter encoding")

// Result is what Parse found beyond the values.
type Result struct {
	// Repeated names each parameter that appeared more than once, in the
	// order of its second appearance; Values keeps the first value.
	Repeated []string
}

// Parse reads raw into v (which may already hold parameters from elsewhere:
// a name present in both counts as repeated). Empty pairs ("a=1&&b=2") are
// skipped; a pair without '=' has an empty value. It stops at the first
// malformed pair.
func Parse(raw string, v Values) (Result, error) {
	var res Result
	var err error
	Each(raw, func(rawName, rawValue string) bool {
		name, ok := Decode(rawName)
		val, ok2 := Decode(rawValue)
		if !ok || !ok2 || strings.Contains(name, ";") {
			err = ErrMalformed
			return false
		}
		if _, dup := v[name]; dup {
			if !slices.Contains(res.Repeated, name) {
				res.Repeated = append(res.Repeated, name)
			}
			return true
		}
		v[name] = val
		return true
	})
	return res, err
}

// ParseAll reads raw keeping every value of a repeated parameter, for the
// authorization endpoint, whose errors depend on which one repeats (RFC 6749
// §4.1.2.1). It decodes exactly as Parse does.
func ParseAll(raw string) (url.Values, error) {
	out := url.Values{}
	var err error
	Each(raw, func(rawName, rawValue string) bool {
		name, ok := Decode(rawName)
		val, ok2 := Decode(rawValue)
		if !ok || !ok2 || strings.Contains(name, ";") {
			err = ErrMalformed
			return false
		}
		out[name] = append(out[name], val)
		return true
	})
	return out, err
}

// Each calls fn with the raw (still encoded) name and value of every
// non-empty '&'-separated pair of raw, in order, until fn returns false.
func Each(raw string, fn func(rawName, rawValue string) bool) {
	pairs(raw, func(pair string) bool {
		k, val, _ := strings.Cut(pair, "=")
		return fn(k, val)
	})
}

// pairs calls fn with every non-empty '&'-separated pair of raw as it is.
func pairs(raw string, fn func(pair string) bool) {
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if pair != "" && !fn(pair) {
			return
		}
	}
}

// Decode decodes one raw name or value; ok is false when it does not decode.
// It allocates only when there is something to decode.
func Decode(raw string) (string, bool) {
	if !strings.ContainsAny(raw, "%+") {
		return raw, true
	}
	s, err := url.QueryUnescape(raw)
	if err != nil {
		return "", false
	}
	return s, true
}

// Find returns the decoded value of name in raw and how often name appears
// (as its decoded name). err is ErrMalformed when one of those values does
// not decode. Other parameters are not decoded.
func Find(raw, name string) (value string, n int, err error) {
	Each(raw, func(rk, rv string) bool {
		if !nameIs(rk, name) {
			return true
		}
		n++
		if n == 1 {
			var ok bool
			if value, ok = Decode(rv); !ok {
				err = ErrMalformed
			}
		}
		return true
	})
	return value, n, err
}

// nameIs reports whether the raw name decodes to name, without allocating
// for the common undecorated name.
func nameIs(raw, name string) bool {
	if raw == name {
		return true
	}
	if !strings.ContainsAny(raw, "%+") {
		return false
	}
	d, ok := Decode(raw)
	return ok && d == name
}

// Remove returns raw without every pair whose name decodes to name (and
// without empty pairs); the other pairs keep their order and encoding.
func Remove(raw, name string) string {
	var b strings.Builder
	pairs(raw, func(pair string) bool {
		if k, _, _ := strings.Cut(pair, "="); nameIs(k, name) {
			return true
		}
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(pair)
		return true
	})
	return b.String()
}

// Secret lists the parameters whose values never reach a log: bearer tokens
// (RFC 6750 §2.3), what allow_get_token_request lets into a URL (RFC 6749
// §4.1.3, §4.3.2, §6; RFC 7636 §4.5), the authorization response's code and
// tokens, and the assertions and hints of related specifications.
var Secret = []string{
	"access_token", "refresh_token", "id_token", "token", "code", "code_verifier",
	"client_secret", "password", "id_token_hint", "client_assertion", "assertion",
	"subject_token", "actor_token",
}

// IsSecret reports whether a decoded parameter name is one of Secret.
func IsSecret(name string) bool { return slices.Contains(Secret, name) }

// segments calls fn for every name=value segment of raw split on both '&' and
// ';', the widest reading any upstream applies.
func segments(raw string, fn func(rawName string) bool) {
	for raw != "" {
		i := strings.IndexAny(raw, "&;")
		seg := raw
		if i >= 0 {
			seg, raw = raw[:i], raw[i+1:]
		} else {
			raw = ""
		}
		k, _, _ := strings.Cut(seg, "=")
		if k != "" && !fn(k) {
			return
		}
	}
}

// HasSecret reports whether raw carries a secret parameter under any reading
// ('&' or ';' separated, encoded name or not).
func HasSecret(raw string) bool {
	found := false
	segments(raw, func(rk string) bool {
		if d, ok := Decode(rk); ok && IsSecret(d) || IsSecret(rk) {
			found = true
			return false
		}
		return true
	})
	return found
}

// Smuggled reports whether name appears in raw only a ';'-splitting parser
// would find: behind a ';' inside an '&'-separated pair. The guard refuses
// such a request, since it could neither take that token nor strip it.
func Smuggled(raw, name string) bool {
	if !strings.Contains(raw, ";") {
		return false
	}
	found := false
	pairs(raw, func(pair string) bool {
		if !strings.Contains(pair, ";") {
			return true
		}
		// Whatever follows the pair's first ';' is what only a ';' parser reads.
		segments(pair[strings.IndexByte(pair, ';')+1:], func(sk string) bool {
			found = nameIs(sk, name)
			return !found
		})
		return !found
	})
	return found
}

// Redact replaces the value of every secret parameter in raw with REDACTED,
// under the widest reading ('&' and ';', encoded names), keeping the rest
// byte for byte.
func Redact(raw string) string {
	if !HasSecret(raw) {
		return raw
	}
	var b strings.Builder
	b.Grow(len(raw))
	for raw != "" {
		i := strings.IndexAny(raw, "&;")
		seg, sep := raw, ""
		if i >= 0 {
			seg, sep, raw = raw[:i], raw[i:i+1], raw[i+1:]
		} else {
			raw = ""
		}
		k, _, hasValue := strings.Cut(seg, "=")
		d, ok := Decode(k)
		if hasValue && (ok && IsSecret(d) || IsSecret(k)) {
			b.WriteString(k)
			b.WriteString("=REDACTED")
		} else {
			b.WriteString(seg)
		}
		b.WriteString(sep)
	}
	return b.String()
}

// RedactURI redacts the query of a request URI (path?query).
func RedactURI(uri string) string {
	path, q, ok := strings.Cut(uri, "?")
	if !ok {
		return uri
	}
	return path + "?" + Redact(q)
}
