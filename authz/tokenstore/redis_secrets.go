package tokenstore

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

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
