package tests

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
)

// tokenCall is one request to the token endpoint, built by hand so tests can send what real
// clients never would (repeated parameters, both auth methods, parameters in the URL).
type tokenCall struct {
	Form        url.Values // the body, form-encoded
	Body        string     // a raw body; used instead of Form when set
	ContentType string     // default application/x-www-form-urlencoded
	Basic       *basicAuth
	Query       string // raw query string appended to the URL
	Method      string // default POST
	Path        string // under the base path; default /token
	RawAuth     string // an Authorization header sent as is
}

type basicAuth struct{ ID, Secret string }

func basic(id, secret string) *basicAuth { return &basicAuth{id, secret} }

// header is the RFC 6749 §2.3.1 value: each part form-urlencoded, then base64.
func (b *basicAuth) header() string {
	raw := url.QueryEscape(b.ID) + ":" + url.QueryEscape(b.Secret)
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(raw))
}

func form(kv ...string) url.Values {
	v := url.Values{}
	for i := 0; i+1 < len(kv); i += 2 {
		v.Add(kv[i], kv[i+1])
	}
	return v
}

// reply is a response with its body and, when it is a JSON object, the decoded object.
type reply struct {
	Status int
	Header http.Header
	Body   []byte
	JSON   map[string]any
}

func (r *reply) str(key string) string {
	s, _ := r.JSON[key].(string)
	return s
}

func (r *reply) has(key string) bool {
	_, ok := r.JSON[key]
	return ok
}

func (r *reply) String() string {
	return fmt.Sprintf("%d %s", r.Status, strings.TrimSpace(string(r.Body)))
}

// send performs the call without touching t, so goroutines may use it.
func (in *instance) send(c tokenCall) (*reply, error) { return in.sendVia(in.http, c) }

// sendVia is send through the HTTP client hc (another source address, say).
// It remembers the secrets it sends and the tokens it receives, for the log
// checks.
func (in *instance) sendVia(hc *http.Client, c tokenCall) (*reply, error) {
	target := in.url("/token")
	if c.Path != "" {
		target = in.url(c.Path)
	}
	if c.Query != "" {
		target += "?" + c.Query
	}
	body := c.Body
	if body == "" && c.Form != nil {
		body = c.Form.Encode()
	}
	method := c.Method
	if method == "" {
		method = http.MethodPost
	}
	var rd io.Reader
	if method != http.MethodGet {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, target, rd)
	if err != nil {
		return nil, err
	}
	if method != http.MethodGet {
		ct := c.ContentType
		if ct == "" {
			ct = "application/x-www-form-urlencoded"
		}
		req.Header.Set("Content-Type", ct)
	}
	req.Header.Set("Accept", "application/json")
	if c.RawAuth != "" {
		req.Header.Set("Authorization", c.RawAuth)
	}
	if c.Basic != nil {
		req.Header.Set("Authorization", c.Basic.header())
		in.remember("client secret", c.Basic.Secret)
	}
	for _, k := range []string{"client_secret", "password", "code", "refresh_token", "code_verifier"} {
		for _, v := range c.Form[k] {
			in.remember(k, v)
		}
	}
	if q, err := url.ParseQuery(c.Query); err == nil {
		for _, k := range []string{"client_secret", "password", "code", "refresh_token"} {
			for _, v := range q[k] {
				in.remember(k, v)
			}
		}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	r := &reply{Status: resp.StatusCode, Header: resp.Header, Body: data}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var obj map[string]any
	if dec.Decode(&obj) == nil {
		r.JSON = obj
	}
	for _, k := range []string{"access_token", "refresh_token", "id_token"} {
		in.remember(k, r.str(k))
	}
	return r, nil
}

// token performs the call; a transport error ends the test, a 5xx fails it.
func (in *instance) token(t *testing.T, c tokenCall) *reply {
	t.Helper()
	r, err := in.send(c)
	if err != nil {
		t.Fatalf("token request: %v", err)
	}
	if r.Status >= 500 {
		t.Errorf("token endpoint answered %s: never a 5xx for client input", r)
	}
	return r
}

// issued is a successful token response.
type issued struct {
	Access, Refresh, Scope, TokenType string
	ExpiresIn                         int64
}

var urlSafeToken = regexp.MustCompile(`^[A-Za-z0-9._~-]+$`)

func checkTokenValue(t *testing.T, what, v string) {
	t.Helper()
	if len(v) < 22 {
		t.Errorf("%s %q is shorter than 22 characters (128 bits)", what, v)
	}
	if !urlSafeToken.MatchString(v) {
		t.Errorf("%s %q is not URL-safe", what, v)
	}
}

func checkNoStore(t *testing.T, h http.Header) {
	t.Helper()
	if cc := h.Get("Cache-Control"); !strings.Contains(strings.ToLower(cc), "no-store") {
		t.Errorf("Cache-Control = %q, want no-store", cc)
	}
}

func checkJSONContentType(t *testing.T, h http.Header) {
	t.Helper()
	if ct := h.Get("Content-Type"); !strings.HasPrefix(strings.ToLower(ct), "application/json") {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
}

// mustToken asserts an RFC 6749 §5.1 success and returns its fields.
func (r *reply) mustToken(t *testing.T) issued {
	t.Helper()
	if r.Status != http.StatusOK || r.JSON == nil {
		t.Fatalf("want 200 with a JSON token response, got %s", r)
	}
	checkNoStore(t, r.Header)
	checkJSONContentType(t, r.Header)
	// RFC 6749 §5.1: "as well as the Pragma response header field with a value of no-cache".
	if p := r.Header.Get("Pragma"); !strings.EqualFold(p, "no-cache") {
		t.Errorf("Pragma = %q, want no-cache (RFC 6749 §5.1)", p)
	}
	var is issued
	is.Access = r.str("access_token")
	checkTokenValue(t, "access_token", is.Access)
	is.TokenType = r.str("token_type")
	if is.TokenType != "Bearer" {
		t.Errorf("token_type = %q, want Bearer", is.TokenType)
	}
	n, ok := r.JSON["expires_in"].(json.Number)
	if !ok {
		t.Errorf("expires_in = %#v, want a JSON number", r.JSON["expires_in"])
	} else if v, err := n.Int64(); err != nil || v <= 0 {
		t.Errorf("expires_in = %v, want a positive integer", n)
	} else {
		is.ExpiresIn = v
	}
	if s, ok := r.JSON["scope"].(string); !ok {
		t.Errorf("scope missing or not a string in %s", r)
	} else {
		is.Scope = s
	}
	if r.has("refresh_token") {
		is.Refresh = r.str("refresh_token")
		checkTokenValue(t, "refresh_token", is.Refresh)
	}
	return is
}

// outcome is an acceptable error answer.
type outcome struct {
	Status int
	Code   string
}

// mustError asserts an RFC 6749 §5.2 error matching one of the outcomes.
func (r *reply) mustError(t *testing.T, want ...outcome) {
	t.Helper()
	matched := false
	for _, w := range want {
		if r.Status == w.Status && r.str("error") == w.Code {
			matched = true
		}
	}
	if !matched {
		t.Errorf("want %v, got %s", want, r)
		return
	}
	checkNoStore(t, r.Header)
	checkJSONContentType(t, r.Header)
	if d, ok := r.JSON["error_description"].(string); !ok || d == "" {
		t.Errorf("error_description missing in %s", r)
	}
	if r.has("access_token") || r.has("refresh_token") {
		t.Errorf("error response carries a token: %s", r)
	}
}

func scopeSet(s string) string {
	f := strings.Fields(s)
	sort.Strings(f)
	return strings.Join(f, " ")
}

func sameScopes(a, b string) bool { return scopeSet(a) == scopeSet(b) }

// race runs fn n times at once (released together) and returns the replies.
func race(n int, fn func(i int) (*reply, error)) ([]*reply, []error) {
	replies := make([]*reply, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			replies[i], errs[i] = fn(i)
		}()
	}
	close(start)
	wg.Wait()
	return replies, errs
}

// mustExactlyOneWinner asserts one 200 and only 400 invalid_grant besides.
func mustExactlyOneWinner(t *testing.T, replies []*reply, errs []error) *reply {
	t.Helper()
	var winner *reply
	ok := 0
	tally := map[string]int{}
	for i, r := range replies {
		if errs[i] != nil {
			tally["transport error: "+errs[i].Error()]++
			continue
		}
		key := fmt.Sprintf("%d %s", r.Status, r.str("error"))
		tally[key]++
		if r.Status == http.StatusOK {
			ok++
			winner = r
		}
	}
	want := fmt.Sprintf("%d %s", http.StatusBadRequest, "invalid_grant")
	for k, n := range tally {
		if k != "200 " && k != want {
			t.Errorf("%d replies were %q", n, k)
		}
	}
	if ok != 1 {
		t.Errorf("want exactly one 200, got %d; tally %v", ok, tally)
	}
	return winner
}
