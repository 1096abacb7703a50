package authz

import (
	"crypto/rand"
	"encoding/base64"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// tokenBytes is the entropy of every token, code and grant ID: 256 bits from
// crypto/rand (go-oauth2's default derives tokens from a UUID, 122 bits).
const tokenBytes = 32

// randomToken returns 43 URL-safe characters carrying 256 random bits.
func randomToken() string {
	var b [tokenBytes]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Go ≥1.24
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// accessClaims are RFC 9068 §2.2's claims of a JWT access token.
type accessClaims struct {
	Issuer   string `json:"iss"`
	Subject  string `json:"sub"`
	Audience string `json:"aud"`
	ClientID string `json:"client_id"`
	Scope    string `json:"scope,omitempty"`
	JTI      string `json:"jti"`
	Exp      int64  `json:"exp"`
	Iat      int64  `json:"iat"`
	AuthTime int64  `json:"auth_time,omitempty"`
}

// mintAccess makes an access token: opaque (256 random bits, or the given
// value) or, with access_token { format jwt }, an RFC 9068 JWT signed ES256.
func (s *Server) mintAccess(clientID, subject, scope string, authTime int64, iat, exp time.Time, opaque string) (string, error) {
	if s.cfg.AccessTokenFormat != "jwt" {
		if opaque != "" {
			return opaque, nil
		}
		return randomToken(), nil
	}
	if subject == "" {
		subject = clientID
	}
	return s.keys.sign(jose.ES256, true, accessClaims{
		Issuer: s.cfg.Issuer, Subject: subject, Audience: s.cfg.Issuer, ClientID: clientID, Scope: scope,
		JTI: randomToken()[:22], Exp: exp.Unix(), Iat: iat.Unix(), AuthTime: authTime,
	})
}
