package main

import (
	"bytes"
	"encoding/binary"
	"os"
	"path/filepath"
	"time"

	"github.com/oauth2gate/oauth2gate/authz/tokenstore"
	bolt "go.etcd.io/bbolt"
)

// boltMaxBatch overrides bbolt's DB.MaxBatchSize when > 0 (-bbolt-max-batch).
var boltMaxBatch int

// boltEngine keeps the three kinds of keys (record, expiry index, client
// index) in one bucket under their prefix bytes, as pebble does. An
// issuance is a db.Batch: bbolt's group commit, one write transaction and
// one fsync for every call waiting (up to MaxBatchSize, or after
// MaxBatchDelay).
type boltEngine struct {
	db       *bolt.DB
	txAtOpen int
}

var boltBucket = []byte("t")

func (e *boltEngine) open(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	db, err := bolt.Open(filepath.Join(dir, "tokens.bolt"), 0o600, &bolt.Options{
		Timeout:        5 * time.Second,
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if err != nil {
		return err
	}
	if boltMaxBatch > 0 {
		db.MaxBatchSize = boltMaxBatch
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(boltBucket)
		return err
	}); err != nil {
		db.Close()
		return err
	}
	e.db = db
	e.txAtOpen = e.txID()
	return nil
}

// txID is the id of the last committed write transaction.
func (e *boltEngine) txID() int {
	id := 0
	_ = e.db.View(func(tx *bolt.Tx) error { id = tx.ID(); return nil })
	return id
}

func (e *boltEngine) issue(h *tokenstore.Hash, val []byte, exp int64) error {
	var kb, eb, cb [64]byte
	tk := accessKey(kb[:0], h)
	ek := expiryKey(eb[:0], exp, tk)
	ck := clientKey(cb[:0], clientID, tk)
	return e.db.Batch(func(tx *bolt.Tx) error {
		b := tx.Bucket(boltBucket)
		if err := b.Put(tk, val); err != nil {
			return err
		}
		if err := b.Put(ek, nil); err != nil {
			return err
		}
		return b.Put(ck, nil)
	})
}

func (e *boltEngine) get(h *tokenstore.Hash, buf []byte) ([]byte, bool, error) {
	var kb [64]byte
	tk := accessKey(kb[:0], h)
	var out []byte
	found := false
	err := e.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(boltBucket).Get(tk); v != nil {
			out, found = append(buf[:0], v...), true
		}
		return nil
	})
	return out, found, err
}

const sweepChunk = 1000

func (e *boltEngine) sweep(now int64, deadline time.Time) (int, error) {
	upTo := binary.BigEndian.AppendUint64([]byte{pfxExpiry}, uint64(now+1)) // exclusive
	start := []byte{pfxExpiry}
	removed := 0
	keys := make([][]byte, 0, sweepChunk)
	for time.Now().Before(deadline) {
		keys = keys[:0]
		err := e.db.Update(func(tx *bolt.Tx) error {
			b := tx.Bucket(boltBucket)
			c := b.Cursor()
			for k, _ := c.Seek(start); k != nil && len(keys) < sweepChunk && bytes.Compare(k, upTo) < 0; k, _ = c.Next() {
				keys = append(keys, bytes.Clone(k))
			}
			var cb [128]byte
			for _, ek := range keys {
				tk := ek[9:]
				if v := b.Get(tk); v != nil {
					ck := clientKey(cb[:0], string(cidOf(v)), tk)
					if err := b.Delete(ck); err != nil {
						return err
					}
					if err := b.Delete(tk); err != nil {
						return err
					}
				}
				if err := b.Delete(ek); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return removed, err
		}
		if len(keys) == 0 {
			return removed, nil
		}
		removed += len(keys)
		start = append(keys[len(keys)-1], 0)
	}
	return removed, nil
}

func (e *boltEngine) extra() map[string]float64 {
	st := e.db.Stats()
	m := map[string]float64{"free_pages": float64(st.FreePageN)}
	// write figures of this process's write transactions (batches, sweep chunks)
	if ntx := float64(e.txID() - e.txAtOpen); ntx > 0 {
		m["write_tx_since_open"] = ntx
		m["pages_written_per_tx"] = float64(st.TxStats.GetWrite()) / ntx
		m["write_ms_per_tx"] = float64(st.TxStats.GetWriteTime().Microseconds()) / 1e3 / ntx
		m["spill_ms_per_tx"] = float64(st.TxStats.GetSpillTime().Microseconds()) / 1e3 / ntx
	}
	return m
}

func (e *boltEngine) close() error { return e.db.Close() }
