package authz

import (
	"errors"

	"go.uber.org/zap"

	"github.com/oauth2gate/oauth2gate/authz/oautherr"
)

// Error is oauth2gate's one OAuth 2.0 error (see package oautherr): every
// error path of an endpoint ends in one.
type Error = oautherr.Error

// The RFC error codes the authorization server answers with.
var (
	ErrInvalidRequest          = oautherr.InvalidRequest
	ErrInvalidClient           = oautherr.InvalidClient
	ErrInvalidGrant            = oautherr.InvalidGrant
	ErrUnauthorizedClient      = oautherr.UnauthorizedClient
	ErrUnsupportedGrantType    = oautherr.UnsupportedGrantType
	ErrInvalidScope            = oautherr.InvalidScope
	ErrAccessDenied            = oautherr.AccessDenied
	ErrUnsupportedResponseType = oautherr.UnsupportedResponseType
	ErrTemporarilyUnavailable  = oautherr.TemporarilyUnavailable
	ErrInvalidToken            = oautherr.InvalidToken
	ErrInsufficientScope       = oautherr.InsufficientScope
	ErrMethodNotAllowed        = oautherr.MethodNotAllowed
)

// asError turns any error into an *Error; errors that are not ours become
// temporarily_unavailable (503), the cause kept for the log: they come from
// the store, and a client may retry.
func asError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return ErrTemporarilyUnavailable.WithDescription("the token store is unavailable").WithWrap(err)
}

// logCause logs an answer the client could not help (5xx) with its cause:
// a store's or a provider's error, which carries no token or secret.
func (s *Server) logCause(where string, e *Error) {
	if e == nil || e.Status < 500 {
		return
	}
	fields := []zap.Field{zap.String("error", e.Code), zap.String("description", e.Description)}
	if c := e.Cause(); c != nil {
		fields = append(fields, zap.String("cause", c.Error()))
	}
	s.logger.Error(where, fields...)
}
