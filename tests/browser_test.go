package tests

import (
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"testing"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"

	"github.com/oauth2gate/oauth2gate/internal/proclog"
)

// browser is a user agent with a cookie jar that follows no redirect by itself, so every hop of
// the login and consent dance can be inspected.
type browser struct {
	t  *testing.T
	in *instance
	c  *http.Client
	// unavailableOK lets 503 through (a test that takes the store away); any other 5xx is an
	// error.
	unavailableOK bool
}

func (in *instance) newBrowser(t *testing.T) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, in: in, c: &http.Client{
		Transport:     in.transport,
		Jar:           jar,
		Timeout:       requestTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

// page is one response as the browser saw it.
type page struct {
	URL    *url.URL
	Status int
	Header http.Header
	Body   string
	Forms  []htmlForm
}

type htmlForm struct {
	Method  string
	Action  *url.URL
	Hidden  url.Values
	Visible []string // names of the other inputs
	Buttons []formButton
}

type formButton struct{ Name, Value string }

func (f htmlForm) hasInput(name string) bool {
	if f.Hidden.Has(name) {
		return true
	}
	for _, n := range f.Visible {
		if n == name {
			return true
		}
	}
	return false
}

func (f htmlForm) hasButton(name, value string) bool {
	for _, b := range f.Buttons {
		if b.Name == name && b.Value == value {
			return true
		}
	}
	return false
}

func (b *browser) get(rawURL string) *page {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Accept", "text/html")
	return b.do(req)
}

// post sends a form as a browser would, with Origin and Referer set.
func (b *browser) post(from *page, target *url.URL, values url.Values) *page {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodPost, target.String(), strings.NewReader(values.Encode()))
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "text/html")
	req.Header.Set("Origin", b.in.base)
	if from != nil {
		req.Header.Set("Referer", from.URL.String())
	}
	return b.do(req)
}

func (b *browser) do(req *http.Request) *page {
	b.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		b.t.Fatalf("%s %s: reading body: %v", req.Method, req.URL, err)
	}
	p := &page{URL: req.URL, Status: resp.StatusCode, Header: resp.Header, Body: string(data)}
	if resp.StatusCode >= 500 && !(b.unavailableOK && resp.StatusCode == http.StatusServiceUnavailable) {
		b.t.Errorf("%s %s answered %d: never a 5xx\n%s", req.Method, req.URL.Path, resp.StatusCode, p.Body)
	}
	p.Forms = parseForms(p.Body, p.URL)
	if loc := p.location(); loc != nil {
		b.rememberRedirect(loc)
	}
	return p
}

// rememberRedirect records codes and tokens carried by a redirect so the log check knows them.
func (b *browser) rememberRedirect(loc *url.URL) {
	for _, vals := range []url.Values{loc.Query(), fragmentValues(loc)} {
		for _, k := range []string{"code", "access_token", "refresh_token", "id_token"} {
			for _, v := range vals[k] {
				b.in.remember(k, v)
			}
		}
	}
}

func fragmentValues(u *url.URL) url.Values {
	v, _ := url.ParseQuery(u.EscapedFragment())
	return v
}

// location is the Location header resolved against the page URL, or nil.
func (p *page) location() *url.URL {
	l := p.Header.Get("Location")
	if l == "" {
		return nil
	}
	u, err := p.URL.Parse(l)
	if err != nil {
		return nil
	}
	return u
}

func (p *page) form(match func(htmlForm) bool) (htmlForm, bool) {
	for _, f := range p.Forms {
		if match(f) {
			return f, true
		}
	}
	return htmlForm{}, false
}

func (p *page) loginForm() (htmlForm, bool) {
	return p.form(func(f htmlForm) bool { return f.hasInput("username") && f.hasInput("password") })
}

func (p *page) consentForm() (htmlForm, bool) {
	return p.form(func(f htmlForm) bool {
		return f.hasButton("decision", "allow") && f.hasButton("decision", "deny")
	})
}

func (p *page) String() string {
	return p.URL.String() + " -> " + http.StatusText(p.Status) + " " + p.Header.Get("Location") + "\n" + proclog.Tail(p.Body, 2000)
}

// text is the page's visible text.
func (p *page) text() string {
	doc, err := html.Parse(strings.NewReader(p.Body))
	if err != nil {
		return p.Body
	}
	var sb strings.Builder
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && (n.DataAtom == atom.Script || n.DataAtom == atom.Style) {
			return
		}
		if n.Type == html.TextNode {
			sb.WriteString(n.Data)
			sb.WriteString(" ")
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(doc)
	return sb.String()
}

func parseForms(body string, base *url.URL) []htmlForm {
	doc, err := html.Parse(strings.NewReader(body))
	if err != nil {
		return nil
	}
	var forms []htmlForm
	var walk func(n *html.Node, f *htmlForm)
	walk = func(n *html.Node, f *htmlForm) {
		if n.Type == html.ElementNode {
			switch n.DataAtom {
			case atom.Form:
				nf := htmlForm{Method: strings.ToUpper(attr(n, "method")), Hidden: url.Values{}}
				if nf.Method == "" {
					nf.Method = http.MethodGet
				}
				nf.Action = base
				if a, ok := attrOK(n, "action"); ok && a != "" {
					if u, err := base.Parse(a); err == nil {
						nf.Action = u
					}
				}
				for c := n.FirstChild; c != nil; c = c.NextSibling {
					walk(c, &nf)
				}
				forms = append(forms, nf)
				return
			case atom.Input:
				if f != nil {
					name := attr(n, "name")
					switch strings.ToLower(attr(n, "type")) {
					case "hidden":
						if name != "" {
							f.Hidden.Add(name, attr(n, "value"))
						}
					case "submit", "image":
						f.Buttons = append(f.Buttons, formButton{name, attr(n, "value")})
					default:
						if name != "" {
							f.Visible = append(f.Visible, name)
						}
					}
				}
			case atom.Button:
				if f != nil {
					if typ := strings.ToLower(attr(n, "type")); typ == "" || typ == "submit" {
						f.Buttons = append(f.Buttons, formButton{attr(n, "name"), attr(n, "value")})
					}
				}
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c, f)
		}
	}
	walk(doc, nil)
	return forms
}

func attr(n *html.Node, key string) string {
	v, _ := attrOK(n, key)
	return v
}

func attrOK(n *html.Node, key string) (string, bool) {
	for _, a := range n.Attr {
		if strings.EqualFold(a.Key, key) {
			return a.Val, true
		}
	}
	return "", false
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

var csrfFieldName = regexp.MustCompile(`(?i)csrf|xsrf|authenticity|nonce|^_?token$|form_?token`)

// csrfField names the form's hidden anti-CSRF input: by its name, or else the one hidden value that
// looks random (long, and not one of the authorization request's parameters).
func csrfField(f htmlForm, request url.Values) (string, bool) {
	var names []string
	for n := range f.Hidden {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if csrfFieldName.MatchString(n) {
			return n, true
		}
	}
	for _, n := range names {
		v := f.Hidden.Get(n)
		if len(v) >= 16 && !request.Has(n) && !strings.Contains(v, "=") && !strings.Contains(v, "&") {
			return n, true
		}
	}
	return "", false
}

func (b *browser) submitLogin(p *page, user, pass string) *page {
	b.t.Helper()
	f, ok := p.loginForm()
	if !ok {
		b.t.Fatalf("no login form on %s", p)
	}
	if f.Method != http.MethodPost {
		b.t.Errorf("login form method = %q, want POST", f.Method)
	}
	v := cloneValues(f.Hidden)
	v.Set("username", user)
	v.Set("password", pass)
	b.in.remember("password", pass)
	return b.post(p, f.Action, v)
}

func (b *browser) submitConsent(p *page, decision string) *page {
	b.t.Helper()
	f, ok := p.consentForm()
	if !ok {
		b.t.Fatalf("no consent form on %s", p)
	}
	if f.Method != http.MethodPost {
		b.t.Errorf("consent form method = %q, want POST", f.Method)
	}
	v := cloneValues(f.Hidden)
	v.Set("decision", decision)
	return b.post(p, f.Action, v)
}

// authResult is the end of an authorization request: the redirect back to the client.
type authResult struct {
	Redirect    *url.URL
	Status      int
	SawLogin    bool
	SawConsent  bool
	ConsentPage *page
}

func isRedirect(status int) bool {
	switch status {
	case 301, 302, 303, 307, 308:
		return true
	}
	return false
}

func (b *browser) isOwnURL(u *url.URL) bool {
	return u.Host == b.in.host() && strings.HasPrefix(u.Path, b.in.basePath)
}

// authorize walks GET /authorize, the login page (if shown) and the consent page (if shown,
// answering decision) until the server redirects to the client.
func (b *browser) authorize(params url.Values, user, pass, decision string) authResult {
	b.t.Helper()
	return b.authorizeURL(b.in.url("/authorize")+"?"+params.Encode(), user, pass, decision)
}

func (b *browser) authorizeURL(start, user, pass, decision string) authResult {
	t := b.t
	t.Helper()
	var res authResult
	p := b.get(start)
	for range 10 {
		switch {
		case isRedirect(p.Status):
			loc := p.location()
			if loc == nil {
				t.Fatalf("redirect without Location: %s", p)
			}
			if b.isOwnURL(loc) {
				p = b.get(loc.String())
				continue
			}
			if p.Status != http.StatusFound && p.Status != http.StatusSeeOther {
				t.Errorf("redirect to the client with status %d, want 302 or 303", p.Status)
			}
			res.Redirect, res.Status = loc, p.Status
			return res
		case p.Status == http.StatusOK && hasForm(p.loginForm):
			if res.SawLogin {
				t.Fatalf("login page shown again after logging in as %q: %s", user, p)
			}
			res.SawLogin = true
			p = b.submitLogin(p, user, pass)
			if p.Status != http.StatusSeeOther {
				t.Fatalf("login POST: want 303 See Other, got %s", p)
			}
		case p.Status == http.StatusOK && hasForm(p.consentForm):
			if res.SawConsent {
				t.Fatalf("consent page shown twice: %s", p)
			}
			res.SawConsent, res.ConsentPage = true, p
			p = b.submitConsent(p, decision)
		default:
			t.Fatalf("unexpected page during authorization: %s", p)
		}
	}
	t.Fatalf("authorization did not reach the client within 10 hops")
	return res
}

func hasForm(find func() (htmlForm, bool)) bool {
	_, ok := find()
	return ok
}

// login makes the browser logged in, through an authorization request that stops at consent.
func (b *browser) login(params url.Values, user, pass string) *page {
	b.t.Helper()
	p := b.get(b.in.url("/authorize") + "?" + params.Encode())
	if _, ok := p.loginForm(); !ok {
		b.t.Fatalf("want the login page, got %s", p)
	}
	p = b.submitLogin(p, user, pass)
	if p.Status != http.StatusSeeOther {
		b.t.Fatalf("login POST: want 303, got %s", p)
	}
	return b.get(p.location().String())
}

// authParams are the parameters of an authorization request.
func authParams(clientID, redirectURI, responseType, scope, state string) url.Values {
	v := url.Values{}
	if clientID != "" {
		v.Set("client_id", clientID)
	}
	if redirectURI != "" {
		v.Set("redirect_uri", redirectURI)
	}
	if responseType != "" {
		v.Set("response_type", responseType)
	}
	if scope != "" {
		v.Set("scope", scope)
	}
	if state != "" {
		v.Set("state", state)
	}
	return v
}

func withPKCE(v url.Values, challenge string) url.Values {
	v = cloneValues(v)
	v.Set("code_challenge", challenge)
	v.Set("code_challenge_method", "S256")
	return v
}

// mustCode asserts a redirect to redirectURI carrying a code and the state, and returns the code.
func mustCode(t *testing.T, res authResult, redirectURI, state string) string {
	t.Helper()
	if res.Redirect == nil {
		t.Fatalf("no redirect to the client")
	}
	checkRedirectTarget(t, res.Redirect, redirectURI)
	q := res.Redirect.Query()
	if e := q.Get("error"); e != "" {
		t.Fatalf("redirect carries error=%s (%s), want a code", e, q.Get("error_description"))
	}
	if got := q.Get("state"); got != state {
		t.Errorf("state = %q, want %q unchanged", got, state)
	}
	code := q.Get("code")
	if code == "" {
		t.Fatalf("redirect %s carries no code", res.Redirect)
	}
	return code
}

// mustRedirectError asserts a redirect to redirectURI with error=code and the state, in the
// query or (for implicit requests) the fragment.
func mustRedirectError(t *testing.T, res authResult, redirectURI, code, state string) {
	t.Helper()
	if res.Redirect == nil {
		t.Fatalf("no redirect to the client")
	}
	checkRedirectTarget(t, res.Redirect, redirectURI)
	vals := res.Redirect.Query()
	if !vals.Has("error") {
		vals = fragmentValues(res.Redirect)
	}
	if got := vals.Get("error"); got != code {
		t.Errorf("error = %q (%s), want %q; redirect %s", got, vals.Get("error_description"), code, res.Redirect)
	}
	if got := vals.Get("state"); got != state {
		t.Errorf("state = %q, want %q", got, state)
	}
	for _, k := range []string{"code", "access_token"} {
		if res.Redirect.Query().Has(k) || fragmentValues(res.Redirect).Has(k) {
			t.Errorf("error redirect also carries %s: %s", k, res.Redirect)
		}
	}
}

// checkRedirectTarget asserts the redirect goes to exactly the registered URI (plus parameters).
func checkRedirectTarget(t *testing.T, got *url.URL, want string) {
	t.Helper()
	w, err := url.Parse(want)
	if err != nil {
		t.Fatal(err)
	}
	if got.Scheme != w.Scheme || got.Host != w.Host || got.Path != w.Path {
		t.Fatalf("redirected to %s, want %s", got, want)
	}
}

func checkPageHeaders(t *testing.T, p *page) {
	t.Helper()
	if csp := p.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("Content-Security-Policy = %q, want frame-ancestors 'none' (%s)", csp, p.URL.Path)
	}
	if xfo := p.Header.Get("X-Frame-Options"); !strings.EqualFold(xfo, "DENY") {
		t.Errorf("X-Frame-Options = %q, want DENY (%s)", xfo, p.URL.Path)
	}
	if ct := p.Header.Get("Content-Type"); !strings.HasPrefix(strings.ToLower(ct), "text/html") {
		t.Errorf("Content-Type = %q, want text/html (%s)", ct, p.URL.Path)
	}
}
