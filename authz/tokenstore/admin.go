package tokenstore

import (
	"context"
	"errors"
	"sort"
	"sync"
)

// Match selects tokens by subject, by client, or by both (both must match).
// An empty Match selects nothing.
type Match struct {
	Subject  string
	ClientID string
}

// Empty reports whether m selects nothing.
func (m Match) Empty() bool { return m.Subject == "" && m.ClientID == "" }

// Matches reports whether rec is selected by m.
func (m Match) Matches(rec *Record) bool {
	return !m.Empty() && (m.Subject == "" || rec.Subject == m.Subject) && (m.ClientID == "" || rec.ClientID == m.ClientID)
}

// Token is a live access or refresh token found through the store's index.
type Token struct {
	Refresh bool // a refresh token; else an access token
	Hash    Hash
	Record  Record
}

// ErrExists is returned when a client id is registered already.
var ErrExists = errors.New("exists")

// AdminStore is what the admin API needs: the live tokens of a subject or a
// client (an index by subject and by client in every backend), and the
// clients registered at run time (kept in the store, so every instance on
// one shared store sees them).
type AdminStore interface {
	// Tokens lists the live access and refresh tokens m selects.
	Tokens(ctx context.Context, m Match) ([]Token, error)
	// SaveClient registers a client document under id; ErrExists if taken.
	SaveClient(ctx context.Context, id string, doc []byte) error
	// GetClient reads a registered client; ErrNotFound if there is none.
	GetClient(ctx context.Context, id string) ([]byte, error)
	// DeleteClient removes a registered client; ErrNotFound if there is none.
	DeleteClient(ctx context.Context, id string) error
	// Clients lists every registered client document by id.
	Clients(ctx context.Context) (map[string][]byte, error)
}

// BatchRevoker is a store that revokes many grants and tokens in few
// transactions (the file store); RevokeMatching uses it when it can. A store
// shared between instances revokes one by one, so that each revocation is
// published as /revoke's is.
type BatchRevoker interface {
	RevokeBatch(ctx context.Context, grants []string, tokens []Token) (Revoked, error)
}

// Grant is an active grant as the admin API lists it: a grant family (a
// code and every token issued from it and its refreshes), or a token issued
// outside any (client_credentials). It names no token.
type Grant struct {
	GrantID   string `json:"grant_id,omitempty"`
	ClientID  string `json:"client_id"`
	Subject   string `json:"subject,omitempty"`
	Scope     string `json:"scope,omitempty"`
	IssuedAt  int64  `json:"issued_at"`
	ExpiresAt int64  `json:"expires_at"`
	Tokens    int    `json:"tokens"`
}

// Grants groups the live tokens m selects into grants: one per family,
// one per token outside a family (its refresh token's family when it has
// one). Sorted by issue time.
func Grants(ctx context.Context, st AdminStore, m Match) ([]Grant, error) {
	toks, err := st.Tokens(ctx, m)
	if err != nil {
		return nil, err
	}
	byID := map[string]*Grant{}
	var out []*Grant
	for _, t := range toks {
		id := t.Record.GrantID
		if id == "" {
			// A token outside a family: its pair (access and refresh) is one grant.
			id = "-" + t.Hash.String()
			if t.Record.RefreshHash != "" {
				id = "-" + t.Record.RefreshHash
			}
		}
		g := byID[id]
		if g == nil {
			g = &Grant{ClientID: t.Record.ClientID, Subject: t.Record.Subject, IssuedAt: t.Record.IssuedAt}
			if t.Record.GrantID != "" {
				g.GrantID = t.Record.GrantID
			}
			byID[id] = g
			out = append(out, g)
		}
		g.Tokens++
		g.IssuedAt = min(g.IssuedAt, t.Record.IssuedAt)
		g.ExpiresAt = max(g.ExpiresAt, t.Record.ExpiresAt)
		if t.Refresh || g.Scope == "" {
			g.Scope = t.Record.Scope // the refresh token keeps the whole grant's scope
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].IssuedAt < out[j].IssuedAt })
	res := make([]Grant, len(out))
	for i, g := range out {
		res[i] = *g
	}
	return res, nil
}

// RevokeMatching ends every live token m selects, with the grants they
// belong to, through the store's own revocations (so a shared store tells
// every instance). n counts the tokens found (access and refresh).
func RevokeMatching(ctx context.Context, st Store, m Match) (rev Revoked, n int, err error) {
	if m.Empty() {
		return Revoked{}, 0, nil
	}
	toks, err := st.Tokens(ctx, m)
	if err != nil {
		return Revoked{}, 0, err
	}
	type job struct {
		grant   string
		refresh bool
		hash    Hash
	}
	var jobs []job
	seen := map[string]bool{}
	for _, t := range toks {
		switch {
		case t.Record.GrantID != "":
			if !seen["g"+t.Record.GrantID] {
				seen["g"+t.Record.GrantID] = true
				jobs = append(jobs, job{grant: t.Record.GrantID})
			}
		default:
			jobs = append(jobs, job{refresh: t.Refresh, hash: t.Hash})
		}
	}
	n = len(toks)
	if br, ok := Unwrap(st).(BatchRevoker); ok {
		var gids []string
		var loose []Token
		for _, j := range jobs {
			if j.grant != "" {
				gids = append(gids, j.grant)
			}
		}
		for _, t := range toks {
			if t.Record.GrantID == "" {
				loose = append(loose, t)
			}
		}
		rev, err = br.RevokeBatch(ctx, gids, loose)
		return rev, n, err
	}
	// A few revocations at a time: each is one store transaction (and on
	// Redis one published message every instance acknowledges).
	const workers = 16
	var mu sync.Mutex
	var firstErr error
	ch := make(chan job)
	var wg sync.WaitGroup
	for range min(workers, len(jobs)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range ch {
				var r Revoked
				var err error
				switch {
				case j.grant != "":
					r, err = st.RevokeGrant(ctx, j.grant)
				case j.refresh:
					r, err = st.RevokeRefresh(ctx, j.hash)
				default:
					r, err = st.RevokeAccess(ctx, j.hash)
				}
				mu.Lock()
				rev.Access = append(rev.Access, r.Access...)
				if err != nil && firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}()
	}
	for _, j := range jobs {
		ch <- j
	}
	close(ch)
	wg.Wait()
	return rev, n, firstErr
}
