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

// grants are the client's grants, or the default ones when it lists none:
// the code flow with refresh, and client_credentials for a confidential one.
func (c ClientConfig) grants() []string {
	if len(c.Grants) > 0 {
		return slices.Clone(c.Grants)
	}
	g := []string{GrantAuthorizationCode, GrantRefreshToken}
	if !c.Public {
		g = append(g, GrantClientCredentials)
	}
	return g
}

// Check finds what makes c an impossible client, without parsing its secret
// (which may still be a placeholder): the Caddyfile adapter calls it to name
// the line, provisioning calls it for every configuration.
func (c ClientConfig) Check() error {
	switch {
	case c.ID == "":
		return errorf("a client needs an ID")
	case c.Public && c.SecretHash != "":
		return errorf("client %q: a public client has no secret", c.ID)
	case !c.Public && c.SecretHash == "":
		return errorf("client %q: needs a secret, or `public`", c.ID)
	}
	grants := c.grants()
	for _, g := range grants {
		if !slices.Contains(KnownGrants, g) {
			return errorf("client %q: unknown grant %q", c.ID, g)
		}
		if g == GrantClientCredentials && c.Public {
			return errorf("client %q: client_credentials needs a confidential client (RFC 6749 §4.4)", c.ID)
		}
	}
	if (slices.Contains(grants, GrantAuthorizationCode) || slices.Contains(grants, GrantImplicit)) && len(c.RedirectURIs) == 0 {
		return errorf("client %q: authorization_code and implicit need redirect_uris", c.ID)
	}
	for _, u := range c.RedirectURIs {
		if err := checkRedirectURI(u); err != nil {
			return errorf("client %q: redirect_uri %q: %v", c.ID, u, err)
		}
	}
	if _, err := scope.Parse(joinSpace(c.Scopes)); err != nil {
		return errorf("client %q: scopes: %v", c.ID, err)
	}
	return nil
}

func newClient(c ClientConfig, memoKey []byte) (*Client, error) {
	if err := c.Check(); err != nil {
		return nil, err
	}
	cl := &Client{
		ID:           c.ID,
		Public:       c.Public,
		Grants:       c.grants(),
		RedirectURIs: slices.Clone(c.RedirectURIs),
		Name:         c.Name,
		SkipConsent:  c.SkipConsent,
		memoKey:      memoKey,
	}
	cl.Scopes, _ = scope.Parse(joinSpace(c.Scopes)) // checked above
	if c.SecretHash != "" {
		var err error
		if cl.secret, err = ParsePasswordHash(c.SecretHash); err != nil {
			return nil, errorf("client %q: secret: %v", c.ID, err)
		}
	}
	return cl, nil
}

// Allows reports whether the client may use grant.
func (c *Client) Allows(grant string) bool { return slices.Contains(c.Grants, grant) }

// HasRedirectURI is the exact match RFC 9700 §4.1.3 asks for: no prefix,
// subdomain, port or path variants.
func (c *Client) HasRedirectURI(u string) bool { return slices.Contains(c.RedirectURIs, u) }

// VerifySecret checks a presented secret in constant time (a secret seen
// right before is known from its keyed hash, without the password hash).
func (c *Client) VerifySecret(secret string) bool {
	if c.Public {
		return secret == ""
	}
	if c.memoized(secret) {
		return true
	}
	if !c.secret.Verify(secret) {
		return false
	}
	c.memoize(secret)
	return true
}

func (c *Client) memoSum(secret string) []byte {
	mac := hmac.New(sha256.New, c.memoKey)
	mac.Write([]byte(secret))
	return mac.Sum(nil)
}

// memoized reports whether secret is the one this client was verified with.
func (c *Client) memoized(secret string) bool {
	if c.Public {
		return false
	}
	c.mu.RLock()
	known := c.verified
	c.mu.RUnlock()
	return known != nil && hmac.Equal(known, c.memoSum(secret))
}

// hasMemo reports whether a verified secret is remembered.
func (c *Client) hasMemo() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.verified != nil
}

// memoize remembers a verified secret by its keyed hash.
func (c *Client) memoize(secret string) {
	sum := c.memoSum(secret)
	c.mu.Lock()
	c.verified = sum
	c.mu.Unlock()
}

func newMemoKey() []byte {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		panic("crypto/rand failed: " + err.Error()) // never happens on Go ≥1.24
	}
	return k
}
