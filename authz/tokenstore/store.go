// Package tokenstore keeps authorization codes, access tokens and refresh
// tokens, always under the SHA-256 hash of the token, so whoever reads the
// store finds no token in it. The server's own secrets (session and signing
// keys) are kept here too, but only as the authz package seals them with a key
// that is not in the store (authz/secrets.go). The embedded file store is the
// default; any other backend (Redis) implements the same Store.
package tokenstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"time"

	"github.com/oauth2gate/oauth2gate/authz/jsonenc"
)

// Hash is the SHA-256 of a token, code or refresh token.
type Hash [sha256.Size]byte

// HashOf hashes a token for lookup and storage. Tokens up to 1 KiB (opaque
// ones, most JWTs) are copied on the stack, not the heap.
func HashOf(token string) Hash {
	if len(token) <= 1024 {
		var buf [1024]byte
		return sha256.Sum256(append(buf[:0], token...))
	}
	return sha256.Sum256([]byte(token))
}

// String is the hex form used in store keys (never the token itself).
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// IsZero reports whether h is the zero hash (no token).
func (h Hash) IsZero() bool { return h == Hash{} }

// Record is what the store knows of a code or token. It never holds the raw
// token: only hashes link a refresh token to its access token.
type Record struct {
	ClientID            string `json:"cid"`
	Subject             string `json:"sub,omitempty"`
	Scope               string `json:"scp,omitempty"`
	RedirectURI         string `json:"ruri,omitempty"`
	CodeChallenge       string `json:"cc,omitempty"`
	CodeChallengeMethod string `json:"ccm,omitempty"`
	Nonce               string `json:"n,omitempty"`
	AuthTime            int64  `json:"at,omitempty"`
	// GrantID names the grant family: a code and every token issued from it
	// and from its refreshes. Replay of a code or of a rotated-out refresh
	// token revokes the family (RFC 9700 §4.2.1, §4.14.2).
	GrantID   string `json:"gid,omitempty"`
	IssuedAt  int64  `json:"iat"`
	ExpiresAt int64  `json:"exp"` // unix seconds
	// AccessHash, on a refresh record, names the access token issued with it.
	AccessHash string `json:"ah,omitempty"`
	// RefreshHash, on an access record, names its refresh token.
	RefreshHash string `json:"rh,omitempty"`
}

// AppendJSON encodes the record as encoding/json would (same field names,
// same omissions), without reflection: the store writer's hot path.
func (r *Record) AppendJSON(b []byte) []byte {
	b = append(b, '{')
	b = jsonenc.Field(b, true, "cid", r.ClientID, false)
	b = jsonenc.Field(b, false, "sub", r.Subject, true)
	b = jsonenc.Field(b, false, "scp", r.Scope, true)
	b = jsonenc.Field(b, false, "ruri", r.RedirectURI, true)
	b = jsonenc.Field(b, false, "cc", r.CodeChallenge, true)
	b = jsonenc.Field(b, false, "ccm", r.CodeChallengeMethod, true)
	b = jsonenc.Field(b, false, "n", r.Nonce, true)
	if r.AuthTime != 0 {
		b = jsonenc.Int(b, false, "at", r.AuthTime)
	}
	b = jsonenc.Field(b, false, "gid", r.GrantID, true)
	b = jsonenc.Int(b, false, "iat", r.IssuedAt)
	b = jsonenc.Int(b, false, "exp", r.ExpiresAt)
	b = jsonenc.Field(b, false, "ah", r.AccessHash, true)
	b = jsonenc.Field(b, false, "rh", r.RefreshHash, true)
	return append(b, '}')
}

// Expiry returns ExpiresAt as a time.
func (r *Record) Expiry() time.Time { return time.Unix(r.ExpiresAt, 0) }

// Errors a Store returns. Anything else is a backend failure.
var (
	ErrNotFound = errors.New("not found")
	// ErrReplayed means a code or refresh token that was already used came
	// back; the returned Replay names the family to revoke.
	ErrReplayed = errors.New("replayed")
)

// Replay describes a rotated-out refresh token presented again.
type Replay struct {
	GrantID   string
	RotatedAt time.Time
}

// Issue is one issuance: an access token and, optionally, a refresh token.
type Issue struct {
	Access        Hash
	AccessRecord  Record
	Refresh       Hash // zero when no refresh token was issued
	RefreshRecord Record
}

// NewIssue builds the records of one issuance: the one place that sets the
// tokens' hashes and lifetimes, whichever path issues (go-oauth2's grants,
// refresh rotation, a retried refresh within its grace). access and
// accessRec are the access token and who and what it is for; refresh (empty
// for none) and refreshRec the refresh token, which keeps the scope the grant
// had (RFC 6749 §6). Both live from iat, for their ttl.
func NewIssue(access string, accessRec Record, refresh string, refreshRec Record, iat time.Time, accessTTL, refreshTTL time.Duration) Issue {
	iss := Issue{Access: HashOf(access), AccessRecord: accessRec}
	iss.AccessRecord.IssuedAt, iss.AccessRecord.ExpiresAt = iat.Unix(), iat.Add(accessTTL).Unix()
	iss.AccessRecord.AccessHash, iss.AccessRecord.RefreshHash = "", ""
	if refresh != "" {
		iss.Refresh = HashOf(refresh)
		iss.RefreshRecord = refreshRec
		iss.RefreshRecord.IssuedAt, iss.RefreshRecord.ExpiresAt = iat.Unix(), iat.Add(refreshTTL).Unix()
		iss.RefreshRecord.AccessHash, iss.RefreshRecord.RefreshHash = "", ""
	}
	return iss
}

// RotateCheck decides, inside the store's transaction, whether the refresh
// token may be used, and fills in the records of the new issuance from the
// old one; an error aborts the rotation and leaves the token as it was.
type RotateCheck func(old *Record, iss *Issue) error

// CodeCheck decides whether a code may be redeemed; an error leaves the
// code untouched.
type CodeCheck func(rec *Record) error

// Revoked lists what a revocation removed, so caches can drop it.
type Revoked struct {
	Access []Hash
}

// CodeStore holds authorization codes. TakeCode is atomic: of many concurrent
// redemptions of one code, exactly one gets it.
type CodeStore interface {
	SaveCode(ctx context.Context, code Hash, rec Record, ttl time.Duration) error
	// TakeCode removes and returns the code. check (when not nil) sees the
	// code's record first, inside the take: when it returns an error the code
	// stays where it was and that error is returned, so a request that may
	// not redeem the code (another client's, another redirect_uri, a wrong
	// PKCE verifier) cannot burn it. A code taken before gives ErrReplayed
	// with the grant ID of the family it started; an unknown or expired code
	// gives ErrNotFound.
	TakeCode(ctx context.Context, code Hash, check CodeCheck) (Record, string, error)
}

// AccessStore holds access tokens (and their refresh tokens).
type AccessStore interface {
	// SaveTokens stores an issuance; with a GrantID it joins that family.
	SaveTokens(ctx context.Context, iss Issue) error
	GetAccess(ctx context.Context, access Hash) (Record, error)
	RevokeAccess(ctx context.Context, access Hash) (Revoked, error)
}

// RefreshStore holds refresh tokens.
type RefreshStore interface {
	GetRefresh(ctx context.Context, refresh Hash) (Record, error)
	// RotateRefresh atomically checks and consumes the old refresh token,
	// revokes the access token issued with it, and stores the new issuance.
	// When keepRefresh is set (rotation off) the old refresh token stays and
	// iss.Refresh must equal old. A refresh token rotated out before gives
	// ErrReplayed and a Replay naming its family and when it was rotated.
	RotateRefresh(ctx context.Context, old Hash, check RotateCheck, iss Issue, keepRefresh bool) (Record, Revoked, *Replay, error)
	RevokeRefresh(ctx context.Context, refresh Hash) (Revoked, error)
}

// Watcher is implemented by stores shared between instances (Redis): it
// reports revocations made by any instance, so every instance's cache drops
// the token at once, and a lost connection, after which a cache must forget
// what it holds (a revocation may have been missed).
type Watcher interface {
	Watch(onRevoke func(Revoked), onReset func())
}

// FailureCounter is implemented by shared stores so that brute-force limits
// hold across instances: a token bucket of failures per key (burst at once,
// one more per every), forgotten once full again. An attempt takes its
// failure before the password is checked (so simultaneous attempts cannot all
// pass a check made before any of them failed) and gives it back when the
// password was right.
type FailureCounter interface {
	// TakeFailure takes one failure from every key's bucket when each has one
	// left, atomically; otherwise it takes none and answers how long until
	// every key has one again.
	TakeFailure(ctx context.Context, keys []string, burst int, every time.Duration) (wait time.Duration, err error)
	// RefundFailure gives back a failure taken by TakeFailure (never above
	// burst).
	RefundFailure(ctx context.Context, keys []string, burst int, every time.Duration) error
}

// Unwrap returns the store s wraps (a store with its caches, say), or s.
func Unwrap(s Store) Store {
	for {
		u, ok := s.(interface{ Unwrap() Store })
		if !ok {
			return s
		}
		s = u.Unwrap()
	}
}

// FailureCounterOf is the failure counter of s or of the store it wraps.
func FailureCounterOf(s Store) (FailureCounter, bool) {
	fc, ok := Unwrap(s).(FailureCounter)
	return fc, ok
}

// Store is every capability the authorization server needs.
type Store interface {
	CodeStore
	AccessStore
	RefreshStore
	AdminStore
	// RevokeGrant removes every live token of a family.
	RevokeGrant(ctx context.Context, grantID string) (Revoked, error)
	// Secret returns the named server secret, creating it with gen on first use
	// (session keys, signing keys): it must survive restarts.
	Secret(ctx context.Context, name string, gen func() ([]byte, error)) ([]byte, error)
	// SetSecret replaces the named secret (signing key rotation).
	SetSecret(ctx context.Context, name string, value []byte) error
	Close() error
}
