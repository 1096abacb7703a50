// Package backend opens what the authorization server and the gateway share
// and what must outlive a Caddy reload: the token store, and the caches in
// front of it, kept told of every revocation (on a shared Redis store, of
// every instance's). Every default of the store and the cache lives here or
// in the package that owns it, never in the Caddy glue.
package backend

import (
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/oauth2gate/oauth2gate/authz/cache"
	"github.com/oauth2gate/oauth2gate/authz/metrics"
	"github.com/oauth2gate/oauth2gate/authz/tokenstore"
)

// StoreConfig says where tokens live.
type StoreConfig struct {
	// Backend is "file" (the default) or "redis".
	Backend string
	// Dir is the file store's directory (required for the file store).
	Dir string
	// URL and KeyPrefix name the Redis store (see tokenstore.OpenRedis).
	URL, KeyPrefix string
	// ReplayWindow is how long a used code or rotated-out refresh token is
	// remembered for replay detection: the refresh token lifetime.
	ReplayWindow time.Duration
	Logger       *zap.Logger
}

// Key names the store itself: two configurations with one key are one open
// store (a file cannot be opened twice; one Redis needs one subscription).
// What may change on a reload without reopening it (the replay window) is
// not part of it.
func (c StoreConfig) Key() (string, error) {
	switch c.Backend {
	case "", "file":
		if c.Dir == "" {
			return "", fmt.Errorf("the file store needs a directory")
		}
		dir, err := filepath.Abs(c.Dir)
		if err != nil {
			return "", err
		}
		return "file:" + dir, nil
	case "redis":
		prefix := c.KeyPrefix
		if prefix == "" {
			prefix = tokenstore.DefaultKeyPrefix
		}
		return "redis:" + strconv.Quote(c.URL) + ":" + strconv.Quote(prefix), nil
	}
	return "", fmt.Errorf("unknown store %q: want file or redis", c.Backend)
}

// Store is an open token store and the caches that follow its revocations.
type Store struct {
	tokenstore.Store
	key string

	mu     sync.Mutex
	caches map[*cache.Cache]struct{}
}

// Unwrap is the store opened, without the caches (tokenstore.Unwrap).
func (s *Store) Unwrap() tokenstore.Store { return s.Store }

// OpenStore opens the configured store. On a store shared between instances
// (Redis) it subscribes once to their revocations, which reach every cache
// that Follows the store.
func OpenStore(cfg StoreConfig) (*Store, error) {
	key, err := cfg.Key()
	if err != nil {
		return nil, err
	}
	var st tokenstore.Store
	switch cfg.Backend {
	case "", "file":
		fs, err := tokenstore.OpenFile(cfg.Dir, tokenstore.FileOptions{ReplayWindow: cfg.ReplayWindow, Logger: cfg.Logger})
		if err != nil {
			return nil, fmt.Errorf("store file %s: %w", cfg.Dir, err)
		}
		st = fs
	case "redis":
		rs, err := tokenstore.OpenRedis(cfg.URL, tokenstore.RedisOptions{KeyPrefix: cfg.KeyPrefix, ReplayWindow: cfg.ReplayWindow, Logger: cfg.Logger})
		if err != nil {
			return nil, fmt.Errorf("store redis %s: %w", tokenstore.RedactURL(cfg.URL), err)
		}
		st = rs
	}
	s := &Store{Store: metrics.Default.WrapStore(st), key: key, caches: map[*cache.Cache]struct{}{}}
	if w, ok := st.(tokenstore.Watcher); ok {
		w.Watch(s.revoked, s.reset)
	}
	return s, nil
}

// Key is the store's key (StoreConfig.Key).
func (s *Store) Key() string { return s.key }

// Configure applies what a reload may change on an open store.
func (s *Store) Configure(cfg StoreConfig) {
	if rw, ok := tokenstore.Unwrap(s.Store).(interface{ SetReplayWindow(time.Duration) }); ok && cfg.ReplayWindow > 0 {
		rw.SetReplayWindow(cfg.ReplayWindow)
	}
}

// Follow makes c drop every token any instance revokes, and forget all it
// holds when revocations may have been missed; stop ends that.
func (s *Store) Follow(c *cache.Cache) (stop func()) {
	s.mu.Lock()
	s.caches[c] = struct{}{}
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		delete(s.caches, c)
		s.mu.Unlock()
	}
}

func (s *Store) each(fn func(*cache.Cache)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.caches {
		fn(c)
	}
}

func (s *Store) revoked(rev tokenstore.Revoked) {
	s.each(func(c *cache.Cache) {
		for i := range rev.Access {
			c.Revoke((*cache.Key)(&rev.Access[i]), time.Time{}) // as long as an entry read before could live
		}
	})
}

func (s *Store) reset() { s.each(func(c *cache.Cache) { c.Clear() }) }

// RevokeCached drops what a revocation made here removed from every cache
// on this store (the authorization server calls it): a reload that changed
// the cache leaves the old one serving its last requests, and it must not
// keep a revoked token either.
func (s *Store) RevokeCached(rev tokenstore.Revoked) { s.revoked(rev) }

// Destruct closes the store (caddy.Destructor, for a usage pool).
func (s *Store) Destruct() error { return s.Store.Close() }

// Cache is a cache that follows a store, for a usage pool.
type Cache struct {
	*cache.Cache
	stop func()
}

// CacheKey names a cache: its store and every setting that shapes it, so a
// reload that changes the cache gets a new one and the store stays open.
func CacheKey(store *Store, opts cache.Options) string {
	opts = opts.WithDefaults()
	return store.key + "|cache:" + strconv.FormatInt(opts.MaxTokens, 10) + ":" + opts.TTL.String()
}

// NewCache builds a cache in front of store that follows its revocations.
func NewCache(store *Store, opts cache.Options) (*Cache, error) {
	c, err := cache.New(opts)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	return &Cache{Cache: c, stop: store.Follow(c)}, nil
}

// Destruct stops following the store and closes the cache.
func (c *Cache) Destruct() error {
	c.stop()
	c.Cache.Close()
	return nil
}
