package tokenstore

import (
	"context"
	"errors"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// The Redis store's indexes by subject (z:s:<subject>) and by client
// (z:c:<client>): sorted sets of "a:<hash>" and "r:<hash>" members scored by
// their expiry. Each issuance adds its tokens before it writes them (a token
// is never live outside the index; a member whose write failed is skipped
// when read), and drops the members that have expired, so a set stays as
// large as its live tokens however long a client keeps issuing.
const (
	prefixIndexSubject = "z:s:"
	prefixIndexClient  = "z:c:"
	keyClients         = "clients"
)

// KEYS: the index keys; ARGV: now (unix s), then score, member pairs; the
// key expires with its longest-lived member.
var scriptIndex = redis.NewScript(`
local now = tonumber(ARGV[1])
local last = now
for j = 2, #ARGV, 2 do last = math.max(last, tonumber(ARGV[j])) end
for i = 1, #KEYS do
  local k = KEYS[i]
  local t = redis.call('TYPE', k).ok
  if t ~= 'zset' and t ~= 'none' then redis.call('DEL', k) end
  redis.call('ZREMRANGEBYSCORE', k, '-inf', now)
  for j = 2, #ARGV, 2 do redis.call('ZADD', k, ARGV[j], ARGV[j + 1]) end
  local ttl = (last - now + 1) * 1000
  if redis.call('PTTL', k) < ttl then redis.call('PEXPIRE', k, ttl) end
end
return 0
`)

// index adds an issuance's tokens to the subject's and the client's index.
func (s *RedisStore) index(ctx context.Context, iss Issue) error {
	rec := &iss.AccessRecord
	keys := []string{s.prefix + prefixIndexClient + rec.ClientID}
	if rec.Subject != "" {
		keys = append(keys, s.prefix+prefixIndexSubject+rec.Subject)
	}
	args := []any{s.now().Unix(), rec.ExpiresAt, prefixAccess + iss.Access.String()}
	if !iss.Refresh.IsZero() && iss.RefreshRecord.ExpiresAt > 0 {
		args = append(args, iss.RefreshRecord.ExpiresAt, prefixRefresh+iss.Refresh.String())
	}
	return scriptIndex.Run(ctx, s.c, keys, args...).Err()
}

// Tokens implements AdminStore through the narrower index (the subject's
// when one is given), each member read and filtered exactly.
func (s *RedisStore) Tokens(ctx context.Context, m Match) ([]Token, error) {
	if m.Empty() {
		return nil, nil
	}
	ctx, cancel := s.op(ctx)
	defer cancel()
	k := s.prefix + prefixIndexClient + m.ClientID
	if m.Subject != "" {
		k = s.prefix + prefixIndexSubject + m.Subject
	}
	now := s.now().Unix()
	members, err := s.c.ZRangeByScore(ctx, k, &redis.ZRangeBy{Min: "(" + strconv.FormatInt(now, 10), Max: "+inf"}).Result()
	if isWrongType(err) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var out []Token
	const batch = 512
	for len(members) > 0 {
		n := min(batch, len(members))
		part := members[:n]
		members = members[n:]
		keys := make([]string, n)
		for i, mb := range part {
			keys[i] = s.prefix + mb
		}
		vals, err := s.c.MGet(ctx, keys...).Result()
		if err != nil {
			return nil, err
		}
		for i, v := range vals {
			str, ok := v.(string)
			if !ok {
				continue // gone (revoked, expired) or never written
			}
			rec, err := s.decode(keys[i], str)
			if err != nil || rec.ExpiresAt <= now || !m.Matches(&rec) {
				continue
			}
			h, ok := parseHash(part[i][2:])
			if !ok {
				continue
			}
			out = append(out, Token{Refresh: strings.HasPrefix(part[i], prefixRefresh), Hash: h, Record: rec})
		}
	}
	return out, nil
}

// SaveClient implements AdminStore.
func (s *RedisStore) SaveClient(ctx context.Context, id string, doc []byte) error {
	ctx, cancel := s.op(ctx)
	defer cancel()
	ok, err := s.c.HSetNX(ctx, s.prefix+keyClients, id, doc).Result()
	if err != nil {
		return err
	}
	if !ok {
		return ErrExists
	}
	return nil
}

// GetClient implements AdminStore.
func (s *RedisStore) GetClient(ctx context.Context, id string) ([]byte, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	v, err := s.c.HGet(ctx, s.prefix+keyClients, id).Bytes()
	if errors.Is(err, redis.Nil) || isWrongType(err) {
		return nil, ErrNotFound
	}
	return v, err
}

// DeleteClient implements AdminStore.
func (s *RedisStore) DeleteClient(ctx context.Context, id string) error {
	ctx, cancel := s.op(ctx)
	defer cancel()
	n, err := s.c.HDel(ctx, s.prefix+keyClients, id).Result()
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// Clients implements AdminStore.
func (s *RedisStore) Clients(ctx context.Context) (map[string][]byte, error) {
	ctx, cancel := s.op(ctx)
	defer cancel()
	all, err := s.c.HGetAll(ctx, s.prefix+keyClients).Result()
	if isWrongType(err) {
		return map[string][]byte{}, nil
	} else if err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(all))
	for k, v := range all {
		out[k] = []byte(v)
	}
	return out, nil
}
