package authz

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/oauth2gate/oauth2gate/authz/cache"
	"github.com/oauth2gate/oauth2gate/authz/tokenstore"
)

func testSecretsKey(t testing.TB) []byte {
	t.Helper()
	k := make([]byte, SecretsKeySize)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	return k
}

func openTestStore(t testing.TB, dir string) *tokenstore.FileStore {
	t.Helper()
	st, err := tokenstore.OpenFile(dir, tokenstore.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// rawSecret is what the store holds under name, as a reader of the store sees it.
func rawSecret(t testing.TB, st tokenstore.Store, name string) []byte {
	t.Helper()
	b, err := st.Secret(context.Background(), name, func() ([]byte, error) {
		t.Fatalf("secret %q is not in the store", name)
		return nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseSecretsKey(t *testing.T) {
	key := bytes.Repeat([]byte{0xfb, 0xff, 0xbf}, 11)[:32] // encodes to + and / (std), - and _ (url)
	tests := []struct {
		name, in, wantErr string
	}{
		{"std padded", base64.StdEncoding.EncodeToString(key), ""},
		{"std unpadded", base64.RawStdEncoding.EncodeToString(key), ""},
		{"url padded", base64.URLEncoding.EncodeToString(key), ""},
		{"url unpadded", base64.RawURLEncoding.EncodeToString(key), ""},
		{"trailing newline (a key file, {file.*})", base64.StdEncoding.EncodeToString(key) + "\n", ""},
		{"31 bytes", base64.StdEncoding.EncodeToString(key[:31]), "31 bytes, want 32"},
		{"33 bytes", base64.StdEncoding.EncodeToString(append(key, 1)), "33 bytes, want 32"},
		{"hex is not base64 of 32 bytes", strings.Repeat("ab", 32), "48 bytes, want 32"},
		{"not base64", "this is not a key!", "not base64"},
		{"empty", "", "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseSecretsKey(tt.in)
			if tt.wantErr == "" {
				if err != nil || !bytes.Equal(got, key) {
					t.Fatalf("ParseSecretsKey = %x, %v; want %x", got, err, key)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
			if tt.in != "" && strings.Contains(err.Error(), strings.TrimSpace(tt.in)) {
				t.Fatalf("the error shows the key: %v", err)
			}
		})
	}
}

// TestFinding3_SealedSecretIsBoundToItsNameAndKey: a sealed secret is unreadable in the store,
// opens only under its own name and only with the key that sealed it; every refusal names the
// secret and the keys, and leaves the stored value as it was (never a silent regeneration).
func TestFinding3_SealedSecretIsBoundToItsNameAndKey(t *testing.T) {
	ctx := context.Background()
	st := openTestStore(t, t.TempDir())
	defer st.Close()
	keyA, keyB := testSecretsKey(t), testSecretsKey(t)
	a, err := newSealedSecrets(st, keyA, nil, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	clear := []byte("the session key, 43 characters long, abcdef")
	got, err := a.Secret(ctx, "session_key", func() ([]byte, error) { return clear, nil })
	if err != nil || !bytes.Equal(got, clear) {
		t.Fatalf("Secret = %q, %v", got, err)
	}
	raw := rawSecret(t, st, "session_key")
	if !bytes.HasPrefix(raw, []byte("v1:")) || bytes.Contains(raw, clear[:16]) {
		t.Fatalf("the store holds %q, want a v1 sealed value without the secret", raw)
	}
	again, err := a.Secret(ctx, "session_key", func() ([]byte, error) { return []byte("another"), nil })
	if err != nil || !bytes.Equal(again, clear) {
		t.Fatalf("second Secret = %q, %v; want the first value", again, err)
	}

	refused := func(t *testing.T, s *sealedSecrets, name string, want ...string) {
		t.Helper()
		before := rawSecret(t, st, name)
		_, err := s.Secret(ctx, name, func() ([]byte, error) { return []byte("regenerated"), nil })
		if !errors.Is(err, ErrSecretUnreadable) {
			t.Fatalf("Secret(%q) = %v, want ErrSecretUnreadable", name, err)
		}
		for _, w := range append(want, `"`+name+`"`) {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("error %q does not say %q", err, w)
			}
		}
		if after := rawSecret(t, st, name); !bytes.Equal(before, after) {
			t.Errorf("a refused secret was rewritten")
		}
	}
	t.Run("another key", func(t *testing.T) {
		b, _ := newSealedSecrets(st, keyB, nil, zap.NewNop())
		refused(t, b, "session_key", "cannot be decrypted with secrets_key (key id "+SecretsKeyID(keyB),
			"sealed with key id "+SecretsKeyID(keyA), "no secrets_key_retired is set", "secrets_key_retired")
	})
	t.Run("moved to another name", func(t *testing.T) {
		if err := st.SetSecret(ctx, "refresh_grace_key", raw); err != nil {
			t.Fatal(err)
		}
		refused(t, a, "refresh_grace_key", "does not decrypt", "another secret's name")
	})
	t.Run("one bit flipped", func(t *testing.T) {
		bad := bytes.Clone(raw)
		bad[len(bad)-1] ^= 1
		if err := st.SetSecret(ctx, "flipped", bad); err != nil {
			t.Fatal(err)
		}
		refused(t, a, "flipped", "does not decrypt")
	})
	t.Run("truncated", func(t *testing.T) {
		if err := st.SetSecret(ctx, "short", raw[:20]); err != nil {
			t.Fatal(err)
		}
		refused(t, a, "short", "truncated")
	})
	t.Run("a later format", func(t *testing.T) {
		if err := st.SetSecret(ctx, "future", []byte("v2:whatever comes next")); err != nil {
			t.Fatal(err)
		}
		refused(t, a, "future", `format "v2"`)
	})
}

// TestFinding3_RotationResealsWithTheNewKey: with the new key as secrets_key and the old one
// retired, a secret is read and sealed again with the new key, after which the old key can go.
func TestFinding3_RotationResealsWithTheNewKey(t *testing.T) {
	ctx := context.Background()
	st := openTestStore(t, t.TempDir())
	defer st.Close()
	oldKey, newKey := testSecretsKey(t), testSecretsKey(t)
	old, _ := newSealedSecrets(st, oldKey, nil, zap.NewNop())
	clear, err := old.Secret(ctx, "session_key", func() ([]byte, error) { return []byte("kept across the rotation"), nil })
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.InfoLevel)
	rotating, err := newSealedSecrets(st, newKey, [][]byte{oldKey}, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	got, err := rotating.Secret(ctx, "session_key", nil)
	if err != nil || !bytes.Equal(got, clear) {
		t.Fatalf("during the rotation: %q, %v; want %q", got, err, clear)
	}
	if e := logs.FilterMessageSnippet("retired key").All(); len(e) != 1 || e[0].ContextMap()["secret"] != "session_key" {
		t.Errorf("want one info line naming the re-sealed secret, got %v", logs.All())
	}
	newOnly, _ := newSealedSecrets(st, newKey, nil, zap.NewNop())
	if got, err := newOnly.Secret(ctx, "session_key", nil); err != nil || !bytes.Equal(got, clear) {
		t.Fatalf("after the rotation, without the retired key: %q, %v", got, err)
	}
	oldOnly, _ := newSealedSecrets(st, oldKey, nil, zap.NewNop())
	if _, err := oldOnly.Secret(ctx, "session_key", nil); !errors.Is(err, ErrSecretUnreadable) {
		t.Fatalf("the old key still opens the re-sealed secret: %v", err)
	}
}

// TestFinding3_UpgradeSealsAStoreWrittenInClear: a store as today's code writes it (secrets in
// clear through the store's own Secret: hex in the file store) is taken over by New with a
// secrets key: the same session key and signing keys (no one logged out, no key replaced), now
// sealed in the store, each reported at info without its value; a second start reads them sealed.
func TestFinding3_UpgradeSealsAStoreWrittenInClear(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st := openTestStore(t, dir)
	legacySession, legacyGrace := randomToken(), randomToken()
	var legacyKeys []storedKey
	for _, alg := range []jose.SignatureAlgorithm{jose.RS256, jose.ES256} {
		priv, err := generateKey(alg)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := encodePEM(priv)
		legacyKeys = append(legacyKeys, storedKey{KID: thumbprintKID(priv.Public()), Alg: string(alg), PEM: p})
	}
	legacyJSON, _ := json.Marshal(legacyKeys)
	for name, v := range map[string][]byte{"session_key": []byte(legacySession), "refresh_grace_key": []byte(legacyGrace), keySetSecret: legacyJSON} {
		if _, err := st.Secret(ctx, name, func() ([]byte, error) { return v, nil }); err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Contains(rawSecret(t, st, keySetSecret), []byte("PRIVATE KEY")) {
		t.Fatal("the legacy store does not hold the signing keys in clear: the test set it up wrong")
	}
	st.Close()

	key := testSecretsKey(t)
	start := func(logger *zap.Logger) (*Server, *tokenstore.FileStore) {
		t.Helper()
		st := openTestStore(t, dir)
		c := newTestCache(t)
		s, err := New(ctx, Config{Issuer: "http://issuer.test", SecretsKey: key}, st, c, logger)
		if err != nil {
			st.Close()
			t.Fatal(err)
		}
		return s, st
	}
	core, logs := observer.New(zapcore.InfoLevel)
	s, st2 := start(zap.New(core))
	if string(s.sessionKey) != legacySession || string(s.graceKey) != legacyGrace {
		t.Error("the upgrade changed the session or grace key: every user would be logged out")
	}
	jwks := string(s.keys.JWKS())
	for _, k := range legacyKeys {
		if !strings.Contains(jwks, `"kid":"`+k.KID+`"`) || s.keys.key(jose.SignatureAlgorithm(k.Alg)).kid != k.KID {
			t.Errorf("the upgrade replaced the %s signing key %s", k.Alg, k.KID)
		}
	}
	sealed := logs.FilterMessageSnippet("held in clear is now sealed").All()
	var names []string
	for _, e := range sealed {
		names = append(names, e.ContextMap()["secret"].(string))
		for _, f := range e.Context {
			if strings.Contains(f.String, legacySession) || strings.Contains(f.String, "PRIVATE") {
				t.Errorf("the log line shows a secret: %v", e.Context)
			}
		}
	}
	if len(sealed) != 3 {
		t.Errorf("want an info line for each of the 3 secrets sealed, got %v", names)
	}
	for _, name := range []string{"session_key", "refresh_grace_key", keySetSecret} {
		raw := rawSecret(t, st2, name)
		if !bytes.HasPrefix(raw, []byte("v1:")) || bytes.Contains(raw, []byte(legacySession)) || bytes.Contains(raw, []byte("PRIVATE KEY")) {
			t.Errorf("after the upgrade the store holds %s as %.40q…, want it sealed", name, raw)
		}
	}
	st2.Close()

	core, logs = observer.New(zapcore.InfoLevel)
	s, st3 := start(zap.New(core))
	defer st3.Close()
	if string(s.sessionKey) != legacySession {
		t.Error("the second start read another session key")
	}
	if n := logs.FilterMessageSnippet("sealed").Len(); n != 0 {
		t.Errorf("the second start sealed %d secrets again", n)
	}
}

func newTestCache(t testing.TB) *cache.Cache {
	t.Helper()
	c, err := cache.New(cache.Options{MaxTokens: 1000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}
