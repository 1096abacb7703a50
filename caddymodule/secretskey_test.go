package caddymodule

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/oauth2gate/oauth2gate/authz"
)

func newKeyB64(t *testing.T) (string, []byte) {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(k), k
}

func TestSecretsKeyDirectives(t *testing.T) {
	k1, _ := newKeyB64(t)
	k2, _ := newKeyB64(t)
	k3, _ := newKeyB64(t)
	tests := []struct {
		name, input, wantErr string
		check                func(t *testing.T, a *App)
	}{
		{name: "literal key and two retired", input: "oauth2 {\n secrets_key " + k1 + "\n secrets_key_retired " + k2 + " " + k3 + "\n}", check: func(t *testing.T, a *App) {
			if a.SecretsKey != k1 || len(a.SecretsKeyRetired) != 2 || a.SecretsKeyRetired[1] != k3 {
				t.Fatalf("%q %q", a.SecretsKey, a.SecretsKeyRetired)
			}
		}},
		{name: "placeholders are kept for Provision", input: "oauth2 {\n secrets_key {env.OAUTH2_SECRETS_KEY}\n secrets_key_retired {file./run/secrets/old.key}\n}", check: func(t *testing.T, a *App) {
			if a.SecretsKey != "{env.OAUTH2_SECRETS_KEY}" || a.SecretsKeyRetired[0] != "{file./run/secrets/old.key}" {
				t.Fatalf("%q %q", a.SecretsKey, a.SecretsKeyRetired)
			}
		}},
		{name: "no key", input: "oauth2 {\n secrets_key\n}", wantErr: "wrong argument count"},
		{name: "two keys", input: "oauth2 {\n secrets_key " + k1 + " " + k2 + "\n}", wantErr: "wrong argument count"},
		{name: "short key", input: "oauth2 {\n secrets_key c2hvcnQ=\n}", wantErr: "secrets_key: the key is 5 bytes, want 32"},
		{name: "not base64", input: "oauth2 {\n secrets_key not-a-key!\n}", wantErr: "secrets_key: the key is not base64"},
		{name: "bad retired key", input: "oauth2 {\n secrets_key " + k1 + "\n secrets_key_retired " + k2 + " c2hvcnQ\n}", wantErr: "secrets_key_retired: the key is 5 bytes"},
		{name: "retired without keys", input: "oauth2 {\n secrets_key_retired\n}", wantErr: "wrong argument count"},
		{name: "set twice", input: "oauth2 {\n secrets_key " + k1 + "\n secrets_key " + k2 + "\n}", wantErr: "secrets_key is set more than once"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := new(App)
			err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tt.input))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "c2hvcnQ") {
					t.Fatalf("the error shows the key: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, a)
		})
	}
	a := new(App)
	if err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser("oauth2 {\n secrets_key {env.K}\n secrets_key_retired {env.OLD}\n}")); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(a)
	if want := `{"secrets_key":"{env.K}","secrets_key_retired":["{env.OLD}"]}`; string(b) != want {
		t.Fatalf("JSON = %s, want %s", b, want)
	}
}

// TestSecretsKeyResolution: what Provision makes of secrets_key, secrets_key_retired and the
// store, before any store is opened.
func TestSecretsKeyResolution(t *testing.T) {
	t.Setenv("XDG_DATA_HOME", t.TempDir())
	k1, raw1 := newKeyB64(t)
	k2, raw2 := newKeyB64(t)
	keyPath := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyPath, []byte(k2+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("OAUTH2GATE_UNIT_KEY", k1)
	tests := []struct {
		name        string
		app         App
		redis       bool
		wantErr     string
		current     []byte
		retired     [][]byte
		wantKeyFile bool
	}{
		{name: "env and file placeholders", app: App{SecretsKey: "{env.OAUTH2GATE_UNIT_KEY}", SecretsKeyRetired: []string{"{file." + keyPath + "}"}}, redis: true, current: raw1, retired: [][]byte{raw2}},
		{name: "unset env is an error, not an empty key", app: App{SecretsKey: "{env.OAUTH2GATE_UNIT_UNSET}"}, wantErr: "secrets_key: evaluated placeholder {env.OAUTH2GATE_UNIT_UNSET} is empty"},
		{name: "missing file", app: App{SecretsKey: "{file./nonexistent/oauth2.key}"}, wantErr: "secrets_key: evaluated placeholder {file./nonexistent/oauth2.key} is empty"},
		{name: "env holding a short key", app: App{SecretsKey: "{env.OAUTH2GATE_UNIT_SHORT}"}, wantErr: "secrets_key: the key is 5 bytes, want 32"},
		{name: "redis without secrets_key", redis: true, wantErr: "store redis needs secrets_key"},
		{name: "retired without secrets_key", app: App{SecretsKeyRetired: []string{k2}}, wantErr: "secrets_key_retired is set without secrets_key"},
		{name: "file store default: the key file", wantKeyFile: true},
	}
	t.Setenv("OAUTH2GATE_UNIT_SHORT", "c2hvcnQ=")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := tt.app
			a.logger = zap.NewNop()
			cur, ret, keyFile, err := a.secretsKeys(caddy.NewReplacer(), tt.redis)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantKeyFile {
				if want := filepath.Join(caddy.AppDataDir(), "oauth2-secrets.key"); keyFile == nil || keyFile.path != want || !keyFile.created {
					t.Fatalf("key file %+v, want %q created", keyFile, want)
				}
				onDisk, err := readKeyFile(keyFile.path)
				if err != nil || !bytes.Equal(onDisk, cur) {
					t.Fatalf("the key file holds %x (%v), the key used is %x", onDisk, err, cur)
				}
				return
			}
			if keyFile != nil || !bytes.Equal(cur, tt.current) || len(ret) != len(tt.retired) || (len(ret) > 0 && !bytes.Equal(ret[0], tt.retired[0])) {
				t.Fatalf("got %x %x %+v", cur, ret, keyFile)
			}
		})
	}
}

// TestSecretsKeyFile: the generated key file is made once, 0600, in one piece even when many
// starts race for it, and a damaged one stops the start with its path.
func TestSecretsKeyFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "caddy")
	path := filepath.Join(dir, "oauth2-secrets.key")
	keys := make([][]byte, 16)
	created := make([]bool, 16)
	errs := make([]error, 16)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			keys[i], created[i], errs[i] = loadOrCreateKeyFile(path)
		}()
	}
	wg.Wait()
	makers := 0
	for i := range keys {
		if errs[i] != nil || len(keys[i]) != authz.SecretsKeySize || !bytes.Equal(keys[i], keys[0]) {
			t.Fatalf("start %d got %x, %v; start 0 got %x", i, keys[i], errs[i], keys[0])
		}
		if created[i] {
			makers++
		}
	}
	if makers != 1 {
		t.Fatalf("%d starts say they made the key file, want 1", makers)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v; want 0600", st.Mode(), err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Fatalf("the data dir holds %d files, want only the key file (temporary files removed)", len(entries))
	}
	again, made, err := loadOrCreateKeyFile(path)
	if err != nil || made || !bytes.Equal(again, keys[0]) {
		t.Fatalf("second start: %x, %v", again, err)
	}
	data, _ := os.ReadFile(path)
	if k, err := authz.ParseSecretsKey(string(data)); err != nil || !bytes.Equal(k, keys[0]) {
		t.Fatalf("the file is not a secrets_key value: %v", err)
	}
	if err := os.WriteFile(path, []byte("damaged"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := loadOrCreateKeyFile(path); err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "restore it") {
		t.Fatalf("a damaged key file: %v", err)
	}
}
