package tests

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// clientSpec is one `client` entry of the oauth2 block.
type clientSpec struct {
	ID           string
	Secret       string // plain text, hashed into the Caddyfile; "" makes a `public` client
	Grants       string
	RedirectURIs string
	Scopes       string
	Name         string
	SkipConsent  bool
	// AllowedOrigins is the allowed_origins line (CORS), space-separated.
	AllowedOrigins string
}

// userSpec is one `user` entry of the oauth2 block.
type userSpec struct {
	Name     string
	Password string // plain text, hashed into the Caddyfile
	Claims   [][2]string
}

// gateSpec is the body of the global oauth2 block (issuer and store are added by the harness).
type gateSpec struct {
	Settings string // lines first in the block: lifetimes, switches
	Clients  []clientSpec
	Users    []userSpec
}

func (g gateSpec) body(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	if s := strings.TrimSpace(g.Settings); s != "" {
		b.WriteString(s + "\n")
	}
	for _, c := range g.Clients {
		fmt.Fprintf(&b, "client %s {\n", c.ID)
		if c.Secret != "" {
			fmt.Fprintf(&b, "\tsecret %s\n", hashSecret(t, c.Secret))
		} else {
			b.WriteString("\tpublic\n")
		}
		if c.Grants != "" {
			fmt.Fprintf(&b, "\tgrants %s\n", c.Grants)
		}
		if c.RedirectURIs != "" {
			fmt.Fprintf(&b, "\tredirect_uris %s\n", c.RedirectURIs)
		}
		if c.Scopes != "" {
			fmt.Fprintf(&b, "\tscopes %s\n", c.Scopes)
		}
		if c.AllowedOrigins != "" {
			fmt.Fprintf(&b, "\tallowed_origins %s\n", c.AllowedOrigins)
		}
		if c.Name != "" {
			fmt.Fprintf(&b, "\tname %q\n", c.Name)
		}
		if c.SkipConsent {
			b.WriteString("\tskip_consent\n")
		}
		b.WriteString("}\n")
	}
	for _, u := range g.Users {
		if len(u.Claims) == 0 {
			fmt.Fprintf(&b, "user %s %s\n", u.Name, hashSecret(t, u.Password))
			continue
		}
		fmt.Fprintf(&b, "user %s %s {\n", u.Name, hashSecret(t, u.Password))
		for _, c := range u.Claims {
			fmt.Fprintf(&b, "\tclaim %s %s\n", c[0], c[1])
		}
		b.WriteString("}\n")
	}
	return b.String()
}

// startGate runs Caddy with the given clients and users on base path /o.
func startGate(t *testing.T, g gateSpec) *instance {
	t.Helper()
	return startGateWith(t, g, siteOptions{BasePath: "/o"})
}

func startGateWith(t *testing.T, g gateSpec, opts siteOptions) *instance {
	t.Helper()
	in := startCaddyWith(t, g.body(t), opts)
	for _, c := range g.Clients {
		in.remember("client secret", c.Secret)
	}
	for _, u := range g.Users {
		in.remember("user password", u.Password)
	}
	return in
}

// hashSecret makes the bcrypt hash the Caddyfile holds. The minimum cost keeps the suite fast.
func hashSecret(t *testing.T, plain string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(plain), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// randomSecret is prefix followed by 144 random bits, URL-safe.
func randomSecret(prefix string) string {
	buf := make([]byte, 18)
	if _, err := rand.Read(buf); err != nil {
		panic(err)
	}
	return prefix + base64.RawURLEncoding.EncodeToString(buf)
}

// A user with claims, and a password with characters that need form encoding.
func alice() userSpec {
	return userSpec{
		Name:     "alice",
		Password: randomSecret("Pässwörd &=+ "),
		Claims:   [][2]string{{"email", "alice@example.com"}},
	}
}

// A user without a claims block.
func bob() userSpec {
	return userSpec{Name: "bob", Password: randomSecret("bob-pw-")}
}
