package tokenstore

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/tidwall/buntdb"
	"go.uber.org/zap"
)

// metaUpgraded marks a store converted from a tokens.db: set in the batch
// after the last converted entry, so a conversion cut short (a crash, a
// kill) is done again from the start on the next open, and one that
// finished is not.
var metaUpgraded = []byte{kindMeta, 'u', 'p', 'g', 'r', 'a', 'd', 'e', 'd'}

// MigratedSuffix is added to the name of the buntdb file once its entries
// are in the pebble store; the file is then no longer read and may be
// deleted.
const MigratedSuffix = ".migrated"

// upgrade converts the buntdb store of earlier releases (dir/tokens.db) on
// the first start: every live code, token, replay mark, family, secret and
// registered client keeps its key and its expiry, so nobody is logged out
// and a replay of a token rotated out before the upgrade is still caught.
func (s *FileStore) upgrade(dir string) error {
	path := filepath.Join(dir, LegacyFileName)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	_, closer, err := s.db.Get(metaUpgraded)
	if err == nil {
		closer.Close()
	} else if errors.Is(err, pebble.ErrNotFound) {
		start := time.Now()
		n, err := s.convert(path)
		if err != nil {
			return fmt.Errorf("converting %s to %s: %w", path, DirName, err)
		}
		s.log.Info("token store converted from buntdb", zap.String("from", path),
			zap.String("to", filepath.Join(dir, DirName)), zap.Int("entries", n), zap.Duration("took", time.Since(start)))
	} else {
		return err
	}
	if err := os.Rename(path, path+MigratedSuffix); err != nil {
		return fmt.Errorf("setting aside %s: %w", path, err)
	}
	s.log.Info("the buntdb token store is no longer read and may be deleted", zap.String("file", path+MigratedSuffix))
	return nil
}

// convert copies every live entry of the buntdb file into the store; it
// returns how many.
func (s *FileStore) convert(path string) (int, error) {
	old, err := buntdb.Open(path)
	if err != nil {
		return 0, err
	}
	defer old.Close()
	now := s.now()
	w := &batchWriter{b: s.db.NewBatch(), now: now.Unix(), s: s}
	n := 0
	flush := func(final bool) error {
		opt := pebble.NoSync
		if final {
			if err := w.b.Set(metaUpgraded, value(0, nil), nil); err != nil {
				return err
			}
			opt = pebble.Sync
		}
		if err := w.b.Commit(opt); err != nil {
			return err
		}
		w.b.Close()
		w.b = s.db.NewBatch()
		return nil
	}
	var convErr error
	err = old.View(func(tx *buntdb.Tx) error {
		return tx.Ascend("", func(k, v string) bool {
			ttl, err := tx.TTL(k)
			if err != nil {
				return true // expired (or gone) meanwhile
			}
			var exp int64
			if ttl >= 0 {
				exp = expAfter(w.now, ttl)
			}
			ok, err := w.convertOne(k, v, exp)
			if err != nil {
				convErr = err
				return false
			}
			if ok {
				n++
				if n%10000 == 0 {
					if convErr = flush(false); convErr != nil {
						return false
					}
				}
			}
			return true
		})
	})
	if err == nil {
		err = convErr
	}
	if err == nil {
		err = flush(true)
	}
	w.b.Close()
	return n, err
}

// convertOne writes one buntdb entry ("a:<hex>" and the record's JSON,
// "g:<id>" and the family's, ...) in this store's layout. Entries of no
// kind this store knows, and unreadable ones, are left behind.
func (w *batchWriter) convertOne(k, v string, exp int64) (bool, error) {
	if len(k) < 2 || k[1] != ':' {
		return false, nil
	}
	prefix, rest := k[:2], k[2:]
	switch prefix {
	case prefixCode, prefixAccess, prefixRefresh:
		h, ok := parseHash(rest)
		rec, err := decodeRecord([]byte(v))
		if !ok || err != nil {
			return false, nil
		}
		if prefix != prefixCode {
			exp = rec.ExpiresAt // a token's record says when it ends
		}
		if !live(exp, w.now) {
			return false, nil
		}
		return true, w.putRecord(hkey(prefix, h), &rec, exp)
	case prefixUsedCode, prefixRotatedOut:
		h, ok := parseHash(rest)
		if !ok {
			return false, nil
		}
		return true, w.put(hkey(prefix, h), exp, []byte(v))
	case prefixFamily, prefixSecret, prefixClient:
		return true, w.put(nkey(prefix, rest), exp, []byte(v))
	}
	return false, nil
}
