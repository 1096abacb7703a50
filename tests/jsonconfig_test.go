package tests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestJSONConfig proves the module is configured by Caddy's JSON as well as by
// the Caddyfile: the test's Caddyfile is adapted, and Caddy is run on the JSON.
func TestJSONConfig(t *testing.T) {
	t.Parallel()
	in := startGate(t, gateSpec{Clients: []clientSpec{{ID: "svc", Secret: "svc-secret", Grants: "client_credentials", Scopes: "read"}}})
	out, err := exec.Command(caddyBin, "adapt", "--config", in.file, "--adapter", "caddyfile").Output()
	if err != nil {
		t.Fatalf("caddy adapt: %v", err)
	}
	for _, want := range []string{`"oauth2":{`, `"handler":"oauth2_server"`, `"client_id":"svc"`} {
		if !strings.Contains(string(out), want) {
			t.Fatalf("adapted JSON lacks %s:\n%s", want, out)
		}
	}
	in.stop()
	jsonFile := filepath.Join(in.home, "caddy.json")
	if err := os.WriteFile(jsonFile, out, 0o600); err != nil {
		t.Fatal(err)
	}
	in.file = jsonFile
	in.start()
	in.token(t, tokenCall{Form: form("grant_type", "client_credentials"), Basic: basic("svc", "svc-secret")}).mustToken(t)
}
