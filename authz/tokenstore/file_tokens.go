package tokenstore

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// family is the live membership of a grant family.
type family struct {
	Access  []string `json:"a,omitempty"`
	Refresh []string `json:"r,omitempty"`
	// Revoked marks a family ended by a replay: tokens that a concurrent
	// redemption issues into it afterwards are born revoked.
	Revoked bool `json:"x,omitempty"`
}

// expAfter is the expiry, in unix seconds, of something that lives for d
// from now (at least a second, as the other stores' TTLs).
func expAfter(now int64, d time.Duration) int64 {
	s := int64((d + time.Second - 1) / time.Second)
	return now + max(s, 1)
}

func decodeRecord(payload []byte) (Record, error) {
	var rec Record
	if err := json.Unmarshal(payload, &rec); err != nil {
		// Something else wrote into our key: treat it as no token.
		return Record{}, ErrNotFound
	}
	return rec, nil
}

// record reads the live record at k through the batch.
func (w *batchWriter) record(k []byte) (Record, error) {
	payload, _, err := w.get(k)
	if err != nil {
		return Record{}, err
	}
	return decodeRecord(payload)
}

// putRecord stores a code's or token's record; tokens are indexed by
// subject and client for the admin API.
func (w *batchWriter) putRecord(k []byte, rec *Record, exp int64) error {
	if err := w.put(k, exp, rec.AppendJSON(make([]byte, 0, 192))); err != nil {
		return err
	}
	if k[0] != prefixAccess[0] && k[0] != prefixRefresh[0] {
		return nil
	}
	if rec.Subject != "" {
		if err := w.b.Set(ixkey(kindSubject, rec.Subject, k), nil, nil); err != nil {
			return err
		}
	}
	return w.b.Set(ixkey(kindClient, rec.ClientID, k), nil, nil)
}

// delToken removes a token and its index entries; a token that is not
// there (or is garbage) is what we wanted.
func (w *batchWriter) delToken(k []byte) error {
	v, closer, err := w.b.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	_, payload, ok := splitValue(v)
	var rec Record
	if ok {
		rec, _ = decodeRecord(payload)
	}
	closer.Close()
	if rec.Subject != "" {
		if err := w.b.Delete(ixkey(kindSubject, rec.Subject, k), nil); err != nil {
			return err
		}
	}
	if err := w.b.Delete(ixkey(kindClient, rec.ClientID, k), nil); err != nil {
		return err
	}
	return w.del(k)
}

func (w *batchWriter) family(gid string) (family, int64) {
	var fam family
	payload, exp, err := w.get(nkey(prefixFamily, gid))
	if err == nil {
		_ = json.Unmarshal(payload, &fam)
	}
	return fam, exp
}

func (w *batchWriter) putFamily(gid string, fam *family, exp int64) error {
	b, err := json.Marshal(fam)
	if err != nil {
		return err
	}
	return w.put(nkey(prefixFamily, gid), exp, b)
}

// SaveCode implements CodeStore.
func (s *FileStore) SaveCode(_ context.Context, code Hash, rec Record, ttl time.Duration) error {
	return s.update(func(w *batchWriter) error {
		return w.putRecord(hkey(prefixCode, code), &rec, expAfter(w.now, ttl))
	})
}

// TakeCode implements CodeStore: the read, the check and the delete are one
// batch under the writer lock.
func (s *FileStore) TakeCode(_ context.Context, code Hash, check CodeCheck) (Record, string, error) {
	var rec Record
	var replayed string
	err := s.update(func(w *batchWriter) error {
		var err error
		rec, err = w.record(hkey(prefixCode, code))
		if errors.Is(err, ErrNotFound) {
			if gid, _, gerr := w.get(hkey(prefixUsedCode, code)); gerr == nil {
				replayed = string(gid)
				return ErrReplayed
			}
			return ErrNotFound
		} else if err != nil {
			return err
		}
		if check != nil {
			if err := check(&rec); err != nil {
				return err // nothing committed: the code stays
			}
		}
		if err := w.del(hkey(prefixCode, code)); err != nil {
			return err
		}
		if rec.GrantID != "" {
			return w.put(hkey(prefixUsedCode, code), expAfter(w.now, s.replay.get()), []byte(rec.GrantID))
		}
		return nil
	})
	return rec, replayed, err
}

// SaveTokens implements AccessStore; it returns once the issuance is on disk.
func (s *FileStore) SaveTokens(_ context.Context, iss Issue) error {
	if iss.AccessRecord.GrantID == "" {
		return s.updateBlind(func(w *batchWriter) error { return w.saveTokens(iss, nil) })
	}
	return s.update(func(w *batchWriter) error { return w.saveTokens(iss, nil) })
}

func (w *batchWriter) saveTokens(iss Issue, drop *family) error {
	if !iss.Refresh.IsZero() {
		iss.AccessRecord.RefreshHash = iss.Refresh.String()
		iss.RefreshRecord.AccessHash = iss.Access.String()
	}
	gid := iss.AccessRecord.GrantID
	var fam family
	var famExp int64
	if gid != "" {
		fam, famExp = w.family(gid)
		if fam.Revoked {
			// Born revoked: a replay ended the family while this issuance
			// was under way.
			if err := w.delToken(hkey(prefixAccess, iss.Access)); err != nil {
				return err
			}
			if !iss.Refresh.IsZero() {
				return w.delToken(hkey(prefixRefresh, iss.Refresh))
			}
			return nil
		}
	}
	if err := w.putRecord(hkey(prefixAccess, iss.Access), &iss.AccessRecord, iss.AccessRecord.ExpiresAt); err != nil {
		return err
	}
	if !iss.Refresh.IsZero() {
		if err := w.putRecord(hkey(prefixRefresh, iss.Refresh), &iss.RefreshRecord, iss.RefreshRecord.ExpiresAt); err != nil {
			return err
		}
	}
	if gid == "" {
		return nil
	}
	if drop != nil {
		fam.Access = without(fam.Access, drop.Access)
		fam.Refresh = without(fam.Refresh, drop.Refresh)
	}
	fam.Access = append(fam.Access, iss.Access.String())
	exp := iss.AccessRecord.ExpiresAt
	if !iss.Refresh.IsZero() {
		if r := iss.Refresh.String(); !slices.Contains(fam.Refresh, r) {
			fam.Refresh = append(fam.Refresh, r)
		}
		exp = max(exp, iss.RefreshRecord.ExpiresAt)
	}
	return w.putFamily(gid, &fam, max(exp, famExp, w.now+1))
}

func without(list, drop []string) []string {
	out := list[:0]
	for _, x := range list {
		if !slices.Contains(drop, x) {
			out = append(out, x)
		}
	}
	return out
}

// getToken reads a live token's record from the committed state.
func (s *FileStore) getToken(k []byte) (Record, error) {
	payload, _, err := s.view(k)
	if err != nil {
		return Record{}, err
	}
	rec, err := decodeRecord(payload)
	if err == nil && rec.ExpiresAt <= s.now().Unix() {
		return Record{}, ErrNotFound
	}
	return rec, err
}

// GetAccess implements AccessStore.
func (s *FileStore) GetAccess(_ context.Context, access Hash) (Record, error) {
	return s.getToken(hkey(prefixAccess, access))
}

// GetRefresh implements RefreshStore.
func (s *FileStore) GetRefresh(_ context.Context, refresh Hash) (Record, error) {
	return s.getToken(hkey(prefixRefresh, refresh))
}

// RotateRefresh implements RefreshStore.
func (s *FileStore) RotateRefresh(_ context.Context, old Hash, check RotateCheck, iss Issue, keepRefresh bool) (Record, Revoked, *Replay, error) {
	var rec Record
	var rev Revoked
	var replayed *Replay
	err := s.update(func(w *batchWriter) error {
		var err error
		rec, err = w.record(hkey(prefixRefresh, old))
		if errors.Is(err, ErrNotFound) {
			if v, _, gerr := w.get(hkey(prefixRotatedOut, old)); gerr == nil {
				replayed = parseReplay(string(v))
				return ErrReplayed
			}
			return ErrNotFound
		} else if err != nil {
			return err
		}
		if rec.ExpiresAt <= w.now {
			return ErrNotFound
		}
		if err := check(&rec, &iss); err != nil {
			return err
		}
		drop := &family{}
		if h, ok := parseHash(rec.AccessHash); ok {
			rev.Access = append(rev.Access, h)
			if err := w.delToken(hkey(prefixAccess, h)); err != nil {
				return err
			}
			drop.Access = append(drop.Access, rec.AccessHash)
		}
		if !keepRefresh {
			if err := w.delToken(hkey(prefixRefresh, old)); err != nil {
				return err
			}
			drop.Refresh = append(drop.Refresh, old.String())
			if rec.GrantID != "" {
				mark := formatReplay(rec.GrantID, time.Unix(w.now, 0))
				if err := w.put(hkey(prefixRotatedOut, old), max(rec.ExpiresAt, w.now+1), []byte(mark)); err != nil {
					return err
				}
			}
		} else {
			iss.RefreshRecord = rec
		}
		iss.AccessRecord.GrantID = rec.GrantID
		iss.RefreshRecord.GrantID = rec.GrantID
		return w.saveTokens(iss, drop)
	})
	return rec, rev, replayed, err
}

// RevokeAccess implements AccessStore.
func (s *FileStore) RevokeAccess(_ context.Context, access Hash) (Revoked, error) {
	err := s.update(func(w *batchWriter) error { return w.delToken(hkey(prefixAccess, access)) })
	return Revoked{Access: []Hash{access}}, err
}

// RevokeRefresh implements RefreshStore; the access token issued with the
// refresh token goes too (RFC 7009 §2.1).
func (s *FileStore) RevokeRefresh(_ context.Context, refresh Hash) (Revoked, error) {
	var rev Revoked
	err := s.update(func(w *batchWriter) error {
		rec, err := w.record(hkey(prefixRefresh, refresh))
		if errors.Is(err, ErrNotFound) {
			return nil
		} else if err != nil {
			return err
		}
		if err := w.delToken(hkey(prefixRefresh, refresh)); err != nil {
			return err
		}
		if h, ok := parseHash(rec.AccessHash); ok {
			rev.Access = append(rev.Access, h)
			return w.delToken(hkey(prefixAccess, h))
		}
		return nil
	})
	return rev, err
}

// revokeGrant removes a family's live tokens and marks it revoked for the
// replay window.
func (w *batchWriter) revokeGrant(gid string, rev *Revoked) error {
	fam, _ := w.family(gid)
	for _, a := range fam.Access {
		if h, ok := parseHash(a); ok {
			if err := w.delToken(hkey(prefixAccess, h)); err != nil {
				return err
			}
			rev.Access = append(rev.Access, h)
		}
	}
	for _, r := range fam.Refresh {
		if h, ok := parseHash(r); ok {
			if err := w.delToken(hkey(prefixRefresh, h)); err != nil {
				return err
			}
		}
	}
	return w.putFamily(gid, &family{Revoked: true}, expAfter(w.now, w.s.replay.get()))
}

// RevokeGrant implements Store.
func (s *FileStore) RevokeGrant(_ context.Context, grantID string) (Revoked, error) {
	var rev Revoked
	err := s.update(func(w *batchWriter) error { return w.revokeGrant(grantID, &rev) })
	return rev, err
}
