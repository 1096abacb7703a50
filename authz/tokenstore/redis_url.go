package tokenstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

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
