package main

import (
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/oauth2gate/oauth2gate/authz/tokenstore"
	"github.com/tidwall/buntdb"
)

// buntEngine is today's FileStore reduced to the issuance of an access
// token: the same config, key form ("a:"+hex), native TTL, an index by
// client ordered by the record's cid field, and the same group commit (one
// writer goroutine applies every issuance waiting, up to 256, in one Update,
// which is one write(2) of the appended log; fsync once a second).
type buntEngine struct {
	db     *buntdb.DB
	issues chan *buntPending
	stop   chan struct{}
	out    chan struct{}

	// Background expiry, counted through OnExpiredSync (which deletes the
	// key exactly as buntdb's default does).
	expired  atomic.Int64
	firstExp atomic.Int64 // unix ns of the first expiry seen
	lastExp  atomic.Int64 // unix ns of the latest
	win      *window      // when set, the first expiry starts its span
}

type buntPending struct {
	key, val string
	ttl      time.Duration
	done     chan error
}

const buntMaxGroup = 256

func (e *buntEngine) open(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	db, err := buntdb.Open(filepath.Join(dir, "tokens.db"))
	if err != nil {
		return err
	}
	cfg := buntdb.Config{
		SyncPolicy:           buntdb.EverySecond,
		AutoShrinkPercentage: 100,
		AutoShrinkMinSize:    8 << 20,
		OnExpiredSync: func(key, _ string, tx *buntdb.Tx) error {
			if e.expired.Add(1) == 1 {
				now := time.Now().UnixNano()
				e.firstExp.Store(now)
				if e.win != nil {
					e.win.start.Store(now)
				}
			}
			e.lastExp.Store(time.Now().UnixNano())
			_, err := tx.Delete(key)
			if errors.Is(err, buntdb.ErrNotFound) {
				err = nil // Delete reports expired items as not found
			}
			return err
		},
	}
	if err := db.SetConfig(cfg); err != nil {
		db.Close()
		return err
	}
	if err := db.ReplaceIndex("a_cid", "a:*", func(a, b string) bool {
		return string(cidOf([]byte(a))) < string(cidOf([]byte(b)))
	}); err != nil {
		db.Close()
		return err
	}
	e.db = db
	e.issues = make(chan *buntPending, buntMaxGroup)
	e.stop, e.out = make(chan struct{}), make(chan struct{})
	go e.writer()
	return nil
}

func (e *buntEngine) writer() {
	defer close(e.out)
	batch := make([]*buntPending, 0, buntMaxGroup)
	for {
		select {
		case <-e.stop:
			return
		case p := <-e.issues:
			batch = append(batch[:0], p)
		drain:
			for len(batch) < buntMaxGroup {
				select {
				case p := <-e.issues:
					batch = append(batch, p)
				default:
					break drain
				}
			}
			err := e.db.Update(func(tx *buntdb.Tx) error {
				for _, p := range batch {
					if _, _, err := tx.Set(p.key, p.val, &buntdb.SetOptions{Expires: true, TTL: p.ttl}); err != nil {
						return err
					}
				}
				return nil
			})
			for _, p := range batch {
				p.done <- err
			}
		}
	}
}

func buntKey(h *tokenstore.Hash) string { return "a:" + hex.EncodeToString(h[:]) }

func (e *buntEngine) issue(h *tokenstore.Hash, val []byte, exp int64) error {
	ttl := time.Until(time.Unix(exp, 0))
	if ttl < time.Second {
		ttl = time.Second // as FileStore.ttlUntil
	}
	p := &buntPending{key: buntKey(h), val: string(val), ttl: ttl, done: make(chan error, 1)}
	select {
	case e.issues <- p:
	case <-e.stop:
		return errors.New("closed")
	}
	return <-p.done
}

func (e *buntEngine) get(h *tokenstore.Hash, buf []byte) ([]byte, bool, error) {
	k := buntKey(h)
	var out []byte
	found := false
	err := e.db.View(func(tx *buntdb.Tx) error {
		v, err := tx.Get(k)
		if errors.Is(err, buntdb.ErrNotFound) {
			return nil
		} else if err != nil {
			return err
		}
		out, found = append(buf[:0], v...), true
		return nil
	})
	return out, found, err
}

func (e *buntEngine) sweep(int64, time.Time) (int, error) { return 0, errSelfExpiring }

// waitIdle returns once no write transaction (an expiry pass) holds the db.
func (e *buntEngine) waitIdle() { _ = e.db.View(func(*buntdb.Tx) error { return nil }) }

func (e *buntEngine) extra() map[string]float64 {
	return map[string]float64{"expired_by_buntdb": float64(e.expired.Load()), "expiry_first_to_last_ms": float64(e.lastExp.Load()-e.firstExp.Load()) / 1e6}
}

func (e *buntEngine) close() error {
	close(e.stop)
	<-e.out
	err := e.db.Close()
	e.db = nil
	return err
}
