package authz

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"slices"
	"sync"

	"github.com/oauth2gate/oauth2gate/authz/scope"
)

// Grant types (RFC 6749 §4).
const (
	GrantAuthorizationCode = "authorization_code"
	GrantImplicit          = "implicit"
	GrantPassword          = "password"
	GrantClientCredentials = "client_credentials"
	GrantRefreshToken      = "refresh_token"
)

// KnownGrants lists every grant a client may name.
var KnownGrants = []string{GrantAuthorizationCode, GrantImplicit, GrantPassword, GrantClientCredentials, GrantRefreshToken}

// ClientConfig is a registered client as configured.
type ClientConfig struct {
	ID           string
	SecretHash   string // bcrypt or argon2id; empty for a public client
	Public       bool
	Grants       []string
	RedirectURIs []string
	Scopes       []string
	Name         string
	SkipConsent  bool
}

// Client is a registered client ready for requests.
type Client struct {
	ID           string
	Public       bool
	Grants       []string
	RedirectURIs []string
	Scopes       scope.Set
	Name         string
	SkipConsent  bool

	secret PasswordHash
	// verified remembers an HMAC of the last secret that passed the hash, so
	// that client_credentials is not bound by bcrypt's cost; the plaintext is
	// never kept.
	memoKey  []byte
	mu       sync.RWMutex
	verified []byte
}

func newClient(c ClientConfig, memoKey []byte) (*Client, error) {
	cl := &Client{
		ID:           c.ID,
		Public:       c.Public,
		Grants:       slices.Clone(c.Grants),
		RedirectURIs: slices.Clone(c.RedirectURIs),
		Name:         c.Name,
		SkipConsent:  c.SkipConsent,
		memoKey:      memoKey,
	}
	var err error
	if cl.Scopes, err = scope.Parse(joinSpace(c.Scopes)); err != nil {
		return nil, errorf("client %q: scopes: %v", c.ID, err)
	}
	if c.SecretHash != "" {
		if c.Public {
			return nil, errorf("client %q: a public client has no secret", c.ID)
		}
		if cl.secret, err = ParsePasswordHash(c.SecretHash); err != nil {
			return nil, errorf("client %q: secret: %v", c.ID, err)
		}
	} else if !c.Public {
		return nil, errorf("client %q: needs a secret, or `public`", c.ID)
	}
	if len(cl.Grants) == 0 {
		cl.Grants = []string{GrantAuthorizationCode, GrantRefreshToken}
		if !c.Public {
			cl.Grants = append(cl.Grants, GrantClientCredentials)
		}
	}
	for _, g := range cl.Grants {
		if !slices.Contains(KnownGrants, g) {
			return nil, errorf("client %q: unknown grant %q", c.ID, g)
		}
		if g == GrantClientCredentials && c.Public {
			return nil, errorf("client %q: client_credentials needs a confidential client (RFC 6749 §4.4)", c.ID)
		}
	}
	if (cl.Allows(GrantAuthorizationCode) || cl.Allows(GrantImplicit)) && len(cl.RedirectURIs) == 0 {
		return nil, errorf("client %q: authorization_code and implicit need redirect_uris", c.ID)
	}
	for _, u := range cl.RedirectURIs {
		if err := checkRedirectURI(u); err != nil {
			return nil, errorf("client %q: redirect_uri %q: %v", c.ID, u, err)
		}
	}
	return cl, nil
}

// Allows reports whether the client may use grant.
func (c *Client) Allows(grant string) bool { return slices.Contains(c.Grants, grant) }

// HasRedirectURI is the exact match RFC 9700 §4.1.3 asks for: no prefix,
// subdomain, port or path variants.
func (c *Client) HasRedirectURI(u string) bool { return slices.Contains(c.RedirectURIs, u) }

// VerifySecret checks a presented secret in constant time.
func (c *Client) VerifySecret(secret string) bool {
	if c.Public {
		return secret == ""
	}
	mac := hmac.New(sha256.New, c.memoKey)
	mac.Write([]byte(secret))
	sum := mac.Sum(nil)
	c.mu.RLock()
	known := c.verified
	c.mu.RUnlock()
	if known != nil && hmac.Equal(known, sum) {
		return true
	}
	if !c.secret.Verify(secret) {
		return false
	}
	c.mu.Lock()
	c.verified = sum
	c.mu.Unlock()
	return true
}

func newMemoKey() []byte {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		panic("crypto/rand failed: " + err.Error()) // never happens on Go ≥1.24
	}
	return k
}
