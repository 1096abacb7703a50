package authz

import (
	"errors"
	"net/http"
	"time"
)

// Error is an OAuth 2.0 error: the RFC code, a description safe to show a
// client, and the HTTP status it is answered with. Every error path of an
// endpoint ends in one of these (RFC 6749 §4.1.2.1, §5.2; RFC 6750 §3.1).
type Error struct {
	Code        string
	Description string
	Status      int
	// RetryAfter, when set, is sent as Retry-After (429, 503).
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	if e.Description == "" {
		return e.Code
	}
	return e.Code + ": " + e.Description
}

// Is reports whether target is an *Error with the same code, so that
// errors.Is(err, ErrInvalidGrant) works whatever the description.
func (e *Error) Is(target error) bool {
	var t *Error
	if !errors.As(target, &t) {
		return false
	}
	return t.Code == e.Code
}

// WithDescription returns a copy of e carrying desc.
func (e *Error) WithDescription(desc string) *Error {
	c := *e
	c.Description = desc
	return &c
}

// Sentinels, one per RFC error code. RFC 6749 §5.2: 400 for all token errors
// but invalid_client, which is 401.
var (
	ErrInvalidRequest          = &Error{Code: "invalid_request", Status: http.StatusBadRequest}
	ErrInvalidClient           = &Error{Code: "invalid_client", Status: http.StatusUnauthorized}
	ErrInvalidGrant            = &Error{Code: "invalid_grant", Status: http.StatusBadRequest}
	ErrUnauthorizedClient      = &Error{Code: "unauthorized_client", Status: http.StatusBadRequest}
	ErrUnsupportedGrantType    = &Error{Code: "unsupported_grant_type", Status: http.StatusBadRequest}
	ErrInvalidScope            = &Error{Code: "invalid_scope", Status: http.StatusBadRequest}
	ErrAccessDenied            = &Error{Code: "access_denied", Status: http.StatusForbidden}
	ErrUnsupportedResponseType = &Error{Code: "unsupported_response_type", Status: http.StatusBadRequest}
	ErrServerError             = &Error{Code: "server_error", Status: http.StatusInternalServerError}
	ErrTemporarilyUnavailable  = &Error{Code: "temporarily_unavailable", Status: http.StatusServiceUnavailable}
	ErrInvalidToken            = &Error{Code: "invalid_token", Status: http.StatusUnauthorized}
	ErrInsufficientScope       = &Error{Code: "insufficient_scope", Status: http.StatusForbidden}
	ErrMethodNotAllowed        = &Error{Code: "invalid_request", Description: "method not allowed", Status: http.StatusMethodNotAllowed}
)

// asError turns any error into an *Error; errors that are not ours become
// temporarily_unavailable (503): they come from the store, and a client may retry.
func asError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return ErrTemporarilyUnavailable.WithDescription("the token store is unavailable")
}
