package cors

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

func TestCheckOrigin(t *testing.T) {
	tests := []struct {
		origin string
		want   string // a word of the error, or "" for accepted
	}{
		{"https://spa.example.com", ""},
		{"http://127.0.0.1:8081", ""},
		{"http://localhost:3000", ""},
		{"https://[::1]:8443", ""},
		{"https://xn--bcher-kva.example", ""},
		{"capacitor://localhost", ""},
		{"", "empty"},
		{"null", "sandboxed"},
		{"*", "wildcard"},
		{"https://*.example.com", "wildcard"},
		{"https://spa.example.com/", "trailing slash"},
		{"https://spa.example.com/app", "no path"},
		{"https://spa.example.com?x", "no path"},
		{"https://spa.example.com#x", "no path"},
		{"https://spa.example.com?", "no path"},
		{"HTTPS://spa.example.com", "lower case"},
		{"https://SPA.example.com", "lower case"},
		{"https://spa.example.com:443", "default port"},
		{"http://spa.example.com:80", "default port"},
		{"https://spa.example.com:0443", "bad port"},
		{"https://spa.example.com:99999", "bad port"},
		{"https://spa.example.com:", "empty port"},
		{"https://user@spa.example.com", "user info"},
		{"https://bücher.example", "punycode"},
		{"https://spa.example.com ", "punycode"},
		{"spa.example.com", "scheme://host"},
		{"//spa.example.com", "scheme://host"},
		{"https://", "scheme://host"},
		{"mailto:a@b", "scheme://host"},
		{"https://[::1", "scheme://host"},
		{"https://[zz]:1", "scheme://host"},
		{"https://[fe80::1%25en0]:1", "IPv6"},
	}
	for _, tt := range tests {
		t.Run(tt.origin, func(t *testing.T) {
			err := CheckOrigin(tt.origin)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("CheckOrigin(%q) = %v, want accepted", tt.origin, err)
			case tt.want != "" && err == nil:
				t.Fatalf("CheckOrigin(%q) accepted, want an error about %q", tt.origin, tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Fatalf("CheckOrigin(%q) = %v, want it to mention %q", tt.origin, err, tt.want)
			}
		})
	}
}

// Only the exact serialization a browser sends matches: every other
// spelling of the same origin, and null, get no CORS headers.
func TestSetMatchIsExact(t *testing.T) {
	s, err := NewSet([]string{"https://spa.example.com", "http://127.0.0.1:8081"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		origins []string
		want    string
	}{
		{[]string{"https://spa.example.com"}, "https://spa.example.com"},
		{[]string{"http://127.0.0.1:8081"}, "http://127.0.0.1:8081"},
		{nil, ""},
		{[]string{""}, ""},
		{[]string{"null"}, ""},
		{[]string{"HTTPS://SPA.EXAMPLE.COM"}, ""},
		{[]string{"https://Spa.example.com"}, ""},
		{[]string{"https://spa.example.com/"}, ""},
		{[]string{"https://spa.example.com:443"}, ""},
		{[]string{"http://spa.example.com"}, ""},
		{[]string{"https://spa.example.com.evil.test"}, ""},
		{[]string{"https://evilspa.example.com"}, ""},
		{[]string{"https://spa.example.co"}, ""},
		{[]string{" https://spa.example.com"}, ""},
		{[]string{"https://spa.example.com\x00"}, ""},
		{[]string{"http://127.0.0.1:8082"}, ""},
		{[]string{"http://localhost:8081"}, ""},
		{[]string{"https://spa.example.com", "https://spa.example.com"}, ""},
		{[]string{"https://spa.example.com, https://evil.test"}, ""},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header["Origin"] = tt.origins
		if got := s.Match(r); got != tt.want {
			t.Errorf("Origin %q: Match = %q, want %q", tt.origins, got, tt.want)
		}
	}
	if _, err := NewSet([]string{"https://ok.test", "null"}); err == nil {
		t.Error("NewSet accepted null")
	}
}

func TestIsPreflight(t *testing.T) {
	tests := []struct {
		method, origin, acrm string
		want                 bool
	}{
		{"OPTIONS", "https://a.test", "POST", true},
		{"OPTIONS", "https://a.test", "", false},
		{"OPTIONS", "", "POST", false},
		{"GET", "https://a.test", "POST", false},
		{"options", "https://a.test", "POST", false},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Method = tt.method
		if tt.origin != "" {
			r.Header.Set("Origin", tt.origin)
		}
		if tt.acrm != "" {
			r.Header.Set(RequestMethod, tt.acrm)
		}
		if got := IsPreflight(r); got != tt.want {
			t.Errorf("%s Origin=%q ACRM=%q: IsPreflight = %v, want %v", tt.method, tt.origin, tt.acrm, got, tt.want)
		}
	}
}

func TestRequestedHeaders(t *testing.T) {
	tests := []struct {
		name   string
		values []string
		want   []string
		ok     bool
	}{
		{"none", nil, nil, true},
		{"one", []string{"Authorization"}, []string{"authorization"}, true},
		{"list, spaces, case, duplicates", []string{"X-B, authorization ,x-a", "X-A"}, []string{"authorization", "x-a", "x-b"}, true},
		{"empty items", []string{", ,"}, nil, true},
		{"not a token", []string{"x-a, x b"}, nil, false},
		{"separator", []string{"x-a;x-b"}, nil, false},
		{"quote", []string{`"x-a"`}, nil, false},
		{"too many", []string{strings.Repeat("x-h,", 33) + strings.Join(func() []string {
			var s []string
			for i := 0; i < 33; i++ {
				s = append(s, "x-"+string(rune('a'+i%26))+strings.Repeat("z", i))
			}
			return s
		}(), ",")}, nil, false},
		{"32 is fine", []string{strings.Join(func() []string {
			var s []string
			for i := 0; i < 32; i++ {
				s = append(s, "x-"+strings.Repeat("z", i+1))
			}
			return s
		}(), ",")}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodOptions, "/", nil)
			r.Header[RequestHeaders] = tt.values
			got, ok := RequestedHeaders(r)
			if ok != tt.ok {
				t.Fatalf("ok = %v, want %v (%q)", ok, tt.ok, got)
			}
			if tt.want != nil && !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("names = %q, want %q", got, tt.want)
			}
			if !ok && got != nil {
				t.Fatalf("a refused list returned names %q", got)
			}
		})
	}
}

func TestAddVary(t *testing.T) {
	tests := []struct {
		have []string
		add  []string
		want []string
	}{
		{nil, []string{"Origin"}, []string{"Origin"}},
		{[]string{"Accept-Encoding"}, []string{"Origin"}, []string{"Accept-Encoding, Origin"}},
		{[]string{"origin"}, []string{"Origin"}, []string{"origin"}},
		{[]string{"Origin", "Accept-Encoding, Origin"}, []string{"Origin"}, []string{"Origin, Accept-Encoding"}},
		{nil, []string{"Origin", "Origin"}, []string{"Origin"}},
	}
	for _, tt := range tests {
		h := http.Header{}
		if tt.have != nil {
			h["Vary"] = tt.have
		}
		AddVary(h, tt.add...)
		if !reflect.DeepEqual(h["Vary"], tt.want) {
			t.Errorf("Vary %q + %q = %q, want %q", tt.have, tt.add, h["Vary"], tt.want)
		}
	}
}

func TestPreflightWrite(t *testing.T) {
	w := httptest.NewRecorder()
	w.Header().Set(AllowCredentials, "true")
	Preflight{Origin: "https://a.test", Methods: []string{"GET", "POST"}, Headers: []string{"authorization"}}.Write(w)
	h := w.Result().Header
	if w.Code != http.StatusNoContent || h.Get(AllowOrigin) != "https://a.test" || h.Get(AllowMethods) != "GET, POST" ||
		h.Get(AllowHeaders) != "authorization" || h.Get(MaxAge) != "600" || h.Get(AllowCredentials) != "" ||
		h.Get("Vary") != "Origin, Access-Control-Request-Method, Access-Control-Request-Headers" {
		t.Errorf("preflight answer %d %v", w.Code, h)
	}
	w = httptest.NewRecorder()
	Preflight{Origin: "*", Methods: []string{"GET"}}.Write(w)
	if h := w.Result().Header; h.Get(AllowOrigin) != "*" || h.Get("Vary") != "" || h.Get(AllowHeaders) != "" {
		t.Errorf("wildcard preflight answer %v", h)
	}
}

// TakeOver leaves one Allow-Origin (the guard's), never the upstream's
// Allow-Credentials, and keeps the names the upstream exposes.
func TestTakeOver(t *testing.T) {
	upstream := func() http.Header {
		h := http.Header{}
		h.Add(AllowOrigin, "*")
		h.Add(AllowOrigin, "https://upstream.test")
		h.Add(AllowCredentials, "true")
		h.Add(AllowMethods, "DELETE")
		h.Add(MaxAge, "86400")
		h.Add(ExposeHeaders, "X-Total-Count, www-authenticate")
		h.Add(ExposeHeaders, "*, bad header, X-Page")
		h.Add("Vary", "Accept-Encoding")
		h.Add("Content-Type", "application/json")
		return h
	}
	h := upstream()
	TakeOver(h, "https://a.test", "WWW-Authenticate, Retry-After")
	want := http.Header{
		AllowOrigin:    {"https://a.test"},
		ExposeHeaders:  {"WWW-Authenticate, Retry-After, X-Total-Count, X-Page"},
		"Vary":         {"Accept-Encoding, Origin"},
		"Content-Type": {"application/json"},
	}
	if !reflect.DeepEqual(h, want) {
		t.Errorf("listed origin: headers\n %v\nwant\n %v", h, want)
	}
	h = upstream()
	TakeOver(h, "", "WWW-Authenticate")
	want = http.Header{"Vary": {"Accept-Encoding, Origin"}, "Content-Type": {"application/json"}}
	if !reflect.DeepEqual(h, want) {
		t.Errorf("unlisted origin: headers\n %v\nwant\n %v", h, want)
	}
	// Twice is the same as once (the guard sets them, then the writer again).
	h = upstream()
	TakeOver(h, "https://a.test", "WWW-Authenticate")
	once := h.Clone()
	TakeOver(h, "https://a.test", "WWW-Authenticate")
	if !reflect.DeepEqual(h, once) {
		t.Errorf("TakeOver twice: %v, once: %v", h, once)
	}
}

// FuzzCheckOrigin: an accepted origin is exactly what a browser would
// serialize for it (scheme://host[:port] of its own parse, lower case, no
// wildcard, not null), and the set made of it matches it and nothing else.
func FuzzCheckOrigin(f *testing.F) {
	for _, s := range []string{"https://spa.test", "http://127.0.0.1:8081", "https://[::1]:8443", "HTTPS://x", "https://x/", "null", "*", "https://x:443", "a://b", "https://%41"} {
		f.Add(s, s)
	}
	f.Fuzz(func(t *testing.T, o, other string) {
		if CheckOrigin(o) != nil {
			return
		}
		u, err := url.Parse(o)
		if err != nil || u.Scheme+"://"+u.Host != o || strings.ToLower(o) != o || strings.Contains(o, "*") || o == "null" {
			t.Fatalf("accepted %q (parsed %v, %v)", o, u, err)
		}
		s, err := NewSet([]string{o})
		if err != nil {
			t.Fatal(err)
		}
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header["Origin"] = []string{other}
		if got := s.Match(r); (got != "") != (other == o) {
			t.Fatalf("set of %q matched Origin %q: %q", o, other, got)
		}
	})
}
