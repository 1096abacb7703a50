package authz

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Signing keys (id_token, JWT access tokens): RS256, which every relying
// party supports, signs id_tokens; ES256 signs JWT access tokens (cheap to
// sign at issuance). Both are generated on first start and kept in the store,
// sealed with the secrets key (secrets.go), unless signing_key names a PEM
// file, whose key then replaces the generated one of its kind. A replaced key stays in the JWKS until the last token
// signed with it has expired.

const keySetSecret = "signing_keys"

// storedKey is one key as kept in the store.
type storedKey struct {
	KID       string `json:"kid"`
	Alg       string `json:"alg"`
	PEM       string `json:"pem"`               // PKCS#8 private key
	RetiredAt int64  `json:"retired,omitempty"` // unix; 0 while current
	NotAfter  int64  `json:"not_after,omitempty"`
}

type signingKey struct {
	kid    string
	alg    jose.SignatureAlgorithm
	priv   crypto.Signer
	signer jose.Signer // for JWTs with typ JWT
	atSign jose.Signer // for JWT access tokens, typ at+jwt (RFC 9068 §2.1)
}

// KeySet holds the current signing keys and the retired ones still published.
type KeySet struct {
	mu      sync.RWMutex
	current map[jose.SignatureAlgorithm]*signingKey
	public  map[string]jose.JSONWebKey // kid → public key, current and retired
	jwks    []byte
}

func newSigningKey(kid string, alg jose.SignatureAlgorithm, priv crypto.Signer) (*signingKey, error) {
	k := &signingKey{kid: kid, alg: alg, priv: priv}
	jwk := jose.JSONWebKey{Key: priv, KeyID: kid, Algorithm: string(alg), Use: "sig"}
	var err error
	if k.signer, err = jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jwk}, (&jose.SignerOptions{}).WithType("JWT")); err != nil {
		return nil, err
	}
	if k.atSign, err = jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jwk}, (&jose.SignerOptions{}).WithType("at+jwt")); err != nil {
		return nil, err
	}
	return k, nil
}

func generateKey(alg jose.SignatureAlgorithm) (crypto.Signer, error) {
	switch alg {
	case jose.RS256:
		return rsa.GenerateKey(rand.Reader, 2048)
	case jose.ES256:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	return nil, fmt.Errorf("unsupported algorithm %s", alg)
}

// thumbprintKID names a key by its RFC 7638 thumbprint.
func thumbprintKID(pub crypto.PublicKey) string {
	tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(tp)[:16]
}

func algOf(priv crypto.Signer) (jose.SignatureAlgorithm, error) {
	switch k := priv.(type) {
	case *rsa.PrivateKey:
		if k.N.BitLen() < 2048 {
			return "", errors.New("RSA signing key shorter than 2048 bits")
		}
		return jose.RS256, nil
	case *ecdsa.PrivateKey:
		if k.Curve != elliptic.P256() {
			return "", errors.New("EC signing key must be on P-256 (ES256)")
		}
		return jose.ES256, nil
	}
	return "", errors.New("signing key must be RSA (RS256) or EC P-256 (ES256)")
}

// loadPEMKey reads a private key from PEM (PKCS#8, PKCS#1 or SEC 1).
func loadPEMKey(data []byte) (crypto.Signer, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no private key found in PEM")
		}
		var k any
		var err error
		switch block.Type {
		case "PRIVATE KEY":
			k, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			k, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			k, err = x509.ParseECPrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, err
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, errors.New("unsupported private key type")
		}
		return s, nil
	}
}

func encodePEM(priv crypto.Signer) (string, error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), nil
}

// loadKeySet reads the stored keys, generating what is missing, adopting the
// configured signing_key, and retiring keys it replaces (kept for retain).
func loadKeySet(ctx context.Context, st secretStore, signingKeyFile string, retain time.Duration, now time.Time) (*KeySet, error) {
	var configured crypto.Signer
	if signingKeyFile != "" {
		data, err := os.ReadFile(signingKeyFile)
		if err != nil {
			return nil, fmt.Errorf("signing_key: %v", err)
		}
		if configured, err = loadPEMKey(data); err != nil {
			return nil, fmt.Errorf("signing_key %s: %v", signingKeyFile, err)
		}
		if _, err := algOf(configured); err != nil {
			return nil, fmt.Errorf("signing_key %s: %v", signingKeyFile, err)
		}
	}
	raw, err := st.Secret(ctx, keySetSecret, func() ([]byte, error) { return []byte("[]"), nil })
	if err != nil {
		return nil, fmt.Errorf("loading signing keys: %w", err)
	}
	var stored []storedKey
	if err := json.Unmarshal(raw, &stored); err != nil {
		return nil, fmt.Errorf("stored signing keys are corrupt: %v", err)
	}
	changed := false
	// drop retired keys whose tokens have all expired
	kept := stored[:0]
	for _, k := range stored {
		if k.NotAfter != 0 && k.NotAfter < now.Unix() {
			changed = true
			continue
		}
		kept = append(kept, k)
	}
	stored = kept
	current := func(alg jose.SignatureAlgorithm) int {
		for i, k := range stored {
			if k.Alg == string(alg) && k.RetiredAt == 0 {
				return i
			}
		}
		return -1
	}
	retire := func(i int) {
		stored[i].RetiredAt = now.Unix()
		stored[i].NotAfter = now.Add(retain).Unix()
		changed = true
	}
	if configured != nil {
		alg, _ := algOf(configured)
		kid := thumbprintKID(configured.Public())
		if i := current(alg); i < 0 || stored[i].KID != kid {
			if i >= 0 {
				retire(i)
			}
			p, err := encodePEM(configured)
			if err != nil {
				return nil, err
			}
			stored = append(stored, storedKey{KID: kid, Alg: string(alg), PEM: p})
			changed = true
		}
	}
	for _, alg := range []jose.SignatureAlgorithm{jose.RS256, jose.ES256} {
		if current(alg) >= 0 {
			continue
		}
		priv, err := generateKey(alg)
		if err != nil {
			return nil, err
		}
		p, err := encodePEM(priv)
		if err != nil {
			return nil, err
		}
		stored = append(stored, storedKey{KID: thumbprintKID(priv.Public()), Alg: string(alg), PEM: p})
		changed = true
	}
	if changed {
		b, _ := json.Marshal(stored)
		if err := st.SetSecret(ctx, keySetSecret, b); err != nil {
			return nil, fmt.Errorf("saving signing keys: %w", err)
		}
	}
	return buildKeySet(stored)
}

// RotateKeys retires the current generated keys and makes new ones (tests and
// operators); the old public keys stay published for retain.
func (s *Server) RotateKeys(ctx context.Context) error {
	raw, err := s.secrets.Secret(ctx, keySetSecret, func() ([]byte, error) { return []byte("[]"), nil })
	if err != nil {
		return err
	}
	var stored []storedKey
	if err := json.Unmarshal(raw, &stored); err != nil {
		return err
	}
	now := s.now()
	for i := range stored {
		if stored[i].RetiredAt == 0 {
			stored[i].RetiredAt = now.Unix()
			stored[i].NotAfter = now.Add(s.keyRetention()).Unix()
		}
	}
	b, _ := json.Marshal(stored)
	if err := s.secrets.SetSecret(ctx, keySetSecret, b); err != nil {
		return err
	}
	ks, err := loadKeySet(ctx, s.secrets, "", s.keyRetention(), now)
	if err != nil {
		return err
	}
	s.keys.swap(ks)
	return nil
}

func buildKeySet(stored []storedKey) (*KeySet, error) {
	ks := &KeySet{current: map[jose.SignatureAlgorithm]*signingKey{}, public: map[string]jose.JSONWebKey{}}
	var pubs []jose.JSONWebKey
	for _, k := range stored {
		priv, err := loadPEMKey([]byte(k.PEM))
		if err != nil {
			return nil, fmt.Errorf("stored signing key %s: %v", k.KID, err)
		}
		alg := jose.SignatureAlgorithm(k.Alg)
		pub := jose.JSONWebKey{Key: priv.Public(), KeyID: k.KID, Algorithm: k.Alg, Use: "sig"}
		ks.public[k.KID] = pub
		pubs = append(pubs, pub)
		if k.RetiredAt == 0 {
			sk, err := newSigningKey(k.KID, alg, priv)
			if err != nil {
				return nil, err
			}
			ks.current[alg] = sk
		}
	}
	var err error
	ks.jwks, err = json.Marshal(jose.JSONWebKeySet{Keys: pubs})
	return ks, err
}

func (ks *KeySet) swap(other *KeySet) {
	ks.mu.Lock()
	ks.current, ks.public, ks.jwks = other.current, other.public, other.jwks
	ks.mu.Unlock()
}

// JWKS is the published key set (RFC 7517).
func (ks *KeySet) JWKS() []byte {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	return ks.jwks
}

func (ks *KeySet) key(alg jose.SignatureAlgorithm) *signingKey {
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	return ks.current[alg]
}

// sign serialises claims as a JWT signed with the current key of alg.
func (ks *KeySet) sign(alg jose.SignatureAlgorithm, accessToken bool, claims ...any) (string, error) {
	k := ks.key(alg)
	if k == nil {
		return "", fmt.Errorf("no %s signing key", alg)
	}
	signer := k.signer
	if accessToken {
		signer = k.atSign
	}
	b := jwt.Signed(signer)
	for _, c := range claims {
		b = b.Claims(c)
	}
	return b.Serialize()
}

var errBadJWT = errors.New("invalid JWT")

// verify checks a compact JWS against the published keys: only RS256 and
// ES256 (never none or HMAC), the kid must be ours, typ must match.
func (ks *KeySet) verify(token, wantTyp string, dest ...any) error {
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.RS256, jose.ES256})
	if err != nil || len(tok.Headers) != 1 {
		return errBadJWT
	}
	h := tok.Headers[0]
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); wantTyp != "" && typ != wantTyp && typ != "application/"+wantTyp {
		return errBadJWT
	}
	ks.mu.RLock()
	pub, ok := ks.public[h.KeyID]
	ks.mu.RUnlock()
	if !ok || pub.Algorithm != h.Algorithm {
		return errBadJWT
	}
	if err := tok.Claims(pub.Key, dest...); err != nil {
		return errBadJWT
	}
	return nil
}

// atHash is OIDC Core 3.1.3.6's at_hash for RS256/ES256: the left half of the
// SHA-256 of the access token, base64url.
func atHash(accessToken string) string {
	sum := sha256.Sum256([]byte(accessToken))
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}
