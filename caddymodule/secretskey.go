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
func (a *App) secretsKeys(repl *caddy.Replacer, redis bool) (current []byte, retired [][]byte, keyFile *secretsKeyFile, err error) {
	for i, v := range a.SecretsKeyRetired {
		k, err := expandSecretsKey(repl, v)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("oauth2: secrets_key_retired (key %d): %v", i+1, err)
		}
		retired = append(retired, k)
	}
	if a.SecretsKey != "" {
		current, err = expandSecretsKey(repl, a.SecretsKey)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("oauth2: secrets_key: %v", err)
		}
		return current, retired, nil, nil
	}
	if len(retired) > 0 {
		return nil, nil, nil, errors.New("oauth2: secrets_key_retired is set without secrets_key: set secrets_key to the new key, which the secrets are sealed with again")
	}
	if redis {
		return nil, nil, nil, errors.New("oauth2: store redis needs secrets_key: the session and signing keys kept in Redis are sealed with it, " +
			"and every instance must hold the same one. Set `secrets_key {env.OAUTH2_SECRETS_KEY}` (32 bytes, base64; make one with: openssl rand -base64 32) in the oauth2 block")
	}
	keyFile = &secretsKeyFile{path: filepath.Join(caddy.AppDataDir(), secretsKeyFileName)}
	current, keyFile.created, err = loadOrCreateKeyFile(keyFile.path)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("oauth2: no secrets_key is set, and the key file that stands in for it cannot be used: %v; or set secrets_key", err)
	}
	if st, err := os.Stat(keyFile.path); err == nil && st.Mode().Perm()&0o077 != 0 {
		a.logger.Warn("the secrets key file is readable by other users than Caddy's: chmod 600 it",
			zap.String("key_file", keyFile.path), zap.String("mode", st.Mode().Perm().String()))
	}
	if _, done := keyFileLogged.LoadOrStore(keyFile.path, true); !done {
		a.logger.Info("no secrets_key is set: the secrets in the store are sealed with a key generated in a file beside Caddy's data; "+
			"set secrets_key (from {env.*} or {file.*}) for protection that does not depend on that file staying out of reach",
			zap.String("key_file", keyFile.path), zap.String("key_id", authz.SecretsKeyID(current)))
	}
	return current, nil, keyFile, nil
}

// secretsKeyFile is the generated key file standing in for secrets_key.
type secretsKeyFile struct {
	path    string
	created bool // by this start
}

// explain adds the key file to an error of a secret the key does not open.
// A key file this start created cannot have sealed anything: it is removed,
// so that the one that did can be put back.
func (f *secretsKeyFile) explain(err error) error {
	if !f.created {
		return fmt.Errorf("oauth2: no secrets_key is set, so secrets_key is the key in %s: %w", f.path, err)
	}
	_ = os.Remove(f.path)
	return fmt.Errorf("oauth2: no secrets_key is set and there was no key file %s (a new one was made for this start and removed again): "+
		"put back the key file that sealed this store, or set secrets_key to its key: %w", f.path, err)
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
func loadOrCreateKeyFile(path string) (key []byte, created bool, err error) {
	if k, err := readKeyFile(path); !errors.Is(err, fs.ErrNotExist) {
		return k, false, err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, err
	}
	key = make([]byte, authz.SecretsKeySize)
	_, _ = rand.Read(key) // crypto/rand.Read never fails on Go ≥1.24

	// CreateTemp makes the file with mode 0600.
	tmp, err := os.CreateTemp(dir, "."+secretsKeyFileName+"-*")
	if err != nil {
		return nil, false, err
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
		return nil, false, fmt.Errorf("%s: %v", path, err)
	}
	if err := os.Link(tmp.Name(), path); errors.Is(err, fs.ErrExist) {
		k, err := readKeyFile(path) // another process made it first
		return k, false, err
	} else if err != nil {
		return nil, false, fmt.Errorf("%s: %v", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return key, true, nil
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
