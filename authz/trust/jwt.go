package trust

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/oauth2gate/oauth2gate/authz/gateway"
	"github.com/oauth2gate/oauth2gate/authz/oautherr"
)

// Refusals; the description tells the caller what failed, never more.
var (
	errBadJWT     = oautherr.InvalidToken.WithDescription("the access token is not a valid JWT")
	errBadSig     = oautherr.InvalidToken.WithDescription("the access token's signature is invalid")
	errUnknownKid = oautherr.InvalidToken.WithDescription("the access token is signed with an unknown key")
	errTyp        = oautherr.InvalidToken.WithDescription("the access token's typ is not at+jwt or JWT")
	errIss        = oautherr.InvalidToken.WithDescription("the access token's issuer is not trusted")
	errAud        = oautherr.InvalidToken.WithDescription("the access token's audience is not accepted here")
	errExpired    = oautherr.InvalidToken.WithDescription("the access token expired")
	errNotYet     = oautherr.InvalidToken.WithDescription("the access token is not valid yet")
	errIat        = oautherr.InvalidToken.WithDescription("the access token is issued in the future")
	errNoExp      = oautherr.InvalidToken.WithDescription("the access token has no exp")
	errInactive   = oautherr.InvalidToken.WithDescription("the access token is not active")
	errNoAudience = oautherr.InvalidToken.WithDescription("this issuer's JWTs are not accepted (no audience configured)")
)

func unavailable(desc string, cause error) *oautherr.Error {
	return oautherr.TemporarilyUnavailable.WithDescription(desc).WithWrap(cause)
}

// parsedJWT is a compact JWS whose payload was read but not yet trusted.
type parsedJWT struct {
	jws    *jose.JSONWebSignature
	claims map[string]any
	iss    string
}

// parseJWT reads a compact JWS with one of the accepted algorithms (go-jose
// refuses any other alg, none included, before anything else).
func parseJWT(token string, algs []jose.SignatureAlgorithm) (*parsedJWT, error) {
	jws, err := jose.ParseSignedCompact(token, algs)
	if err != nil || len(jws.Signatures) != 1 {
		return nil, errBadJWT
	}
	claims, err := decodeClaims(jws.UnsafePayloadWithoutVerification())
	if err != nil {
		return nil, errBadJWT
	}
	iss, _ := claims["iss"].(string)
	return &parsedJWT{jws: jws, claims: claims, iss: iss}, nil
}

func decodeClaims(payload []byte) (map[string]any, error) {
	d := json.NewDecoder(bytes.NewReader(payload))
	d.UseNumber()
	var claims map[string]any
	if err := d.Decode(&claims); err != nil || claims == nil {
		return nil, errors.New("claims are not a JSON object")
	}
	if d.More() {
		return nil, errors.New("trailing data after the claims")
	}
	return claims, nil
}

// verifyJWT checks p against the issuer: header, signature by one of the
// issuer's keys (never one the token names: jwk, jku and x5u are ignored),
// and the claims.
func (is *Issuer) verifyJWT(ctx context.Context, p *parsedJWT) (*gateway.Identity, error) {
	if len(is.cfg.Audience) == 0 {
		return nil, errNoAudience
	}
	h := p.jws.Signatures[0].Header
	alg := h.Algorithm
	if !slices.Contains(is.cfg.Algorithms, alg) {
		return nil, errBadJWT
	}
	if typ, ok := h.ExtraHeaders[jose.HeaderType]; ok {
		s, _ := typ.(string)
		switch strings.ToLower(s) {
		case "at+jwt", "application/at+jwt", "jwt":
		default:
			return nil, errTyp
		}
	}
	set, err := is.keys.keys()
	if err != nil {
		return nil, unavailable("the issuer's keys could not be loaded", err)
	}
	payload, found, err := verifyWith(p.jws, set, h.KeyID, alg)
	if !found && h.KeyID != "" {
		fetched, ferr := is.keys.refetchForKid(ctx, set)
		if ferr != nil {
			return nil, unavailable("the issuer's keys could not be fetched", ferr)
		}
		if fetched {
			if set, err = is.keys.keys(); err != nil {
				return nil, unavailable("the issuer's keys could not be loaded", err)
			}
			payload, found, err = verifyWith(p.jws, set, h.KeyID, alg)
		}
	}
	if !found {
		return nil, errUnknownKid
	}
	if err != nil {
		return nil, errBadSig
	}
	claims, err := decodeClaims(payload)
	if err != nil {
		return nil, errBadJWT
	}
	return is.identityOf(claims, true)
}

// verifyWith checks the signature with the key named kid, or, without a
// kid, with each key that fits alg. found says a fitting key existed.
func verifyWith(jws *jose.JSONWebSignature, set *keySet, kid, alg string) (payload []byte, found bool, err error) {
	err = errBadSig
	for i := range set.keys {
		k := &set.keys[i]
		if (kid != "" && k.KeyID != kid) || !keyFits(k, alg) {
			continue
		}
		found = true
		if payload, err = jws.Verify(k.Key); err == nil {
			return payload, true, nil
		}
		if kid != "" {
			break
		}
	}
	return nil, found, err
}

// identityOf checks a token's claims (a verified JWT's, or an active
// introspection answer's) and says who it stands for. jwt: the claims came
// from a JWT, where iss, aud and exp are required.
func (is *Issuer) identityOf(claims map[string]any, jwt bool) (*gateway.Identity, error) {
	now := is.cfg.Now()
	// An introspection answer's exp is the provider's own verdict: no
	// leeway lets it live longer here.
	leeway := is.cfg.Leeway
	expLeeway := leeway
	if !jwt {
		expLeeway = 0
	}
	if iss, ok := claims["iss"]; ok || jwt {
		if s, _ := iss.(string); s != is.cfg.Issuer {
			return nil, errIss
		}
	}
	if aud, ok := claims["aud"]; ok || jwt {
		if !audienceFits(aud, is.cfg.Audience) {
			return nil, errAud
		}
	}
	exp, hasExp, err := numericDate(claims, "exp")
	if err != nil {
		return nil, errBadJWT
	}
	if !hasExp && jwt {
		return nil, errNoExp
	}
	if hasExp && !now.Before(exp.Add(expLeeway)) {
		return nil, errExpired
	}
	nbf, hasNbf, err := numericDate(claims, "nbf")
	if err != nil {
		return nil, errBadJWT
	}
	if hasNbf && now.Add(leeway).Before(nbf) {
		return nil, errNotYet
	}
	iat, hasIat, err := numericDate(claims, "iat")
	if err != nil {
		return nil, errBadJWT
	}
	if hasIat && now.Add(leeway).Before(iat) {
		return nil, errIat
	}
	id := &gateway.Identity{
		Issuer: is.cfg.Issuer,
		Scope:  scopeOf(claims, is.cfg.ScopeClaim),
		Claims: claims,
	}
	subClaim := is.cfg.SubjectClaim
	if subClaim == "" {
		subClaim = "sub"
	}
	id.Subject, _ = claims[subClaim].(string)
	if c, ok := claims["client_id"].(string); ok {
		id.ClientID = c
	} else if c, ok := claims["azp"].(string); ok {
		id.ClientID = c
	}
	if id.Subject == "" {
		id.Subject = id.ClientID
	} else if id.Subject != id.ClientID {
		id.Username = id.Subject
	}
	if hasIat {
		id.IssuedAt = iat.Unix()
	}
	if hasExp {
		id.ExpiresAt = exp.Add(expLeeway)
	} else {
		id.ExpiresAt = now.Add(is.cfg.CacheTTL)
	}
	return id, nil
}

func audienceFits(aud any, want []string) bool {
	switch a := aud.(type) {
	case string:
		return slices.Contains(want, a)
	case []any:
		for _, v := range a {
			if s, ok := v.(string); ok && slices.Contains(want, s) {
				return true
			}
		}
	}
	return false
}

// numericDate reads an RFC 7519 NumericDate.
func numericDate(claims map[string]any, name string) (time.Time, bool, error) {
	v, ok := claims[name]
	if !ok {
		return time.Time{}, false, nil
	}
	n, ok := v.(json.Number)
	if !ok {
		return time.Time{}, false, errors.New(name + " is not a number")
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || f < 0 || f > 1<<40 {
		return time.Time{}, false, errors.New(name + " is out of range")
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true, nil
}

// scopeOf reads the scopes: the configured claim, else scope, else scp;
// each as a space-separated string or an array of strings.
func scopeOf(claims map[string]any, name string) string {
	names := []string{"scope", "scp"}
	if name != "" {
		names = []string{name}
	}
	for _, n := range names {
		switch v := claims[n].(type) {
		case string:
			return strings.Join(strings.Fields(v), " ")
		case []any:
			parts := make([]string, 0, len(v))
			for _, s := range v {
				if s, ok := s.(string); ok && s != "" && !strings.ContainsAny(s, " \t\r\n") {
					parts = append(parts, s)
				}
			}
			return strings.Join(parts, " ")
		}
	}
	return ""
}
