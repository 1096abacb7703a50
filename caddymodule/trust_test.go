package caddymodule

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/oauth2gate/oauth2gate/authz/gateway"
)

func TestTrustBlockParsing(t *testing.T) {
	a := new(App)
	err := a.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`oauth2 {
		access_token {
			format jwt RS256
		}
		trust https://sso.example.com/realms/acme {
			jwks_uri https://sso.example.com/realms/acme/protocol/openid-connect/certs
			audience api account
			algorithms RS256 ES256
			introspection https://sso.example.com/realms/acme/protocol/openid-connect/token/introspect {
				client_id gate
				client_secret {env.KC_SECRET}
			}
			scope_claim scope
			subject_claim preferred_username
			leeway 10s
			cache_ttl 1m
		}
		trust https://idp.example.net {
			audience https://api.example.com
		}
	}`))
	if err != nil {
		t.Fatal(err)
	}
	if a.AccessToken.Format != "jwt" || a.AccessToken.Algorithm != "RS256" {
		t.Fatalf("access_token %+v", a.AccessToken)
	}
	if len(a.Trust) != 2 {
		t.Fatalf("trust %+v", a.Trust)
	}
	kc := a.Trust[0]
	if kc.Issuer != "https://sso.example.com/realms/acme" || kc.Introspection.ClientSecret != "{env.KC_SECRET}" ||
		len(kc.Audience) != 2 || kc.SubjectClaim != "preferred_username" || time.Duration(kc.CacheTTL) != time.Minute {
		t.Fatalf("%+v", kc)
	}
	// The JSON form round-trips with the documented names.
	b, _ := json.Marshal(a)
	for _, want := range []string{`"trust":[`, `"jwks_uri":`, `"introspection":{"url":`, `"client_secret":"{env.KC_SECRET}"`, `"algorithm":"RS256"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("JSON %s lacks %s", b, want)
		}
	}
}

func TestTrustBlockErrors(t *testing.T) {
	for name, tc := range map[string]struct{ input, want string }{
		"HS256":                 {"trust https://a.example {\n audience x\n algorithms HS256\n}", "never none or HS*"},
		"none":                  {"trust https://a.example {\n audience x\n algorithms none\n}", "never none or HS*"},
		"no audience":           {"trust https://a.example {\n jwks_uri https://a.example/k\n}", "audience is required"},
		"issuer not a URL":      {"trust a.example {\n audience x\n}", "absolute http or https URL"},
		"issuer with a query":   {"trust https://a.example/?x=1 {\n audience x\n}", "must not have a query"},
		"introspection no id":   {"trust https://a.example {\n introspection https://a.example/i {\n client_secret s\n }\n}", "client_id and client_secret"},
		"unknown subdirective":  {"trust https://a.example {\n audience x\n colour blue\n}", "unrecognized subdirective"},
		"twice":                 {"trust https://a.example {\n audience x\n}\ntrust https://a.example {\n audience y\n}", "defined twice"},
		"bad jwt algorithm":     {"access_token {\n format jwt HS256\n}", "ES256 or RS256"},
		"algorithm with opaque": {"access_token {\n format opaque RS256\n}", "jwt [ES256|RS256]"},
	} {
		t.Run(name, func(t *testing.T) {
			err := new(App).UnmarshalCaddyfile(caddyfile.NewTestDispenser("oauth2 {\n" + tc.input + "\n}"))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestGuardIssuerAndClaimParsing(t *testing.T) {
	g := new(Guard)
	if err := g.UnmarshalCaddyfile(caddyfile.NewTestDispenser("oauth2_guard read {\n issuer https://a.example https://b.example\n claim groups admins staff\n claim realm_access.roles api-user\n}")); err != nil {
		t.Fatal(err)
	}
	if len(g.Issuers) != 2 || len(g.Claims) != 2 || g.Claims[0].Name != "groups" || len(g.Claims[0].Values) != 2 {
		t.Fatalf("%+v", g)
	}
	if err := new(Guard).UnmarshalCaddyfile(caddyfile.NewTestDispenser("oauth2_guard {\n claim groups\n}")); err == nil {
		t.Fatal("claim without a value accepted")
	}
}

func TestClaimRules(t *testing.T) {
	var claims map[string]any
	_ = json.Unmarshal([]byte(`{"groups":["admins","staff"],"tenant":"acme","email_verified":true,"level":3,
		"realm_access":{"roles":["api-user"]},"obj":{"a":1},"nil":null}`), &claims)
	id := &gateway.Identity{Claims: claims}
	for _, tc := range []struct {
		rules []ClaimRule
		ok    bool
	}{
		{[]ClaimRule{{"groups", []string{"admins"}}}, true},
		{[]ClaimRule{{"groups", []string{"root", "staff"}}}, true},
		{[]ClaimRule{{"groups", []string{"Admins"}}}, false},
		{[]ClaimRule{{"tenant", []string{"acme"}}, {"groups", []string{"staff"}}}, true},
		{[]ClaimRule{{"tenant", []string{"acme"}}, {"groups", []string{"root"}}}, false},
		{[]ClaimRule{{"email_verified", []string{"true"}}}, true},
		{[]ClaimRule{{"level", []string{"3"}}}, true},
		{[]ClaimRule{{"realm_access.roles", []string{"api-user"}}}, true},
		{[]ClaimRule{{"obj", []string{`{"a":1}`}}}, false},
		{[]ClaimRule{{"nil", []string{""}}}, false},
		{[]ClaimRule{{"missing", []string{""}}}, false},
	} {
		if got := checkClaims(tc.rules, id) == nil; got != tc.ok {
			t.Errorf("%+v: pass=%v, want %v", tc.rules, got, tc.ok)
		}
	}
	if e := checkClaims([]ClaimRule{{"groups", []string{"root"}}}, id); e == nil || e.Status != 403 || e.Code != "insufficient_scope" || e.Scope != "" {
		t.Fatalf("failed claim: %+v", e)
	}
	// Own opaque tokens carry no claims: a claim rule refuses them.
	if checkClaims([]ClaimRule{{"groups", []string{"admins"}}}, &gateway.Identity{}) == nil {
		t.Fatal("a token without claims passed a claim rule")
	}
	if s, ok := claimText(claims, "groups"); !ok || s != "admins,staff" {
		t.Fatalf("claimText groups = %q %v", s, ok)
	}
	if _, ok := claimText(claims, "missing"); ok {
		t.Fatal("a missing claim has text")
	}
}
