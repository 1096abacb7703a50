package tests

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/oauth2gate/oauth2gate/internal/proclog"
)

// readmeBlock is a fenced block of README.md.
type readmeBlock struct {
	lang string
	text string
}

func readmeBlocks(t *testing.T) []readmeBlock {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var out []readmeBlock
	var cur *readmeBlock
	for _, line := range strings.Split(string(raw), "\n") {
		switch {
		case cur == nil && strings.HasPrefix(line, "```"):
			cur = &readmeBlock{lang: strings.TrimPrefix(line, "```")}
		case cur != nil && strings.HasPrefix(line, "```"):
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.text += line + "\n"
		}
	}
	return out
}

// TestReadmeSeedFlowsAgainstCaddyfileExample runs every curl command of the
// README, as written, against Caddyfile.example; only the ports (8000, 2019)
// and the store directory are moved so the test can run beside anything.
// Browser steps (the authorize URLs) are walked with the form-reading
// browser, logging in as alice and allowing.
func TestReadmeSeedFlowsAgainstCaddyfileExample(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed") // tests/install-deps.sh installs it
	}
	example, err := os.ReadFile(filepath.Join(repoRoot, "Caddyfile.example"))
	if err != nil {
		t.Fatal(err)
	}
	ports := freePorts(t, 5)
	home := t.TempDir()
	hostPort := fmt.Sprintf("127.0.0.1:%d", ports[0])
	move := func(s string) string {
		s = strings.ReplaceAll(s, "localhost:8000", hostPort)
		s = strings.ReplaceAll(s, "localhost:8080", fmt.Sprintf("127.0.0.1:%d", ports[2]))
		s = strings.ReplaceAll(s, "localhost:9000", fmt.Sprintf("127.0.0.1:%d", ports[3]))
		s = strings.ReplaceAll(s, "localhost:8081", fmt.Sprintf("127.0.0.1:%d", ports[4])) // the single-page app
		return s
	}
	cf := move(string(example))
	cf = strings.Replace(cf, "admin localhost:2019", fmt.Sprintf("admin 127.0.0.1:%d\n\tdefault_bind 127.0.0.1\n\tpersist_config off", ports[1]), 1)
	cf = strings.Replace(cf, "store file ./oauth2-data", "store file "+filepath.Join(home, "oauth2-data"), 1)
	if cf == move(string(example)) {
		t.Fatal("Caddyfile.example no longer has the admin line this test moves")
	}
	in := &instance{
		t: t, home: home, storeDir: filepath.Join(home, "oauth2-data"), file: filepath.Join(home, "Caddyfile"),
		port: ports[0], adminPort: ports[1], log: &proclog.Buffer{}, transport: &http.Transport{},
		secrets: map[string]string{}, base: "http://" + hostPort,
	}
	in.http = &http.Client{Transport: in.transport, Timeout: requestTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, s := range []string{"37b1c4ff826f8d78bd45e25bad75a2c0", "seed-secret-korean", "wonderland", "builder", "ops-secret"} {
		in.remember("README secret", s)
	}
	if err := os.WriteFile(in.file, []byte(cf), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(in.cleanup)
	in.start()

	var lastCode string
	lastRefresh := map[string]string{} // client_id -> its newest refresh token
	lastAccess := map[string]string{}  // client_id -> its newest access token
	lastClient := ""
	clientOf := regexp.MustCompile(`(?:client_id=|-u )([A-Za-z0-9_-]+)`)
	var lastAuthorize string
	ran := 0
	tokenField := regexp.MustCompile(`"(access_token|refresh_token)":"([^"]+)"`)
	blocks := readmeBlocks(t)
	for i, b := range blocks {
		text := move(b.text)
		switch {
		case b.lang == "" && strings.Contains(text, "/authorize"):
			lastAuthorize = strings.TrimSpace(text)
			u, err := url.Parse(strings.ReplaceAll(lastAuthorize, " ", "%20"))
			if err != nil {
				t.Fatalf("block %d: %v", i, err)
			}
			in.basePath = strings.TrimSuffix(strings.TrimSuffix(u.Path, "/"), "/authorize")
			br := in.newBrowser(t)
			res := br.authorizeURL(u.String(), "alice", "wonderland", "allow")
			if res.Redirect == nil {
				t.Fatalf("block %d: %s did not come back to the client", i, lastAuthorize)
			}
			if u.Query().Get("response_type") == "token" {
				if fragmentValues(res.Redirect).Get("access_token") == "" {
					t.Fatalf("implicit flow: no access_token in %s", res.Redirect)
				}
				ran++
				continue
			}
			lastCode = res.Redirect.Query().Get("code")
			if lastCode == "" {
				t.Fatalf("block %d: no code in %s", i, res.Redirect)
			}
			ran++
		case b.lang == "sh" && strings.Contains(text, "curl"):
			if strings.Contains(text, "make ") {
				continue
			}
			if strings.Contains(text, "PASTE_THE_CODE") {
				if lastCode == "" {
					t.Fatalf("block %d needs a code but no authorize URL came before it", i)
				}
				text = strings.ReplaceAll(text, "PASTE_THE_CODE", lastCode)
				lastCode = ""
			}
			client := lastClient // a block naming no client continues the last one's session
			if m := clientOf.FindStringSubmatch(text); m != nil {
				client = m[1]
			}
			if strings.Contains(text, "PASTE_THE_ACCESS_TOKEN") {
				if lastAccess[client] == "" {
					t.Fatalf("block %d needs an access token of %s but none was issued before it", i, client)
				}
				text = strings.ReplaceAll(text, "PASTE_THE_ACCESS_TOKEN", lastAccess[client])
			}
			if strings.Contains(text, "PASTE_THE_REFRESH_TOKEN") {
				if lastRefresh[client] == "" {
					t.Fatalf("block %d needs a refresh token of %s but none was issued before it", i, client)
				}
				text = strings.ReplaceAll(text, "PASTE_THE_REFRESH_TOKEN", lastRefresh[client])
			}
			cmd := exec.Command("bash", "-euo", "pipefail", "-c", text)
			cmd.Dir = t.TempDir()
			done := make(chan struct{})
			var out []byte
			var err error
			go func() { out, err = cmd.CombinedOutput(); close(done) }()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				t.Fatalf("block %d did not finish in 30s:\n%s", i, text)
			}
			if strings.Contains(b.text, "localhost:8080") {
				// A gateway session: its output must be the text block that follows it.
				if i+1 >= len(blocks) || blocks[i+1].lang != "text" {
					t.Fatalf("block %d: a gateway session must be followed by its output", i)
				}
				if err != nil || strings.TrimSpace(string(out)) != strings.TrimSpace(move(blocks[i+1].text)) {
					t.Fatalf("README gateway session (%v) printed:\n%s\nthe README says:\n%s", err, out, blocks[i+1].text)
				}
				ran++
				continue
			}
			if i+1 < len(blocks) && blocks[i+1].lang == "text" {
				// Every line the README shows after the command must be in its output.
				if err != nil {
					t.Fatalf("README block %d failed (%v):\n%s\noutput:\n%s", i, err, text, out)
				}
				for _, want := range strings.Split(strings.TrimSpace(move(blocks[i+1].text)), "\n") {
					if !strings.Contains(string(out), want) {
						t.Fatalf("README block %d:\n%s\noutput lacks %q:\n%s", i, text, want, out)
					}
				}
				ran++
				continue
			}
			if err != nil || !strings.Contains(string(out), `"access_token"`) || strings.Contains(string(out), `"error"`) {
				t.Fatalf("README block %d failed (%v):\n%s\noutput:\n%s", i, err, text, out)
			}
			for _, m := range tokenField.FindAllStringSubmatch(string(out), -1) {
				in.remember(m[1], m[2])
				if m[1] == "refresh_token" {
					lastRefresh[client] = m[2]
				} else {
					lastAccess[client] = m[2]
				}
				lastClient = client
			}
			ran++
		}
	}
	if ran < 8 {
		t.Fatalf("ran %d README flows, want at least 8: has the README lost its seed flows?", ran)
	}
}
