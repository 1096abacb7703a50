package trust

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/oauth2gate/oauth2gate/authz/gateway"
)

// introspect asks the issuer's RFC 7662 endpoint about an opaque token,
// authenticating with client_secret_basic (RFC 6749 §2.3.1: id and secret
// form-encoded before Basic). Anything but a 200 JSON object of at most
// MaxIntrospection bytes is an error (503), never a pass.
func (is *Issuer) introspect(ctx context.Context, token string) (*gateway.Identity, error) {
	in := is.cfg.Introspection
	ctx, cancel := context.WithTimeout(ctx, IntrospectTimeout)
	defer cancel()
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, in.URL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, unavailable("the introspection endpoint is unusable", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(url.QueryEscape(in.ClientID), url.QueryEscape(in.ClientSecret))
	resp, err := is.cfg.HTTPClient.Do(req)
	if err != nil {
		// The error names the URL, never the body that held the token.
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err
		}
		return nil, unavailable("the introspection endpoint could not be reached", err)
	}
	defer resp.Body.Close()
	body, err := readJSONBody(resp, MaxIntrospection, "")
	if err != nil {
		return nil, unavailable("the introspection endpoint gave an unusable answer", err)
	}
	claims, err := decodeClaims(body)
	if err != nil {
		return nil, unavailable("the introspection endpoint gave an unusable answer", err)
	}
	active, ok := claims["active"].(bool)
	if !ok {
		return nil, unavailable("the introspection answer has no boolean active", nil)
	}
	if !active {
		return nil, errInactive
	}
	// An answer about another kind of token (a refresh token) is no access.
	if tt, ok := claims["token_type"].(string); ok && strings.EqualFold(tt, "refresh_token") {
		return nil, errInactive
	}
	return is.identityOf(claims, false)
}
