package oautherr

import (
	"errors"
	"fmt"
	"testing"
)

func TestErrorKeepsCauseApartFromText(t *testing.T) {
	cause := errors.New("redis: i/o timeout at 10.0.0.7:6379")
	e := TemporarilyUnavailable.WithDescription("the token store is unavailable").WithWrap(cause)
	if e.Error() != "temporarily_unavailable: the token store is unavailable" {
		t.Errorf("Error() = %q: the cause must not be in the client's text", e.Error())
	}
	if !errors.Is(e, cause) || e.Cause() != cause {
		t.Error("the cause is lost")
	}
	if !errors.Is(fmt.Errorf("wrapped: %w", e), TemporarilyUnavailable) {
		t.Error("errors.Is by code fails through wrapping")
	}
	if errors.Is(e, InvalidGrant) {
		t.Error("a 503 matches invalid_grant")
	}
	if TemporarilyUnavailable.Cause() != nil || TemporarilyUnavailable.Description != "" {
		t.Error("WithWrap/WithDescription changed the sentinel")
	}
	if As(fmt.Errorf("x: %w", e)) == nil || As(cause) != nil {
		t.Error("As")
	}
}
