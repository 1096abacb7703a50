// Package authz is oauth2gate's OAuth 2.0 core: the authorization server's
// endpoints, clients, users, the token store and cache. It knows OAuth, not
// Caddy; caddymodule adapts it.
package authz

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/oauth2gate/oauth2gate/authz/backend"
	"github.com/oauth2gate/oauth2gate/authz/cache"
	"github.com/oauth2gate/oauth2gate/authz/cors"
	"github.com/oauth2gate/oauth2gate/authz/gateway"
	"github.com/oauth2gate/oauth2gate/authz/internal/gooauth2"
	"github.com/oauth2gate/oauth2gate/authz/tokenstore"
)

// Config is the authorization server's configuration, defaults applied by New.
type Config struct {
	Issuer               string
	AccessTokenTTL       time.Duration // default 1h
	RefreshTokenTTL      time.Duration // default 720h
	RefreshRotateOff     bool          // rotation is on unless this is set
	CodeTTL              time.Duration // default 1m
	SessionTTL           time.Duration // login session; default 1h
	AllowGetTokenRequest bool
	// AccessTokenFormat is "opaque" (default) or "jwt" (RFC 9068).
	AccessTokenFormat string
	// AccessTokenAlg signs JWT access tokens: ES256 (default) or RS256.
	AccessTokenAlg string
	// RefreshReuseGrace lets a refresh token rotated out less than this long
	// ago yield the same new pair again (a retry, two tabs) instead of
	// tripping reuse detection. 0: every reuse ends the grant.
	RefreshReuseGrace time.Duration
	// SigningKeyFile is a PEM private key (RSA ≥2048 or EC P-256).
	SigningKeyFile string
	// SecretsKey (32 bytes, required) seals the secrets the store keeps for
	// the server (session key, refresh grace key, signing keys) with
	// AES-256-GCM; see secrets.go.
	SecretsKey []byte
	// SecretsKeysRetired are earlier secrets keys: secrets sealed with one
	// of them are read and sealed again with SecretsKey (key rotation).
	SecretsKeysRetired [][]byte
	// PKCEPlainOff refuses code_challenge_method=plain.
	PKCEPlainOff bool
	// FailureBurst failed logins / password grants / client authentications
	// are allowed per (username or client, IP) and per IP, and one more per
	// FailureEvery; then 429. FailureBurst < 0 turns the limit off. Defaults
	// 10 and 30s.
	FailureBurst int
	FailureEvery time.Duration
	Clients      []ClientConfig
	Users        []UserConfig
}

// userNamed finds the user whose name is id, case aside.
func (s *Server) userNamed(id string) (string, bool) {
	u, ok := s.usersFold[strings.ToLower(id)]
	return u, ok
}

// Server is the authorization server.
type Server struct {
	issuerPath string
	// httpsIssuer: the issuer is https, so cookies are Secure even when
	// Caddy itself is reached over plain http (behind a TLS terminator).
	httpsIssuer bool
	cfg         Config
	clients     map[string]*Client
	origins     cors.Set // every client's allowed_origins
	users       map[string]*User
	usersFold   map[string]string // lower-cased name → user name
	store       tokenstore.Store
	secrets     *sealedSecrets // the store's secrets, sealed at rest
	cache       *cache.Cache
	logger      *zap.Logger
	now         func() time.Time

	// engine issues codes and tokens through go-oauth2 (authz/internal/gooauth2).
	engine *gooauth2.Engine

	sessionKey []byte
	graceKey   []byte
	pages      *pages
	keys       *KeySet
	// userinfoGuard extracts and checks the bearer token of /userinfo.
	userinfoGuard *gateway.Guard
	// verifier answers for this server's access tokens, from cache and store.
	verifier *backend.Verifier
	failures *failureLimiter
	// sharedFailures is the store's failure counter when it has one (Redis).
	sharedFailures tokenstore.FailureCounter
	// userCreds and clientCreds hold the decoy hash checked (and ignored)
	// for unknown users and clients and what a failed check is padded to, so
	// that timing does not tell who exists (credentials.go).
	userCreds, clientCreds *credentialKind
	// hashes bounds the password checks in flight.
	hashes *hashGate
	// ClientIP names the caller for the failure limits; the Caddy glue sets
	// it to Caddy's client IP (trusted proxies honoured).
	ClientIP func(*http.Request) string
	// memoKey keys the memo of verified client secrets; registered holds
	// the clients registered through the admin API (admin.go).
	memoKey    []byte
	registered registry
	// Audit receives the audit events (audit.go); the Caddy glue names it
	// oauth2.audit. Nil: none.
	Audit *zap.Logger
}

// CheckAccessTokenFormat accepts the access_token formats: opaque (the
// default) and jwt (RFC 9068).
func CheckAccessTokenFormat(f string) error {
	switch f {
	case "", "opaque", "jwt":
		return nil
	}
	return errorf("access_token format must be opaque or jwt, got %q", f)
}

// CheckAccessTokenAlg accepts the algorithms of JWT access tokens.
func CheckAccessTokenAlg(alg string) error {
	switch alg {
	case "", "ES256", "RS256":
		return nil
	}
	return errorf("access_token format jwt takes ES256 or RS256, got %q", alg)
}

// DefaultIssuer is the issuer when none is configured.
const DefaultIssuer = "http://localhost"

// WithDefaults fills what cfg leaves unset: issuer http://localhost (no
// trailing slash), access tokens 1h, refresh tokens 720h, codes 1m, login
// sessions 1h. The Caddy glue reads the refresh lifetime from it to size the
// store's replay window.
func (cfg Config) WithDefaults() Config {
	if cfg.Issuer == "" {
		cfg.Issuer = DefaultIssuer
	}
	cfg.Issuer = strings.TrimSuffix(cfg.Issuer, "/")
	if cfg.AccessTokenTTL <= 0 {
		cfg.AccessTokenTTL = time.Hour
	}
	if cfg.RefreshTokenTTL <= 0 {
		cfg.RefreshTokenTTL = tokenstore.DefaultReplayWindow
	}
	if cfg.CodeTTL <= 0 {
		cfg.CodeTTL = time.Minute
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = time.Hour
	}
	return cfg
}

// New checks cfg and builds a server on store and cache.
func New(ctx context.Context, cfg Config, store tokenstore.Store, c *cache.Cache, logger *zap.Logger) (*Server, error) {
	if logger == nil {
		logger = zap.NewNop()
	}
	cfg = cfg.WithDefaults()
	if cfg.CodeTTL > 10*time.Minute {
		return nil, errorf("code_ttl %s is longer than RFC 6749 §4.1.2's 10 minutes", cfg.CodeTTL)
	}
	s := &Server{
		issuerPath:  issuerPath(cfg.Issuer),
		httpsIssuer: strings.HasPrefix(strings.ToLower(cfg.Issuer), "https://"),
		cfg:         cfg,
		clients:     make(map[string]*Client, len(cfg.Clients)),
		users:       make(map[string]*User, len(cfg.Users)),
		usersFold:   make(map[string]string, len(cfg.Users)),
		store:       store,
		cache:       c,
		logger:      logger,
		now:         time.Now,
	}
	memoKey := newMemoKey()
	s.memoKey = memoKey
	for _, cc := range cfg.Clients {
		if _, dup := s.clients[cc.ID]; dup {
			return nil, errorf("client %q is defined twice", cc.ID)
		}
		cl, err := newClient(cc, memoKey)
		if err != nil {
			return nil, err
		}
		s.clients[cc.ID] = cl
	}
	for _, uc := range cfg.Users {
		if _, dup := s.users[uc.Username]; dup {
			return nil, errorf("user %q is defined twice", uc.Username)
		}
		u, err := newUser(uc)
		if err != nil {
			return nil, err
		}
		s.users[uc.Username] = u
		s.usersFold[strings.ToLower(uc.Username)] = uc.Username
	}
	s.origins = allowedOrigins(s.clients)
	for id := range s.clients {
		if u, clash := s.userNamed(id); clash {
			// A client's own tokens (client_credentials) name it as their
			// subject: beside a user of the same name they would carry that
			// user's identity upstream and at userinfo (RFC 9700 §4.15).
			// Case aside too: an upstream may compare names without it.
			return nil, errorf("client %q has the same name as user %q: a token the client gets for itself would carry the user's identity; rename one of them", id, u)
		}
	}
	if len(s.users) > 0 {
		registered, err := store.Clients(ctx)
		if err != nil {
			return nil, fmt.Errorf("reading the registered clients: %w", err)
		}
		for id := range registered {
			if u, clash := s.userNamed(id); clash {
				return nil, errorf("user %q has the name of registered client %q: a token the client gets for itself would carry the user's identity; delete the client (caddy oauth2 or DELETE /oauth2/clients/%s) or rename the user", u, id, id)
			}
		}
	}
	var userHashes, clientHashes []PasswordHash
	for _, c := range s.clients {
		if !c.secret.IsZero() {
			clientHashes = append(clientHashes, c.secret)
		}
	}
	for _, u := range s.users {
		userHashes = append(userHashes, u.password)
	}
	measured := map[string]time.Duration{}
	s.userCreds, s.clientCreds = newCredentialKind(userHashes, measured), newCredentialKind(clientHashes, measured)
	s.hashes = newHashGate(append(userHashes, clientHashes...))
	var err error
	if s.secrets, err = newSealedSecrets(store, cfg.SecretsKey, cfg.SecretsKeysRetired, logger); err != nil {
		return nil, err
	}
	s.sessionKey, err = s.secrets.Secret(ctx, "session_key", func() ([]byte, error) {
		return []byte(randomToken()), nil
	})
	if err != nil {
		return nil, fmt.Errorf("loading session key: %w", err)
	}
	s.graceKey, err = s.secrets.Secret(ctx, "refresh_grace_key", func() ([]byte, error) {
		return []byte(randomToken()), nil
	})
	if err != nil {
		return nil, fmt.Errorf("loading refresh key: %w", err)
	}
	if s.pages, err = loadPages(); err != nil {
		return nil, err
	}
	if err := CheckAccessTokenFormat(cfg.AccessTokenFormat); err != nil {
		return nil, err
	}
	if err := CheckAccessTokenAlg(cfg.AccessTokenAlg); err != nil {
		return nil, err
	}
	if s.keys, err = loadKeySet(ctx, s.secrets, cfg.SigningKeyFile, s.keyRetention(), s.now()); err != nil {
		return nil, err
	}
	none, _ := gateway.NewScopeRules(nil, nil)
	s.verifier = &backend.Verifier{Store: store, Cache: c, Issuer: cfg.Issuer, CheckJWT: s.ownJWT, Now: func() time.Time { return s.now() }}
	s.userinfoGuard = gateway.New(s, none, gateway.Options{Realm: "userinfo", QueryToken: true, FormToken: true})
	s.ClientIP = defaultClientIP
	if cfg.FailureBurst == 0 {
		cfg.FailureBurst = 10
	}
	if cfg.FailureEvery <= 0 {
		cfg.FailureEvery = 30 * time.Second
	}
	s.cfg.FailureBurst, s.cfg.FailureEvery = cfg.FailureBurst, cfg.FailureEvery
	s.sharedFailures, _ = tokenstore.FailureCounterOf(store)
	if cfg.FailureBurst > 0 {
		s.failures = newFailureLimiter(cfg.FailureBurst, cfg.FailureEvery, func() time.Time { return s.now() })
	}
	s.engine = s.newEngine()
	return s, nil
}

// Sweep forgets what periodic housekeeping may forget (refilled failure
// buckets); the Caddy app calls it on a ticker.
func (s *Server) Sweep() {
	if s.failures != nil {
		s.failures.sweep()
	}
}

// keyRetention is how long a replaced signing key stays published: as long
// as the longest-lived token it may have signed.
func (s *Server) keyRetention() time.Duration { return s.cfg.AccessTokenTTL + time.Minute }

// Keys is the signing key set.
func (s *Server) Keys() *KeySet { return s.keys }

// Issuer is the configured issuer, without a trailing slash.
func (s *Server) Issuer() string { return s.cfg.Issuer }

// ServeEndpoint answers the endpoint paths under basePath and reports whether it
// did; anything else is left to the next handler.
func (s *Server) ServeEndpoint(w http.ResponseWriter, r *http.Request, basePath string) bool {
	p := r.URL.Path
	if s.isDiscoveryPath(p) {
		if !s.applyCORS(w, r, corsPublicDocs) {
			s.handleDiscovery(w, r, basePath)
		}
		return true
	}
	if !strings.HasPrefix(p, basePath) {
		return false
	}
	endpoint := strings.TrimSuffix(p[len(basePath):], "/")
	if s.answerCORS(w, r, endpoint) {
		return true // a preflight (cors.go)
	}
	switch endpoint {
	case "/token":
		s.handleToken(w, r)
	case "/authorize":
		s.handleAuthorize(w, r, basePath)
	case "/userinfo":
		s.handleUserinfo(w, r)
	case "/jwks":
		s.handleJWKS(w, r)
	case "/introspect":
		s.handleIntrospect(w, r)
	case "/revoke":
		s.handleRevoke(w, r)
	default:
		return false
	}
	return true
}

// isDiscoveryPath matches the metadata documents at the issuer's root:
// {issuer path}/.well-known/openid-configuration (OIDC Discovery §4) and
// /.well-known/oauth-authorization-server{issuer path} (RFC 8414 §3).
func (s *Server) isDiscoveryPath(p string) bool {
	if !strings.Contains(p, "/.well-known/") {
		return false
	}
	ip := s.issuerPath
	p = strings.TrimSuffix(p, "/")
	return p == ip+"/.well-known/openid-configuration" || p == "/.well-known/oauth-authorization-server"+ip ||
		p == ip+"/.well-known/oauth-authorization-server"
}

// Verify says who a valid access token of this server stands for, through
// the cache (gateway.Verifier).
func (s *Server) Verify(ctx context.Context, token string) (*gateway.Identity, error) {
	return s.verifier.Verify(ctx, token)
}

// VerifyLookup is Verify, saying whether the cache answered
// (gateway.LookupVerifier, for the guard's metrics).
func (s *Server) VerifyLookup(ctx context.Context, token string) (*gateway.Identity, gateway.Lookup, error) {
	return s.verifier.VerifyLookup(ctx, token)
}

// ownJWT checks a JWT access token (RFC 9068) locally before the store: a
// tampered, foreign-key, alg=none or expired token never reaches it.
func (s *Server) ownJWT(token string) bool {
	var cl accessClaims
	return s.keys.verify(token, "at+jwt", &cl) == nil && cl.Issuer == s.cfg.Issuer && cl.Exp > s.now().Unix()
}

// dropFromCache makes every instance-local cache forget revoked tokens: the
// store's when it keeps a list of them (backend.Store), else the server's.
func (s *Server) dropFromCache(rev tokenstore.Revoked) {
	if rc, ok := s.store.(interface{ RevokeCached(tokenstore.Revoked) }); ok {
		rc.RevokeCached(rev)
		return
	}
	for _, h := range rev.Access {
		s.cache.Revoke((*cache.Key)(&h), time.Time{})
	}
}

func (s *Server) revokeGrant(ctx context.Context, grantID string) error {
	rev, err := s.store.RevokeGrant(ctx, grantID)
	s.dropFromCache(rev)
	return err
}

// RevokeAccessToken ends an access token.
func (s *Server) RevokeAccessToken(ctx context.Context, access string) error {
	rev, err := s.store.RevokeAccess(ctx, tokenstore.HashOf(access))
	s.dropFromCache(rev)
	return err
}

// RevokeRefreshToken ends a refresh token and the access token issued with it.
func (s *Server) RevokeRefreshToken(ctx context.Context, refresh string) error {
	rev, err := s.store.RevokeRefresh(ctx, tokenstore.HashOf(refresh))
	s.dropFromCache(rev)
	return err
}

func issuerPath(issuer string) string {
	u, err := url.Parse(issuer)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(u.Path, "/")
}

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }

func joinSpace(s []string) string { return strings.Join(s, " ") }
