package tests

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// echoed is what the echo upstream saw of a request that the guard let through.
type echoed struct {
	Upstream bool        `json:"upstream"` // always true: tells an upstream answer from a guard refusal
	Method   string      `json:"method"`
	URI      string      `json:"uri"`
	Host     string      `json:"host"`
	Header   http.Header `json:"header"`
	Body     string      `json:"body"`
}

// startEchoUpstream runs a plain net/http server on a free loopback port that answers every
// request with a JSON description of it. It returns host:port.
func startEchoUpstream(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
			if err != nil {
				http.Error(w, "reading body: "+err.Error(), http.StatusBadGateway)
				return
			}
			out, _ := json.Marshal(echoed{Upstream: true, Method: r.Method, URI: r.RequestURI, Host: r.Host, Header: r.Header, Body: string(body)})
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("X-Echo-Upstream", "1")
			_, _ = w.Write(out)
		}),
	}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return l.Addr().String()
}

// guardGate is a running Caddy with the oauth2 block, the auth site (`oauth2_server /o` on
// in.base) and a second site, the API, on its own port, whose handle blocks carry different
// oauth2_guard configurations in front of a real echo upstream.
type guardGate struct {
	in       *instance
	api      string // http://127.0.0.1:<api port>
	upstream string // host:port of the echo upstream
	svc      clientSpec
	app      clientSpec
	alice    userSpec
}

// guardOpts vary the generated configuration.
type guardOpts struct {
	Settings    string // lines at the top of the oauth2 block (e.g. `access_token { ttl 2s }`)
	GlobalExtra string // extra global options (e.g. debug)
	APILog      bool   // `log` in the guarded API site
}

// guardRoutes is the API site's body; %[1]s is the upstream address.
const guardRoutes = `
	# GET needs read; POST, PUT, DELETE need write; nothing else is admitted (fail closed).
	handle /rw/* {
		oauth2_guard {
			scope GET read
			scope POST,PUT,DELETE write
		}
		reverse_proxy %[1]s
	}
	# Only GET and POST are named: PATCH, PUT, DELETE are refused; HEAD follows GET.
	handle /partial/* {
		oauth2_guard {
			scope GET read
			scope POST write
		}
		reverse_proxy %[1]s
	}
	# HEAD named on its own line does not follow GET.
	handle /headnamed/* {
		oauth2_guard {
			scope GET read
			scope HEAD admin
		}
		reverse_proxy %[1]s
	}
	# A scope line and a * line: the line naming the method wins, else *.
	handle /star/* {
		oauth2_guard {
			scope DELETE admin
			scope * read
		}
		reverse_proxy %[1]s
	}
	handle /admin/* {
		oauth2_guard admin
		reverse_proxy %[1]s
	}
	handle /both/* {
		oauth2_guard read write
		reverse_proxy %[1]s
	}
	# No scopes at all: any valid token.
	handle /any/* {
		oauth2_guard
		reverse_proxy %[1]s
	}
	handle /nostrip/* {
		oauth2_guard {
			strip_token off
		}
		reverse_proxy %[1]s
	}
	handle /noquery/* {
		oauth2_guard {
			query_token off
		}
		reverse_proxy %[1]s
	}
	handle /hdr/* {
		oauth2_guard read {
			header_up X-User {oauth2.subject}
			header_up X-Who "{oauth2.client_id} as {oauth2.subject}"
			header_up -X-Auth-Scope
		}
		reverse_proxy %[1]s
	}
	handle {
		respond "not guarded" 404
	}
`

func startGuardGate(t *testing.T, o guardOpts) *guardGate {
	t.Helper()
	g := &guardGate{
		svc:   clientSpec{ID: "svc", Secret: randomSecret("svc-"), Grants: "client_credentials", Scopes: "read write admin"},
		app:   clientSpec{ID: "app", Secret: randomSecret("app-"), Grants: "password refresh_token", Scopes: "read write admin"},
		alice: alice(),
	}
	g.upstream = startEchoUpstream(t)
	apiPort := freePorts(t, 1)[0]
	g.api = fmt.Sprintf("http://127.0.0.1:%d", apiPort)
	var site strings.Builder
	fmt.Fprintf(&site, "%s {\n", g.api)
	if o.APILog {
		site.WriteString("\tlog\n")
	}
	fmt.Fprintf(&site, guardRoutes, g.upstream)
	site.WriteString("}\n")
	g.in = startGateWith(t, gateSpec{Settings: o.Settings, Clients: []clientSpec{g.svc, g.app}, Users: []userSpec{g.alice}},
		siteOptions{BasePath: "/o", GlobalExtra: o.GlobalExtra, ExtraSites: site.String()})
	return g
}

// ccToken is a client_credentials access token of svc with the given scope.
func (g *guardGate) ccToken(t *testing.T, scope string) string {
	t.Helper()
	tok := g.in.token(t, tokenCall{Form: form("grant_type", "client_credentials", "scope", scope), Basic: basic(g.svc.ID, g.svc.Secret)}).mustToken(t)
	if !sameScopes(tok.Scope, scope) {
		t.Fatalf("client_credentials granted scope %q, want %q", tok.Scope, scope)
	}
	return tok.Access
}

// pwToken is a password-grant token pair of alice through app with the given scope.
func (g *guardGate) pwToken(t *testing.T, scope string) issued {
	t.Helper()
	tok := g.in.token(t, tokenCall{Form: form("grant_type", "password", "username", g.alice.Name, "password", g.alice.Password, "scope", scope), Basic: basic(g.app.ID, g.app.Secret)}).mustToken(t)
	if tok.Refresh == "" {
		t.Fatalf("password grant gave no refresh_token")
	}
	return tok
}

// refreshCall is the refresh_token grant of app; it does not touch t (goroutines may use it).
func (g *guardGate) refreshCall(rt string) tokenCall {
	return tokenCall{Form: form("grant_type", "refresh_token", "refresh_token", rt), Basic: basic(g.app.ID, g.app.Secret)}
}

// apiCall is one request to the guarded API site.
type apiCall struct {
	Method      string      // default GET
	Path        string      // path and raw query, e.g. /rw/x?a=1
	Bearer      string      // sent as `Authorization: Bearer <Bearer>` when set
	Header      http.Header // more headers, set as given (values may repeat)
	Body        string
	ContentType string
	Chunked     bool // send the body without Content-Length (chunked)
}

// apiReply is the answer: a guard refusal (JSON error) or the upstream's echo.
type apiReply struct {
	Method string
	Status int
	Header http.Header
	Body   []byte
	JSON   map[string]any // a refusal's body
	Echo   *echoed        // what the upstream saw, when the request got through
}

func (r *apiReply) String() string {
	b := strings.TrimSpace(string(r.Body))
	if len(b) > 300 {
		b = b[:300] + "…"
	}
	return fmt.Sprintf("%d [WWW-Authenticate: %q] %s", r.Status, r.Header.Get("WWW-Authenticate"), b)
}

func (r *apiReply) str(k string) string { s, _ := r.JSON[k].(string); return s }

// send performs the call without touching t.
func (g *guardGate) send(c apiCall) (*apiReply, error) {
	method := c.Method
	if method == "" {
		method = http.MethodGet
	}
	var rd io.Reader
	if c.Body != "" {
		rd = strings.NewReader(c.Body)
		if c.Chunked {
			rd = io.MultiReader(rd) // hides the length: net/http sends it chunked
		}
	}
	req, err := http.NewRequest(method, g.api+c.Path, rd)
	if err != nil {
		return nil, err
	}
	for k, vs := range c.Header {
		req.Header[k] = append([]string(nil), vs...)
	}
	if c.Bearer != "" {
		req.Header.Set("Authorization", "Bearer "+c.Bearer)
	}
	if c.ContentType != "" {
		req.Header.Set("Content-Type", c.ContentType)
	}
	resp, err := g.in.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	r := &apiReply{Method: method, Status: resp.StatusCode, Header: resp.Header, Body: data}
	if resp.Header.Get("X-Echo-Upstream") != "" {
		var e echoed
		if err := json.Unmarshal(data, &e); err == nil && e.Upstream {
			r.Echo = &e
		} else if method == http.MethodHead {
			r.Echo = &echoed{Upstream: true, Method: method}
		}
	} else {
		var obj map[string]any
		if json.NewDecoder(bytes.NewReader(data)).Decode(&obj) == nil {
			r.JSON = obj
		}
	}
	return r, nil
}

// do performs the call; a transport error ends the test, a 5xx fails it.
func (g *guardGate) do(t *testing.T, c apiCall) *apiReply {
	t.Helper()
	r, err := g.send(c)
	if err != nil {
		t.Fatalf("%s %s: %v", c.Method, c.Path, err)
	}
	if r.Status >= 500 {
		t.Errorf("%s %s: answered %s: never a 5xx for client input", c.Method, c.Path, r)
	}
	return r
}

// mustPass asserts the request reached the upstream and returns what the upstream saw.
func (r *apiReply) mustPass(t *testing.T) *echoed {
	t.Helper()
	if r.Status != http.StatusOK || r.Echo == nil {
		t.Fatalf("want 200 from the upstream, got %s", r)
	}
	return r.Echo
}

// challenge is a parsed `WWW-Authenticate: Bearer k="v", …` value.
type challenge struct {
	Scheme string
	Params map[string]string
}

// parseChallenge parses one RFC 9110 §11.6.1 challenge with quoted-string (or token) params.
func parseChallenge(v string) (challenge, error) {
	c := challenge{Params: map[string]string{}}
	v = strings.TrimSpace(v)
	scheme, rest, _ := strings.Cut(v, " ")
	c.Scheme = scheme
	rest = strings.TrimSpace(rest)
	for rest != "" {
		k, after, ok := strings.Cut(rest, "=")
		if !ok {
			return c, fmt.Errorf("param without '=' in %q", v)
		}
		k = strings.ToLower(strings.TrimSpace(k))
		var val string
		if strings.HasPrefix(after, `"`) {
			var b strings.Builder
			i := 1
			for ; i < len(after) && after[i] != '"'; i++ {
				if after[i] == '\\' && i+1 < len(after) {
					i++
				}
				b.WriteByte(after[i])
			}
			if i >= len(after) {
				return c, fmt.Errorf("unterminated quoted string in %q", v)
			}
			val, rest = b.String(), after[i+1:]
		} else {
			val, rest, _ = strings.Cut(after, ",")
			rest = "," + rest
		}
		if _, dup := c.Params[k]; dup {
			return c, fmt.Errorf("param %s twice in %q", k, v)
		}
		c.Params[k] = strings.TrimSpace(val)
		rest = strings.TrimSpace(rest)
		if rest != "" && !strings.HasPrefix(rest, ",") {
			return c, fmt.Errorf("junk %q after param %s in %q", rest, k, v)
		}
		rest = strings.TrimSpace(strings.TrimPrefix(rest, ","))
	}
	return c, nil
}

// denial is an expected RFC 6750 §3 refusal. Code "" means "no token": no error attribute.
type denial struct {
	Status int
	Code   string
	Scope  string // when set, the scope attribute must name exactly these scopes
}

// mustDeny asserts an RFC 6750 §3 refusal: status, Bearer challenge with realm and (unless no
// token was sent) the error code, a JSON body {"error","error_description"}, no-store, and that
// the upstream never saw the request.
func (r *apiReply) mustDeny(t *testing.T, want denial) {
	t.Helper()
	if r.Status != want.Status {
		t.Errorf("status: want %d %s, got %s", want.Status, want.Code, r)
		return
	}
	if r.Echo != nil {
		t.Errorf("refused request reached the upstream: %s", r)
	}
	wa := r.Header.Values("WWW-Authenticate")
	if len(wa) != 1 {
		t.Errorf("want one WWW-Authenticate header, got %q", wa)
		return
	}
	ch, err := parseChallenge(wa[0])
	if err != nil {
		t.Errorf("WWW-Authenticate %q: %v", wa[0], err)
		return
	}
	if ch.Scheme != "Bearer" {
		t.Errorf("WWW-Authenticate scheme = %q, want Bearer (%q)", ch.Scheme, wa[0])
	}
	if ch.Params["realm"] != "oauth2gate" {
		t.Errorf("WWW-Authenticate realm = %q, want oauth2gate (%q)", ch.Params["realm"], wa[0])
	}
	if want.Code == "" {
		// RFC 6750 §3.1: a request without any authentication gets no error code.
		for _, k := range []string{"error", "error_description", "scope"} {
			if _, ok := ch.Params[k]; ok {
				t.Errorf("no token was sent, yet WWW-Authenticate has %s: %q", k, wa[0])
			}
		}
		if wa[0] != `Bearer realm="oauth2gate"` {
			t.Errorf(`WWW-Authenticate = %q, want exactly Bearer realm="oauth2gate"`, wa[0])
		}
	} else {
		if ch.Params["error"] != want.Code {
			t.Errorf("WWW-Authenticate error = %q, want %q (%q)", ch.Params["error"], want.Code, wa[0])
		}
		if r.Method != http.MethodHead && r.str("error") != want.Code {
			t.Errorf(`body "error" = %q, want %q: %s`, r.str("error"), want.Code, r.Body)
		}
	}
	if want.Scope != "" {
		got, ok := ch.Params["scope"]
		if !ok || !sameScopes(got, want.Scope) {
			t.Errorf("WWW-Authenticate scope = %q (present %v), want %q (%q)", got, ok, want.Scope, wa[0])
		}
	}
	if r.Method == http.MethodHead {
		// No body in an answer to HEAD.
	} else if r.JSON == nil {
		t.Errorf("refusal body is not a JSON object: %q", r.Body)
	} else {
		if r.str("error") == "" {
			t.Errorf(`refusal body has no "error": %s`, r.Body)
		}
		if r.str("error_description") == "" {
			t.Errorf(`refusal body has no "error_description": %s`, r.Body)
		}
	}
	checkJSONContentType(t, r.Header)
	checkNoStore(t, r.Header)
}
