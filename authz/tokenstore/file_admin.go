package tokenstore

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"

	"github.com/cockroachdb/pebble/v2"
)

// scan calls f for every key (and value) with the given prefix in the
// committed state, until f returns false.
func (s *FileStore) scan(prefix []byte, f func(k, v []byte) bool) error {
	return s.enter(func() error {
		it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: prefix, UpperBound: prefixEnd(prefix)})
		if err != nil {
			return err
		}
		for ok := it.First(); ok; ok = it.Next() {
			if !f(it.Key(), it.Value()) {
				break
			}
		}
		return it.Close()
	})
}

// prefixEnd is the first key after every key with the prefix.
func prefixEnd(prefix []byte) []byte {
	end := bytes.Clone(prefix)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil // all 0xff: no upper bound
}

// Tokens implements AdminStore through the narrower index (the subject's
// when one is given), filtered exactly.
func (s *FileStore) Tokens(_ context.Context, m Match) ([]Token, error) {
	if m.Empty() {
		return nil, nil
	}
	kind, val := byte(kindSubject), m.Subject
	if m.Subject == "" {
		kind, val = kindClient, m.ClientID
	}
	prefix := ixkey(kind, val, nil)
	var keys [][]byte
	err := s.scan(prefix, func(k, _ []byte) bool {
		if tk := k[len(prefix):]; len(tk) == 1+len(Hash{}) {
			keys = append(keys, bytes.Clone(tk))
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	now := s.now().Unix()
	var out []Token
	for _, k := range keys {
		rec, err := s.getToken(k)
		if errors.Is(err, ErrNotFound) || (err == nil && (rec.ExpiresAt <= now || !m.Matches(&rec))) {
			continue
		} else if err != nil {
			return nil, err
		}
		var h Hash
		copy(h[:], k[1:])
		out = append(out, Token{Refresh: k[0] == prefixRefresh[0], Hash: h, Record: rec})
	}
	return out, nil
}

// SaveClient implements AdminStore.
func (s *FileStore) SaveClient(_ context.Context, id string, doc []byte) error {
	return s.update(func(w *batchWriter) error {
		if _, _, err := w.get(nkey(prefixClient, id)); err == nil {
			return ErrExists
		}
		return w.put(nkey(prefixClient, id), 0, doc)
	})
}

// GetClient implements AdminStore.
func (s *FileStore) GetClient(_ context.Context, id string) ([]byte, error) {
	doc, _, err := s.view(nkey(prefixClient, id))
	return doc, err
}

// DeleteClient implements AdminStore.
func (s *FileStore) DeleteClient(_ context.Context, id string) error {
	return s.update(func(w *batchWriter) error {
		if _, _, err := w.get(nkey(prefixClient, id)); err != nil {
			return err
		}
		return w.del(nkey(prefixClient, id))
	})
}

// Clients implements AdminStore.
func (s *FileStore) Clients(_ context.Context) (map[string][]byte, error) {
	out := map[string][]byte{}
	err := s.scan([]byte{prefixClient[0]}, func(k, v []byte) bool {
		if _, doc, ok := splitValue(v); ok {
			out[string(k[1:])] = bytes.Clone(doc)
		}
		return true
	})
	return out, err
}

// RevokeBatch implements BatchRevoker: the grants and the tokens outside
// any, a thousand to a batch (one fsync each), instead of one apiece.
func (s *FileStore) RevokeBatch(_ context.Context, grants []string, tokens []Token) (Revoked, error) {
	var rev Revoked
	const chunk = 1000
	for len(grants) > 0 || len(tokens) > 0 {
		ng, nt := min(chunk, len(grants)), min(chunk, len(tokens))
		gs, ts := grants[:ng], tokens[:nt]
		grants, tokens = grants[ng:], tokens[nt:]
		err := s.update(func(w *batchWriter) error {
			for _, gid := range gs {
				if err := w.revokeGrant(gid, &rev); err != nil {
					return err
				}
			}
			for _, t := range ts {
				if !t.Refresh {
					if err := w.delToken(hkey(prefixAccess, t.Hash)); err != nil {
						return err
					}
					rev.Access = append(rev.Access, t.Hash)
					continue
				}
				if err := w.delToken(hkey(prefixRefresh, t.Hash)); err != nil {
					return err
				}
				if h, ok := parseHash(t.Record.AccessHash); ok {
					if err := w.delToken(hkey(prefixAccess, h)); err != nil {
						return err
					}
					rev.Access = append(rev.Access, h)
				}
			}
			return nil
		})
		if err != nil {
			return rev, err
		}
	}
	return rev, nil
}

// Secret implements Store. Secrets are kept in hex, as in the other stores.
func (s *FileStore) Secret(_ context.Context, name string, gen func() ([]byte, error)) ([]byte, error) {
	var out []byte
	err := s.update(func(w *batchWriter) error {
		if v, _, err := w.get(nkey(prefixSecret, name)); err == nil {
			b, derr := hex.DecodeString(string(v))
			if derr == nil && len(b) > 0 {
				out = b
				return nil
			}
		}
		b, err := gen()
		if err != nil {
			return err
		}
		out = b
		return w.put(nkey(prefixSecret, name), 0, []byte(hex.EncodeToString(b)))
	})
	return out, err
}

// SetSecret implements Store.
func (s *FileStore) SetSecret(_ context.Context, name string, value []byte) error {
	return s.update(func(w *batchWriter) error {
		return w.put(nkey(prefixSecret, name), 0, []byte(hex.EncodeToString(value)))
	})
}
