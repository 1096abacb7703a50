package authz

import (
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
)

// PasswordHash is a stored bcrypt or argon2id hash, in the forms that
// `caddy hash-password` prints ($2a$…, $argon2id$v=19$m=…,t=…,p=…$salt$key;
// older Caddy printed the bcrypt hash base64-encoded, which is accepted too).
type PasswordHash struct {
	bcrypt []byte
	argon  *argon2Params
}

type argon2Params struct {
	memory  uint32
	time    uint32
	threads uint8
	salt    []byte
	key     []byte
}

// ParsePasswordHash checks the form of a stored hash once, at provisioning.
func ParsePasswordHash(s string) (PasswordHash, error) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, "$") {
		if dec, err := base64.StdEncoding.DecodeString(s); err == nil && strings.HasPrefix(string(dec), "$2") {
			s = string(dec)
		}
	}
	switch {
	case strings.HasPrefix(s, "$2a$"), strings.HasPrefix(s, "$2b$"), strings.HasPrefix(s, "$2y$"):
		if _, err := bcrypt.Cost([]byte(s)); err != nil {
			return PasswordHash{}, fmt.Errorf("invalid bcrypt hash: %v", err)
		}
		return PasswordHash{bcrypt: []byte(s)}, nil
	case strings.HasPrefix(s, "$argon2id$"):
		p, err := parseArgon2id(s)
		if err != nil {
			return PasswordHash{}, err
		}
		return PasswordHash{argon: p}, nil
	}
	return PasswordHash{}, errors.New("not a bcrypt or argon2id hash (make one with `caddy hash-password`)")
}

func parseArgon2id(s string) (*argon2Params, error) {
	parts := strings.Split(s, "$")
	// "", "argon2id", "v=19", "m=…,t=…,p=…", salt, key
	if len(parts) != 6 || parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return nil, errors.New("invalid argon2id hash: want $argon2id$v=19$m=…,t=…,p=…$salt$key")
	}
	var p argon2Params
	for _, kv := range strings.Split(parts[3], ",") {
		k, v, _ := strings.Cut(kv, "=")
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("invalid argon2id parameter %q", kv)
		}
		switch k {
		case "m":
			p.memory = uint32(n)
		case "t":
			p.time = uint32(n)
		case "p":
			if n == 0 || n > 255 {
				return nil, fmt.Errorf("invalid argon2id parallelism %d", n)
			}
			p.threads = uint8(n)
		default:
			return nil, fmt.Errorf("unknown argon2id parameter %q", k)
		}
	}
	if p.memory == 0 || p.time == 0 || p.threads == 0 {
		return nil, errors.New("invalid argon2id hash: m, t and p are required")
	}
	var err error
	if p.salt, err = base64.RawStdEncoding.DecodeString(parts[4]); err != nil {
		return nil, errors.New("invalid argon2id salt")
	}
	if p.key, err = base64.RawStdEncoding.DecodeString(parts[5]); err != nil || len(p.key) == 0 {
		return nil, errors.New("invalid argon2id key")
	}
	return &p, nil
}

// IsZero reports whether no hash is set.
func (h PasswordHash) IsZero() bool { return h.bcrypt == nil && h.argon == nil }

// Verify compares plaintext with the hash in constant time.
func (h PasswordHash) Verify(plaintext string) bool {
	switch {
	case h.bcrypt != nil:
		return bcrypt.CompareHashAndPassword(h.bcrypt, []byte(plaintext)) == nil
	case h.argon != nil:
		p := h.argon
		key := argon2.IDKey([]byte(plaintext), p.salt, p.time, p.memory, p.threads, uint32(len(p.key)))
		return subtle.ConstantTimeCompare(key, p.key) == 1
	}
	return false
}

// class names the hash's algorithm and cost parameters: hashes of one class
// cost the same to verify.
func (h PasswordHash) class() string {
	switch {
	case h.bcrypt != nil:
		c, _ := bcrypt.Cost(h.bcrypt)
		return "bcrypt-" + strconv.Itoa(c)
	case h.argon != nil:
		p := h.argon
		return fmt.Sprintf("argon2id-m%d-t%d-p%d-l%d", p.memory, p.time, p.threads, len(p.key))
	}
	return ""
}

// memoryBytes is what one verification allocates (argon2id's m; bcrypt's
// few KiB count as nothing).
func (h PasswordHash) memoryBytes() uint64 {
	if h.argon != nil {
		return uint64(h.argon.memory) * 1024
	}
	return 0
}

// dummyBcrypt is the decoy when nothing of a kind has a hash.
var dummyBcrypt = sync.OnceValue(func() PasswordHash {
	h, _ := bcrypt.GenerateFromPassword([]byte("oauth2gate timing equaliser"), bcrypt.DefaultCost)
	return PasswordHash{bcrypt: h}
})
