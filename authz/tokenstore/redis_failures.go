package tokenstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"time"

	"github.com/redis/go-redis/v9"
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
