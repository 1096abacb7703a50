package tests

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/oauth2gate/oauth2gate/authz/tokenstore"
)

// upgradeFixture is what tests/testdata/upgrade/make.sh recorded when a real Caddy of the last
// buntdb release (commit 67d8a08) issued tokens into tokens.db.
type upgradeFixture struct {
	Access   string   `json:"access"`
	Refresh  string   `json:"refresh"`
	CCAccess string   `json:"cc_access"`
	Kids     []string `json:"kids"`
}

// The fixture's secrets key and passwords (make.sh): test values, not secrets.
const (
	upgradeSecretsKey = "dXBncmFkZS1maXh0dXJlLXNlY3JldHMta2V5LTMyYiE="
	upgradeWebSecret  = "web-secret"
)

// TestUpgradeFromBuntdbStore: Caddy finds, in its store directory, the tokens.db that a Caddy
// of the buntdb release wrote, and converts it on its first start: nobody is logged out. alice's
// access token and the client_credentials token pass the guard, her refresh token refreshes (and
// the rotation still revokes the access token issued with it), the signing keys are the same
// (so id_tokens and JWTs issued before stay verifiable), tokens.db is set aside, and a second
// start does not convert again. No token is in the log.
func TestUpgradeFromBuntdbStore(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile(filepath.Join("testdata", "upgrade", "tokens.json"))
	if err != nil {
		t.Fatal(err)
	}
	var fx upgradeFixture
	if err := json.Unmarshal(raw, &fx); err != nil || fx.Access == "" || fx.Refresh == "" || fx.CCAccess == "" || len(fx.Kids) == 0 {
		t.Fatalf("tokens.json: %+v, %v", fx, err)
	}
	db, err := os.ReadFile(filepath.Join("testdata", "upgrade", tokenstore.LegacyFileName))
	if err != nil {
		t.Fatal(err)
	}
	in := newInstance(t)
	in.basePath = "/o"
	if err := os.MkdirAll(in.storeDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(in.storeDir, tokenstore.LegacyFileName), db, 0o600); err != nil {
		t.Fatal(err)
	}
	body := fmt.Sprintf("secrets_key %s\naccess_token {\n\tttl 876000h\n}\nrefresh_token {\n\tttl 876000h\n}\n"+
		"client web {\n\tsecret %s\n\tgrants password refresh_token client_credentials\n\tscopes openid read\n}\n",
		upgradeSecretsKey, hashSecret(t, upgradeWebSecret))
	site := siteOptions{BasePath: "/o", SiteExtra: "handle /api/* {\n\toauth2_guard read\n\trespond \"api ok\"\n}"}
	if err := os.WriteFile(in.file, []byte(in.caddyfile(body, site)), 0o600); err != nil {
		t.Fatal(err)
	}
	for what, v := range map[string]string{"access token": fx.Access, "refresh token": fx.Refresh, "cc token": fx.CCAccess, "client secret": upgradeWebSecret} {
		in.remember(what, v)
	}
	t.Cleanup(in.cleanup)
	in.start()

	api := func(tok string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", in.base+"/api/orders", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := in.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for name, tok := range map[string]string{"alice's access token": fx.Access, "the client_credentials token": fx.CCAccess} {
		if code, b := api(tok); code != 200 || b != "api ok" {
			t.Fatalf("%s issued before the upgrade: %d %q", name, code, b)
		}
	}
	var kids []string
	for kid := range publishedKeys(t, in) {
		kids = append(kids, kid)
	}
	slices.Sort(kids)
	if !slices.Equal(kids, fx.Kids) {
		t.Fatalf("the signing keys changed in the upgrade: %v, were %v", kids, fx.Kids)
	}
	if _, err := os.Stat(filepath.Join(in.storeDir, tokenstore.LegacyFileName)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("tokens.db is still read: %v", err)
	}
	if _, err := os.Stat(filepath.Join(in.storeDir, tokenstore.LegacyFileName+tokenstore.MigratedSuffix)); err != nil {
		t.Fatalf("tokens.db was not set aside: %v", err)
	}
	if n := strings.Count(in.log.String(), "token store converted from buntdb"); n != 1 {
		t.Fatalf("the conversion is logged %d times:\n%s", n, in.log.String())
	}

	// alice's refresh token, issued before the upgrade, refreshes; the rotation revokes the
	// access token issued with it, as before.
	next := in.token(t, tokenCall{Form: form("grant_type", "refresh_token", "refresh_token", fx.Refresh), Basic: basic("web", upgradeWebSecret)}).mustToken(t)
	in.remember("access token", next.Access)
	in.remember("refresh token", next.Refresh)
	if code, _ := api(next.Access); code != 200 {
		t.Fatalf("the access token from the refresh: %d", code)
	}
	if code, _ := api(fx.Access); code != 401 {
		t.Fatalf("the access token rotated out by the refresh: %d, want 401", code)
	}

	// A second start converts nothing and keeps what the first one did.
	in.stop()
	in.start()
	if n := strings.Count(in.log.String(), "token store converted from buntdb"); n != 1 {
		t.Fatalf("after a restart the conversion is logged %d times", n)
	}
	if code, _ := api(next.Access); code != 200 {
		t.Fatalf("after a restart, the token from the refresh: %d", code)
	}
	if code, _ := api(fx.CCAccess); code != 200 {
		t.Fatalf("after a restart, the client_credentials token: %d", code)
	}
}
