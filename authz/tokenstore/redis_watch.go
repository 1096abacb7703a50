package tokenstore

import (
	"context"
	"errors"
	"net"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

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
