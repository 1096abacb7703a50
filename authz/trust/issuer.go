package trust

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/oauth2gate/oauth2gate/authz/cache"
	"github.com/oauth2gate/oauth2gate/authz/gateway"
	"github.com/oauth2gate/oauth2gate/authz/oautherr"
)

// Issuer is one trusted identity provider.
type Issuer struct {
	cfg  Config
	algs []jose.SignatureAlgorithm
	keys *keySource

	answers  *cache.Cache // active introspection answers, at most CacheTTL
	inactive *cache.Cache // inactive answers, NegativeTTL
	flight   flightGroup
	slots    chan struct{} // MaxIntrospections calls in flight
}

// NewIssuer checks cfg and builds the issuer. Nothing is fetched before
// Start.
func NewIssuer(cfg Config) (*Issuer, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	is := &Issuer{cfg: cfg, algs: joseAlgs(cfg.Algorithms)}
	is.keys = newKeySource(&is.cfg)
	if cfg.Introspection != nil {
		is.slots = make(chan struct{}, MaxIntrospections)
		var err error
		is.answers, err = cache.New(cache.Options{MaxTokens: 100_000, TTL: cfg.CacheTTL, Now: cfg.Now})
		if err != nil {
			return nil, err
		}
		is.inactive, err = cache.New(cache.Options{MaxTokens: 10_000, TTL: NegativeTTL, Now: cfg.Now})
		if err != nil {
			return nil, err
		}
	}
	return is, nil
}

// Name is the issuer identifier.
func (is *Issuer) Name() string { return is.cfg.Issuer }

// Introspects says whether the issuer's opaque tokens are introspected.
func (is *Issuer) Introspects() bool { return is.cfg.Introspection != nil }

// Start loads the keys in the background and keeps them fresh. An issuer
// that only introspects (no audience) fetches no keys.
func (is *Issuer) Start() {
	if len(is.cfg.Audience) > 0 {
		is.keys.start()
	}
}

// Close stops the background refresh.
func (is *Issuer) Close() {
	is.keys.close()
	if is.answers != nil {
		is.answers.Close()
		is.inactive.Close()
	}
}

// KeysLoaded says whether usable keys are held.
func (is *Issuer) KeysLoaded() bool { _, err := is.keys.keys(); return err == nil }

// JWKSFetches counts the JWKS requests made so far.
func (is *Issuer) JWKSFetches() int64 { return is.keys.fetches.Load() }

// introspectCached answers from the caches, or introspects once for all
// concurrent callers with the same token. The route's scopes and claims
// are checked by the caller on every request: what is cached is the
// identity, never a verdict.
func (is *Issuer) introspectCached(ctx context.Context, token string, h *[32]byte) (*gateway.Identity, error) {
	if id, ok := is.answers.Get(h); ok {
		return id, nil
	}
	if _, ok := is.inactive.Get(h); ok {
		return nil, errInactive
	}
	// The call is shared: it must not end with the request that started it
	// (IntrospectTimeout bounds it), and each caller waits only as long as
	// its own request lasts.
	shared := context.WithoutCancel(ctx)
	id, err := is.flight.do(ctx, *h, func() (*gateway.Identity, error) {
		if !is.takeSlot() {
			return nil, errIntrospectionsBusy
		}
		defer func() { <-is.slots }()
		return is.introspect(shared, token)
	})
	switch {
	case err == nil:
		// The cache's own TTL is cache_ttl too; the copy's expiry says so
		// as well, whatever clock the cache runs on.
		c := *id
		if limit := is.cfg.Now().Add(is.cfg.CacheTTL); c.ExpiresAt.After(limit) {
			c.ExpiresAt = limit
		}
		is.answers.Set(h, &c)
	case errors.Is(err, oautherr.InvalidToken):
		is.inactive.Set(h, &gateway.Identity{ExpiresAt: is.cfg.Now().Add(NegativeTTL)})
	}
	return id, err
}

// takeSlot takes one of the issuer's introspection slots, waiting
// IntrospectSlotWait at most.
func (is *Issuer) takeSlot() bool {
	select {
	case is.slots <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(IntrospectSlotWait)
	defer t.Stop()
	select {
	case is.slots <- struct{}{}:
		return true
	case <-t.C:
		return false
	}
}

var errIntrospectionsBusy = unavailable("too many introspections in flight to this issuer", nil)

// flightGroup lets concurrent requests with one token share one call.
type flightGroup struct {
	mu sync.Mutex
	m  map[[32]byte]*flight
}

type flight struct {
	done chan struct{}
	id   *gateway.Identity
	err  error
}

func (g *flightGroup) do(ctx context.Context, key [32]byte, fn func() (*gateway.Identity, error)) (*gateway.Identity, error) {
	g.mu.Lock()
	if g.m == nil {
		g.m = map[[32]byte]*flight{}
	}
	f, ok := g.m[key]
	if !ok {
		f = &flight{done: make(chan struct{})}
		g.m[key] = f
		go func() {
			f.id, f.err = fn()
			g.mu.Lock()
			delete(g.m, key)
			g.mu.Unlock()
			close(f.done)
		}()
	}
	g.mu.Unlock()
	select {
	case <-f.done:
		return f.id, f.err
	case <-ctx.Done():
		return nil, unavailable("the request ended before the introspection answered", ctx.Err())
	}
}

// Set is every trusted issuer, and this server's own verifier when it runs
// one: the gateway's Verifier for tokens of any of them.
type Set struct {
	issuers map[string]*Issuer
	list    []*Issuer
	// localIssuer is this server's own issuer: its JWTs go to the route's
	// local verifier.
	localIssuer string
	verified    *cache.Cache // verified JWTs by token hash
	now         func() time.Time
}

// VerifiedTTL is the longest a verified JWT is remembered without being
// checked again (never past its exp).
const VerifiedTTL = 5 * time.Minute

// NewSet builds the set. localIssuer is this server's own issuer ("" when
// the Caddy only guards).
func NewSet(issuers []*Issuer, localIssuer string) (*Set, error) {
	s := &Set{issuers: map[string]*Issuer{}, localIssuer: localIssuer, now: time.Now}
	for _, is := range issuers {
		if _, dup := s.issuers[is.cfg.Issuer]; dup || (localIssuer != "" && is.cfg.Issuer == localIssuer) {
			return nil, fmt.Errorf("trust %s: issuer named twice (or this server's own)", is.cfg.Issuer)
		}
		s.issuers[is.cfg.Issuer] = is
		s.list = append(s.list, is)
		if is.cfg.Now != nil {
			s.now = is.cfg.Now
		}
	}
	var err error
	s.verified, err = cache.New(cache.Options{MaxTokens: 100_000, TTL: VerifiedTTL, Now: func() time.Time { return s.now() }})
	return s, err
}

// SetLocalIssuer names this server's issuer, when its server is started
// after the set was built (before any request).
func (s *Set) SetLocalIssuer(iss string) { s.localIssuer = iss }

// Issuers are the trusted issuers.
func (s *Set) Issuers() []*Issuer { return s.list }

// Start starts every issuer's key refresh.
func (s *Set) Start() {
	for _, is := range s.list {
		is.Start()
	}
}

// Close lets go of the set's cache; the issuers are closed by their owner
// (they may outlive the set across a config reload).
func (s *Set) Close() { s.verified.Close() }

// Route is the Verifier of a route that accepts the given issuers (nil:
// every trusted issuer and this server). local answers for this server's
// own tokens (nil when it keeps none). It fails when the route would send
// an opaque token to two introspection endpoints.
func (s *Set) Route(local gateway.Verifier, accept []string) (*Route, error) {
	r := &Route{set: s}
	if accept == nil {
		r.local = local
		r.issuers = s.list
	} else {
		for _, name := range accept {
			if local != nil && name == s.localIssuer {
				r.local = local
				continue
			}
			is, ok := s.issuers[name]
			if !ok {
				return nil, fmt.Errorf("issuer %s is neither trusted (no trust block) nor this server's", name)
			}
			r.issuers = append(r.issuers, is)
		}
	}
	var intro []string
	for _, is := range r.issuers {
		if is.Introspects() {
			r.introspector = is
			intro = append(intro, is.cfg.Issuer)
		}
	}
	if len(intro) > 1 {
		return nil, fmt.Errorf("a route would send opaque tokens to the introspection endpoints of %s: an opaque token is never sent to more than one; restrict the route with `issuer`", strings.Join(intro, " and "))
	}
	if r.local == nil && len(r.issuers) == 0 {
		return nil, errors.New("no issuer accepts tokens on this route")
	}
	return r, nil
}

// Route is one guarded route's view of the set.
type Route struct {
	set          *Set
	local        gateway.Verifier
	issuers      []*Issuer
	introspector *Issuer
}

var errNoIssuer = oautherr.InvalidToken.WithDescription("the access token is not accepted here")

// Verify implements gateway.Verifier: a JWT goes by its iss to the trust
// block that names it (or to this server), an opaque token to this
// server's store and then to the route's one introspection endpoint.
func (r *Route) Verify(ctx context.Context, token string) (*gateway.Identity, error) {
	if strings.Count(token, ".") == 2 {
		return r.verifyJWT(ctx, token)
	}
	if r.local != nil {
		id, err := r.local.Verify(ctx, token)
		if err == nil || r.introspector == nil || !errors.Is(err, oautherr.InvalidToken) {
			return id, err
		}
	}
	if r.introspector == nil {
		return nil, errNoIssuer
	}
	h := sha256.Sum256([]byte(token))
	return r.introspector.introspectCached(ctx, token, &h)
}

func (r *Route) verifyJWT(ctx context.Context, token string) (*gateway.Identity, error) {
	h := sha256.Sum256([]byte(token))
	if id, ok := r.set.verified.Get(&h); ok {
		if r.accepts(id.Issuer) {
			return id, nil
		}
		return nil, errNoIssuer
	}
	p, err := parseJWT(token, allAlgs)
	if err != nil {
		return nil, err
	}
	if r.local != nil && p.iss == r.set.localIssuer && p.iss != "" {
		return r.local.Verify(ctx, token)
	}
	is := r.set.issuers[p.iss]
	if is == nil {
		return nil, errIss
	}
	if !slices.Contains(r.issuers, is) {
		return nil, errNoIssuer
	}
	id, err := is.verifyJWT(ctx, p)
	if err != nil {
		return nil, err
	}
	r.set.verified.Set(&h, id)
	return id, nil
}

func (r *Route) accepts(iss string) bool {
	for _, is := range r.issuers {
		if is.cfg.Issuer == iss {
			return true
		}
	}
	return false
}

// allAlgs are the algorithms any trust block may accept; each issuer then
// checks its own list.
var allAlgs = joseAlgs(allowedAlgorithms)
