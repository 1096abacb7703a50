package params

import (
	"net/url"
	"slices"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name     string
		raw      string
		want     Values
		repeated []string
		err      bool
	}{
		{"plain", "a=1&b=2", Values{"a": "1", "b": "2"}, nil, false},
		{"decoded", "a%5Fb=x+y%21", Values{"a_b": "x y!"}, nil, false},
		{"empty pairs skipped", "&a=1&&b=&", Values{"a": "1", "b": ""}, nil, false},
		{"no equals", "flag&a=1", Values{"flag": "", "a": "1"}, nil, false},
		{"repeated", "a=1&b=2&a=3&b=4&a=5", Values{"a": "1", "b": "2"}, []string{"a", "b"}, false},
		{"repeated through encoding", "client_id=x&client%5Fid=y", Values{"client_id": "x"}, []string{"client_id"}, false},
		{"bad escape in value", "a=%zz", nil, nil, true},
		{"bad escape in name", "%=1", nil, nil, true},
		{"semicolon in name", "a;b=1", nil, nil, true},
		{"semicolon in value is a value", "a=1;b=2", Values{"a": "1;b=2"}, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := Values{}
			res, err := Parse(tt.raw, v)
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			if tt.err {
				return
			}
			if len(v) != len(tt.want) {
				t.Fatalf("values %v, want %v", v, tt.want)
			}
			for k, want := range tt.want {
				if got, ok := v[k]; !ok || got != want {
					t.Errorf("%s = %q (present %v), want %q", k, got, ok, want)
				}
			}
			if !slices.Equal(res.Repeated, tt.repeated) {
				t.Errorf("repeated %v, want %v", res.Repeated, tt.repeated)
			}
		})
	}
}

func TestFindRemoveSmuggled(t *testing.T) {
	tests := []struct {
		raw, value string
		n          int
		malformed  bool
		removed    string
		smuggled   bool
	}{
		{"access_token=t1&a=1", "t1", 1, false, "a=1", false},
		{"a=1&access%5Ftoken=t%2B1&b", "t+1", 1, false, "a=1&b", false},
		{"access+token=x", "", 0, false, "access+token=x", false},
		{"access_token=a&access_token=b", "a", 2, false, "", false},
		{"access_token=%zz", "", 1, true, "", false},
		{"a=1;access_token=t", "", 0, false, "a=1;access_token=t", true},
		{"x;access%5ftoken=t&b=2", "", 0, false, "x;access%5ftoken=t&b=2", true},
		{"access_token;x=1", "", 0, false, "access_token;x=1", false},
		{"access_token", "", 1, false, "", false},
		{"&&", "", 0, false, "", false},
	}
	for _, tt := range tests {
		v, n, err := Find(tt.raw, "access_token")
		if v != tt.value || n != tt.n || (err != nil) != tt.malformed {
			t.Errorf("Find(%q) = %q, %d, %v; want %q, %d, malformed %v", tt.raw, v, n, err, tt.value, tt.n, tt.malformed)
		}
		if got := Remove(tt.raw, "access_token"); got != tt.removed {
			t.Errorf("Remove(%q) = %q, want %q", tt.raw, got, tt.removed)
		}
		if got := Smuggled(tt.raw, "access_token"); got != tt.smuggled {
			t.Errorf("Smuggled(%q) = %v, want %v", tt.raw, got, tt.smuggled)
		}
	}
}

func TestRedact(t *testing.T) {
	tests := []struct{ raw, want string }{
		{"a=1&b=2", "a=1&b=2"},
		{"access_token=t&a=1", "access_token=REDACTED&a=1"},
		{"client%5Fsecret=s&pass%77ord=p", "client%5Fsecret=REDACTED&pass%77ord=REDACTED"},
		{"a=1;code=c&code_verifier=v", "a=1;code=REDACTED&code_verifier=REDACTED"},
		{"token&x=token", "token&x=token"},
		{"id_token_hint=h&state=s", "id_token_hint=REDACTED&state=s"},
	}
	for _, tt := range tests {
		if got := Redact(tt.raw); got != tt.want {
			t.Errorf("Redact(%q) = %q, want %q", tt.raw, got, tt.want)
		}
	}
	if got := RedactURI("/o/token?code=abc&x=1"); got != "/o/token?code=REDACTED&x=1" {
		t.Errorf("RedactURI = %q", got)
	}
	if got := RedactURI("/o/token"); got != "/o/token" {
		t.Errorf("RedactURI without query = %q", got)
	}
}

func TestFindAllocatesNothingForPlainNames(t *testing.T) {
	raw := "page=2&sort=asc&access_token=abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG&x=1"
	if n := testing.AllocsPerRun(100, func() { Find(raw, "access_token") }); n != 0 {
		t.Errorf("Find allocates %v times", n)
	}
}

// widest reads raw as the most permissive upstream would: '&' and ';' both
// separate, names and values decoded where they decode.
func widest(raw string) [][2]string {
	var out [][2]string
	for _, seg := range strings.FieldsFunc(raw, func(r rune) bool { return r == '&' || r == ';' }) {
		k, v, _ := strings.Cut(seg, "=")
		if dk, err := url.QueryUnescape(k); err == nil {
			k = dk
		}
		if dv, err := url.QueryUnescape(v); err == nil {
			v = dv
		}
		out = append(out, [2]string{k, v})
	}
	return out
}

// FuzzExtractStripRedact checks that the guard's three readings agree on
// every input: whenever Find reports exactly one access_token and Smuggled
// does not refuse the request, (1) net/url reads the same token, (2) after
// Remove neither net/url nor a ';'-splitting parser sees any access_token,
// and (3) Redact leaves no secret parameter's value readable by either.
func FuzzExtractStripRedact(f *testing.F) {
	for _, seed := range []string{
		"access_token=abc", "a=1&access_token=abc&b=2", "access%5Ftoken=abc", "access_token=a%2Bb",
		"a=1;access_token=abc", "access_token=a&access_token=b", "access_token=%zz", "x=1&&access_token=",
		"code=c&code_verifier=v&client%5fsecret=s", "access_token;=1", "%61ccess_token=x", "+access_token=x",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		tok, n, err := Find(raw, "access_token")
		smuggled := Smuggled(raw, "access_token")
		if err == nil && n == 1 && !smuggled {
			q, perr := url.ParseQuery(raw)
			if vals := q["access_token"]; perr == nil && (len(vals) != 1 || vals[0] != tok) {
				t.Fatalf("Find(%q) = %q but net/url reads %q", raw, tok, vals)
			}
			stripped := Remove(raw, "access_token")
			if q2, _ := url.ParseQuery(stripped); slices.ContainsFunc(q2["access_token"], func(v string) bool { return v != "" }) {
				t.Fatalf("Remove(%q) = %q still holds access_token for net/url", raw, stripped)
			}
			for _, kv := range widest(stripped) {
				if kv[0] == "access_token" && kv[1] != "" {
					t.Fatalf("Remove(%q) = %q still holds access_token for a ';' parser", raw, stripped)
				}
			}
		}
		if n == 0 && !smuggled {
			for _, kv := range widest(raw) {
				if kv[0] == "access_token" && kv[1] != "" {
					t.Fatalf("%q: a ';' parser finds access_token, Find and Smuggled do not", raw)
				}
			}
		}
		red := Redact(raw)
		if !HasSecret(raw) && red != raw {
			t.Fatalf("Redact changed %q without a secret: %q", raw, red)
		}
		for _, kv := range widest(red) {
			if IsSecret(kv[0]) && kv[1] != "" && kv[1] != "REDACTED" {
				t.Fatalf("Redact(%q) = %q leaves %s=%q", raw, red, kv[0], kv[1])
			}
		}
		if q, err := url.ParseQuery(red); err == nil {
			for k, vs := range q {
				for _, v := range vs {
					if IsSecret(k) && v != "" && v != "REDACTED" {
						t.Fatalf("Redact(%q) = %q leaves %s=%q for net/url", raw, red, k, v)
					}
				}
			}
		}
	})
}
