package caddymodule

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"

	"github.com/oauth2gate/oauth2gate/authz"
)

// secretsKeyFileName is the generated secrets key's file in Caddy's data
// directory: beside the store's default directory, never inside it, so a
// copy of the store directory does not carry the key that opens it.
const secretsKeyFileName = "oauth2-secrets.key"

// secretsKeys resolves secrets_key and secrets_key_retired. Without
// secrets_key the file store gets a key generated once in Caddy's data
// directory (keyFile names it); Redis, shared by instances that must all
// hold the same key, requires secrets_key.
func (a *App) secretsKeys(repl *caddy.Replacer, redis bool) (current []byte, retired [][]byte, keyFile string, err error) {
	for i, v := range a.SecretsKeyRetired {
		k, err := expandSecretsKey(repl, v)
		if err != nil {
			return nil, nil, "", fmt.Errorf("oauth2: secrets_key_retired (key %d): %v", i+1, err)
		}
		retired = append(retired, k)
	}
	if a.SecretsKey != "" {
		current, err = expandSecretsKey(repl, a.SecretsKey)
		if err != nil {
			return nil, nil, "", fmt.Errorf("oauth2: secrets_key: %v", err)
		}
		return current, retired, "", nil
	}
	if len(retired) > 0 {
		return nil, nil, "", errors.New("oauth2: secrets_key_retired is set without secrets_key: set secrets_key to the new key, which the secrets are sealed with again")
	}
	if redis {
		return nil, nil, "", errors.New("oauth2: store redis needs secrets_key: the session and signing keys kept in Redis are sealed with it, " +
			"and every instance must hold the same one. Set `secrets_key {env.OAUTH2_SECRETS_KEY}` (32 bytes, base64; make one with: openssl rand -base64 32) in the oauth2 block")
	}
	keyFile = filepath.Join(caddy.AppDataDir(), secretsKeyFileName)
	current, err = loadOrCreateKeyFile(keyFile)
	if err != nil {
		return nil, nil, "", fmt.Errorf("oauth2: no secrets_key is set, and the key file that stands in for it cannot be used: %v; or set secrets_key", err)
	}
	if st, err := os.Stat(keyFile); err == nil && st.Mode().Perm()&0o077 != 0 {
		a.logger.Warn("the secrets key file is readable by other users than Caddy's: chmod 600 it",
			zap.String("key_file", keyFile), zap.String("mode", st.Mode().Perm().String()))
	}
	if _, done := keyFileLogged.LoadOrStore(keyFile, true); !done {
		a.logger.Info("no secrets_key is set: the secrets in the store are sealed with a key generated in a file beside Caddy's data; "+
			"set secrets_key (from {env.*} or {file.*}) for protection that does not depend on that file staying out of reach",
			zap.String("key_file", keyFile), zap.String("key_id", authz.SecretsKeyID(current)))
	}
	return current, nil, keyFile, nil
}

// keyFileLogged remembers the key files already announced: once a process,
// not once a reload.
var keyFileLogged sync.Map

func expandSecretsKey(repl *caddy.Replacer, v string) ([]byte, error) {
	// An unset {env.*} or unreadable {file.*} is an error, never an empty key.
	s, err := repl.ReplaceOrErr(v, true, true)
	if err != nil {
		return nil, err
	}
	return authz.ParseSecretsKey(s)
}

// loadOrCreateKeyFile reads the key file, or creates it with a new random
// key: written to a temporary file and linked into place, so that two
// processes starting at once agree on one key and a crash never leaves half
// a key behind.
func loadOrCreateKeyFile(path string) ([]byte, error) {
	if k, err := readKeyFile(path); !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	key := make([]byte, authz.SecretsKeySize)
	_, _ = rand.Read(key) // crypto/rand.Read never fails on Go ≥1.24

	// CreateTemp makes the file with mode 0600.
	tmp, err := os.CreateTemp(dir, "."+secretsKeyFileName+"-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(base64.StdEncoding.EncodeToString(key) + "\n")
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if err := os.Link(tmp.Name(), path); errors.Is(err, fs.ErrExist) {
		return readKeyFile(path) // another process made it first
	} else if err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return key, nil
}

func readKeyFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	k, err := authz.ParseSecretsKey(string(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %v; restore it from a backup (the store's secrets cannot be read without it)", path, err)
	}
	return k, nil
}
