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

// fieldLess orders records by one string field (cid or sub) as
// Record.AppendJSON wrote it, without parsing the JSON: cid is the first
// field and sub, when set, the second, so each is found at a known place and
// its escaped text compared as bytes (one encoding per value makes equal
// values equal text). A general JSON index parses both documents on every
// comparison, which tripled the cost of an issuance.
func fieldLess(name string) func(a, b string) bool {
	if name == "cid" {
		return func(a, b string) bool { return cidOf(a) < cidOf(b) }
	}
	return func(a, b string) bool { return subOf(a) < subOf(b) }
}

const (
	cidKey = `{"cid":"`
	subKey = `,"sub":"`
)

// cidOf is the escaped client id of a record; rest is what follows it.
func cidOf(doc string) string { v, _ := cidRest(doc); return v }

func cidRest(doc string) (string, string) {
	if len(doc) < len(cidKey) || doc[:len(cidKey)] != cidKey {
		return "", ""
	}
	return quoted(doc[len(cidKey):])
}

// subOf is the escaped subject of a record ("" when it has none).
func subOf(doc string) string {
	_, rest := cidRest(doc)
	if len(rest) < len(subKey) || rest[:len(subKey)] != subKey {
		return ""
	}
	v, _ := quoted(rest[len(subKey):])
	return v
}

// quoted splits an escaped JSON string's text from what follows its
// closing quote.
func quoted(v string) (string, string) {
	for j := 0; j < len(v); j++ {
		switch v[j] {
		case '\\':
			j++
		case '"':
			return v[:j], v[j+1:]
		}
	}
	return v, ""
}

func (s *FileStore) createIndexes() error {
	for _, ix := range []struct{ name, pattern, field string }{
		{indexAccessSub, prefixAccess + "*", "sub"},
		{indexAccessCid, prefixAccess + "*", "cid"},
		{indexRefreshSub, prefixRefresh + "*", "sub"},
		{indexRefreshCid, prefixRefresh + "*", "cid"},
	} {
		if err := s.db.ReplaceIndex(ix.name, ix.pattern, fieldLess(ix.field)); err != nil {
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
	pr := Record{ClientID: val}
	if field == "sub" {
		pr = Record{Subject: val}
	}
	pivot := string(pr.AppendJSON(nil))
	now := s.now().Unix()
	var out []Token
	err := s.db.View(func(tx *buntdb.Tx) error {
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

// RevokeBatch implements BatchRevoker: the grants and the tokens outside
// any, a thousand to a transaction (one append to the file each), instead
// of one transaction apiece.
func (s *FileStore) RevokeBatch(_ context.Context, grants []string, tokens []Token) (Revoked, error) {
	var rev Revoked
	replay := s.replay.get()
	const chunk = 1000
	for len(grants) > 0 || len(tokens) > 0 {
		ng, nt := min(chunk, len(grants)), min(chunk, len(tokens))
		gs, ts := grants[:ng], tokens[:nt]
		grants, tokens = grants[ng:], tokens[nt:]
		err := s.db.Update(func(tx *buntdb.Tx) error {
			for _, gid := range gs {
				var fam family
				if v, err := tx.Get(prefixFamily + gid); err == nil {
					_ = json.Unmarshal([]byte(v), &fam)
				}
				for _, a := range fam.Access {
					del(tx, prefixAccess+a)
					if h, ok := parseHash(a); ok {
						rev.Access = append(rev.Access, h)
					}
				}
				for _, r := range fam.Refresh {
					del(tx, prefixRefresh+r)
				}
				if err := setJSON(tx, prefixFamily+gid, &family{Revoked: true}, replay); err != nil {
					return err
				}
			}
			for _, t := range ts {
				if !t.Refresh {
					del(tx, key(prefixAccess, t.Hash))
					rev.Access = append(rev.Access, t.Hash)
					continue
				}
				del(tx, key(prefixRefresh, t.Hash))
				if h, ok := parseHash(t.Record.AccessHash); ok {
					del(tx, key(prefixAccess, h))
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
