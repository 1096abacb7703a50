// Package caddymodule is oauth2gate's Caddy glue: the `oauth2` app that owns
// the one authorization server, token store and cache that every route shares,
// and the HTTP handlers that expose them.
package caddymodule

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/oauth2gate/oauth2gate/authz"
	"github.com/oauth2gate/oauth2gate/authz/backend"
	"github.com/oauth2gate/oauth2gate/authz/cache"
	"github.com/oauth2gate/oauth2gate/authz/gateway"
	"github.com/oauth2gate/oauth2gate/authz/tokenstore"
	"github.com/oauth2gate/oauth2gate/authz/trust"
)

func init() {
	caddy.RegisterModule(App{})
}

// App is the `oauth2` app: configuration and shared state.
type App struct {
	// Issuer identifies the server in metadata and id_tokens. Default http://localhost.
	Issuer string `json:"issuer,omitempty"`
	// Store says where tokens live. Default: a file store in Caddy's data directory.
	Store *StoreConfig `json:"store,omitempty"`
	// Cache bounds the ristretto cache in front of the store.
	Cache *CacheConfig `json:"cache,omitempty"`
	// AccessToken configures access tokens.
	AccessToken *AccessTokenConfig `json:"access_token,omitempty"`
	// RefreshToken configures refresh tokens.
	RefreshToken *RefreshTokenConfig `json:"refresh_token,omitempty"`
	// CodeTTL is the lifetime of an authorization code. Default 1m, at most 10m.
	CodeTTL caddy.Duration `json:"code_ttl,omitempty"`
	// SigningKey is a PEM file with the id_token / JWT signing key.
	SigningKey string `json:"signing_key,omitempty"`
	// SecretsKey seals the secrets the store keeps (session key, refresh
	// grace key, signing keys) with AES-256-GCM: 32 bytes in base64 (standard
	// or URL alphabet, padded or not); {env.*} and {file.*} are expanded.
	// Default with the file store: a key generated once in Caddy's data
	// directory (oauth2-secrets.key). Required with the Redis store.
	SecretsKey string `json:"secrets_key,omitempty"`
	// SecretsKeyRetired are earlier secrets keys, read during a rotation:
	// what they sealed is sealed again with SecretsKey at start-up.
	SecretsKeyRetired []string `json:"secrets_key_retired,omitempty"`
	// FailureLimit bounds failed logins, password grants and client
	// authentications per (username or client, IP) and per IP.
	FailureLimit *FailureLimitConfig `json:"failure_limit,omitempty"`
	// PKCEPlain allows code_challenge_method=plain (RFC 7636 §4.2). Default true;
	// S256 is always allowed, and PKCE is always required of public clients.
	PKCEPlain *bool `json:"pkce_plain,omitempty"`
	// AllowGetTokenRequest accepts token request parameters in the query
	// string (a compatibility switch; RFC 6749 §3.2 says POST).
	AllowGetTokenRequest bool `json:"allow_get_token_request,omitempty"`
	// Clients are the registered clients.
	Clients []Client `json:"clients,omitempty"`
	// Users are the resource owners who can log in.
	Users []User `json:"users,omitempty"`
	// Trust are the other issuers whose access tokens the guards accept.
	Trust []TrustConfig `json:"trust,omitempty"`

	server *authz.Server // nil when the app only guards
	// verifier answers for this store's tokens: the server, or, in a Caddy
	// that only guards, the store and cache alone.
	verifier gateway.Verifier
	ctx      caddy.Context
	cfg      authz.Config // with defaults
	keyFile  *secretsKeyFile
	store    *backend.Store
	cache    *backend.Cache
	storeKey string
	cacheKey string
	logger   *zap.Logger
	stop     chan struct{}
	// trust routes tokens to the trusted issuers; nil without trust blocks.
	trust     *trust.Set
	trustKeys []string
	// late stands for this server in the routes of a Caddy that started
	// trusting other issuers only: guards provisioned before an
	// oauth2_server asked for the server get it, and it answers for the
	// server's tokens once the server runs (requireServer).
	late *lateVerifier
}

// FailureLimitConfig is a token bucket of failures: Burst at once, one more
// per Every. Off turns the limit off.
type FailureLimitConfig struct {
	Burst int            `json:"burst,omitempty"`
	Every caddy.Duration `json:"every,omitempty"`
	Off   bool           `json:"off,omitempty"`
}

// StoreConfig selects the token store.
type StoreConfig struct {
	// Backend is "file" (default) or "redis".
	Backend string `json:"backend,omitempty"`
	// Dir is the file store's directory; default {caddy data dir}/oauth2.
	Dir string `json:"dir,omitempty"`
	// URL is the Redis URL for the redis backend.
	URL string `json:"url,omitempty"`
	// KeyPrefix prefixes every Redis key.
	KeyPrefix string `json:"key_prefix,omitempty"`
}

// CacheConfig bounds the token cache.
type CacheConfig struct {
	// MaxTokens is how many tokens the cache holds. Default 1,000,000.
	MaxTokens int64 `json:"max_tokens,omitempty"`
	// TTL is the longest a cached token is trusted. Default 5m.
	TTL caddy.Duration `json:"ttl,omitempty"`
}

// AccessTokenConfig configures access tokens.
type AccessTokenConfig struct {
	// TTL is the lifetime. Default 1h.
	TTL caddy.Duration `json:"ttl,omitempty"`
	// Format is "opaque" (default) or "jwt".
	Format string `json:"format,omitempty"`
	// Algorithm signs JWT access tokens: ES256 (default) or RS256, as the
	// discovery document's access_token_signing_alg_values_supported says.
	Algorithm string `json:"algorithm,omitempty"`
}

// RefreshTokenConfig configures refresh tokens.
type RefreshTokenConfig struct {
	// TTL is the lifetime. Default 720h.
	TTL caddy.Duration `json:"ttl,omitempty"`
	// Rotate issues a new refresh token on every refresh. Default true.
	Rotate *bool `json:"rotate,omitempty"`
	// ReuseGrace lets a retried refresh within it get the same new pair.
	ReuseGrace caddy.Duration `json:"reuse_grace,omitempty"`
}

// Client is a registered client.
type Client struct {
	ID string `json:"client_id"`
	// Secret is a bcrypt or argon2id hash (`caddy hash-password`); {env.*} is expanded.
	Secret       string   `json:"secret,omitempty"`
	Public       bool     `json:"public,omitempty"`
	Grants       []string `json:"grants,omitempty"`
	RedirectURIs []string `json:"redirect_uris,omitempty"`
	Scopes       []string `json:"scopes,omitempty"`
	Name         string   `json:"name,omitempty"`
	SkipConsent  bool     `json:"skip_consent,omitempty"`
	// AllowedOrigins are the origins whose scripts may call the token,
	// revocation and userinfo endpoints (CORS): exact scheme://host[:port].
	AllowedOrigins []string `json:"allowed_origins,omitempty"`
}

// clientConfig is the client for the server, its secret hash given
// ({env.*} expanded, or not yet when the adapter checks it).
func (c Client) clientConfig(secretHash string) authz.ClientConfig {
	return authz.ClientConfig{
		ID: c.ID, SecretHash: secretHash, Public: c.Public, Grants: c.Grants,
		RedirectURIs: c.RedirectURIs, Scopes: c.Scopes, Name: c.Name, SkipConsent: c.SkipConsent,
		AllowedOrigins: c.AllowedOrigins,
	}
}

// User is a resource owner.
type User struct {
	Username string `json:"username"`
	// Password is a bcrypt or argon2id hash; {env.*} is expanded.
	Password string            `json:"password"`
	Claims   map[string]string `json:"claims,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "oauth2",
		New: func() caddy.Module { return new(App) },
	}
}

// stores and caches hold what must outlive a config reload: an open store
// file cannot be opened twice, and a cache must not forget a revocation. A
// store is keyed by what it is (its directory, its Redis and prefix), a cache
// by its store and every setting that shapes it, so a reload that changes the
// cache gets a new cache while the store stays open.
var (
	stores = caddy.NewUsagePool()
	caches = caddy.NewUsagePool()
)

// Provision sets up the store, cache and authorization server.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	a.ctx = ctx
	if err := registerMetrics(ctx); err != nil {
		return err
	}
	repl := caddy.NewReplacer()
	a.cfg = a.serverConfig(repl).WithDefaults()
	// A Caddy with no client and no user on an explicitly configured store
	// may only guard: it checks the tokens other instances issue into that
	// store. Its authorization server (and the secrets it needs) is then
	// started only if an oauth2_server asks for it.
	eager := len(a.Clients) > 0 || len(a.Users) > 0 || a.Store == nil
	// With only trust blocks it guards other issuers' tokens and needs no
	// store at all, unless an oauth2_server asks for one.
	if len(a.Clients) == 0 && len(a.Users) == 0 && a.Store == nil && len(a.Trust) > 0 {
		return a.provisionTrust(repl)
	}
	if eager {
		// The secrets key is checked before the store is opened: a missing
		// one is a configuration error, told at once.
		if err := a.resolveSecretsKeys(); err != nil {
			return err
		}
	}
	if err := a.openBackend(repl, a.cfg.RefreshTokenTTL); err != nil {
		return err
	}
	a.verifier = &backend.Verifier{Store: a.store, Cache: a.cache.Cache, Issuer: a.cfg.Issuer}
	if eager {
		if _, err := a.requireServer(); err != nil {
			return err
		}
	}
	return a.provisionTrust(repl)
}

// resolveSecretsKeys fills the server's secrets keys (once).
func (a *App) resolveSecretsKeys() error {
	if a.cfg.SecretsKey != nil {
		return nil
	}
	var err error
	a.cfg.SecretsKey, a.cfg.SecretsKeysRetired, a.keyFile, err = a.secretsKeys(caddy.NewReplacer(), a.Store != nil && a.Store.Backend == "redis")
	return err
}

// requireServer starts the authorization server if it is not running yet.
func (a *App) requireServer() (*authz.Server, error) {
	if a.server != nil {
		return a.server, nil
	}
	if err := a.resolveSecretsKeys(); err != nil {
		return nil, err
	}
	if a.store == nil {
		// A Caddy that only trusted other issuers, until an oauth2_server
		// asked for this one.
		if a.trust != nil && a.late == nil {
			return nil, fmt.Errorf("oauth2: issuer %s is this server's and is named by a trust block", a.cfg.Issuer)
		}
		if err := a.openBackend(caddy.NewReplacer(), a.cfg.RefreshTokenTTL); err != nil {
			return nil, err
		}
	}
	srv, err := authz.New(a.ctx, a.cfg, a.store, a.cache.Cache, a.logger)
	if errors.Is(err, authz.ErrSecretUnreadable) && a.keyFile != nil {
		return nil, a.keyFile.explain(err)
	} else if err != nil {
		return nil, fmt.Errorf("oauth2: %w", err)
	}
	srv.ClientIP = clientIP
	srv.Audit = caddy.Log().Named("oauth2.audit")
	a.server, a.verifier = srv, srv
	if a.late != nil {
		a.late.set(srv)
	}
	return srv, nil
}

// serverConfig turns the app's configuration into the server's; defaults
// are the server's own (authz.Config.WithDefaults).
func (a *App) serverConfig(repl *caddy.Replacer) authz.Config {
	cfg := authz.Config{
		Issuer:               repl.ReplaceKnown(a.Issuer, ""),
		CodeTTL:              time.Duration(a.CodeTTL),
		AllowGetTokenRequest: a.AllowGetTokenRequest,
		SigningKeyFile:       repl.ReplaceKnown(a.SigningKey, ""),
		PKCEPlainOff:         a.PKCEPlain != nil && !*a.PKCEPlain,
	}
	if a.AccessToken != nil {
		cfg.AccessTokenTTL = time.Duration(a.AccessToken.TTL)
		cfg.AccessTokenFormat = a.AccessToken.Format
		cfg.AccessTokenAlg = a.AccessToken.Algorithm
	}
	if fl := a.FailureLimit; fl != nil {
		cfg.FailureBurst, cfg.FailureEvery = fl.Burst, time.Duration(fl.Every)
		if fl.Off {
			cfg.FailureBurst = -1
		}
	}
	if a.RefreshToken != nil {
		cfg.RefreshTokenTTL = time.Duration(a.RefreshToken.TTL)
		cfg.RefreshRotateOff = a.RefreshToken.Rotate != nil && !*a.RefreshToken.Rotate
		cfg.RefreshReuseGrace = time.Duration(a.RefreshToken.ReuseGrace)
	}
	for _, c := range a.Clients {
		cfg.Clients = append(cfg.Clients, c.clientConfig(repl.ReplaceKnown(c.Secret, "")))
	}
	for _, u := range a.Users {
		cfg.Users = append(cfg.Users, authz.UserConfig{
			Username: u.Username, PasswordHash: repl.ReplaceKnown(u.Password, ""), Claims: u.Claims,
		})
	}
	return cfg
}

// openBackend takes the store and the cache from their pools, opening them
// when no running configuration has them yet, and applies what a reload may
// change on an open store (the replay window: the refresh token lifetime).
func (a *App) openBackend(repl *caddy.Replacer, replay time.Duration) error {
	sc := backend.StoreConfig{ReplayWindow: replay, Logger: a.logger}
	if a.Store != nil {
		sc.Backend, sc.Dir, sc.KeyPrefix = a.Store.Backend, a.Store.Dir, a.Store.KeyPrefix
		sc.URL = repl.ReplaceKnown(a.Store.URL, "") // {env.*} keeps a password out of the Caddyfile
	}
	if (sc.Backend == "" || sc.Backend == "file") && sc.Dir == "" {
		sc.Dir = filepath.Join(caddy.AppDataDir(), "oauth2")
	}
	key, err := sc.Key()
	if err != nil {
		return fmt.Errorf("oauth2: %w", err)
	}
	val, loaded, err := stores.LoadOrNew(key, func() (caddy.Destructor, error) {
		st, err := backend.OpenStore(sc)
		if err != nil {
			return nil, fmt.Errorf("oauth2: %w", err)
		}
		a.logger.Info("token store opened", zap.String("store", storeName(sc)))
		return st, nil
	})
	if err != nil {
		return err
	}
	a.storeKey, a.store = key, val.(*backend.Store)
	if loaded {
		a.store.Configure(sc)
	}
	var opts cache.Options
	if a.Cache != nil {
		opts = cache.Options{MaxTokens: a.Cache.MaxTokens, TTL: time.Duration(a.Cache.TTL)}
	}
	ckey := backend.CacheKey(a.store, opts)
	cval, _, err := caches.LoadOrNew(ckey, func() (caddy.Destructor, error) {
		c, err := backend.NewCache(a.store, opts)
		if err != nil {
			return nil, fmt.Errorf("oauth2: %w", err)
		}
		return c, nil
	})
	if err != nil {
		return err
	}
	a.cacheKey, a.cache = ckey, cval.(*backend.Cache)
	return nil
}

// storeName says which store, without a Redis password.
func storeName(sc backend.StoreConfig) string {
	if sc.Backend == "redis" {
		return "redis " + tokenstore.RedactURL(sc.URL)
	}
	return "file " + sc.Dir
}

// Validate checks what Provision did not.
func (a *App) Validate() error {
	if a.verifier == nil && a.trust == nil {
		return errors.New("oauth2: not provisioned")
	}
	return nil
}

// Start runs the cache's denylist sweep.
func (a *App) Start() error {
	if a.trust != nil {
		a.trust.Start() // in the background: an unreachable issuer does not stop Caddy
	}
	if a.cache == nil {
		return nil
	}
	a.stop = make(chan struct{})
	go func(stop <-chan struct{}, c *cache.Cache, srv *authz.Server) {
		t := time.NewTicker(30 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				c.Sweep()
				if srv != nil {
					srv.Sweep()
				}
			case <-stop:
				return
			}
		}
	}(a.stop, a.cache.Cache, a.server)
	running.Store(a)
	return nil
}

// Stop ends the sweep.
func (a *App) Stop() error {
	running.CompareAndSwap(a, nil)
	if a.stop != nil {
		close(a.stop)
		a.stop = nil
	}
	return nil
}

// Cleanup lets go of the shared store; the last user closes it.
func (a *App) Cleanup() error {
	errs := []error{a.cleanupTrust()}
	if a.cacheKey != "" {
		_, err := caches.Delete(a.cacheKey)
		errs = append(errs, err)
	}
	if a.storeKey != "" {
		_, err := stores.Delete(a.storeKey)
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Server is the authorization server, for the handlers; nil when the app
// only guards.
func (a *App) Server() *authz.Server { return a.server }

// Verifier answers for the tokens of the app's store, for the guards.
func (a *App) Verifier() gateway.Verifier { return a.verifier }

var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.Validator    = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)

// clientIP is Caddy's idea of the client's address (trusted_proxies honoured).
func clientIP(r *http.Request) string {
	if v, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok && v != "" {
		return v
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
