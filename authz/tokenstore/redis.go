package tokenstore

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
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
var redisLogsOnce sync.Once

type zapRedisLogger struct{ l *zap.Logger }

func (z zapRedisLogger) Printf(_ context.Context, format string, v ...any) {
	z.l.Info(fmt.Sprintf(format, v...))
}

func routeRedisLogs(l *zap.Logger) {
	redisLogsOnce.Do(func() { redis.SetLogger(zapRedisLogger{l.Named("redis")}) })
}

// RedactURL is rawURL without its password, for error messages and logs.
func RedactURL(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(a URL that does not parse)"
	}
	return u.Redacted()
}

// newRedisClient turns a URL into a go-redis client with bounded timeouts;
// cluster reports a Cluster client.
func newRedisClient(rawURL string, timeout time.Duration) (redis.UniversalClient, bool, error) {
	if strings.TrimSpace(rawURL) == "" {
		return nil, false, errors.New("the URL is empty")
	}
	forceCluster := false
	if scheme, rest, ok := strings.Cut(rawURL, "+cluster://"); ok {
		rawURL, forceCluster = scheme+"://"+rest, true
	}
	rawURL, extra, err := splitHostList(rawURL)
	if err != nil {
		return nil, false, err
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		// url.Error repeats the URL, password included: give only the reason.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, false, fmt.Errorf("the URL does not parse: %v", err)
	}
	switch u.Scheme {
	case "redis", "rediss", "unix":
	default:
		return nil, false, fmt.Errorf("the URL scheme %q is not redis, rediss, unix, redis+cluster or rediss+cluster", u.Scheme)
	}
	q := u.Query()
	for _, a := range extra {
		q.Add("addr", a)
	}
	if len(extra) > 0 {
		u.RawQuery = q.Encode()
	}
	clean := func(err error) error {
		return fmt.Errorf("the URL does not parse: %s", strings.TrimPrefix(err.Error(), "redis: "))
	}
	switch {
	case q.Get("master_name") != "":
		o, err := redis.ParseFailoverURL(u.String())
		if err != nil {
			return nil, false, clean(err)
		}
		bounded(timeout, &o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolTimeout, &o.MaxRetries, &o.DialerRetries, &o.ContextTimeoutEnabled)
		return redis.NewFailoverClient(o), false, nil
	case forceCluster || q.Has("addr"):
		if u.Scheme == "unix" {
			return nil, false, errors.New("a cluster cannot be reached over a unix socket")
		}
		o, err := redis.ParseClusterURL(u.String())
		if err != nil {
			return nil, false, clean(err)
		}
		bounded(timeout, &o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolTimeout, &o.MaxRetries, &o.DialerRetries, &o.ContextTimeoutEnabled)
		return redis.NewClusterClient(o), true, nil
	default:
		o, err := redis.ParseURL(u.String())
		if err != nil {
			return nil, false, clean(err)
		}
		bounded(timeout, &o.DialTimeout, &o.ReadTimeout, &o.WriteTimeout, &o.PoolTimeout, &o.MaxRetries, &o.DialerRetries, &o.ContextTimeoutEnabled)
		return redis.NewClient(o), false, nil
	}
}

// bounded fills what the URL left unset in any of go-redis's option types
// (single node, Sentinel, Cluster), so that an outage is answered in bounded
// time: timeout for dialling, reading, writing and waiting for a pooled
// connection; one retry, which lets a command survive a pooled connection
// that died with a Redis restart (more would only delay a 503); one dial
// attempt per command (go-redis's default of five, 100 ms apart, would
// stretch an outage's answer past a second); and context deadlines honoured.
func bounded(timeout time.Duration, dial, read, write, pool *time.Duration, retries, dialRetries *int, ctxTimeout *bool) {
	for _, d := range []*time.Duration{dial, read, write, pool} {
		if *d == 0 {
			*d = timeout
		}
	}
	if *retries == 0 {
		*retries = 1
	}
	if *dialRetries == 0 {
		*dialRetries = 1
	}
	*ctxTimeout = true
}

// splitHostList turns "scheme://[userinfo@]h1:p1,h2:p2/…" into the URL with
// h1:p1 alone and the other addresses, which url.Parse could not read.
func splitHostList(rawURL string) (string, []string, error) {
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return rawURL, nil, nil
	}
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	userinfo, hosts := "", authority
	if i := strings.LastIndex(authority, "@"); i >= 0 {
		userinfo, hosts = authority[:i+1], authority[i+1:]
	}
	if !strings.Contains(hosts, ",") {
		return rawURL, nil, nil
	}
	list := strings.Split(hosts, ",")
	for _, h := range list {
		if _, _, err := net.SplitHostPort(h); err != nil || h == "" {
			return "", nil, fmt.Errorf("the URL does not parse: %q in the host list is not host:port", h)
		}
	}
	return scheme + "://" + userinfo + list[0] + tail, list[1:], nil
}

// Lua scripts. Each runs atomically on the server: no other command of any
// instance interleaves with it. Keys other than KEYS[1] are computed from the
// prefix; they share KEYS[1]'s slot in Cluster thanks to the hash tag.

// luaFamily makes sure gk is a set (or absent); garbage written there by
// something else is dropped and reported.
const luaFamily = `
local garbage = 0
local function family(gk)
  local t = redis.call('TYPE', gk).ok
  if t ~= 'set' and t ~= 'none' then
    redis.call('DEL', gk)
    garbage = 1
  end
end
`

// luaIssue stores an issuance and joins its family; into a revoked family
// the tokens are born revoked.
const luaIssue = luaFamily + `
local function issue(P, ah, av, attl, rh, rv, rttl, gid, fttl)
  local gk = nil
  if gid ~= '' then
    gk = P .. 'g:' .. gid
    family(gk)
    if redis.call('SISMEMBER', gk, '!') == 1 then
      redis.call('DEL', P .. 'a:' .. ah)
      if rh ~= '' then redis.call('DEL', P .. 'r:' .. rh) end
      return 0
    end
  end
  redis.call('SET', P .. 'a:' .. ah, av, 'PX', attl)
  if rh ~= '' then redis.call('SET', P .. 'r:' .. rh, rv, 'PX', rttl) end
  if gk then
    redis.call('SADD', gk, 'a:' .. ah)
    if rh ~= '' then redis.call('SADD', gk, 'r:' .. rh) end
    if redis.call('PTTL', gk) < tonumber(fttl) then redis.call('PEXPIRE', gk, fttl) end
  end
  return 1
end
`

// KEYS[1] a:<access>; ARGV: P, ah, av, attl, rh, rv, rttl, gid, fttl
var scriptSaveTokens = redis.NewScript(luaIssue + `
issue(ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9])
return garbage
`)

// KEYS[1] c:<code>, KEYS[2] u:<code>; ARGV: replay window ms, the value a
// check saw (” when there was no check). A code is written once, so a value
// that differs from the one checked can only be a code gone and re-issued.
var scriptTakeCode = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then
  local g = redis.call('GET', KEYS[2])
  if g then return {'replayed', g} end
  return {'none'}
end
if ARGV[2] ~= '' and v ~= ARGV[2] then return {'none'} end
redis.call('DEL', KEYS[1])
local ok, rec = pcall(cjson.decode, v)
if ok and type(rec) == 'table' and type(rec.gid) == 'string' and rec.gid ~= '' then
  redis.call('SET', KEYS[2], rec.gid, 'PX', ARGV[1])
end
return {'taken', v}
`)

// KEYS[1] r:<old>; ARGV: P, old hash, the value read before the check, keep
// ('1' or '0'), tombstone (empty for none), tombstone ttl ms, old access hash
// (empty for none), channel, then issue's nine arguments from P on, then the
// revocation's ack nonce. Returns status, garbage flag, subscribers told.
var scriptRotate = redis.NewScript(luaIssue + `
local P = ARGV[1]
if redis.call('GET', KEYS[1]) ~= ARGV[3] then return {'retry', 0} end
local keep = ARGV[4] == '1'
local oah = ARGV[7]
local gid = ARGV[16]
if gid ~= '' then
  local gk = P .. 'g:' .. gid
  family(gk)
  if oah ~= '' then redis.call('SREM', gk, 'a:' .. oah) end
  if not keep then redis.call('SREM', gk, 'r:' .. ARGV[2]) end
end
if oah ~= '' then redis.call('DEL', P .. 'a:' .. oah) end
if not keep then
  redis.call('DEL', KEYS[1])
  if ARGV[5] ~= '' then redis.call('SET', P .. 'x:' .. ARGV[2], ARGV[5], 'PX', ARGV[6]) end
end
issue(ARGV[9], ARGV[10], ARGV[11], ARGV[12], ARGV[13], ARGV[14], ARGV[15], ARGV[16], ARGV[17])
local told = 0
if oah ~= '' then told = redis.call('PUBLISH', ARGV[8], ARGV[18] .. ' ' .. oah) end
return {'ok', garbage, told}
`)

// KEYS[1] a:<access>; ARGV: channel, message. Returns subscribers told.
var scriptRevokeAccess = redis.NewScript(`
redis.call('DEL', KEYS[1])
return redis.call('PUBLISH', ARGV[1], ARGV[2])
`)

// KEYS[1] r:<refresh>; ARGV: P, channel, ack nonce.
var scriptRevokeRefresh = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then return {'none'} end
local ok, rec = pcall(cjson.decode, v)
if not ok or type(rec) ~= 'table' then return {'garbage'} end
redis.call('DEL', KEYS[1])
local ah = rec.ah
if type(ah) == 'string' and string.len(ah) == 64 and not string.find(ah, '[^0-9a-f]') then
  redis.call('DEL', ARGV[1] .. 'a:' .. ah)
  local told = redis.call('PUBLISH', ARGV[2], ARGV[3] .. ' ' .. ah)
  return {'revoked', ah, told}
end
return {'revoked'}
`)

// KEYS[1] g:<gid>; ARGV: P, channel, replay window ms, ack nonce. Returns
// the revoked access hashes, the garbage flag, the subscribers told.
var scriptRevokeGrant = redis.NewScript(luaFamily + `
family(KEYS[1])
local revoked = {}
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if m ~= '!' then
    redis.call('DEL', ARGV[1] .. m)
    if string.sub(m, 1, 2) == 'a:' then table.insert(revoked, string.sub(m, 3)) end
  end
end
redis.call('DEL', KEYS[1])
redis.call('SADD', KEYS[1], '!')
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local told = 0
if #revoked > 0 then told = redis.call('PUBLISH', ARGV[2], ARGV[4] .. ' ' .. table.concat(revoked, ' ')) end
return {table.concat(revoked, ' '), garbage, told}
`)

func (s *RedisStore) key(kind string, h Hash) string { return s.prefix + kind + h.String() }

// op bounds one store operation, retries included.
func (s *RedisStore) op(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.opTimeout)
}

func (s *RedisStore) ms(d time.Duration) int64 { return d.Milliseconds() }

// ttlUntil is the key lifetime for a record expiring at exp (unix seconds).
func (s *RedisStore) ttlUntil(exp int64) time.Duration {
	d := time.Unix(exp, 0).Sub(s.now())
	if d < time.Second {
		d = time.Second
	}
	return d
}

// isWrongType: something else made one of our keys a list, a hash…
func isWrongType(err error) bool { return err != nil && strings.Contains(err.Error(), "WRONGTYPE") }

// garbage logs a key whose value we did not write. The key holds a hash,
// never a token.
func (s *RedisStore) garbage(k string) {
	s.logger.Warn("redis store: a key holds something that is not ours; treating it as no token", zap.String("key", shortKey(k)))
}

// shortKey keeps the prefix, kind and 12 hex digits of a hash for correlation.
func shortKey(k string) string {
	if n := len(k) - 2*len(Hash{}); n >= 0 {
		if _, ok := parseHash(k[n:]); ok {
			return k[:n+12] + "…"
		}
	}
	return k
}

func (s *RedisStore) decode(k, v string) (Record, error) {
	var rec Record
	// Every record we write names its client and its expiry; JSON without
	// them ("null", "{}") was written by something else.
	if err := json.Unmarshal([]byte(v), &rec); err != nil || rec.ClientID == "" || rec.ExpiresAt == 0 {
		s.garbage(k)
		return Record{}, ErrNotFound
	}
	return rec, nil
}

func marshal(rec *Record) string {
	b, _ := json.Marshal(rec) // a Record of strings and ints always marshals
	return string(b)
}

// SaveCode implements CodeStore.
func (s *RedisStore) SaveCode(ctx context.Context, code Hash, rec Record, ttl time.Duration) error {
	ctx, cancel := s.op(ctx)
	defer cancel()
	if ttl < time.Millisecond {
		ttl = time.Millisecond
	}
	return s.c.Set(ctx, s.key(prefixCode, code), marshal(&rec), ttl).Err()
}

// TakeCode implements CodeStore: the read, the delete and the used-code
// tombstone are one script. With a check, the code is read and checked in
// Go first, and the script takes it only if it is still the value checked.
func (s *RedisStore) TakeCode(ctx context.Context, code Hash, check CodeCheck) (Record, string, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	k := s.key(prefixCode, code)
	seen := ""
	if check != nil {
		v, err := s.getRaw(ctx, k)
		switch {
		case err == nil:
			rec, err := s.decode(k, v)
			if err != nil {
				return Record{}, "", err
			}
			if err := check(&rec); err != nil {
				return Record{}, "", err // the code stays
			}
			seen = v
		case !errors.Is(err, ErrNotFound):
			return Record{}, "", err
		}
		// Not found: the script tells a replay from an unknown code.
	}
	res, err := scriptTakeCode.Run(ctx, s.c, []string{k, s.key(prefixUsedCode, code)}, s.ms(s.replay.get()), seen).StringSlice()
	if isWrongType(err) {
		s.garbage(k)
		return Record{}, "", ErrNotFound
	} else if err != nil {
		return Record{}, "", err
	}
	switch {
	case len(res) == 2 && res[0] == "replayed":
		return Record{}, res[1], ErrReplayed
	case len(res) == 2 && res[0] == "taken":
		rec, err := s.decode(k, res[1])
		return rec, "", err
	}
	return Record{}, "", ErrNotFound
}

// issueArgs are luaIssue's nine arguments for iss, linked like the file
// store links them.
func (s *RedisStore) issueArgs(iss Issue) []any {
	rh, rv, rttl := "", "", int64(0)
	if !iss.Refresh.IsZero() {
		iss.AccessRecord.RefreshHash = iss.Refresh.String()
		iss.RefreshRecord.AccessHash = iss.Access.String()
		rh, rv, rttl = iss.Refresh.String(), marshal(&iss.RefreshRecord), s.ms(s.ttlUntil(iss.RefreshRecord.ExpiresAt))
	}
	exp := iss.AccessRecord.ExpiresAt
	if !iss.Refresh.IsZero() {
		exp = max(exp, iss.RefreshRecord.ExpiresAt)
	}
	return []any{
		s.prefix, iss.Access.String(), marshal(&iss.AccessRecord), s.ms(s.ttlUntil(iss.AccessRecord.ExpiresAt)),
		rh, rv, rttl, iss.AccessRecord.GrantID, s.ms(s.ttlUntil(exp)),
	}
}

// SaveTokens implements AccessStore.
func (s *RedisStore) SaveTokens(ctx context.Context, iss Issue) error {
	ctx, cancel := s.op(ctx)
	defer cancel()
	if err := s.index(ctx, iss); err != nil {
		return err
	}
	if iss.AccessRecord.GrantID == "" && iss.Refresh.IsZero() {
		// No family, no refresh token (client_credentials): one SET, no script.
		return s.c.Set(ctx, s.key(prefixAccess, iss.Access), marshal(&iss.AccessRecord), s.ttlUntil(iss.AccessRecord.ExpiresAt)).Err()
	}
	g, err := scriptSaveTokens.Run(ctx, s.c, []string{s.key(prefixAccess, iss.Access)}, s.issueArgs(iss)...).Int()
	if err != nil {
		return err
	}
	if g != 0 {
		s.garbage(s.prefix + prefixFamily + "…")
	}
	return nil
}

// getRaw reads a key; absent and garbage types read as ErrNotFound.
func (s *RedisStore) getRaw(ctx context.Context, k string) (string, error) {
	v, err := s.c.Get(ctx, k).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return "", ErrNotFound
	case isWrongType(err):
		s.garbage(k)
		return "", ErrNotFound
	}
	return v, err
}

func (s *RedisStore) get(ctx context.Context, k string) (Record, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	v, err := s.getRaw(ctx, k)
	if err != nil {
		return Record{}, err
	}
	rec, err := s.decode(k, v)
	if err == nil && rec.ExpiresAt <= s.now().Unix() {
		return rec, ErrNotFound
	}
	return rec, err
}

// GetAccess implements AccessStore.
func (s *RedisStore) GetAccess(ctx context.Context, access Hash) (Record, error) {
	return s.get(ctx, s.key(prefixAccess, access))
}

// GetRefresh implements RefreshStore.
func (s *RedisStore) GetRefresh(ctx context.Context, refresh Hash) (Record, error) {
	return s.get(ctx, s.key(prefixRefresh, refresh))
}

// maxRotateAttempts bounds the optimistic loop of RotateRefresh; only a
// refresh token used concurrently with rotation off makes it go round.
const maxRotateAttempts = 16

// ErrContended is returned when a rotation lost its race too many times.
var ErrContended = errors.New("redis store: refresh token contended; try again")

// RotateRefresh implements RefreshStore. check runs in Go between a read and
// a compare-and-swap script: the script applies the rotation only if the
// refresh token's value is still the one check saw, else the loop reads again.
// Of many concurrent rotations one swaps; the others find the token gone and
// its tombstone, so they get ErrReplayed.
func (s *RedisStore) RotateRefresh(ctx context.Context, old Hash, check RotateCheck, in Issue, keepRefresh bool) (Record, Revoked, *Replay, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	k := s.key(prefixRefresh, old)
	for range maxRotateAttempts {
		v, err := s.getRaw(ctx, k)
		if errors.Is(err, ErrNotFound) {
			tomb, terr := s.c.Get(ctx, s.key(prefixRotatedOut, old)).Result()
			switch {
			case terr == nil:
				return Record{}, Revoked{}, parseReplay(tomb), ErrReplayed
			case errors.Is(terr, redis.Nil), isWrongType(terr):
				return Record{}, Revoked{}, nil, ErrNotFound
			}
			return Record{}, Revoked{}, nil, terr
		} else if err != nil {
			return Record{}, Revoked{}, nil, err
		}
		rec, err := s.decode(k, v)
		if err != nil {
			return Record{}, Revoked{}, nil, err
		}
		if rec.ExpiresAt <= s.now().Unix() {
			return rec, Revoked{}, nil, ErrNotFound
		}
		iss := in
		if err := check(&rec, &iss); err != nil {
			return rec, Revoked{}, nil, err
		}
		if err := s.index(ctx, iss); err != nil {
			return rec, Revoked{}, nil, err
		}
		var rev Revoked
		oah := ""
		if h, ok := parseHash(rec.AccessHash); ok {
			oah = rec.AccessHash
			rev.Access = append(rev.Access, h)
		}
		tomb, keep := "", "0"
		if keepRefresh {
			keep = "1"
			iss.RefreshRecord = rec
		} else if rec.GrantID != "" {
			tomb = formatReplay(rec.GrantID, s.now())
		}
		iss.AccessRecord.GrantID = rec.GrantID
		iss.RefreshRecord.GrantID = rec.GrantID
		nonce, wait := s.expectAcks()
		args := append([]any{s.prefix, old.String(), v, keep, tomb, s.ms(s.ttlUntil(rec.ExpiresAt)), oah, s.channel}, s.issueArgs(iss)...)
		args = append(args, nonce)
		res, err := scriptRotate.Run(ctx, s.c, []string{k}, args...).Slice()
		if err != nil {
			wait(ctx, 0)
			return rec, Revoked{}, nil, err
		}
		if len(res) == 3 && res[0] == "ok" {
			if g, _ := res[1].(int64); g != 0 {
				s.garbage(s.prefix + prefixFamily + rec.GrantID)
			}
			told, _ := res[2].(int64)
			wait(ctx, told)
			return rec, rev, nil, nil
		}
		wait(ctx, 0)
		// The token changed between the read and the swap: read it again.
	}
	return Record{}, Revoked{}, nil, ErrContended
}

// RevokeAccess implements AccessStore.
func (s *RedisStore) RevokeAccess(ctx context.Context, access Hash) (Revoked, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	nonce, wait := s.expectAcks()
	told, err := scriptRevokeAccess.Run(ctx, s.c, []string{s.key(prefixAccess, access)}, s.channel, nonce+" "+access.String()).Int64()
	wait(ctx, told)
	return Revoked{Access: []Hash{access}}, err
}

// RevokeRefresh implements RefreshStore; the access token issued with the
// refresh token goes too (RFC 7009 §2.1).
func (s *RedisStore) RevokeRefresh(ctx context.Context, refresh Hash) (Revoked, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	k := s.key(prefixRefresh, refresh)
	nonce, wait := s.expectAcks()
	res, err := scriptRevokeRefresh.Run(ctx, s.c, []string{k}, s.prefix, s.channel, nonce).Slice()
	told := int64(0)
	if len(res) == 3 {
		told, _ = res[2].(int64)
	}
	wait(ctx, told)
	if isWrongType(err) {
		s.garbage(k)
		return Revoked{}, nil
	} else if err != nil {
		return Revoked{}, err
	}
	var rev Revoked
	switch {
	case len(res) == 1 && res[0] == "garbage":
		s.garbage(k)
	case len(res) == 3 && res[0] == "revoked":
		ah, _ := res[1].(string)
		if h, ok := parseHash(ah); ok {
			rev.Access = append(rev.Access, h)
		}
	}
	return rev, nil
}

// RevokeGrant implements Store.
func (s *RedisStore) RevokeGrant(ctx context.Context, grantID string) (Revoked, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	k := s.prefix + prefixFamily + grantID
	nonce, wait := s.expectAcks()
	res, err := scriptRevokeGrant.Run(ctx, s.c, []string{k}, s.prefix, s.channel, s.ms(s.replay.get()), nonce).Slice()
	if err != nil {
		wait(ctx, 0)
		return Revoked{}, err
	}
	var rev Revoked
	told := int64(0)
	if len(res) == 3 {
		list, _ := res[0].(string)
		rev = parseRevoked(list)
		if g, _ := res[1].(int64); g != 0 {
			s.garbage(k)
		}
		told, _ = res[2].(int64)
	}
	wait(ctx, told)
	return rev, nil
}

// ackWait bounds how long a revocation waits for the other instances: a live
// one acknowledges within a millisecond; a stuck one must not hold up the
// revoking request for long (its cache entries still end with cache ttl).
const ackWait = 250 * time.Millisecond

// expectAcks prepares a revocation about to be published: the nonce goes into
// the message, and wait(ctx, told) blocks until the told subscribers (every
// watching instance, this one included) have acknowledged it, or ackWait has
// passed. Without a live subscription of its own the store cannot hear acks
// and does not wait.
func (s *RedisStore) expectAcks() (string, func(context.Context, int64)) {
	if s.listening.Load() == 0 {
		return "-", func(context.Context, int64) {}
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	nonce := "#" + hex.EncodeToString(b[:])
	w := &ackWaiter{done: make(chan struct{})}
	s.ackMu.Lock()
	s.acks[nonce] = w
	s.ackMu.Unlock()
	return nonce, func(ctx context.Context, told int64) {
		defer func() {
			s.ackMu.Lock()
			delete(s.acks, nonce)
			s.ackMu.Unlock()
		}()
		if told <= 0 {
			return
		}
		s.ackMu.Lock()
		w.need = told
		ready := w.got >= told
		s.ackMu.Unlock()
		if ready {
			return
		}
		t := time.NewTimer(ackWait)
		defer t.Stop()
		select {
		case <-w.done:
		case <-ctx.Done():
		case <-t.C:
			s.logger.Warn("redis store: not every instance acknowledged a revocation in time; their caches drop the token within cache ttl",
				zap.Int64("subscribers", told), zap.Duration("waited", ackWait))
		}
	}
}

func (s *RedisStore) ackArrived(nonce string) {
	s.ackMu.Lock()
	if w, ok := s.acks[nonce]; ok {
		w.got++
		if w.need > 0 && w.got == w.need {
			close(w.done)
		}
	}
	s.ackMu.Unlock()
}

// parseRevoked reads a revocation message: access hashes, space-separated
// (fields that are not hashes, such as the ack nonce, are skipped).
func parseRevoked(msg string) Revoked {
	var rev Revoked
	for _, f := range strings.Fields(msg) {
		if h, ok := parseHash(f); ok {
			rev.Access = append(rev.Access, h)
		}
	}
	return rev
}

// Secret implements Store. Of instances starting together, the first SET NX
// wins and the others read its value.
func (s *RedisStore) Secret(ctx context.Context, name string, gen func() ([]byte, error)) ([]byte, error) {
	var out []byte
	err := s.retryStartup(ctx, func(ctx context.Context) error {
		var err error
		out, err = s.secret(ctx, name, gen)
		return err
	})
	return out, err
}

// secret is one attempt of Secret; gen's value is written only if no other
// instance wrote one first (SETNX), so a retry never replaces a secret.
func (s *RedisStore) secret(ctx context.Context, name string, gen func() ([]byte, error)) ([]byte, error) {
	k := s.prefix + prefixSecret + name
	read := func() ([]byte, bool, error) {
		v, err := s.c.Get(ctx, k).Result()
		if errors.Is(err, redis.Nil) {
			return nil, false, nil
		} else if isWrongType(err) {
			s.garbage(k)
			return nil, true, nil
		} else if err != nil {
			return nil, false, err
		}
		b, derr := hex.DecodeString(v)
		if derr != nil || len(b) == 0 {
			s.garbage(k)
			return nil, true, nil
		}
		return b, true, nil
	}
	b, present, err := read()
	if err != nil || b != nil {
		return b, err
	}
	nb, err := gen()
	if err != nil {
		return nil, err
	}
	if present {
		// Garbage in our key: replace it, as the file store does.
		return nb, s.c.Set(ctx, k, hex.EncodeToString(nb), 0).Err()
	}
	ok, err := s.c.SetNX(ctx, k, hex.EncodeToString(nb), 0).Result()
	if err != nil {
		return nil, err
	}
	if ok {
		return nb, nil
	}
	b, _, err = read()
	if err == nil && b == nil {
		err = fmt.Errorf("redis store: secret %q vanished while it was created", name)
	}
	return b, err
}

// SetReplayWindow changes the replay window of the open store.
func (s *RedisStore) SetReplayWindow(d time.Duration) { s.replay.set(d) }

// SetSecret implements Store.
func (s *RedisStore) SetSecret(ctx context.Context, name string, value []byte) error {
	return s.retryStartup(ctx, func(ctx context.Context) error {
		return s.c.Set(ctx, s.prefix+prefixSecret+name, hex.EncodeToString(value), 0).Err()
	})
}

// Watch implements Watcher: it subscribes to the revocation channel and calls
// onRevoke for every revocation any instance publishes, then acknowledges it,
// so the revoking instance can answer its client knowing every cache has
// dropped the token. When the subscription is (re)established it calls
// onReset: messages published while it was down are lost, so the cache must
// forget what it holds. It returns at once; the subscription ends with Close.
func (s *RedisStore) Watch(onRevoke func(Revoked), onReset func()) {
	ctx, cancel := context.WithCancel(context.Background())
	ps := s.c.Subscribe(ctx, s.channel, s.ackChannel)
	s.mu.Lock()
	s.pubsubs = append(s.pubsubs, ps)
	s.mu.Unlock()
	s.watchWG.Add(1)
	go func() {
		defer s.watchWG.Done()
		defer cancel()
		<-s.closed
	}()
	s.watchWG.Add(1)
	go func() {
		defer s.watchWG.Done()
		s.watch(ctx, ps, onRevoke, onReset)
	}()
}

// watchIdle is how long the subscription may be silent before a ping checks it.
const watchIdle = time.Second

func (s *RedisStore) watch(ctx context.Context, ps *redis.PubSub, onRevoke func(Revoked), onReset func()) {
	lost := false
	backoff := 50 * time.Millisecond
	// up: both channels are subscribed on the current connection.
	up, subscribed := false, map[string]bool{}
	down := func() {
		clear(subscribed)
		if up {
			up = false
			s.listening.Add(-1)
		}
	}
	defer down()
	for {
		msg, err := ps.ReceiveTimeout(ctx, watchIdle)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				// Silence: make sure the link is alive. A failed ping or a dead
				// connection shows on the next receive.
				pctx, cancel := context.WithTimeout(ctx, s.opTimeout)
				perr := ps.Ping(pctx)
				cancel()
				if perr == nil {
					continue
				}
				err = perr
			}
			down()
			if !lost {
				s.logger.Warn("redis store: revocation subscription lost; the cache will be cleared when it is back", zap.Error(err))
				lost = true
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 500*time.Millisecond)
			continue
		}
		backoff = 50 * time.Millisecond
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind != "subscribe" {
				break
			}
			subscribed[m.Channel] = true
			if m.Channel == s.channel {
				if lost {
					s.logger.Info("redis store: revocation subscription back; clearing the token cache")
				}
				lost = false
				// Whatever was published before this point may have been missed.
				onReset()
			}
			if !up && subscribed[s.channel] && subscribed[s.ackChannel] {
				up = true
				s.listening.Add(1)
			}
		case *redis.Message:
			switch m.Channel {
			case s.ackChannel:
				s.ackArrived(m.Payload)
			case s.channel:
				if rev := parseRevoked(m.Payload); len(rev.Access) > 0 {
					onRevoke(rev)
				}
				if nonce, _, _ := strings.Cut(m.Payload, " "); strings.HasPrefix(nonce, "#") {
					actx, cancel := context.WithTimeout(ctx, s.opTimeout)
					_ = s.c.Publish(actx, s.ackChannel, nonce).Err()
					cancel()
				}
			}
		}
	}
}

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

// Failure counters (brute-force limits shared by every instance): one hash
// per key {n: failures left, at: ms}, refilled lazily, expiring once full.
// Taking is one script, so that simultaneous attempts on several instances
// cannot all see a failure left and all take it.
var scriptTakeFailure = redis.NewScript(`
local burst, every, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local levels, wait = {}, 0
for i, k in ipairs(KEYS) do
  local v = redis.call('HMGET', k, 'n', 'at')
  local n, at = tonumber(v[1]), tonumber(v[2])
  if n == nil or at == nil then n, at = burst, now end
  n = math.min(burst, n + (now - at) / every)
  if n < 1 then wait = math.max(wait, math.ceil((1 - n) * every)) end
  levels[i] = n
end
if wait > 0 then return wait end
for i, k in ipairs(KEYS) do
  local n = levels[i] - 1
  redis.call('HSET', k, 'n', tostring(n), 'at', tostring(now))
  redis.call('PEXPIRE', k, math.ceil((burst - n) * every) + 1000)
end
return 0
`)

var scriptRefundFailure = redis.NewScript(`
local burst, every, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
for _, k in ipairs(KEYS) do
  local v = redis.call('HMGET', k, 'n', 'at')
  local n, at = tonumber(v[1]), tonumber(v[2])
  if n ~= nil and at ~= nil then
    n = math.min(burst, n + (now - at) / every + 1)
    if n >= burst then
      redis.call('DEL', k)
    else
      redis.call('HSET', k, 'n', tostring(n), 'at', tostring(now))
      redis.call('PEXPIRE', k, math.ceil((burst - n) * every) + 1000)
    end
  end
end
return 1
`)

// failureKeys names the counters by a hash of the key (usernames and
// addresses are nobody's business in Redis).
func (s *RedisStore) failureKeys(keys []string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		sum := sha256.Sum256([]byte(k))
		out[i] = s.prefix + "f:" + hex.EncodeToString(sum[:16])
	}
	return out
}

// TakeFailure implements FailureCounter.
func (s *RedisStore) TakeFailure(ctx context.Context, keys []string, burst int, every time.Duration) (time.Duration, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	ms, err := scriptTakeFailure.Run(ctx, s.c, s.failureKeys(keys), burst, every.Milliseconds(), s.now().UnixMilli()).Int64()
	if err != nil {
		return 0, err
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// RefundFailure implements FailureCounter.
func (s *RedisStore) RefundFailure(ctx context.Context, keys []string, burst int, every time.Duration) error {
	ctx, cancel := s.op(ctx)
	defer cancel()
	return scriptRefundFailure.Run(ctx, s.c, s.failureKeys(keys), burst, every.Milliseconds(), s.now().UnixMilli()).Err()
}

var _ FailureCounter = (*RedisStore)(nil)
