package authz

import (
	"context"
	"crypto/rand"
	"encoding/base64"

	"github.com/go-oauth2/oauth2/v4"
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

type codeGenerator struct{}

func (codeGenerator) Token(ctx context.Context, data *oauth2.GenerateBasic) (string, error) {
	return randomToken(), nil
}

type accessGenerator struct{}

func (accessGenerator) Token(ctx context.Context, data *oauth2.GenerateBasic, isGenRefresh bool) (string, string, error) {
	access := randomToken()
	refresh := ""
	if isGenRefresh {
		refresh = randomToken()
	}
	return access, refresh, nil
}

var (
	_ oauth2.AuthorizeGenerate = codeGenerator{}
	_ oauth2.AccessGenerate    = accessGenerator{}
)
