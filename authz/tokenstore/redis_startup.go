package tokenstore

import (
	"context"
	"errors"
	"net"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultStartupWindow is how long the calls a store makes while Caddy starts
// (the first ping, reading and creating the server secrets) keep retrying a
// Redis that answers late or not at all, before start-up fails. A request's
// own calls never retry this long: they answer 503 within opTimeout.
const DefaultStartupWindow = 10 * time.Second

// startupBackoff is the first pause between start-up attempts; it doubles up
// to startupBackoffMax.
const (
	startupBackoff    = 100 * time.Millisecond
	startupBackoffMax = time.Second
)

// retryStartup runs call until it succeeds, fails for a reason that waiting
// cannot mend (a refused AUTH, a bad command), or the start-up window has
// passed; each attempt gets the usual per-operation bound. A Redis that is
// still loading its dataset, failing over, or slow to answer its first
// commands (a busy disk under appendfsync always) should not stop Caddy.
func (s *RedisStore) retryStartup(ctx context.Context, call func(ctx context.Context) error) error {
	deadline := time.Now().Add(s.startupWindow)
	pause := startupBackoff
	for {
		octx, cancel := s.op(ctx)
		err := call(octx)
		cancel()
		if err == nil || !transientRedisError(err) || ctx.Err() != nil {
			return err
		}
		wait := min(pause, time.Until(deadline))
		if wait <= 0 {
			return err
		}
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return err
		case <-s.closed:
			return err
		}
		pause = min(2*pause, startupBackoffMax)
	}
}

// transientRedisError tells errors worth waiting out (no answer in time, no
// connection, a server loading or failing over) from answers that will not
// change (wrong password, no permission, a script error).
func transientRedisError(err error) bool {
	if errors.Is(err, redis.ErrClosed) {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true // timeouts, refused and reset connections
	}
	var re redis.Error
	if errors.As(err, &re) {
		msg := re.Error()
		for _, p := range []string{"LOADING", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "BUSY"} {
			if strings.HasPrefix(msg, p) {
				return true
			}
		}
		return false
	}
	// EOF and the like: the connection went away mid-answer.
	return strings.Contains(err.Error(), "EOF") || strings.Contains(err.Error(), "connection")
}
