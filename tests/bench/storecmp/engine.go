package main

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/oauth2gate/oauth2gate/authz/tokenstore"
)

// engine is one embedded store under test, holding access tokens the way
// the token store would.
type engine interface {
	// open opens (creating if needed) the store in dir.
	open(dir string) error
	// issue stores one access token: record, expiry index entry and client
	// index entry. It is called from many goroutines at once and returns
	// only when the record would survive kill -9 of the process.
	issue(h *tokenstore.Hash, val []byte, exp int64) error
	// get appends the token's record to buf; found is false when absent.
	get(h *tokenstore.Hash, buf []byte) (out []byte, found bool, err error)
	// sweep removes the tokens expired at or before now through the expiry
	// index, 1000 to a write transaction, until none is left or deadline;
	// engines that expire by themselves (buntdb) return errSelfExpiring.
	sweep(now int64, deadline time.Time) (removed int, err error)
	// extra is engine-specific figures worth printing (stalls, cache).
	extra() map[string]float64
	close() error
}

var errSelfExpiring = fmt.Errorf("engine expires keys by itself")

func newEngine(name string) (engine, error) {
	switch name {
	case "buntdb":
		return &buntEngine{}, nil
	case "bbolt":
		return &boltEngine{}, nil
	case "pebble":
		return &pebbleEngine{}, nil
	}
	return nil, fmt.Errorf("unknown engine %q (want buntdb, bbolt, pebble)", name)
}

// Key prefixes of the binary layout (bbolt, pebble).
const (
	pfxAccess = 'a'
	pfxExpiry = 'e'
	pfxClient = 'k'
)

const (
	clientID = "bench"
	scope    = "read write"
	tokenTTL = 24 * time.Hour
)

// Index spaces of the tokens: the fill's are 0..n-1, the issuances during the
// sweep's load and the never-issued (absent) keys are far from them.
const (
	loadBase   = uint64(1) << 40
	absentBase = uint64(1) << 50
)

// hashOf is the SHA-256 of token i of the run: the token itself is 32
// pseudo-random bytes derived from the seed, as a real one is random.
func hashOf(seed, i uint64) tokenstore.Hash {
	var in [16]byte
	binary.BigEndian.PutUint64(in[:8], seed)
	binary.BigEndian.PutUint64(in[8:], i)
	token := sha256.Sum256(in[:])
	return tokenstore.Hash(sha256.Sum256(token[:]))
}

// shortLived reports whether fill token i is one of the 10% that are
// expired by the time of the sweep.
func shortLived(i uint64) bool { return i%10 == 9 }

// liveIndex maps a random number to a fill token that is not short-lived.
func liveIndex(r, n uint64) uint64 {
	i := r % n
	if shortLived(i) {
		i--
	}
	return i
}

// recordJSON is the record of a client_credentials access token as the
// server builds it (the subject is the client, no refresh token, no grant).
func recordJSON(buf []byte, iat, exp int64) []byte {
	rec := tokenstore.Record{ClientID: clientID, Subject: clientID, Scope: scope, IssuedAt: iat, ExpiresAt: exp}
	return rec.AppendJSON(buf[:0])
}

func accessKey(buf []byte, h *tokenstore.Hash) []byte {
	return append(append(buf[:0], pfxAccess), h[:]...)
}

func expiryKey(buf []byte, exp int64, tokKey []byte) []byte {
	buf = append(buf[:0], pfxExpiry)
	buf = binary.BigEndian.AppendUint64(buf, uint64(exp))
	return append(buf, tokKey...)
}

func clientKey(buf []byte, cid string, tokKey []byte) []byte {
	buf = append(append(buf[:0], pfxClient), cid...)
	return append(append(buf, 0), tokKey...)
}

// cidOf is the escaped client id of a record written by AppendJSON (its
// first field), found without parsing, as file_admin.go does.
func cidOf(doc []byte) []byte {
	const k = `{"cid":"`
	if len(doc) < len(k) || string(doc[:len(k)]) != k {
		return nil
	}
	v := doc[len(k):]
	for j := 0; j < len(v); j++ {
		switch v[j] {
		case '\\':
			j++
		case '"':
			return v[:j]
		}
	}
	return v
}
