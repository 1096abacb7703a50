package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// caddyCLI runs a one-shot caddy subcommand with its own HOME and data dirs.
func caddyCLI(t *testing.T, home string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, caddyBin, args...)
	cmd.Dir = home
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k != "HOME" && k != "XDG_DATA_HOME" && k != "XDG_CONFIG_HOME" {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "HOME="+home, "XDG_DATA_HOME="+filepath.Join(home, "data"), "XDG_CONFIG_HOME="+filepath.Join(home, "config"))
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// TestCaddyfileExample: the shipped example adapts, validates and is already formatted.
func TestCaddyfileExample(t *testing.T) {
	t.Parallel()
	example := filepath.Join(repoRoot, "Caddyfile.example")
	want, err := os.ReadFile(example)
	if os.IsNotExist(err) {
		t.Skip("Caddyfile.example does not exist yet")
	}
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()

	t.Run("adapt", func(t *testing.T) {
		out, errOut, err := caddyCLI(t, home, "adapt", "--config", example, "--adapter", "caddyfile")
		if err != nil {
			t.Fatalf("caddy adapt failed: %v\n%s", err, errOut)
		}
		var cfg struct {
			Apps map[string]json.RawMessage `json:"apps"`
		}
		if err := json.Unmarshal([]byte(out), &cfg); err != nil {
			t.Fatalf("adapt output is not JSON: %v\n%s", err, out)
		}
		if _, ok := cfg.Apps["oauth2"]; !ok {
			t.Errorf("adapted config has no oauth2 app; apps: %v", keys(cfg.Apps))
		}
		if !strings.Contains(out, `"handler":"oauth2_server"`) {
			t.Errorf("adapted config has no oauth2_server handler")
		}
	})

	t.Run("validate", func(t *testing.T) {
		out, errOut, err := caddyCLI(t, home, "validate", "--config", example, "--adapter", "caddyfile")
		if err != nil {
			t.Fatalf("caddy validate failed: %v\n%s%s", err, out, errOut)
		}
	})

	t.Run("fmt", func(t *testing.T) {
		out, errOut, err := caddyCLI(t, home, "fmt", example)
		if err != nil {
			t.Fatalf("caddy fmt failed: %v\n%s", err, errOut)
		}
		if out != string(want) {
			t.Errorf("caddy fmt changes Caddyfile.example; formatted:\n%s", out)
		}
	})
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestCaddyfileErrors: a bad oauth2 block fails adapt and validate, naming the line.
func TestCaddyfileErrors(t *testing.T) {
	t.Parallel()
	hash := hashSecret(t, "some-password")
	cases := []struct {
		name string
		// lines of the oauth2 block; the line holding the mistake is marked with "<<".
		block    []string
		needLine bool // the error must name the line of the mistake
		mention  string
	}{
		{name: "unknown subdirective", block: []string{
			"issuer http://127.0.0.1:9",
			"frobnicate yes <<",
		}, needLine: true, mention: "frobnicate"},
		{name: "unknown subdirective in a client", block: []string{
			"client app {",
			"\tsecret " + hash,
			"\tgrants client_credentials",
			"\tcolour blue <<",
			"}",
		}, needLine: true, mention: "colour"},
		{name: "unknown subdirective in a user", block: []string{
			"user alice " + hash + " {",
			"\tclaim email a@example.com",
			"\tshoe_size 42 <<",
			"}",
		}, needLine: true, mention: "shoe_size"},
		{name: "unknown subdirective in access_token", block: []string{
			"access_token {",
			"\tttl 1h",
			"\tflavour vanilla <<",
			"}",
		}, needLine: true, mention: "flavour"},
		{name: "bad duration", block: []string{
			"code_ttl banana <<",
		}, needLine: true, mention: "banana"},
		{name: "user without a password hash", block: []string{
			"user alice <<",
		}, needLine: true},
		{name: "unknown grant", block: []string{
			"client app {",
			"\tsecret " + hash,
			"\tgrants client_credentials teleport <<",
			"}",
		}, mention: "teleport"},
		{name: "secret and public together", block: []string{
			"client app {",
			"\tsecret " + hash,
			"\tpublic <<",
			"\tgrants password",
			"}",
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			home := t.TempDir()
			lines := []string{"{", "\tadmin off", "\tpersist_config off", "\tauto_https off", "\toauth2 {"}
			badLine := 0
			for _, l := range tc.block {
				if strings.HasSuffix(l, " <<") {
					l = strings.TrimSuffix(l, " <<")
					badLine = len(lines) + 1
				}
				lines = append(lines, "\t\t"+l)
			}
			lines = append(lines, "\t}", "}", "", "http://127.0.0.1:9 {", "\toauth2_server /o", "}", "")
			file := filepath.Join(home, "Caddyfile")
			if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")), 0o600); err != nil {
				t.Fatal(err)
			}
			lineRef := regexp.MustCompile(fmt.Sprintf(`Caddyfile:%d\b`, badLine))
			for _, sub := range []string{"adapt", "validate"} {
				out, errOut, err := caddyCLI(t, home, sub, "--config", file, "--adapter", "caddyfile")
				msg := out + errOut
				if err == nil {
					if sub == "adapt" && !tc.needLine {
						continue // a semantic mistake may surface only when the config is provisioned
					}
					t.Errorf("caddy %s accepted the bad Caddyfile:\n%s", sub, msg)
					continue
				}
				if tc.needLine && !lineRef.MatchString(msg) {
					t.Errorf("caddy %s error does not name Caddyfile:%d:\n%s", sub, badLine, msg)
				}
				if tc.mention != "" && !strings.Contains(msg, tc.mention) {
					t.Errorf("caddy %s error does not mention %q:\n%s", sub, tc.mention, msg)
				}
			}
		})
	}
}
