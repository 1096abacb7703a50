package tokenstore

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// RedisStore keeps every token, code, grant family and server secret in
// Redis, so several Caddy instances share one token state. Keys live under
// KeyPrefix and expire with what they hold; values are the compact JSON of a
// Record. Every operation that must be atomic across instances (taking a code,
// rotating a refresh token, revoking a family) is one Lua script, and every
// revocation is published on <prefix>revoked inside that script, and the
// revoking call returns once every watching instance has dropped the token
// from its cache and acknowledged it (see Watch).
//
// Key layout (P is the prefix):
//
//	P c:<hash>   code record            TTL: code lifetime
//	P u:<hash>   used code -> grant ID  TTL: replay window
//	P a:<hash>   access token record    TTL: token lifetime
//	P r:<hash>   refresh token record   TTL: token lifetime
//	P x:<hash>   rotated-out refresh token -> "gid|unixms"
//	P g:<gid>    grant family: a set of "a:<hash>" and "r:<hash>", "!" once revoked
//	P s:<name>   server secret (hex), no TTL
//
// In Redis Cluster the prefix is a hash tag ({oauth2gate:}), so every key is
// in one slot: the scripts touch several keys at once, which Cluster only
// allows within a slot. Cluster then brings failover, not sharding.
type RedisStore struct {
	c         redis.UniversalClient
	prefix    string
	channel   string
	replay    *replayWindow
	opTimeout time.Duration
	// startupWindow bounds retryStartup.
	startupWindow time.Duration
	logger        *zap.Logger
	now           func() time.Time

	closeOnce sync.Once
	closed    chan struct{}
	watchWG   sync.WaitGroup
	mu        sync.Mutex
	pubsubs   []*redis.PubSub

	// A revocation waits until every subscribed instance has applied it
	// (acks on ackChannel), so the others refuse the token on their next
	// request, not merely soon.
	ackChannel string
	listening  atomic.Int32 // subscriptions of this store that are up
	ackMu      sync.Mutex
	acks       map[string]*ackWaiter
}

type ackWaiter struct {
	need, got int64
	done      chan struct{}
}

// RedisOptions tune a RedisStore.
type RedisOptions struct {
	// KeyPrefix prefixes every key and the revocation channel. Default "oauth2gate:".
	KeyPrefix string
	// ReplayWindow is how long a used code or a revoked family is remembered;
	// set it to the refresh token lifetime. Default 720h.
	ReplayWindow time.Duration
	// Timeout bounds each dial, read and write (default 500ms), so an outage
	// answers quickly instead of hanging requests. Timeouts given in the URL
	// (dial_timeout=, read_timeout=, write_timeout=) win.
	Timeout time.Duration
	// Logger receives garbage-in-our-keys warnings and subscription losses.
	Logger *zap.Logger
	// StartupWindow bounds how long the start-up calls (the first ping, the
	// server secrets) retry a Redis that answers late; default
	// DefaultStartupWindow.
	StartupWindow time.Duration
}

// DefaultKeyPrefix is the key prefix when none is configured.
const DefaultKeyPrefix = "oauth2gate:"

// OpenRedis connects to the Redis named by rawURL and pings it, so a URL that
// does not parse, a server that cannot be reached or one that refuses AUTH
// fails here, not on the first request. Supported URLs:
//
//	redis://[[user]:password@]host[:port][/db][?option=value…]   one node
//	rediss://…                                                   the same over TLS
//	unix://[[user]:password@]/path/to/redis.sock[?db=n]          a local socket
//	redis://[:password@]sentinel1:26379[,sentinel2:26379…]?master_name=mymaster[&password=masterpw]
//	                                                             Sentinel (go-redis's failover URL)
//	redis://[[user]:password@]node1:7000[,node2:7001…]           Cluster (several seed nodes)
//	redis+cluster://[[user]:password@]host:port                  Cluster from one seed node
//
// Options are go-redis's (dial_timeout, read_timeout, pool_size, …); a seed
// list may also be given as repeated addr= options.
func OpenRedis(rawURL string, opts RedisOptions) (*RedisStore, error) {
	if opts.KeyPrefix == "" {
		opts.KeyPrefix = DefaultKeyPrefix
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 500 * time.Millisecond
	}
	if opts.StartupWindow <= 0 {
		opts.StartupWindow = DefaultStartupWindow
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	} else {
		routeRedisLogs(opts.Logger)
	}
	client, cluster, err := newRedisClient(rawURL, opts.Timeout)
	if err != nil {
		return nil, err
	}
	prefix := opts.KeyPrefix
	if cluster && !strings.Contains(prefix, "{") {
		prefix = "{" + prefix + "}"
	}
	s := &RedisStore{
		c:          client,
		prefix:     prefix,
		channel:    prefix + "revoked",
		ackChannel: prefix + "revoked-ack",
		acks:       make(map[string]*ackWaiter),
		replay:     newReplayWindow(opts.ReplayWindow),
		// A request never waits for Redis longer than this, retries included.
		opTimeout:     3 * opts.Timeout,
		startupWindow: opts.StartupWindow,
		logger:        opts.Logger,
		now:           time.Now,
		closed:        make(chan struct{}),
	}
	if err := s.retryStartup(context.Background(), func(ctx context.Context) error { return client.Ping(ctx).Err() }); err != nil {
		client.Close()
		return nil, fmt.Errorf("connecting to %s: %w", RedactURL(rawURL), err)
	}
	return s, nil
}

// go-redis logs through one package-level logger (dial failures, Sentinel
// master changes); the first store opened with a logger routes it into zap,
// so those lines are structured like the rest of Caddy's log.

// Close ends subscriptions and closes the connections.
func (s *RedisStore) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.closed)
		s.mu.Lock()
		for _, ps := range s.pubsubs {
			_ = ps.Close()
		}
		s.mu.Unlock()
		s.watchWG.Wait()
		err = s.c.Close()
	})
	return err
}

var (
	_ Store   = (*RedisStore)(nil)
	_ Watcher = (*RedisStore)(nil)
)
