package authz

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"go.uber.org/zap"
)

// Server secrets at rest: the session key (it signs the login cookie), the
// refresh grace key and the private signing keys live in the token store so
// that every instance and every restart shares them. Whoever reads the store
// (a copied store directory, a backup, a Redis dump or replica) must not be able to
// use them, so each is sealed with AES-256-GCM under a key that is not in the
// store (secrets_key), with the secret's name as additional data: a sealed
// value moved under another name does not open.
//
// Stored form: "v1:" | key id (8 bytes) | nonce (12 bytes) | ciphertext+tag.
// The version lets the format evolve; the key id names the key that sealed a
// value, so an error can say which key is missing.

// ErrSecretUnreadable is wrapped by the errors of a stored secret that the
// configured secrets keys do not open.
var ErrSecretUnreadable = errors.New("a secret in the store cannot be decrypted")

type unreadableSecret struct{ msg string }

func (e *unreadableSecret) Error() string { return e.msg }
func (e *unreadableSecret) Unwrap() error { return ErrSecretUnreadable }

func unreadable(format string, args ...any) error {
	return &unreadableSecret{fmt.Sprintf(format, args...)}
}

// SecretsKeySize is the size of a secrets key: AES-256.
const SecretsKeySize = 32

const (
	sealedV1    = "v1:"
	sealKeyID   = 8
	sealedV1Min = len(sealedV1) + sealKeyID + 12 + 16 // header, nonce, GCM tag
)

// ParseSecretsKey decodes a secrets key: 32 bytes in base64, standard or URL
// alphabet, padded or not. The error never shows the input.
func ParseSecretsKey(s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, errors.New("the key is empty")
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		b, err := enc.DecodeString(s)
		if err != nil {
			continue
		}
		if len(b) != SecretsKeySize {
			return nil, fmt.Errorf("the key is %d bytes, want %d (make one with: openssl rand -base64 32)", len(b), SecretsKeySize)
		}
		return b, nil
	}
	return nil, errors.New("the key is not base64 (make one with: openssl rand -base64 32)")
}

// SecretsKeyID is the public name of a secrets key, as errors and logs show
// it: a truncated SHA-256, which tells nothing about the key.
func SecretsKeyID(key []byte) string {
	id := secretsKeyID(key)
	return hex.EncodeToString(id[:])
}

func secretsKeyID(key []byte) [sealKeyID]byte {
	m := sha256.New()
	m.Write([]byte("oauth2gate secrets key id\x00"))
	m.Write(key)
	var id [sealKeyID]byte
	copy(id[:], m.Sum(nil))
	return id
}

type sealKey struct {
	id   [sealKeyID]byte
	aead cipher.AEAD
}

func newSealKey(key []byte) (sealKey, error) {
	if len(key) != SecretsKeySize {
		return sealKey{}, fmt.Errorf("secrets key: %d bytes, want %d", len(key), SecretsKeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return sealKey{}, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return sealKey{}, err
	}
	return sealKey{id: secretsKeyID(key), aead: aead}, nil
}

func (k sealKey) name() string { return hex.EncodeToString(k.id[:]) }

// secretStore is what the token store offers for server secrets.
type secretStore interface {
	Secret(ctx context.Context, name string, gen func() ([]byte, error)) ([]byte, error)
	SetSecret(ctx context.Context, name string, value []byte) error
}

// sealedSecrets is a secretStore that seals what it writes and opens what it
// reads; a value read with a retired key, or left in clear by an older
// version, is sealed again with the current key and written back.
type sealedSecrets struct {
	st      secretStore
	current sealKey
	retired []sealKey
	logger  *zap.Logger
}

func newSealedSecrets(st secretStore, current []byte, retired [][]byte, logger *zap.Logger) (*sealedSecrets, error) {
	if len(current) == 0 {
		return nil, errors.New("no secrets key: the session and signing keys in the store would be readable by whoever reads the store")
	}
	cur, err := newSealKey(current)
	if err != nil {
		return nil, err
	}
	s := &sealedSecrets{st: st, current: cur, logger: logger}
	for i, r := range retired {
		k, err := newSealKey(r)
		if err != nil {
			return nil, fmt.Errorf("retired secrets key %d: %v", i+1, err)
		}
		if k.id != cur.id {
			s.retired = append(s.retired, k)
		}
	}
	return s, nil
}

func (s *sealedSecrets) seal(name string, clear []byte) []byte {
	out := make([]byte, 0, sealedV1Min+len(clear))
	out = append(out, sealedV1...)
	out = append(out, s.current.id[:]...)
	nonce := make([]byte, s.current.aead.NonceSize())
	_, _ = rand.Read(nonce) // crypto/rand.Read never fails on Go ≥1.24
	out = append(out, nonce...)
	return s.current.aead.Seal(out, nonce, clear, []byte(name))
}

// open returns the clear value of a stored secret and the key that sealed
// it: nil when it was in clear.
func (s *sealedSecrets) open(name string, stored []byte) (clear []byte, by *sealKey, err error) {
	if !looksSealed(stored) {
		// A value in clear was written by a version that did not seal
		// secrets. Taking it is safe: sealing protects against whoever can
		// READ the store. Whoever can WRITE it could plant a clear key of
		// their choosing, but could as well plant a token record for any
		// subject and scope under the hash of a token they made up; a
		// sealed store does not defend against a writer, and refusing clear
		// values would only break the upgrade.
		return stored, nil, nil
	}
	if !bytes.HasPrefix(stored, []byte(sealedV1)) {
		v, _, _ := bytes.Cut(stored, []byte(":"))
		return nil, nil, unreadable("secret %q in the store is sealed in format %q, which this version does not read: run the version that wrote it, or a newer one", name, v)
	}
	if len(stored) < sealedV1Min {
		return nil, nil, unreadable("secret %q in the store is truncated (%d bytes): it is corrupt; restore the store from a backup", name, len(stored))
	}
	var id [sealKeyID]byte
	copy(id[:], stored[len(sealedV1):])
	body := stored[len(sealedV1)+sealKeyID:]
	for _, k := range append([]sealKey{s.current}, s.retired...) {
		if k.id != id {
			continue
		}
		ns := k.aead.NonceSize()
		clear, err := k.aead.Open(nil, body[:ns], body[ns:], []byte(name))
		if err != nil {
			return nil, nil, unreadable("secret %q in the store names key id %s but does not decrypt with it: it was modified, corrupted or moved from another secret's name; restore the store from a backup", name, k.name())
		}
		return clear, &k, nil
	}
	return nil, nil, s.unknownKey(name, id)
}

func (s *sealedSecrets) unknownKey(name string, id [sealKeyID]byte) error {
	retired := "no secrets_key_retired is set"
	if len(s.retired) > 0 {
		ids := make([]string, len(s.retired))
		for i, k := range s.retired {
			ids[i] = k.name()
		}
		retired = "secrets_key_retired has key ids " + strings.Join(ids, ", ")
	}
	return unreadable("secret %q in the store cannot be decrypted with secrets_key (key id %s) or any retired key (%s): it was sealed with key id %s. "+
		"Start with the key that sealed it, as secrets_key or in secrets_key_retired (it is then sealed again with secrets_key); "+
		"new secrets are not generated over it, as that would log every user out and replace the signing keys",
		name, s.current.name(), retired, hex.EncodeToString(id[:]))
}

// looksSealed reports whether a stored value is in a sealed format, of this
// version or a later one ("v<digits>:"). No value an older version stored in
// clear has that shape: session and grace keys are base64url (no ':'), the
// signing keys a JSON array.
func looksSealed(b []byte) bool {
	i := 1
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return len(b) > 0 && b[0] == 'v' && i > 1 && i < len(b) && b[i] == ':'
}

// Secret returns the named secret in clear, creating it with gen (sealed) on
// first use.
func (s *sealedSecrets) Secret(ctx context.Context, name string, gen func() ([]byte, error)) ([]byte, error) {
	stored, err := s.st.Secret(ctx, name, func() ([]byte, error) {
		clear, err := gen()
		if err != nil {
			return nil, err
		}
		return s.seal(name, clear), nil
	})
	if err != nil {
		return nil, err
	}
	clear, by, err := s.open(name, stored)
	if err != nil {
		return nil, err
	}
	if by != nil && by.id == s.current.id {
		return clear, nil
	}
	if err := s.st.SetSecret(ctx, name, s.seal(name, clear)); err != nil {
		return nil, fmt.Errorf("sealing secret %q with secrets_key: %w", name, err)
	}
	if by == nil {
		s.logger.Info("secret that the store held in clear is now sealed with secrets_key",
			zap.String("secret", name), zap.String("key_id", s.current.name()))
	} else {
		s.logger.Info("secret sealed with a retired key is now sealed with secrets_key",
			zap.String("secret", name), zap.String("key_id", s.current.name()), zap.String("retired_key_id", by.name()))
	}
	return clear, nil
}

// SetSecret seals value and stores it under name.
func (s *sealedSecrets) SetSecret(ctx context.Context, name string, value []byte) error {
	return s.st.SetSecret(ctx, name, s.seal(name, value))
}
