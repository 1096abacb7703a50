package tokenstore

import (
	"context"
	"encoding/json"
	"errors"
	"strings"

	"github.com/tidwall/buntdb"
)

// The file store's indexes by subject and by client: buntdb keeps them
// beside the keys, ordered by the JSON field, and updates them in the
// transaction that writes a token, so they are never behind.
const (
	indexAccessSub   = "a_sub"
	indexAccessCid   = "a_cid"
	indexRefreshSub  = "r_sub"
	indexRefreshCid  = "r_cid"
	prefixClient     = "k:"
	prefixClientScan = prefixClient + "*"
)

func (s *FileStore) createIndexes() error {
	for _, ix := range []struct{ name, pattern, field string }{
		{indexAccessSub, prefixAccess + "*", "sub"},
		{indexAccessCid, prefixAccess + "*", "cid"},
		{indexRefreshSub, prefixRefresh + "*", "sub"},
		{indexRefreshCid, prefixRefresh + "*", "cid"},
	} {
		if err := s.db.ReplaceIndex(ix.name, ix.pattern, buntdb.IndexJSONCaseSensitive(ix.field)); err != nil {
			return err
		}
	}
	return nil
}

// Tokens implements AdminStore through the narrower index (the subject's
// when one is given), filtered exactly.
func (s *FileStore) Tokens(_ context.Context, m Match) ([]Token, error) {
	if m.Empty() {
		return nil, nil
	}
	field, val, ai, ri := "sub", m.Subject, indexAccessSub, indexRefreshSub
	if m.Subject == "" {
		field, val, ai, ri = "cid", m.ClientID, indexAccessCid, indexRefreshCid
	}
	pb, err := json.Marshal(map[string]string{field: val})
	if err != nil {
		return nil, err
	}
	pivot := string(pb)
	now := s.now().Unix()
	var out []Token
	err = s.db.View(func(tx *buntdb.Tx) error {
		for _, ix := range []struct {
			name    string
			prefix  string
			refresh bool
		}{{ai, prefixAccess, false}, {ri, prefixRefresh, true}} {
			err := tx.AscendEqual(ix.name, pivot, func(k, v string) bool {
				var rec Record
				if json.Unmarshal([]byte(v), &rec) != nil || rec.ExpiresAt <= now || !m.Matches(&rec) {
					return true
				}
				h, ok := parseHash(strings.TrimPrefix(k, ix.prefix))
				if ok {
					out = append(out, Token{Refresh: ix.refresh, Hash: h, Record: rec})
				}
				return true
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	return out, err
}

// SaveClient implements AdminStore.
func (s *FileStore) SaveClient(_ context.Context, id string, doc []byte) error {
	return s.db.Update(func(tx *buntdb.Tx) error {
		if _, err := tx.Get(prefixClient + id); err == nil {
			return ErrExists
		}
		_, _, err := tx.Set(prefixClient+id, string(doc), nil)
		return err
	})
}

// GetClient implements AdminStore.
func (s *FileStore) GetClient(_ context.Context, id string) ([]byte, error) {
	var out []byte
	err := s.db.View(func(tx *buntdb.Tx) error {
		v, err := tx.Get(prefixClient + id)
		if errors.Is(err, buntdb.ErrNotFound) {
			return ErrNotFound
		}
		out = []byte(v)
		return err
	})
	return out, err
}

// DeleteClient implements AdminStore.
func (s *FileStore) DeleteClient(_ context.Context, id string) error {
	return s.db.Update(func(tx *buntdb.Tx) error {
		_, err := tx.Delete(prefixClient + id)
		if errors.Is(err, buntdb.ErrNotFound) {
			return ErrNotFound
		}
		return err
	})
}

// Clients implements AdminStore.
func (s *FileStore) Clients(_ context.Context) (map[string][]byte, error) {
	out := map[string][]byte{}
	err := s.db.View(func(tx *buntdb.Tx) error {
		return tx.AscendKeys(prefixClientScan, func(k, v string) bool {
			out[strings.TrimPrefix(k, prefixClient)] = []byte(v)
			return true
		})
	})
	return out, err
}
