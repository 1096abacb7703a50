package gateway

import (
	"bytes"
	"context"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/oauth2gate/oauth2gate/authz/oautherr"
	"github.com/oauth2gate/oauth2gate/authz/params"
)

// Source says where a request carried its token (RFC 6750 §2.1–2.3).
type Source uint8

// Where a bearer token came from.
const (
	FromNone Source = iota
	FromHeader
	FromForm
	FromQuery
)

// maxTokenLen bounds what is hashed and looked up: our tokens are 43
// characters, JWT access tokens a few KiB.
const maxTokenLen = 8 << 10

// maxForm bounds the form body read to find access_token; the body is then
// handed on unchanged (or without the token).
const maxForm = 64 << 10

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

// WellFormed reports whether tok could be a bearer token at all: a
// b64token of at most 8 KiB. Anything else is refused without a lookup.
func WellFormed(tok string) bool { return len(tok) <= maxTokenLen && isB64Token(tok) }

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
	return strings.Trim(v[7:], " "), true, nil
}

func badRequest(desc string) *oautherr.Error { return oautherr.InvalidRequest.WithDescription(desc) }

// Extract finds the one token of a request: in the Authorization header, the
// query (when query) or a form-encoded body (when form), never in more than
// one (RFC 6750 §2). A form body it reads is put back for the next handler.
func Extract(r *http.Request, query, form bool) (string, Source, *oautherr.Error) {
	var tok string
	src := FromNone
	found := 0
	h, ok, err := bearerFromHeader(r.Header)
	if err != nil {
		return "", FromNone, badRequest("malformed Authorization header")
	}
	if ok {
		tok, src, found = h, FromHeader, 1
		if tok == "" {
			return "", FromNone, badRequest("empty bearer token")
		}
	}
	if query && r.URL.RawQuery != "" {
		q, n, err := params.Find(r.URL.RawQuery, "access_token")
		switch {
		case err != nil, n > 1:
			return "", FromNone, badRequest("access_token must appear once")
		case params.Smuggled(r.URL.RawQuery, "access_token"):
			return "", FromNone, badRequest("';' does not separate query parameters")
		case n == 1 && q == "":
			return "", FromNone, badRequest("empty access_token")
		case n == 1:
			tok, src = q, FromQuery
			found++
		}
	}
	if form && isFormBody(r) {
		f, n, e := tokenFromForm(r, found > 0)
		if e != nil {
			return "", FromNone, e
		}
		if n > 0 {
			tok, src = f, FromForm
			found++
		}
	}
	if found > 1 {
		return "", FromNone, badRequest("the access token was sent in more than one place")
	}
	return tok, src, nil
}

func isFormBody(r *http.Request) bool {
	if r.Body == nil || r.Body == http.NoBody || r.Method == http.MethodGet || r.Method == http.MethodHead {
		return false
	}
	ct := r.Header.Get("Content-Type")
	if !strings.HasPrefix(strings.ToLower(ct), "application/x-www-form-urlencoded") {
		return false
	}
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "application/x-www-form-urlencoded"
}

type formBody struct{ raw string }

type formKey struct{}

// tokenFromForm reads a bounded form body, keeps it for the upstream, and
// returns its access_token. A body too large to be a token's carrier is passed
// on untouched when the token came in the header or query (an upload), and
// refused when it would be the only place to look.
func tokenFromForm(r *http.Request, haveToken bool) (string, int, *oautherr.Error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxForm+1))
	if err != nil {
		return "", 0, badRequest("unreadable body")
	}
	if len(b) > maxForm {
		if haveToken {
			r.Body = struct {
				io.Reader
				io.Closer
			}{io.MultiReader(bytes.NewReader(b), r.Body), r.Body}
			return "", 0, nil
		}
		return "", 0, badRequest("form body too large to carry the access token (RFC 6750 §2.2); send it in the Authorization header")
	}
	r.Body.Close()
	raw := string(b)
	r.Body = io.NopCloser(strings.NewReader(raw))
	r.ContentLength = int64(len(raw))
	tok, n, ferr := params.Find(raw, "access_token")
	switch {
	case ferr != nil:
		return "", 0, badRequest("malformed form body")
	case n > 1:
		return "", n, badRequest("access_token must appear once")
	case params.Smuggled(raw, "access_token"):
		return "", 0, badRequest("';' does not separate form parameters")
	}
	*r = *r.WithContext(context.WithValue(r.Context(), formKey{}, &formBody{raw: raw}))
	if n == 0 {
		return "", 0, nil
	}
	if tok == "" {
		return "", 1, badRequest("empty access_token")
	}
	return tok, 1, nil
}

// Strip removes the token from where it was found, so the upstream never
// sees it; the rest of the query or body keeps its order and encoding.
func Strip(r *http.Request, src Source) {
	switch src {
	case FromHeader:
		delete(r.Header, "Authorization")
	case FromQuery:
		r.URL.RawQuery = params.Remove(r.URL.RawQuery, "access_token")
		r.RequestURI = r.URL.RequestURI()
	case FromForm:
		fb, _ := r.Context().Value(formKey{}).(*formBody)
		if fb == nil {
			return
		}
		raw := params.Remove(fb.raw, "access_token")
		r.Body = io.NopCloser(strings.NewReader(raw))
		r.ContentLength = int64(len(raw))
		r.Header.Set("Content-Length", strconv.Itoa(len(raw)))
	}
}
