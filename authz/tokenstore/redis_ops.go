package tokenstore

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

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
