package tokenstore

import (
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
)

// The kinds of entry every store keeps, as the prefixes of their keys. The
// Redis store writes them as text ("a:" and the hash in hex); the file store
// keeps only the first byte, followed by the hash's 32 bytes or the name.
const (
	prefixCode       = "c:" // an authorization code not yet redeemed
	prefixUsedCode   = "u:" // a redeemed code: its family, for replay detection
	prefixAccess     = "a:" // an access token
	prefixRefresh    = "r:" // a refresh token
	prefixRotatedOut = "x:" // a rotated-out refresh token: its family and when
	prefixFamily     = "g:" // a grant family's live members
	prefixSecret     = "s:" // a server secret (sealed by the authz package)
	prefixClient     = "k:" // a client registered through the admin API
)

// ErrClosed is returned after Close.
var ErrClosed = errors.New("token store closed")

// formatReplay and parseReplay keep a rotated-out refresh token's family and
// rotation time (unix milliseconds) as "gid|ms".
func formatReplay(gid string, at time.Time) string {
	return gid + "|" + strconv.FormatInt(at.UnixMilli(), 10)
}

func parseReplay(v string) *Replay {
	gid, ms, _ := strings.Cut(v, "|")
	n, _ := strconv.ParseInt(ms, 10, 64)
	return &Replay{GrantID: gid, RotatedAt: time.UnixMilli(n)}
}

func parseHash(s string) (Hash, bool) {
	var h Hash
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(h) {
		return h, false
	}
	copy(h[:], b)
	return h, true
}
