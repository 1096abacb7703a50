package gateway

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/oauth2gate/oauth2gate/authz/oautherr"
)

// tokens is a Verifier over a fixed set of tokens: the guard's own logic
// (extraction, rules, refusals) is tested apart from any token store.
type tokens map[string]*Identity

func (m tokens) Verify(_ context.Context, tok string) (*Identity, error) {
	if id, ok := m[tok]; ok {
		return id, nil
	}
	if tok == "store-down" {
		return nil, errors.New("redis: connection refused")
	}
	return nil, InvalidToken
}

const readTok = "read-token-0123456789"

func known() tokens {
	exp := time.Now().Add(time.Hour)
	return tokens{
		readTok:         {Subject: "svc", ClientID: "svc", Scope: "read", ExpiresAt: exp},
		"admin-token-1": {Subject: "svc", ClientID: "svc", Scope: "read admin", ExpiresAt: exp},
	}
}

func mustRules(t testing.TB, inline []string, lines ...MethodScopes) ScopeRules {
	t.Helper()
	r, err := NewScopeRules(inline, lines)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestScopeRules(t *testing.T) {
	perMethod := mustRules(t, nil, MethodScopes{[]string{"GET"}, []string{"read"}}, MethodScopes{[]string{"POST", "PUT", "DELETE"}, []string{"write"}})
	withStar := mustRules(t, []string{"base"}, MethodScopes{[]string{"DELETE"}, []string{"admin"}})
	none := mustRules(t, nil)
	tests := []struct {
		name    string
		r       ScopeRules
		method  string
		want    string
		allowed bool
	}{
		{"GET named", perMethod, "GET", "read", true},
		{"HEAD follows GET", perMethod, "HEAD", "read", true},
		{"PUT in list", perMethod, "PUT", "write", true},
		{"PATCH fails closed", perMethod, "PATCH", "", false},
		{"star default", withStar, "GET", "base", true},
		{"named beats star", withStar, "DELETE", "admin", true},
		{"no rules: any token", none, "PATCH", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := tt.r.Required(tt.method)
			if ok != tt.allowed || got.String() != tt.want {
				t.Fatalf("Required(%s) = %q, %v; want %q, %v", tt.method, got.String(), ok, tt.want, tt.allowed)
			}
		})
	}
	for _, bad := range [][]MethodScopes{
		{{[]string{"GET"}, []string{"a"}}, {[]string{"GET"}, []string{"b"}}},
		{{[]string{"GE T"}, []string{"a"}}},
		{{[]string{"GET_X"}, []string{"a"}}},
	} {
		if _, err := NewScopeRules(nil, bad); err == nil {
			t.Errorf("NewScopeRules(%v) accepted", bad)
		}
	}
}

func TestRFC6750Table(t *testing.T) {
	rules := mustRules(t, nil, MethodScopes{[]string{"GET"}, []string{"read"}}, MethodScopes{[]string{"POST"}, []string{"write"}})
	g := New(known(), rules, Options{Realm: "api", QueryToken: true, FormToken: true})
	tests := []struct {
		name    string
		method  string
		target  string
		auth    string
		body    string
		status  int
		errCode string
	}{
		{"no token", "GET", "/x", "", "", 401, ""},
		{"header", "GET", "/x", "Bearer " + readTok, "", 0, ""},
		{"lower-case scheme", "GET", "/x", "bearer " + readTok, "", 0, ""},
		{"extra spaces", "GET", "/x", "Bearer    " + readTok + "  ", "", 0, ""},
		{"query", "GET", "/x?access_token=" + readTok, "", "", 0, ""},
		{"query, encoded name", "GET", "/x?access%5Ftoken=" + readTok, "", "", 0, ""},
		{"form", "POST", "/x", "", "access_token=" + readTok, 403, "insufficient_scope"},
		{"header and query", "GET", "/x?access_token=" + readTok, "Bearer " + readTok, "", 400, "invalid_request"},
		{"header and form", "POST", "/x", "Bearer " + readTok, "access_token=" + readTok, 400, "invalid_request"},
		{"repeated query", "GET", "/x?access_token=a&access_token=b", "", "", 400, "invalid_request"},
		{"repeated through encoding", "GET", "/x?access_token=a&access%5ftoken=b", "", "", 400, "invalid_request"},
		{"smuggled behind ;", "GET", "/x?a=1;access_token=" + readTok, "Bearer " + readTok, "", 400, "invalid_request"},
		{"smuggled in a form", "POST", "/x", "Bearer " + readTok, "a=1;access_token=x", 400, "invalid_request"},
		{"undecodable query token", "GET", "/x?access_token=%zz", "", "", 400, "invalid_request"},
		{"empty bearer", "GET", "/x", "Bearer ", "", 400, "invalid_request"},
		{"two Authorization headers", "GET", "/x", "", "", 400, "invalid_request"},
		{"outside b64token", "GET", "/x", "Bearer a\"b", "", 401, "invalid_token"},
		{"non-utf8", "GET", "/x", "Bearer \xff\xfe", "", 401, "invalid_token"},
		{"huge", "GET", "/x", "Bearer " + strings.Repeat("a", 1<<20), "", 401, "invalid_token"},
		{"unknown", "GET", "/x", "Bearer unknowntoken", "", 401, "invalid_token"},
		{"scope missing", "POST", "/x", "Bearer " + readTok, "", 403, "insufficient_scope"},
		{"method not admitted", "PATCH", "/x", "Bearer " + readTok, "", 403, "insufficient_scope"},
		{"lower-case method", "post", "/x", "Bearer " + readTok, "", 400, "invalid_request"},
		{"basic is not bearer", "GET", "/x", "Basic Zm9vOmJhcg==", "", 401, ""},
		{"store down", "GET", "/x", "Bearer store-down", "", 503, "temporarily_unavailable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", tt.target, strings.NewReader(tt.body))
			r.Method = tt.method
			if tt.body != "" {
				r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			}
			if tt.auth != "" {
				r.Header["Authorization"] = []string{tt.auth}
			}
			if tt.name == "two Authorization headers" {
				r.Header["Authorization"] = []string{"Bearer " + readTok, "Bearer " + readTok}
			}
			id, _, e := g.Check(r)
			if tt.status == 0 {
				if e != nil || id == nil || id.Subject != "svc" {
					t.Fatalf("want pass, got %+v", e)
				}
				return
			}
			if e == nil || e.Status != tt.status || e.Code != tt.errCode {
				t.Fatalf("got %+v, want %d %q", e, tt.status, tt.errCode)
			}
			w := httptest.NewRecorder()
			WriteRefusal(w, g.Realm(), e)
			wa := w.Header().Get("WWW-Authenticate")
			if tt.status == 503 {
				if wa != "" || !errors.Is(e, oautherr.TemporarilyUnavailable) || e.Cause() == nil {
					t.Fatalf("503: challenge %q, cause %v", wa, e.Cause())
				}
				return
			}
			if !strings.HasPrefix(wa, `Bearer realm="api"`) {
				t.Fatalf("WWW-Authenticate = %q", wa)
			}
			if tt.errCode != "" && !strings.Contains(wa, `error="`+tt.errCode+`"`) {
				t.Fatalf("WWW-Authenticate = %q lacks the error", wa)
			}
			if tt.name == "scope missing" && !strings.Contains(wa, `scope="write"`) {
				t.Fatalf("WWW-Authenticate = %q lacks scope", wa)
			}
			if w.Code != tt.status || w.Header().Get("Cache-Control") != "no-store" || !strings.Contains(w.Body.String(), `"error":"`) {
				t.Fatalf("refusal %d %v %s", w.Code, w.Header(), w.Body)
			}
		})
	}
}

// TestFinding1_MethodSpellingsCannotBypassMethodScopes: scope lines are
// upper case; a method in any other spelling (which an upstream may well
// upper-case and run) is refused before its token is even looked at.
func TestFinding1_MethodSpellingsCannotBypassMethodScopes(t *testing.T) {
	rules := mustRules(t, []string{"read"}, MethodScopes{[]string{"POST", "PUT", "PATCH", "DELETE"}, []string{"write"}})
	g := New(known(), rules, Options{})
	check := func(method string) *oautherr.Error {
		r := httptest.NewRequest("GET", "/orders/1", nil)
		r.Method = method
		r.Header.Set("Authorization", "Bearer "+readTok)
		_, _, e := g.Check(r)
		return e
	}
	for _, m := range []string{"delete", "Delete", "dELETE", "DELETe", "post", "Post", "put", "patch", "PaTcH", "get", "Get", "head", "options",
		"DELETE ", " DELETE", "DEL ETE", "DELETE\t", "DELETE_", "D.ELETE", "DÉLETE", "DELETE\x00", "ＤＥＬＥＴＥ"} {
		if e := check(m); e == nil || e.Status != http.StatusBadRequest || e.Code != "invalid_request" {
			t.Errorf("method %q with a read token: %+v, want 400 invalid_request", m, e)
		}
	}
	for _, m := range []string{"DELETE", "POST", "PUT", "PATCH"} {
		if e := check(m); e == nil || e.Code != "insufficient_scope" {
			t.Errorf("method %q with a read token: %+v, want 403 insufficient_scope", m, e)
		}
	}
	for _, m := range []string{"GET", "HEAD", "OPTIONS", "M-SEARCH", "PROPFIND"} {
		if e := check(m); e != nil {
			t.Errorf("method %q with a read token: %+v, want pass (the * line)", m, e)
		}
	}
}

func TestStrip(t *testing.T) {
	g := New(known(), mustRules(t, nil), Options{QueryToken: true, FormToken: true})
	r := httptest.NewRequest("GET", "/x?a=1&access_token="+readTok+"&b=%20", nil)
	_, src, e := g.Check(r)
	if e != nil || src != FromQuery {
		t.Fatalf("check: %v %v", e, src)
	}
	Strip(r, src)
	if r.URL.RawQuery != "a=1&b=%20" || r.RequestURI != "/x?a=1&b=%20" {
		t.Fatalf("query after strip: %q %q", r.URL.RawQuery, r.RequestURI)
	}
	r = httptest.NewRequest("POST", "/x", strings.NewReader("z=9&access_token="+readTok+"&y=%2B"))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if _, src, e = g.Check(r); e != nil || src != FromForm {
		t.Fatalf("form check: %v %v", e, src)
	}
	Strip(r, src)
	body, _ := io.ReadAll(r.Body)
	if string(body) != "z=9&y=%2B" || r.ContentLength != int64(len(body)) || r.Header.Get("Content-Length") != "9" {
		t.Fatalf("body after strip: %q, length %d / %q", body, r.ContentLength, r.Header.Get("Content-Length"))
	}
	r = httptest.NewRequest("GET", "/x", nil)
	r.Header.Set("Authorization", "Bearer "+readTok)
	Strip(r, FromHeader)
	if r.Header.Get("Authorization") != "" {
		t.Fatal("Authorization kept")
	}
}

// TestLargeBodyWithHeaderTokenIsPassedOnWhole: an upload beyond the form
// limit is not the token's carrier when the header has it.
func TestLargeBodyWithHeaderTokenIsPassedOnWhole(t *testing.T) {
	g := New(known(), mustRules(t, nil), Options{FormToken: true})
	big := strings.Repeat("a=1&", maxForm)
	r := httptest.NewRequest("POST", "/x", strings.NewReader(big))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.Header.Set("Authorization", "Bearer "+readTok)
	if _, _, e := g.Check(r); e != nil {
		t.Fatal(e)
	}
	if b, _ := io.ReadAll(r.Body); string(b) != big {
		t.Fatalf("body changed: %d bytes of %d", len(b), len(big))
	}
	r = httptest.NewRequest("POST", "/x", strings.NewReader(big))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if _, _, e := g.Check(r); e == nil || e.Code != "invalid_request" {
		t.Fatalf("a too-large form as the only carrier: %+v", e)
	}
}

// FuzzBearerExtraction: whatever the header, query, body and method, only a
// known token passes, only from one place, and once stripped it is nowhere
// in the request under any reading; every refusal is 400, 401 or 403 with a
// well-formed challenge.
func FuzzBearerExtraction(f *testing.F) {
	ids := known()
	g := New(ids, mustRules(f, []string{"read"}), Options{QueryToken: true, FormToken: true})
	f.Add("Bearer "+readTok, "access_token=abc", "access_token=abc", "POST")
	f.Add("bearer   x==", "", "", "GET")
	f.Add("Bearer \xff", "access_token=%ff&access_token=1", "a=%zz", "PUT")
	f.Add("Basic Zm9v", "", "", "GET")
	f.Add("", "a=1;access_token="+readTok, "", "GET")
	f.Add("", "access%5Ftoken="+readTok+"&b=2", "", "GET")
	f.Add("", "", "x=1&access_token="+readTok, "POST")
	f.Fuzz(func(t *testing.T, auth, query, body, method string) {
		if len(method) > 12 || method == "" || strings.ContainsAny(method, " \t\r\n") {
			method = http.MethodGet
		}
		r := httptest.NewRequest(http.MethodGet, "/x", strings.NewReader(body))
		r.Method = method
		r.URL.RawQuery = query
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if auth != "" {
			r.Header["Authorization"] = []string{auth}
		}
		id, src, e := g.Check(r)
		if e != nil {
			switch e.Status {
			case 400, 401, 403:
			default:
				t.Fatalf("status %d", e.Status)
			}
			wa := Challenge(g.Realm(), e)
			if !strings.HasPrefix(wa, `Bearer realm="oauth2gate"`) || !utf8.ValidString(wa) || strings.ContainsAny(wa, "\r\n") {
				t.Fatalf("bad WWW-Authenticate %q", wa)
			}
			return
		}
		if id == nil || (id != ids[readTok] && id != ids["admin-token-1"]) {
			t.Fatalf("an unknown token passed: auth=%q query=%q body=%q", auth, query, body)
		}
		Strip(r, src)
		rest, _ := io.ReadAll(r.Body)
		for tok := range ids {
			for _, where := range []string{r.Header.Get("Authorization"), r.URL.RawQuery, string(rest)} {
				if strings.Contains(where, tok) || strings.Contains(where, url.QueryEscape(tok)) {
					q, _ := url.ParseQuery(where)
					if q.Get("access_token") != "" || strings.Contains(where, "Bearer") {
						t.Fatalf("token left after Strip(%v): %q", src, where)
					}
				}
			}
		}
	})
}
