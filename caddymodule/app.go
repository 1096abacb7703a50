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
	"github.com/oauth2gate/oauth2gate/authz/cache"
	"github.com/oauth2gate/oauth2gate/authz/tokenstore"
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

	server  *authz.Server
	backend *backend
	poolKey string
	logger  *zap.Logger
	stop    chan struct{}
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

// backend is the state that must outlive a config reload: an open store file
// cannot be opened twice, and the cache and its denylist must not forget a
// revocation.
type backend struct {
	store tokenstore.Store
	cache *cache.Cache
}

func (b *backend) Destruct() error {
	b.cache.Close()
	return b.store.Close()
}

var backends = caddy.NewUsagePool()

// Provision sets up the store, cache and authorization server.
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	repl := caddy.NewReplacer()
	var err error
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
		cfg.Clients = append(cfg.Clients, authz.ClientConfig{
			ID: c.ID, SecretHash: repl.ReplaceKnown(c.Secret, ""), Public: c.Public, Grants: c.Grants,
			RedirectURIs: c.RedirectURIs, Scopes: c.Scopes, Name: c.Name, SkipConsent: c.SkipConsent,
		})
	}
	for _, u := range a.Users {
		cfg.Users = append(cfg.Users, authz.UserConfig{
			Username: u.Username, PasswordHash: repl.ReplaceKnown(u.Password, ""), Claims: u.Claims,
		})
	}

	var keyFile *secretsKeyFile
	cfg.SecretsKey, cfg.SecretsKeysRetired, keyFile, err = a.secretsKeys(repl, a.Store != nil && a.Store.Backend == "redis")
	if err != nil {
		return err
	}

	cc := CacheConfig{}
	if a.Cache != nil {
		cc = *a.Cache
	}
	replay := cfg.RefreshTokenTTL
	if replay <= 0 {
		replay = 720 * time.Hour
	}
	var open func() (caddy.Destructor, error)
	a.poolKey, open, err = a.storeOpener(repl, cc, replay)
	if err != nil {
		return err
	}
	val, _, err := backends.LoadOrNew(a.poolKey, open)
	if err != nil {
		return err
	}
	a.backend = val.(*backend)
	a.server, err = authz.New(ctx, cfg, a.backend.store, a.backend.cache, a.logger)
	if errors.Is(err, authz.ErrSecretUnreadable) && keyFile != nil {
		return keyFile.explain(err)
	} else if err != nil {
		return fmt.Errorf("oauth2: %w", err)
	}
	a.server.ClientIP = clientIP
	return nil
}

// storeOpener returns the pool key of the configured store and how to open
// it with its cache: the file store in a directory, or Redis, whose
// revocations from every instance are wired into this instance's cache.
func (a *App) storeOpener(repl *caddy.Replacer, cc CacheConfig, replay time.Duration) (string, func() (caddy.Destructor, error), error) {
	sc := a.Store
	if sc == nil {
		sc = &StoreConfig{}
	}
	newCache := func() (*cache.Cache, error) {
		c, err := cache.New(cache.Options{MaxTokens: cc.MaxTokens, TTL: time.Duration(cc.TTL)})
		if err != nil {
			return nil, fmt.Errorf("oauth2: cache: %w", err)
		}
		return c, nil
	}
	switch sc.Backend {
	case "", "file":
		dir := sc.Dir
		if dir == "" {
			dir = filepath.Join(caddy.AppDataDir(), "oauth2")
		}
		dir, _ = filepath.Abs(dir)
		return "file:" + dir, func() (caddy.Destructor, error) {
			st, err := tokenstore.OpenFile(dir, tokenstore.FileOptions{ReplayWindow: replay})
			if err != nil {
				return nil, fmt.Errorf("oauth2: store file %s: %w", dir, err)
			}
			c, err := newCache()
			if err != nil {
				st.Close()
				return nil, err
			}
			return &backend{store: st, cache: c}, nil
		}, nil
	case "redis":
		// {env.*} keeps a password out of the Caddyfile.
		url := repl.ReplaceKnown(sc.URL, "")
		prefix := sc.KeyPrefix
		if prefix == "" {
			prefix = tokenstore.DefaultKeyPrefix
		}
		cacheTTL := time.Duration(cc.TTL)
		if cacheTTL <= 0 {
			cacheTTL = 5 * time.Minute // the cache's own default
		}
		logger := a.logger
		return "redis:" + url + prefix, func() (caddy.Destructor, error) {
			st, err := tokenstore.OpenRedis(url, tokenstore.RedisOptions{KeyPrefix: prefix, ReplayWindow: replay, Logger: logger})
			if err != nil {
				return nil, fmt.Errorf("oauth2: store redis %s: %w", tokenstore.RedactURL(url), err)
			}
			c, err := newCache()
			if err != nil {
				st.Close()
				return nil, err
			}
			if w, ok := tokenstore.Store(st).(tokenstore.Watcher); ok {
				w.Watch(func(rev tokenstore.Revoked) {
					until := time.Now().Add(cacheTTL)
					for _, h := range rev.Access {
						c.Revoke((*cache.Key)(&h), until)
					}
				}, c.Clear)
			}
			return &backend{store: st, cache: c}, nil
		}, nil
	}
	return "", nil, fmt.Errorf("oauth2: unknown store %q", sc.Backend)
}

// Validate checks what Provision did not.
func (a *App) Validate() error {
	if a.server == nil {
		return errors.New("oauth2: not provisioned")
	}
	return nil
}

// Start runs the cache's denylist sweep.
func (a *App) Start() error {
	a.stop = make(chan struct{})
	go func(stop <-chan struct{}, c *cache.Cache, srv *authz.Server) {
		t := time.NewTicker(30 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				c.Sweep()
				srv.Sweep()
			case <-stop:
				return
			}
		}
	}(a.stop, a.backend.cache, a.server)
	return nil
}

// Stop ends the sweep.
func (a *App) Stop() error {
	if a.stop != nil {
		close(a.stop)
		a.stop = nil
	}
	return nil
}

// Cleanup lets go of the shared store; the last user closes it.
func (a *App) Cleanup() error {
	if a.poolKey == "" {
		return nil
	}
	_, err := backends.Delete(a.poolKey)
	return err
}

// Server is the authorization server, for the handlers.
func (a *App) Server() *authz.Server { return a.server }

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
