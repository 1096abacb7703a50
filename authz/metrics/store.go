package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oauth2gate/oauth2gate/authz/tokenstore"
)

// Store times every call of a token store in oauth2gate_store_seconds{op}.
// Its observers are resolved once, so a call costs two clock reads and one
// histogram observation. Unwrap gives the store inside (for the capabilities
// a store may have beside Store: tokenstore.FailureCounterOf, Watcher).
type Store struct {
	tokenstore.Store
	saveCode, takeCode, saveTokens, getAccess, revokeAccess, getRefresh,
	rotateRefresh, revokeRefresh, revokeGrant, secret, setSecret prometheus.Observer
}

// WrapStore times st's calls on m's histogram; with the metrics off (m nil)
// it is st itself.
func (m *Metrics) WrapStore(st tokenstore.Store) tokenstore.Store {
	if m == nil {
		return st
	}
	o := m.StoreObserver
	return &Store{
		Store:         st,
		saveCode:      o("save_code"),
		takeCode:      o("take_code"),
		saveTokens:    o("save_tokens"),
		getAccess:     o("get_access"),
		revokeAccess:  o("revoke_access"),
		getRefresh:    o("get_refresh"),
		rotateRefresh: o("rotate_refresh"),
		revokeRefresh: o("revoke_refresh"),
		revokeGrant:   o("revoke_grant"),
		secret:        o("secret"),
		setSecret:     o("set_secret"),
	}
}

// Unwrap is the timed store (tokenstore.Unwrap).
func (s *Store) Unwrap() tokenstore.Store { return s.Store }

func (s *Store) SaveCode(ctx context.Context, code tokenstore.Hash, rec tokenstore.Record, ttl time.Duration) error {
	defer Since(s.saveCode, time.Now())
	return s.Store.SaveCode(ctx, code, rec, ttl)
}

func (s *Store) TakeCode(ctx context.Context, code tokenstore.Hash, check tokenstore.CodeCheck) (tokenstore.Record, string, error) {
	defer Since(s.takeCode, time.Now())
	return s.Store.TakeCode(ctx, code, check)
}

func (s *Store) SaveTokens(ctx context.Context, iss tokenstore.Issue) error {
	defer Since(s.saveTokens, time.Now())
	return s.Store.SaveTokens(ctx, iss)
}

func (s *Store) GetAccess(ctx context.Context, access tokenstore.Hash) (tokenstore.Record, error) {
	defer Since(s.getAccess, time.Now())
	return s.Store.GetAccess(ctx, access)
}

func (s *Store) RevokeAccess(ctx context.Context, access tokenstore.Hash) (tokenstore.Revoked, error) {
	defer Since(s.revokeAccess, time.Now())
	return s.Store.RevokeAccess(ctx, access)
}

func (s *Store) GetRefresh(ctx context.Context, refresh tokenstore.Hash) (tokenstore.Record, error) {
	defer Since(s.getRefresh, time.Now())
	return s.Store.GetRefresh(ctx, refresh)
}

func (s *Store) RotateRefresh(ctx context.Context, old tokenstore.Hash, check tokenstore.RotateCheck, iss tokenstore.Issue, keep bool) (tokenstore.Record, tokenstore.Revoked, *tokenstore.Replay, error) {
	defer Since(s.rotateRefresh, time.Now())
	return s.Store.RotateRefresh(ctx, old, check, iss, keep)
}

func (s *Store) RevokeRefresh(ctx context.Context, refresh tokenstore.Hash) (tokenstore.Revoked, error) {
	defer Since(s.revokeRefresh, time.Now())
	return s.Store.RevokeRefresh(ctx, refresh)
}

func (s *Store) RevokeGrant(ctx context.Context, grantID string) (tokenstore.Revoked, error) {
	defer Since(s.revokeGrant, time.Now())
	return s.Store.RevokeGrant(ctx, grantID)
}

func (s *Store) Secret(ctx context.Context, name string, gen func() ([]byte, error)) ([]byte, error) {
	defer Since(s.secret, time.Now())
	return s.Store.Secret(ctx, name, gen)
}

func (s *Store) SetSecret(ctx context.Context, name string, value []byte) error {
	defer Since(s.setSecret, time.Now())
	return s.Store.SetSecret(ctx, name, value)
}
