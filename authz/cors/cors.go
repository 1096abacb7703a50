// Package cors speaks the CORS protocol of the Fetch standard (§3.2) for the
// authorization server's endpoints and the guard: exact origins, preflights
// answered with fixed lists, and response headers that never combine a
// wildcard with credentials (credentials are never allowed at all: tokens
// travel in Authorization, not in cookies).
package cors

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// Header names of the protocol.
const (
	AllowOrigin      = "Access-Control-Allow-Origin"
	AllowMethods     = "Access-Control-Allow-Methods"
	AllowHeaders     = "Access-Control-Allow-Headers"
	AllowCredentials = "Access-Control-Allow-Credentials"
	ExposeHeaders    = "Access-Control-Expose-Headers"
	MaxAge           = "Access-Control-Max-Age"
	RequestMethod    = "Access-Control-Request-Method"
	RequestHeaders   = "Access-Control-Request-Headers"
)

// MaxAgeSeconds is how long a browser may reuse a preflight's answer: short,
// so that an origin removed from the configuration loses access within ten
// minutes (Chromium caps it at two hours anyway).
const MaxAgeSeconds = 600

// CheckOrigin accepts an origin written as a browser sends it in the Origin
// header (RFC 6454 §6.2, Fetch "serialization of an origin"):
// scheme://host[:port], lower case, the host in ASCII (punycode), no default
// port, no path, no trailing slash, no wildcard. A browser compares
// Access-Control-Allow-Origin to its own serialization byte for byte, so
// anything else would never match and is a configuration mistake.
func CheckOrigin(o string) error {
	switch {
	case o == "":
		return errors.New("an origin cannot be empty")
	case o == "null":
		return errors.New(`origin "null" cannot be allowed: it is the origin of sandboxed frames and file: pages, which any site can produce`)
	case strings.Contains(o, "*"):
		return fmt.Errorf("origin %q: wildcards are not allowed; list each origin", o)
	}
	for i := 0; i < len(o); i++ {
		if c := o[i]; c <= 0x20 || c >= 0x7f {
			return fmt.Errorf("origin %q: write the host in ASCII (punycode, xn--…), as browsers send it, with no spaces", o)
		}
	}
	u, err := url.Parse(o)
	if err != nil || u.Scheme == "" || u.Opaque != "" || u.Host == "" {
		return fmt.Errorf("origin %q: want scheme://host[:port], like https://app.example.com", o)
	}
	switch {
	case u.User != nil:
		return fmt.Errorf("origin %q: an origin has no user info", o)
	case u.Path == "/":
		return fmt.Errorf("origin %q: remove the trailing slash (an origin has no path)", o)
	case u.Path != "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.ContainsAny(o, "?#"):
		return fmt.Errorf("origin %q: an origin has no path, query or fragment", o)
	case strings.ToLower(o) != o:
		return fmt.Errorf("origin %q: write it in lower case (%q), as browsers send it", o, strings.ToLower(o))
	}
	if port := u.Port(); port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
			return fmt.Errorf("origin %q: bad port %q", o, port)
		}
		if (u.Scheme == "http" && n == 80) || (u.Scheme == "https" && n == 443) {
			return fmt.Errorf("origin %q: leave out the default port (%s://%s), as browsers do", o, u.Scheme, u.Hostname())
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return fmt.Errorf("origin %q: empty port", o)
	}
	if h := u.Hostname(); strings.HasPrefix(u.Host, "[") && net.ParseIP(h) == nil {
		return fmt.Errorf("origin %q: bad IPv6 address", o)
	}
	return nil
}

// Set is a set of exact origins.
type Set map[string]struct{}

// NewSet checks every origin and makes a set of them.
func NewSet(origins []string) (Set, error) {
	s := make(Set, len(origins))
	for _, o := range origins {
		if err := CheckOrigin(o); err != nil {
			return nil, err
		}
		s[o] = struct{}{}
	}
	return s, nil
}

// Match returns r's origin when it is in the set, else "". The comparison is
// exact: browsers send the serialized form, so another spelling (upper case,
// a default port, a trailing slash) comes from something that is not a
// browser, which CORS does not concern; it gets no CORS headers. A request
// with more than one Origin header matches nothing.
func (s Set) Match(r *http.Request) string {
	v := r.Header.Values("Origin")
	if len(v) != 1 {
		return ""
	}
	if _, ok := s[v[0]]; ok {
		return v[0]
	}
	return ""
}

// IsPreflight says whether r is a CORS preflight (Fetch §3.2.2): OPTIONS
// with Origin and Access-Control-Request-Method.
func IsPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions && r.Header.Get("Origin") != "" && r.Header.Get(RequestMethod) != ""
}

// AddVary adds names to h's Vary header once each, keeping what is there;
// several Vary lines become one.
func AddVary(h http.Header, names ...string) {
	vals := h["Vary"]
	cur := ""
	if len(vals) == 1 {
		cur = vals[0]
	} else if len(vals) > 1 {
		var have []string
		for _, v := range vals {
			for _, t := range strings.Split(v, ",") {
				if t = strings.TrimSpace(t); t != "" && !containsFold(have, t) {
					have = append(have, t)
				}
			}
		}
		cur = strings.Join(have, ", ")
	}
	next := cur
	for _, n := range names {
		if !hasToken(next, n) {
			if next == "" {
				next = n
			} else {
				next += ", " + n
			}
		}
	}
	if next != cur || len(vals) != 1 {
		if next == "" {
			delete(h, "Vary")
			return
		}
		h["Vary"] = []string{next}
	}
}

// hasToken says whether the comma-separated list has name (any case).
func hasToken(list, name string) bool {
	for list != "" {
		var t string
		t, list, _ = strings.Cut(list, ",")
		if strings.EqualFold(strings.TrimSpace(t), name) {
			return true
		}
	}
	return false
}

func containsFold(list []string, s string) bool {
	for _, v := range list {
		if strings.EqualFold(v, s) {
			return true
		}
	}
	return false
}

// Preflight is the answer to a preflight.
type Preflight struct {
	Origin  string // the request's origin, or "*"
	Methods []string
	Headers []string
}

// Write answers the preflight: 204 with the lists and Max-Age, never
// Allow-Credentials.
func (p Preflight) Write(w http.ResponseWriter) {
	h := w.Header()
	h.Set(AllowOrigin, p.Origin)
	if p.Origin != "*" {
		AddVary(h, "Origin", RequestMethod, RequestHeaders)
	}
	if len(p.Methods) > 0 {
		h.Set(AllowMethods, strings.Join(p.Methods, ", "))
	}
	if len(p.Headers) > 0 {
		h.Set(AllowHeaders, strings.Join(p.Headers, ", "))
	}
	h.Set(MaxAge, strconv.Itoa(MaxAgeSeconds))
	h.Del(AllowCredentials)
	w.WriteHeader(http.StatusNoContent)
}

// MaxRequestHeaders bounds the header names a preflight may ask for; a
// longer list is not answered (the browser then refuses the request).
const MaxRequestHeaders = 32

// RequestedHeaders parses Access-Control-Request-Headers: lower-case names,
// each an RFC 9110 token, unique, sorted. ok is false when the list is
// malformed or longer than MaxRequestHeaders.
func RequestedHeaders(r *http.Request) (names []string, ok bool) {
	for _, v := range r.Header.Values(RequestHeaders) {
		for _, n := range strings.Split(v, ",") {
			n = strings.ToLower(strings.TrimSpace(n))
			if n == "" {
				continue
			}
			if !isToken(n) {
				return nil, false
			}
			if !contains(names, n) {
				names = append(names, n)
			}
			if len(names) > MaxRequestHeaders {
				return nil, false
			}
		}
	}
	sort.Strings(names)
	return names, true
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// isToken: RFC 9110 §5.6.2 tchar+.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// Allow puts the headers of an answer to origin on h: Allow-Origin, Vary:
// Origin and the exposed headers (a comma-separated list); any
// Allow-Credentials is removed.
func Allow(h http.Header, origin, expose string) {
	h[AllowOrigin] = []string{origin}
	AddVary(h, "Origin")
	if expose != "" {
		h[ExposeHeaders] = []string{expose}
	}
	delete(h, AllowCredentials)
}

// TakeOver makes the CORS headers of an answer the guard forwards its own:
// the upstream's Access-Control-* headers are dropped (a second
// Allow-Origin would make the browser refuse the answer, and an upstream's
// Allow-Credentials must not ride on the guard's decision), the names it
// exposed are kept after expose, and origin, when not "", is allowed.
func TakeOver(h http.Header, origin, expose string) {
	for _, v := range h[ExposeHeaders] {
		if v == expose {
			continue // the guard's own, set before the upstream answered
		}
		for _, n := range strings.Split(v, ",") {
			if n = strings.TrimSpace(n); isToken(n) && n != "*" && !hasToken(expose, n) {
				expose += ", " + n
			}
		}
	}
	for k, v := range h {
		if !strings.HasPrefix(k, "Access-Control-") {
			continue
		}
		// What the guard set itself, unchanged, stays (no new allocation on the second call).
		if origin != "" && len(v) == 1 && (k == AllowOrigin && v[0] == origin || k == ExposeHeaders && v[0] == expose) {
			continue
		}
		delete(h, k)
	}
	AddVary(h, "Origin")
	if origin == "" {
		return
	}
	if _, ok := h[AllowOrigin]; !ok {
		h[AllowOrigin] = []string{origin}
	}
	if _, ok := h[ExposeHeaders]; !ok && expose != "" {
		h[ExposeHeaders] = []string{expose}
	}
}
