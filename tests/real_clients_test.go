package tests

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// TestRealClients drives the server with golang.org/x/oauth2, the client most Go programs use.
func TestRealClients(t *testing.T) {
	t.Parallel()
	web := clientSpec{ID: "web", Secret: randomSecret("web-"), Grants: "authorization_code refresh_token password", RedirectURIs: webCB, Scopes: "groups read write"}
	spa := clientSpec{ID: "spa", Grants: "authorization_code refresh_token", RedirectURIs: spaCB, Scopes: "read write"}
	svc := clientSpec{ID: "svc", Secret: randomSecret("svc-"), Grants: "client_credentials", Scopes: "read write"}
	al := alice()
	in := startGate(t, gateSpec{Clients: []clientSpec{web, spa, svc}, Users: []userSpec{al}})

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ctx = context.WithValue(ctx, oauth2.HTTPClient, &http.Client{Transport: in.transport, Timeout: requestTimeout})

	endpoint := func(style oauth2.AuthStyle) oauth2.Endpoint {
		return oauth2.Endpoint{AuthURL: in.url("/authorize"), TokenURL: in.url("/token"), AuthStyle: style}
	}
	keep := func(tok *oauth2.Token) {
		in.remember("access_token", tok.AccessToken)
		in.remember("refresh_token", tok.RefreshToken)
	}
	check := func(t *testing.T, tok *oauth2.Token, err error, wantScope string, wantRefresh bool) *oauth2.Token {
		t.Helper()
		if err != nil {
			var re *oauth2.RetrieveError
			if errors.As(err, &re) {
				t.Fatalf("token request failed: %d %s", re.Response.StatusCode, re.Body)
			}
			t.Fatalf("token request failed: %v", err)
		}
		keep(tok)
		if !tok.Valid() {
			t.Errorf("token not valid: %+v", tok)
		}
		if tok.TokenType != "Bearer" {
			t.Errorf("token_type = %q", tok.TokenType)
		}
		// clientcredentials does not copy expires_in into Token.ExpiresIn; Expiry is set by both.
		if tok.Expiry.IsZero() || time.Until(tok.Expiry) <= 0 {
			t.Errorf("no lifetime: expiry=%v", tok.Expiry)
		}
		if wantRefresh != (tok.RefreshToken != "") {
			t.Errorf("refresh token present = %v, want %v", tok.RefreshToken != "", wantRefresh)
		}
		if s, _ := tok.Extra("scope").(string); wantScope != "" && !sameScopes(s, wantScope) {
			t.Errorf("scope = %q, want %q", s, wantScope)
		}
		return tok
	}
	// codeFlow walks the browser through the URL the library built and returns the code.
	codeFlow := func(t *testing.T, authURL, redirectURI, state string) string {
		t.Helper()
		b := in.newBrowser(t)
		return mustCode(t, b.authorizeURL(authURL, "alice", al.Password, "allow"), redirectURI, state)
	}

	for _, style := range []struct {
		name string
		s    oauth2.AuthStyle
	}{{"header", oauth2.AuthStyleInHeader}, {"params", oauth2.AuthStyleInParams}, {"autodetect", oauth2.AuthStyleAutoDetect}} {
		t.Run("code flow with PKCE, confidential, auth in "+style.name, func(t *testing.T) {
			conf := &oauth2.Config{ClientID: web.ID, ClientSecret: web.Secret, Endpoint: endpoint(style.s), RedirectURL: webCB, Scopes: []string{"read", "write"}}
			verifier := oauth2.GenerateVerifier()
			state := oddState()
			code := codeFlow(t, conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier)), webCB, state)
			tok, err := conf.Exchange(ctx, code, oauth2.VerifierOption(verifier))
			tok = check(t, tok, err, "read write", true)

			// Refresh through the library: an expired token makes TokenSource refresh.
			old := *tok
			tok.Expiry = time.Now().Add(-time.Hour)
			next, err := conf.TokenSource(ctx, tok).Token()
			next = check(t, next, err, "", true)
			if next.AccessToken == old.AccessToken || next.RefreshToken == old.RefreshToken {
				t.Errorf("refresh through TokenSource did not return new tokens")
			}
		})
	}

	t.Run("code flow with PKCE, public client", func(t *testing.T) {
		conf := &oauth2.Config{ClientID: spa.ID, Endpoint: endpoint(oauth2.AuthStyleInParams), RedirectURL: spaCB, Scopes: []string{"read"}}
		verifier := oauth2.GenerateVerifier()
		code := codeFlow(t, conf.AuthCodeURL("pub-state", oauth2.S256ChallengeOption(verifier)), spaCB, "pub-state")
		tok, err := conf.Exchange(ctx, code, oauth2.VerifierOption(verifier))
		tok = check(t, tok, err, "read", true)
		tok.Expiry = time.Now().Add(-time.Minute)
		next, err := conf.TokenSource(ctx, tok).Token()
		check(t, next, err, "", true)
	})

	t.Run("exchange with a wrong verifier fails", func(t *testing.T) {
		conf := &oauth2.Config{ClientID: spa.ID, Endpoint: endpoint(oauth2.AuthStyleInParams), RedirectURL: spaCB, Scopes: []string{"read"}}
		code := codeFlow(t, conf.AuthCodeURL("bad", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())), spaCB, "bad")
		in.remember("code", code)
		_, err := conf.Exchange(ctx, code, oauth2.VerifierOption(oauth2.GenerateVerifier()))
		var re *oauth2.RetrieveError
		if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
			t.Errorf("want invalid_grant, got %v", err)
		}
	})

	for _, style := range []struct {
		name string
		s    oauth2.AuthStyle
	}{{"header", oauth2.AuthStyleInHeader}, {"params", oauth2.AuthStyleInParams}} {
		t.Run("password grant, auth in "+style.name, func(t *testing.T) {
			conf := &oauth2.Config{ClientID: web.ID, ClientSecret: web.Secret, Endpoint: endpoint(style.s), Scopes: []string{"read"}}
			in.remember("password", al.Password)
			tok, err := conf.PasswordCredentialsToken(ctx, "alice", al.Password)
			tok = check(t, tok, err, "read", true)
			tok.Expiry = time.Now().Add(-time.Minute)
			next, err := conf.TokenSource(ctx, tok).Token()
			check(t, next, err, "read", true)
		})

		t.Run("client_credentials, auth in "+style.name, func(t *testing.T) {
			conf := clientcredentials.Config{ClientID: svc.ID, ClientSecret: svc.Secret, TokenURL: in.url("/token"), AuthStyle: style.s}
			tok, err := conf.Token(ctx)
			check(t, tok, err, "read write", false)

			conf.Scopes = []string{"write"}
			tok, err = conf.Token(ctx)
			check(t, tok, err, "write", false)
		})
	}

	t.Run("client_credentials with a wrong secret", func(t *testing.T) {
		conf := clientcredentials.Config{ClientID: svc.ID, ClientSecret: "wrong-" + svc.Secret, TokenURL: in.url("/token"), AuthStyle: oauth2.AuthStyleInHeader}
		in.remember("client secret", conf.ClientSecret)
		_, err := conf.Token(ctx)
		var re *oauth2.RetrieveError
		if !errors.As(err, &re) || re.ErrorCode != "invalid_client" || re.Response.StatusCode != http.StatusUnauthorized {
			t.Errorf("want 401 invalid_client, got %v", err)
		}
	})
}
