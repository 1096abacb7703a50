package gateway

import (
	"context"

	"github.com/oauth2gate/oauth2gate/authz/oautherr"
)

// Outcome is what the guard decided about a request, as the metric
// oauth2gate_guard_requests_total{outcome} names it.
type Outcome uint8

// The outcomes, in the order of OutcomeNames.
const (
	OutcomePass Outcome = iota
	OutcomeNoToken
	OutcomeInvalidRequest
	OutcomeInvalidToken
	OutcomeInsufficientScope
	OutcomeForbidden
	OutcomeUnavailable
	NumOutcomes
)

// OutcomeNames are the label values of the outcomes.
var OutcomeNames = [NumOutcomes]string{"pass", "no_token", "invalid_request", "invalid_token", "insufficient_scope", "forbidden", "unavailable"}

func (o Outcome) String() string { return OutcomeNames[o] }

// OutcomeOf names a refusal's outcome (nil: pass); any 5xx is unavailable,
// any other refusal forbidden.
func OutcomeOf(e *oautherr.Error) Outcome {
	switch {
	case e == nil:
		return OutcomePass
	case e.Status >= 500:
		return OutcomeUnavailable
	case e.Code == "":
		return OutcomeNoToken
	case e.Code == "invalid_request":
		return OutcomeInvalidRequest
	case e.Code == "invalid_token":
		return OutcomeInvalidToken
	case e.Code == "insufficient_scope":
		return OutcomeInsufficientScope
	}
	return OutcomeForbidden
}

// Lookup says how a token's identity was found, for the cache metrics.
type Lookup uint8

// Lookups.
const (
	LookupNone Lookup = iota // no token was looked up (refused before, or not our cache)
	LookupHit                // the cache knew it
	LookupMiss               // the store (or the issuer) was asked
	NumLookups
)

// LookupVerifier is a Verifier that also says whether its cache answered:
// the guard then counts its decision and the cache lookup in one add.
type LookupVerifier interface {
	VerifyLookup(ctx context.Context, token string) (*Identity, Lookup, error)
}

// Observer counts guard decisions (metrics). Observe is called once per
// request checked; it must not allocate.
type Observer interface {
	Observe(Outcome, Lookup)
}
