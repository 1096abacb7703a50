package tests

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oauth2gate/oauth2gate/internal/proclog"
)

const (
	startupTimeout  = 15 * time.Second
	shutdownTimeout = 5 * time.Second
	requestTimeout  = 15 * time.Second
)

// siteOptions shape the generated Caddyfile around the test's oauth2 block.
type siteOptions struct {
	// BasePath is the argument of oauth2_server; ignored when DefaultBasePath is set.
	BasePath string
	// DefaultBasePath writes `oauth2_server` without an argument (the module's /oauth2).
	DefaultBasePath bool
	// GlobalExtra holds extra global option lines (e.g. "debug").
	GlobalExtra string
	// SiteExtra holds extra lines in the site block (e.g. "log").
	SiteExtra string
	// ExtraSites is appended verbatim after the site block: more site blocks, each on a port the
	// test reserved itself (e.g. with freePorts).
	ExtraSites string
	// NoServer leaves oauth2_server out of the site (it answers 404): with a store and no client
	// or user, a Caddy that only guards. The harness then gives a Redis store no secrets_key.
	NoServer bool
	// Issuer replaces the issuer (default: the site's own http://127.0.0.1:<port>), e.g. an https
	// issuer for a Caddy reached over plain http behind a TLS-terminating load balancer.
	Issuer string
	// Store replaces the harness's `store file <dir>` line (e.g. "store redis redis://…"); it
	// may hold a block over several lines.
	Store string
}

// instance is one running Caddy process with its own ports, home, data dir and store.
type instance struct {
	t         *testing.T
	home      string // HOME, XDG_DATA_HOME and XDG_CONFIG_HOME live under it
	storeDir  string // `store file <dir>`
	file      string // the Caddyfile
	port      int
	adminPort int
	base      string // http://127.0.0.1:<port>
	basePath  string // /o, /oauth2, …
	log       *proclog.Buffer
	http      *http.Client // no redirects followed, no cookies
	transport *http.Transport

	mu      sync.Mutex
	secrets map[string]string // value -> what it is; none may appear in the log

	cmd    *exec.Cmd
	exited chan struct{}
	runs   int
}

// startCaddy runs Caddy with the given body of the global oauth2 block (issuer and store are
// added by the harness) and the site `http://127.0.0.1:<port> { oauth2_server /o }`.
func startCaddy(t *testing.T, oauth2Body string) *instance {
	t.Helper()
	return startCaddyWith(t, oauth2Body, siteOptions{BasePath: "/o"})
}

func startCaddyWith(t *testing.T, oauth2Body string, opts siteOptions) *instance {
	t.Helper()
	in := newInstance(t)
	in.basePath = opts.BasePath
	if opts.DefaultBasePath {
		in.basePath = "/oauth2"
	}
	if err := os.WriteFile(in.file, []byte(in.caddyfile(oauth2Body, opts)), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(in.cleanup)
	in.start()
	return in
}

// newInstance reserves ports and a home for a Caddy not yet configured or started.
func newInstance(t *testing.T) *instance {
	t.Helper()
	home := t.TempDir()
	ports := freePorts(t, 2)
	tr := &http.Transport{
		Proxy:               nil,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     30 * time.Second,
	}
	in := &instance{
		t:         t,
		home:      home,
		storeDir:  filepath.Join(home, "store"),
		file:      filepath.Join(home, "Caddyfile"),
		port:      ports[0],
		adminPort: ports[1],
		log:       &proclog.Buffer{},
		transport: tr,
		secrets:   map[string]string{},
	}
	in.http = &http.Client{
		Transport:     tr,
		Timeout:       requestTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	in.base = fmt.Sprintf("http://127.0.0.1:%d", in.port)
	return in
}

// globalOptions are the first lines of every test Caddy's global block: the
// admin endpoint on the instance's own loopback port, nothing persisted, no
// HTTPS.
func (in *instance) globalOptions() string {
	return fmt.Sprintf("\tadmin 127.0.0.1:%d\n\tpersist_config off\n\tauto_https off\n\tdefault_bind 127.0.0.1\n\tgrace_period 2s\n", in.adminPort)
}

func (in *instance) caddyfile(oauth2Body string, opts siteOptions) string {
	var b strings.Builder
	b.WriteString("{\n" + in.globalOptions())
	writeIndented(&b, opts.GlobalExtra, "\t")
	b.WriteString("\toauth2 {\n")
	issuer := in.base
	if opts.Issuer != "" {
		issuer = opts.Issuer
	}
	fmt.Fprintf(&b, "\t\tissuer %s\n", issuer)
	if opts.Store != "" {
		writeIndented(&b, opts.Store, "\t\t")
		// Redis needs secrets_key; the harness gives every instance the same one, as an
		// operator gives every instance on one Redis the same one.
		if strings.HasPrefix(strings.TrimSpace(opts.Store), "store redis") && !strings.Contains(opts.Store+oauth2Body, "secrets_key") && !opts.NoServer {
			fmt.Fprintf(&b, "\t\tsecrets_key {env.%s}\n", sharedSecretsKeyEnv)
		}
	} else {
		fmt.Fprintf(&b, "\t\tstore file %s\n", in.storeDir)
	}
	writeIndented(&b, oauth2Body, "\t\t")
	b.WriteString("\t}\n}\n\n")
	fmt.Fprintf(&b, "%s {\n", in.base)
	if opts.NoServer {
		b.WriteString("\trespond \"guard only\" 404\n")
	} else if opts.DefaultBasePath {
		b.WriteString("\toauth2_server\n")
	} else {
		fmt.Fprintf(&b, "\toauth2_server %s\n", opts.BasePath)
	}
	writeIndented(&b, opts.SiteExtra, "\t")
	b.WriteString("}\n")
	if strings.TrimSpace(opts.ExtraSites) != "" {
		b.WriteString("\n" + strings.Trim(opts.ExtraSites, "\n") + "\n")
	}
	return b.String()
}

func writeIndented(b *strings.Builder, text, indent string) {
	text = strings.Trim(text, "\n")
	if strings.TrimSpace(text) == "" {
		return
	}
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimRight(line, " \t")
		if line == "" {
			continue
		}
		b.WriteString(indent + strings.TrimLeft(line, " ") + "\n")
	}
}

func (in *instance) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "HOME", "XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME":
			continue
		}
		env = append(env, kv)
	}
	return append(env,
		sharedSecretsKeyEnv+"="+sharedSecretsKey,
		"HOME="+in.home,
		"XDG_DATA_HOME="+filepath.Join(in.home, "data"),
		"XDG_CONFIG_HOME="+filepath.Join(in.home, "config"),
		"XDG_CACHE_HOME="+filepath.Join(in.home, "cache"),
	)
}

// start runs `caddy run` and waits until the site answers.
func (in *instance) start() {
	t := in.t
	t.Helper()
	in.runs++
	fmt.Fprintf(in.log, "\n=== e2e harness: caddy run #%d ===\n", in.runs)
	args := []string{"run", "--config", in.file}
	if !strings.HasSuffix(in.file, ".json") {
		args = append(args, "--adapter", "caddyfile")
	}
	cmd := exec.Command(caddyBin, args...)
	cmd.Env = in.env()
	cmd.Dir = in.home
	cmd.Stdout = in.log
	cmd.Stderr = in.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting caddy: %v", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	in.cmd, in.exited = cmd, exited

	probe := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: time.Second}
	deadline := time.Now().Add(startupTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			in.cmd = nil
			t.Fatalf("caddy exited during startup; Caddyfile:\n%s\nlog:\n%s", in.caddyfileText(), in.log.String())
		default:
		}
		resp, err := probe.Get(in.base + "/")
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	in.stop()
	t.Fatalf("caddy did not answer on %s within %v; log:\n%s", in.base, startupTimeout, in.log.String())
}

// stop sends SIGINT and waits for the process to exit, killing it after shutdownTimeout.
func (in *instance) stop() {
	if in.cmd == nil {
		return
	}
	// Idle keep-alive connections would only make the graceful shutdown wait.
	in.transport.CloseIdleConnections()
	select {
	case <-in.exited:
	default:
		_ = in.cmd.Process.Signal(os.Interrupt)
		select {
		case <-in.exited:
		case <-time.After(shutdownTimeout):
			_ = in.cmd.Process.Kill()
			<-in.exited
		}
	}
	in.cmd = nil
	in.transport.CloseIdleConnections()
}

// kill ends the process with SIGKILL (no shutdown hooks run) and waits for it.
func (in *instance) kill() {
	if in.cmd == nil {
		return
	}
	_ = in.cmd.Process.Kill()
	<-in.exited
	in.cmd = nil
	in.transport.CloseIdleConnections()
}

// restart stops the instance gracefully and starts it again on the same ports and data.
func (in *instance) restart() {
	in.t.Helper()
	in.stop()
	in.start()
}

func (in *instance) cleanup() {
	in.stop()
	in.assertLogClean(in.t, in.log.String())
	if in.t.Failed() {
		in.t.Logf("Caddyfile:\n%s\ncaddy log (tail):\n%s", in.caddyfileText(), proclog.Tail(in.log.String(), 20000))
	}
}

func (in *instance) caddyfileText() string {
	data, _ := os.ReadFile(in.file)
	return string(data)
}

// url is the address of an endpoint under the base path, e.g. in.url("/token").
func (in *instance) url(p string) string { return in.base + in.basePath + p }

func (in *instance) host() string { return fmt.Sprintf("127.0.0.1:%d", in.port) }

// remember records a value that must never appear in Caddy's log.
func (in *instance) remember(kind, value string) {
	if len(value) < 6 {
		return
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if _, ok := in.secrets[value]; !ok {
		in.secrets[value] = kind
	}
}

// assertLogClean fails the test if any remembered secret appears in log.
func (in *instance) assertLogClean(t *testing.T, log string) {
	t.Helper()
	in.mu.Lock()
	values := make([]string, 0, len(in.secrets))
	for v := range in.secrets {
		values = append(values, v)
	}
	kinds := make(map[string]string, len(in.secrets))
	for v, k := range in.secrets {
		kinds[v] = k
	}
	in.mu.Unlock()
	sort.Strings(values)
	for _, v := range values {
		for _, variant := range uniq(v, url.QueryEscape(v), url.PathEscape(v)) {
			if i := strings.Index(log, variant); i >= 0 {
				t.Errorf("caddy log contains a %s (%.8s…): …%s…", kinds[v], v, excerpt(log, i, len(variant)))
				break
			}
		}
	}
}

func uniq(values ...string) []string {
	var out []string
	seen := map[string]bool{}
	for _, v := range values {
		if !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	return out
}

func excerpt(s string, i, n int) string {
	lo, hi := max(0, i-120), min(len(s), i+n+40)
	return s[lo:hi]
}

// freePorts reserves n distinct loopback ports (held open together so they differ) and frees them.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}
