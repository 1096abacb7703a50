// Package oautherr is oauth2gate's one error model: an OAuth 2.0 error code,
// a description safe to show the client, the HTTP status it is answered with
// and, kept apart from what the client sees, the cause (fosite's WithWrap).
// The authorization server, the gateway and the trust of other issuers all
// answer with it (RFC 6749 §4.1.2.1, §5.2; RFC 6750 §3.1; RFC 7009; RFC 7662).
package oautherr

import (
	"errors"
	"net/http"
	"time"
)

// Error is an OAuth 2.0 error.
type Error struct {
	Code        string
	Description string
	Status      int
	// RetryAfter, when set, is sent as Retry-After (429, 503).
	RetryAfter time.Duration
	// Scope, on insufficient_scope, names the scopes the request needs
	// (RFC 6750 §3).
	Scope string
	cause error
}

// Error is the code and description, never the cause: an error's text may
// reach a client.
func (e *Error) Error() string {
	if e.Description == "" {
		return e.Code
	}
	return e.Code + ": " + e.Description
}

// Is reports whether target is an *Error with the same code, so that
// errors.Is(err, oautherr.InvalidGrant) works whatever the description.
func (e *Error) Is(target error) bool {
	var t *Error
	if !errors.As(target, &t) {
		return false
	}
	return t.Code == e.Code
}

// Unwrap is the cause.
func (e *Error) Unwrap() error { return e.cause }

// Cause is what went wrong underneath (a store's error, a provider's
// answer), for logs; nil when the error is the whole story.
func (e *Error) Cause() error { return e.cause }

// WithDescription returns a copy of e carrying desc.
func (e *Error) WithDescription(desc string) *Error {
	c := *e
	c.Description = desc
	return &c
}

// WithWrap returns a copy of e that keeps cause for logs.
func (e *Error) WithWrap(cause error) *Error {
	c := *e
	c.cause = cause
	return &c
}

// WithRetryAfter returns a copy of e answered with Retry-After d.
func (e *Error) WithRetryAfter(d time.Duration) *Error {
	c := *e
	c.RetryAfter = d
	return &c
}

// WithScope returns a copy of e naming the scopes needed.
func (e *Error) WithScope(scope string) *Error {
	c := *e
	c.Scope = scope
	return &c
}

// One sentinel per RFC error code. RFC 6749 §5.2: 400 for every token error
// but invalid_client, which is 401.
var (
	InvalidRequest          = &Error{Code: "invalid_request", Status: http.StatusBadRequest}
	InvalidClient           = &Error{Code: "invalid_client", Status: http.StatusUnauthorized}
	InvalidGrant            = &Error{Code: "invalid_grant", Status: http.StatusBadRequest}
	UnauthorizedClient      = &Error{Code: "unauthorized_client", Status: http.StatusBadRequest}
	UnsupportedGrantType    = &Error{Code: "unsupported_grant_type", Status: http.StatusBadRequest}
	InvalidScope            = &Error{Code: "invalid_scope", Status: http.StatusBadRequest}
	AccessDenied            = &Error{Code: "access_denied", Status: http.StatusForbidden}
	UnsupportedResponseType = &Error{Code: "unsupported_response_type", Status: http.StatusBadRequest}
	TemporarilyUnavailable  = &Error{Code: "temporarily_unavailable", Status: http.StatusServiceUnavailable}
	// RFC 6750 §3.1.
	InvalidToken      = &Error{Code: "invalid_token", Status: http.StatusUnauthorized}
	InsufficientScope = &Error{Code: "insufficient_scope", Status: http.StatusForbidden}
	// NoToken is a request to a protected resource without any token: 401
	// and a challenge with no error attribute (RFC 6750 §3.1).
	NoToken = &Error{Code: "", Status: http.StatusUnauthorized}
	// MethodNotAllowed answers a method an endpoint does not take (405).
	MethodNotAllowed = &Error{Code: "invalid_request", Description: "method not allowed", Status: http.StatusMethodNotAllowed}
)

// As returns err as an *Error, or nil when it is not one.
func As(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return nil
}
