package trust

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"go.uber.org/zap"
)

// keySet is one JWKS as fetched: signature keys only, public only.
type keySet struct {
	keys      []jose.JSONWebKey
	fetchedAt time.Time
}

// errNoKeys: the issuer's keys were never loaded, or are older than
// KeysOutage: its tokens cannot be judged now (503).
var errNoKeys = errors.New("the issuer's keys are not loaded")

// keySource keeps an issuer's keys fresh: fetched at Start and in the
// background, and once more for an unknown kid at most every
// KidRefetchEvery.
type keySource struct {
	cfg *Config

	current atomic.Pointer[keySet]
	jwksURI atomic.Pointer[string]

	fetchMu   sync.Mutex // one fetch at a time
	lastKidMu sync.Mutex
	lastKid   time.Time // the last fetch an unknown kid asked for

	fetches atomic.Int64 // JWKS requests made, for tests and logs

	startOnce sync.Once
	closeOnce sync.Once
	started   atomic.Bool
	stop      chan struct{}
	done      chan struct{}
}

func newKeySource(cfg *Config) *keySource {
	ks := &keySource{cfg: cfg, stop: make(chan struct{}), done: make(chan struct{})}
	if cfg.JWKSURI != "" {
		u := cfg.JWKSURI
		ks.jwksURI.Store(&u)
	}
	return ks
}

// start runs the background refresh (once). The first fetch happens at
// once, in the background: an issuer that cannot be reached does not hold
// up Caddy's start.
func (ks *keySource) start() {
	ks.startOnce.Do(func() {
		ks.started.Store(true)
		go ks.loop()
	})
}

// close stops the refresh and waits for it.
func (ks *keySource) close() {
	ks.closeOnce.Do(func() {
		close(ks.stop)
		ks.startOnce.Do(func() {}) // a later start does nothing
		if ks.started.Load() {
			<-ks.done
		}
	})
}

func (ks *keySource) loop() {
	defer close(ks.done)
	retry := time.Second
	for {
		next, err := ks.refresh(context.Background())
		if err != nil {
			ks.cfg.Logger.Warn("fetching the issuer's keys failed", zap.String("issuer", ks.cfg.Issuer), zap.Error(err), zap.Duration("retry_in", retry))
			next = retry
			retry = min(retry*2, time.Minute)
		} else {
			retry = time.Second
		}
		t := time.NewTimer(next)
		select {
		case <-ks.stop:
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// refresh fetches the JWKS (finding its URL first when needed) and says
// when to fetch it again.
func (ks *keySource) refresh(ctx context.Context) (time.Duration, error) {
	ks.fetchMu.Lock()
	defer ks.fetchMu.Unlock()
	return ks.fetchLocked(ctx)
}

func (ks *keySource) fetchLocked(ctx context.Context) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, FetchTimeout)
	defer cancel()
	uri := ks.jwksURI.Load()
	if uri == nil {
		u, err := discoverJWKS(ctx, ks.cfg)
		if err != nil {
			return 0, err
		}
		uri = &u
		ks.jwksURI.Store(uri)
	}
	ks.fetches.Add(1)
	body, hdr, err := getJSON(ctx, ks.cfg.HTTPClient, *uri, MaxDocument, "application/jwk-set+json")
	if err != nil {
		return 0, fmt.Errorf("jwks_uri: %w", err)
	}
	set, err := parseJWKS(body)
	if err != nil {
		return 0, fmt.Errorf("jwks_uri: %w", err)
	}
	set.fetchedAt = ks.cfg.Now()
	ks.current.Store(set)
	return refreshAfter(hdr.Get("Cache-Control")), nil
}

// keys are the current keys, or errNoKeys when none were ever loaded or the
// last ones are older than KeysOutage.
func (ks *keySource) keys() (*keySet, error) {
	set := ks.current.Load()
	if set == nil || ks.cfg.Now().Sub(set.fetchedAt) > KeysOutage {
		return nil, errNoKeys
	}
	return set, nil
}

// refetchForKid fetches the JWKS again for a kid it lacks, unless one such
// fetch happened within KidRefetchEvery: a flood of made-up kids costs the
// provider one request per interval. Concurrent callers share one fetch.
// It reports whether a fetch was done (and succeeded).
func (ks *keySource) refetchForKid(ctx context.Context, before *keySet) (bool, error) {
	ks.lastKidMu.Lock()
	now := ks.cfg.Now()
	if !ks.lastKid.IsZero() && now.Sub(ks.lastKid) < KidRefetchEvery {
		ks.lastKidMu.Unlock()
		// Someone else's fetch may have brought new keys since, or be
		// bringing them now: wait for a fetch in flight (FetchTimeout
		// bounds it), then look.
		ks.fetchMu.Lock()
		ks.fetchMu.Unlock() //nolint:staticcheck // an empty critical section: waiting for the fetch in flight
		return ks.current.Load() != before, nil
	}
	ks.lastKid = now
	// fetchMu is taken before lastKidMu is let go, so a caller that finds
	// the interval stamped finds this fetch in flight and waits for it.
	ks.fetchMu.Lock()
	ks.lastKidMu.Unlock()
	defer ks.fetchMu.Unlock()
	if ks.current.Load() != before {
		return true, nil
	}
	// The interval's one fetch must not die with the request that asked
	// for it (a caller hanging up would otherwise keep a rotated-in key out
	// for KidRefetchEvery); FetchTimeout bounds it.
	if _, err := ks.fetchLocked(context.WithoutCancel(ctx)); err != nil {
		return false, err
	}
	return true, nil
}

// refreshAfter reads Cache-Control's max-age, within bounds.
func refreshAfter(cc string) time.Duration {
	for _, d := range strings.Split(cc, ",") {
		d = strings.TrimSpace(strings.ToLower(d))
		if v, ok := strings.CutPrefix(d, "max-age="); ok {
			n, err := strconv.ParseInt(strings.Trim(v, `"`), 10, 64)
			if err != nil || n < 0 {
				break
			}
			return min(max(time.Duration(n)*time.Second, MinRefresh), MaxRefresh)
		}
		if d == "no-store" || d == "no-cache" {
			return MinRefresh
		}
	}
	return DefaultRefresh
}

// parseJWKS keeps the public signature keys of a JWKS; private or
// symmetric keys are never used (an `oct` key would make HMAC possible).
func parseJWKS(body []byte) (*keySet, error) {
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, fmt.Errorf("not a JWKS: %v", err)
	}
	if raw.Keys == nil {
		return nil, errors.New("not a JWKS: no keys member")
	}
	set := &keySet{}
	for _, k := range raw.Keys {
		var jwk jose.JSONWebKey
		if err := jwk.UnmarshalJSON(k); err != nil {
			continue // a key type we do not know (RFC 7517 §5: ignore it)
		}
		if jwk.Use != "" && jwk.Use != "sig" {
			continue
		}
		if !jwk.Valid() || !isPublicSigKey(jwk.Key) {
			continue
		}
		if len(set.keys) == MaxKeys {
			break
		}
		set.keys = append(set.keys, jwk)
	}
	return set, nil
}

func isPublicSigKey(k any) bool {
	switch k := k.(type) {
	case *rsa.PublicKey:
		return k.N.BitLen() >= 2048
	case *ecdsa.PublicKey, ed25519.PublicKey:
		return true
	}
	return false
}

// keyFits says whether key may check alg: the key's type and curve match
// the algorithm, and the key's own alg, when it names one, is alg.
func keyFits(jwk *jose.JSONWebKey, alg string) bool {
	if jwk.Algorithm != "" && jwk.Algorithm != alg {
		return false
	}
	switch k := jwk.Key.(type) {
	case *rsa.PublicKey:
		return strings.HasPrefix(alg, "RS") || strings.HasPrefix(alg, "PS")
	case *ecdsa.PublicKey:
		switch alg {
		case "ES256":
			return k.Curve == elliptic.P256()
		case "ES384":
			return k.Curve == elliptic.P384()
		case "ES512":
			return k.Curve == elliptic.P521()
		}
	case ed25519.PublicKey:
		return alg == "EdDSA"
	}
	return false
}

// discoverJWKS reads the issuer's metadata, OpenID Connect discovery first
// and then RFC 8414's, and takes its jwks_uri. The document must name the
// issuer exactly (OIDC Discovery §4.3, RFC 8414 §3.3).
func discoverJWKS(ctx context.Context, cfg *Config) (string, error) {
	var errs []error
	for _, u := range metadataURLs(cfg.Issuer) {
		body, _, err := getJSON(ctx, cfg.HTTPClient, u, MaxDocument, "")
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", u, err))
			continue
		}
		var md struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		if err := json.Unmarshal(body, &md); err != nil {
			errs = append(errs, fmt.Errorf("%s: invalid JSON", u))
			continue
		}
		if md.Issuer != cfg.Issuer {
			errs = append(errs, fmt.Errorf("%s: names issuer %q", u, md.Issuer))
			continue
		}
		if checkURL(md.JWKSURI, true) != nil {
			errs = append(errs, fmt.Errorf("%s: no usable jwks_uri", u))
			continue
		}
		return md.JWKSURI, nil
	}
	return "", fmt.Errorf("discovery: %w", errors.Join(errs...))
}

// metadataURLs: OIDC discovery appends to the issuer's path; RFC 8414 §3.1
// inserts the well-known segment before it.
func metadataURLs(issuer string) []string {
	oidc := strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	u, err := url.Parse(issuer)
	if err != nil {
		return []string{oidc}
	}
	path := strings.TrimSuffix(u.Path, "/")
	u.Path = "/.well-known/oauth-authorization-server" + path
	u.RawPath = ""
	return []string{oidc, u.String()}
}

// getJSON GETs a JSON document: 200, a JSON content type, at most limit
// bytes. The error never holds the body.
func getJSON(ctx context.Context, c *http.Client, u string, limit int64, alsoType string) ([]byte, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := readJSONBody(resp, limit, alsoType)
	return body, resp.Header, err
}

// readJSONBody checks an answer's status, type and size.
func readJSONBody(resp *http.Response, limit int64, alsoType string) ([]byte, error) {
	if resp.StatusCode != http.StatusOK {
		_, _ = io.CopyN(io.Discard, resp.Body, 4<<10)
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	if !isJSONType(resp.Header.Get("Content-Type"), alsoType) {
		return nil, fmt.Errorf("content type %q is not JSON", resp.Header.Get("Content-Type"))
	}
	if resp.ContentLength > limit {
		return nil, fmt.Errorf("answer of %d bytes is over the %d byte limit", resp.ContentLength, limit)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("answer is over the %d byte limit", limit)
	}
	if !json.Valid(body) {
		return nil, errors.New("invalid JSON")
	}
	return body, nil
}

func isJSONType(ct, also string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == "application/json" || (also != "" && mt == also)
}
