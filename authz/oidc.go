package authz

import (
	"encoding/json"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/oauth2gate/oauth2gate/authz/gateway"
	"github.com/oauth2gate/oauth2gate/authz/scope"
)

// OpenID Connect: id_token (Core §3.1.3.6), userinfo (§5.3), discovery
// (Discovery §3, RFC 8414) and JWKS (RFC 7517).

// scopeClaims are the standard claims each scope releases (OIDC Core §5.4).
var scopeClaims = map[string][]string{
	"profile": {"name", "family_name", "given_name", "middle_name", "nickname", "preferred_username",
		"profile", "picture", "website", "gender", "birthdate", "zoneinfo", "locale", "updated_at"},
	"email":   {"email", "email_verified"},
	"address": {"address"},
	"phone":   {"phone_number", "phone_number_verified"},
}

var standardClaim = func() map[string]bool {
	m := map[string]bool{}
	for _, cs := range scopeClaims {
		for _, c := range cs {
			m[c] = true
		}
	}
	return m
}()

// userClaims returns the user's claims that granted releases: standard
// claims by their scope, a custom claim when a scope of its own name is
// granted (claim groups with scope groups).
func userClaims(u *User, granted scope.Set) map[string]any {
	out := map[string]any{}
	if u == nil {
		return out
	}
	for name, v := range u.Claims {
		release := false
		if standardClaim[name] {
			for sc, cs := range scopeClaims {
				if granted.Has(sc) && slices.Contains(cs, name) {
					release = true
				}
			}
		} else {
			release = granted.Has(name)
		}
		if release {
			out[name] = claimValue(name, v)
		}
	}
	return out
}

// claimValue gives booleans and updated_at their JSON types.
func claimValue(name, v string) any {
	switch {
	case strings.HasSuffix(name, "_verified"):
		if b, err := strconv.ParseBool(v); err == nil {
			return b
		}
	case name == "updated_at":
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			return n
		}
	}
	return v
}

// idToken builds and signs an id_token (RS256).
func (s *Server) idToken(clientID, subject, nonce string, authTime int64, granted scope.Set, accessToken string, now time.Time) (string, error) {
	claims := userClaims(s.users[subject], granted)
	claims["iss"] = s.cfg.Issuer
	claims["sub"] = subject
	claims["aud"] = clientID
	claims["iat"] = now.Unix()
	claims["exp"] = now.Add(s.cfg.AccessTokenTTL).Unix()
	if authTime != 0 {
		claims["auth_time"] = authTime
	}
	if nonce != "" {
		claims["nonce"] = nonce
	}
	if accessToken != "" {
		claims["at_hash"] = atHash(accessToken)
	}
	return s.keys.sign(jose.RS256, false, claims)
}

func (s *Server) handleJWKS(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeJSON(w, http.StatusMethodNotAllowed, errorResponse{Error: "invalid_request", Description: "method not allowed"})
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/jwk-set+json")
	h.Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(s.keys.JWKS())
}

// metadata is the discovery document (OIDC Discovery §3, RFC 8414 §2).
func (s *Server) metadata(basePath string) map[string]any {
	ep := s.cfg.Issuer + basePath
	scopes := map[string]bool{"openid": true}
	for _, c := range s.clients {
		for _, sc := range c.Scopes {
			scopes[sc] = true
		}
	}
	var scopeList []string
	for sc := range scopes {
		scopeList = append(scopeList, sc)
	}
	sort.Strings(scopeList)
	claims := []string{"sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "at_hash"}
	for _, u := range s.users {
		for c := range u.Claims {
			if !slices.Contains(claims, c) {
				claims = append(claims, c)
			}
		}
	}
	sort.Strings(claims[8:])
	pkce := []string{"S256", "plain"}
	if s.cfg.PKCEPlainOff {
		pkce = []string{"S256"}
	}
	return map[string]any{
		"issuer":                                                   s.cfg.Issuer,
		"authorization_endpoint":                                   ep + "/authorize",
		"token_endpoint":                                           ep + "/token",
		"userinfo_endpoint":                                        ep + "/userinfo",
		"jwks_uri":                                                 ep + "/jwks",
		"introspection_endpoint":                                   ep + "/introspect",
		"revocation_endpoint":                                      ep + "/revoke",
		"response_types_supported":                                 []string{"code", "token"},
		"response_modes_supported":                                 []string{"query", "fragment"},
		"grant_types_supported":                                    []string{GrantAuthorizationCode, GrantImplicit, GrantPassword, GrantClientCredentials, GrantRefreshToken},
		"subject_types_supported":                                  []string{"public"},
		"id_token_signing_alg_values_supported":                    []string{"RS256"},
		"scopes_supported":                                         scopeList,
		"claims_supported":                                         claims,
		"code_challenge_methods_supported":                         pkce,
		"token_endpoint_auth_methods_supported":                    []string{"client_secret_basic", "client_secret_post", "none"},
		"introspection_endpoint_auth_methods_supported":            []string{"client_secret_basic", "client_secret_post"},
		"revocation_endpoint_auth_methods_supported":               []string{"client_secret_basic", "client_secret_post", "none"},
		"introspection_endpoint_auth_signing_alg_values_supported": nil,
		"userinfo_signing_alg_values_supported":                    nil,
		"access_token_signing_alg_values_supported":                []string{string(s.cfg.accessTokenAlg())},
		"authorization_response_iss_parameter_supported":           true,
		"request_parameter_supported":                              false,
		"request_uri_parameter_supported":                          false,
		"claims_parameter_supported":                               false,
		"prompt_values_supported":                                  []string{"none", "login", "consent", "select_account"},
	}
}

func (s *Server) handleDiscovery(w http.ResponseWriter, r *http.Request, basePath string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeJSON(w, http.StatusMethodNotAllowed, errorResponse{Error: "invalid_request", Description: "method not allowed"})
		return
	}
	md := s.metadata(basePath)
	for k, v := range md {
		if v == nil {
			delete(md, k)
		}
	}
	b, _ := json.Marshal(md)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "public, max-age=300")
	_, _ = w.Write(b)
}

// handleUserinfo answers OIDC Core §5.3 with the token's user's claims.
func (s *Server) handleUserinfo(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		writeJSON(w, http.StatusMethodNotAllowed, errorResponse{Error: "invalid_request", Description: "method not allowed"})
		return
	}
	realm := s.userinfoGuard.Realm()
	e, _, d := s.userinfoGuard.Check(r)
	if d != nil {
		s.logCause("userinfo", d)
		gateway.WriteRefusal(w, realm, d)
		return
	}
	if e.Username == "" {
		// A client's token for itself (client_credentials) describes no user.
		gateway.WriteRefusal(w, realm, ErrInvalidToken.WithDescription("the access token was not issued for a user"))
		return
	}
	granted := scope.Set(strings.Fields(e.Scope))
	if !granted.Has("openid") {
		gateway.WriteRefusal(w, realm, ErrInsufficientScope.WithDescription("the access token lacks the openid scope").WithScope("openid"))
		return
	}
	out := userClaims(s.users[e.Username], granted)
	out["sub"] = e.Subject
	writeJSON(w, http.StatusOK, out)
}
