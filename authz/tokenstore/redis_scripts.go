package tokenstore

import (
	"github.com/redis/go-redis/v9"
)

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
