// Package gooauth2 is the one place that names go-oauth2
// (github.com/go-oauth2/oauth2/v4): the authorization server asks it, in its
// own terms (Request, Redemption, Issued, tokenstore records), to issue codes
// and tokens, and go-oauth2's manager runs the grant through this package's
// adapters, which see our clients' redirect URIs, our token generator and
// our store. Nothing outside this package imports go-oauth2.
//
// Each issuance runs on a manager of its own whose adapters hold that
// request's data (the code's check, the record a code carries into its
// tokens), so nothing travels through context keys or through go-oauth2's
// string-valued extensions.
package gooauth2

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/go-oauth2/oauth2/v4"
	oerrors "github.com/go-oauth2/oauth2/v4/errors"
	"github.com/go-oauth2/oauth2/v4/manage"
	"github.com/go-oauth2/oauth2/v4/models"

	"github.com/oauth2gate/oauth2gate/authz/tokenstore"
)

// Errors of an issuance, for the server to answer with its RFC codes.
var (
	// ErrInvalidCode: the code is unknown, expired, used, or another
	// client's or redirect URI's.
	ErrInvalidCode = errors.New("invalid authorization code")
	// ErrRedirectURI: the redirect URI is not one the client registered.
	ErrRedirectURI = errors.New("redirect_uri is not registered")
	// ErrCodeVerifier: PKCE's verifier is missing or does not match.
	ErrCodeVerifier = errors.New("code_verifier missing or wrong")
	// ErrClient: the manager refused the client.
	ErrClient = errors.New("client refused")
)

// Client is what the manager needs of a client.
type Client struct {
	ID           string
	Public       bool
	RedirectURIs []string
}

// Request is a code, implicit, password or client_credentials issuance the
// server has decided on.
type Request struct {
	Client              Client
	Subject             string // the user; for client_credentials, the client
	Scope               string
	RedirectURI         string // code and implicit
	CodeChallenge       string // code
	CodeChallengeMethod string
	Nonce               string // OpenID Connect, carried by a code into its id_token
	AuthTime            int64  // when the user logged in (unix seconds), 0 if none
	Refresh             bool   // issue a refresh token (password)
}

// Redemption is a code exchange (RFC 6749 §4.1.3).
type Redemption struct {
	Client      Client
	Code        string
	RedirectURI string
	Verifier    string
	// Check is the server's rule for the code's record (client, redirect
	// URI, PKCE), applied inside the store's atomic take: a redemption that
	// fails it leaves the code.
	Check   tokenstore.CodeCheck
	Refresh bool
}

// Issued is what an issuance made.
type Issued struct {
	Code      string // code flow
	Access    string
	Refresh   string
	ExpiresIn time.Duration
	// Record is the access token's record (for a code, the code's): who,
	// what, the grant, the nonce and auth_time a code carried.
	Record tokenstore.Record
	At     time.Time
}

// Backend is what the engine needs of the server.
type Backend interface {
	// MintAccess makes an access token for rec, valid from iat to exp.
	MintAccess(rec *tokenstore.Record, iat, exp time.Time) (string, error)
	// NewToken is a fresh random code, refresh token or grant id.
	NewToken() string
	SaveCode(ctx context.Context, code tokenstore.Hash, rec tokenstore.Record, ttl time.Duration) error
	SaveTokens(ctx context.Context, iss tokenstore.Issue) error
	// TakeCode redeems a code (tokenstore.CodeStore.TakeCode); the backend
	// answers a replayed code itself (revoking its grant) and reports it as
	// tokenstore.ErrNotFound.
	TakeCode(ctx context.Context, code tokenstore.Hash, check tokenstore.CodeCheck) (tokenstore.Record, error)
}

// Lifetimes are the issuance's lifetimes.
type Lifetimes struct {
	Code, Access, Refresh time.Duration
}

// Engine issues through go-oauth2.
type Engine struct {
	b Backend
	l Lifetimes
	// The manager's grant settings, shared read-only by every call's manager
	// (go-oauth2's package-level defaults are shared mutable pointers: every
	// setting is ours).
	code, codeRefresh, password, passwordRefresh, implicit, client *manage.Config
	refreshing                                                     *manage.RefreshingConfig
}

// New returns an engine over b.
func New(b Backend, l Lifetimes) *Engine {
	return &Engine{
		b: b, l: l,
		code:            &manage.Config{AccessTokenExp: l.Access},
		codeRefresh:     &manage.Config{AccessTokenExp: l.Access, RefreshTokenExp: l.Refresh, IsGenerateRefresh: true},
		password:        &manage.Config{AccessTokenExp: l.Access},
		passwordRefresh: &manage.Config{AccessTokenExp: l.Access, RefreshTokenExp: l.Refresh, IsGenerateRefresh: true},
		// RFC 6749 §4.2.2 and §4.4.3: no refresh token for implicit or client credentials.
		implicit:   &manage.Config{AccessTokenExp: l.Access},
		client:     &manage.Config{AccessTokenExp: l.Access},
		refreshing: &manage.RefreshingConfig{AccessTokenExp: l.Access, RefreshTokenExp: l.Refresh, IsGenerateRefresh: true, IsRemoveAccess: true, IsRemoveRefreshing: true},
	}
}

// call is one issuance: its manager's client store, token store and
// generators, holding the request's data.
type call struct {
	e      *Engine
	client Client
	// rec is the record of what is issued: from the Request, or from the
	// code taken (grant, nonce, auth_time carried into the tokens).
	rec   tokenstore.Record
	check tokenstore.CodeCheck
}

func (e *Engine) manager(c *call, refresh bool) *manage.Manager {
	m := manage.NewManager()
	m.MapAuthorizeGenerate(c)
	m.MapAccessGenerate(c.access())
	m.MapClientStorage(c)
	m.MapTokenStorage(c)
	m.SetValidateURIHandler(exactRedirectURI)
	m.SetAuthorizeCodeExp(e.l.Code)
	if refresh {
		m.SetAuthorizeCodeTokenCfg(e.codeRefresh)
		m.SetPasswordTokenCfg(e.passwordRefresh)
	} else {
		m.SetAuthorizeCodeTokenCfg(e.code)
		m.SetPasswordTokenCfg(e.password)
	}
	m.SetImplicitTokenCfg(e.implicit)
	m.SetClientTokenCfg(e.client)
	m.SetRefreshTokenCfg(e.refreshing)
	return m
}

func (r *Request) record() tokenstore.Record {
	return tokenstore.Record{
		ClientID: r.Client.ID, Subject: r.Subject, Scope: r.Scope, RedirectURI: r.RedirectURI,
		CodeChallenge: r.CodeChallenge, CodeChallengeMethod: r.CodeChallengeMethod,
		Nonce: r.Nonce, AuthTime: r.AuthTime,
	}
}

func (r *Request) generate() *oauth2.TokenGenerateRequest {
	return &oauth2.TokenGenerateRequest{
		ClientID: r.Client.ID, UserID: r.Subject, Scope: r.Scope, RedirectURI: r.RedirectURI,
		CodeChallenge: r.CodeChallenge, CodeChallengeMethod: oauth2.CodeChallengeMethod(r.CodeChallengeMethod),
	}
}

// Code issues an authorization code (RFC 6749 §4.1.2).
func (e *Engine) Code(ctx context.Context, r Request) (Issued, error) {
	return e.issue(r, false, func(m *manage.Manager) (oauth2.TokenInfo, error) {
		return m.GenerateAuthToken(ctx, oauth2.Code, r.generate())
	})
}

// Implicit issues an access token from the authorization endpoint (RFC 6749
// §4.2.2).
func (e *Engine) Implicit(ctx context.Context, r Request) (Issued, error) {
	return e.issue(r, false, func(m *manage.Manager) (oauth2.TokenInfo, error) {
		return m.GenerateAuthToken(ctx, oauth2.Token, r.generate())
	})
}

// Password issues tokens for a user whose password the server checked
// (RFC 6749 §4.3).
func (e *Engine) Password(ctx context.Context, r Request) (Issued, error) {
	return e.issue(r, r.Refresh, func(m *manage.Manager) (oauth2.TokenInfo, error) {
		return m.GenerateAccessToken(ctx, oauth2.PasswordCredentials, r.generate())
	})
}

// ClientCredentials issues an access token to the client itself (RFC 6749
// §4.4).
func (e *Engine) ClientCredentials(ctx context.Context, r Request) (Issued, error) {
	return e.issue(r, false, func(m *manage.Manager) (oauth2.TokenInfo, error) {
		return m.GenerateAccessToken(ctx, oauth2.ClientCredentials, r.generate())
	})
}

// issue runs one issuance of r on a manager of its own.
func (e *Engine) issue(r Request, refresh bool, run func(*manage.Manager) (oauth2.TokenInfo, error)) (Issued, error) {
	c := &call{e: e, client: r.Client, rec: r.record()}
	ti, err := run(e.manager(c, refresh))
	if err != nil {
		return Issued{}, mapError(err)
	}
	return c.issued(ti), nil
}

// Exchange redeems a code for tokens (RFC 6749 §4.1.3).
func (e *Engine) Exchange(ctx context.Context, r Redemption) (Issued, error) {
	c := &call{e: e, client: r.Client, check: r.Check}
	ti, err := e.manager(c, r.Refresh).GenerateAccessToken(ctx, oauth2.AuthorizationCode, &oauth2.TokenGenerateRequest{
		ClientID: r.Client.ID, RedirectURI: r.RedirectURI, Code: r.Code, CodeVerifier: r.Verifier,
	})
	if err != nil {
		return Issued{}, mapError(err)
	}
	return c.issued(ti), nil
}

func (c *call) issued(ti oauth2.TokenInfo) Issued {
	out := Issued{Code: ti.GetCode(), Access: ti.GetAccess(), Refresh: ti.GetRefresh(), Record: c.rec}
	if out.Code != "" {
		out.At = ti.GetCodeCreateAt()
		return out
	}
	out.ExpiresIn, out.At = ti.GetAccessExpiresIn(), ti.GetAccessCreateAt()
	out.Record.Scope = ti.GetScope()
	return out
}

// oauth2.ClientStore and ClientInfo: the call's client.

func (c *call) GetByID(_ context.Context, id string) (oauth2.ClientInfo, error) {
	if id != c.client.ID {
		return nil, oerrors.ErrInvalidClient
	}
	return clientInfo{c.client}, nil
}

type clientInfo struct{ c Client }

func (ci clientInfo) GetID() string     { return ci.c.ID }
func (ci clientInfo) GetSecret() string { return "" }

// GetDomain hands the registered redirect URIs to exactRedirectURI.
func (ci clientInfo) GetDomain() string { return strings.Join(ci.c.RedirectURIs, "\n") }
func (ci clientInfo) IsPublic() bool    { return ci.c.Public }
func (ci clientInfo) GetUserID() string { return "" }

// VerifyPassword: the server authenticated the client before asking for an
// issuance; the manager need not (and cannot) check a secret again.
func (ci clientInfo) VerifyPassword(string) bool { return true }

// exactRedirectURI replaces go-oauth2's host-suffix check with exact matching
// (RFC 9700 §4.1.3).
func exactRedirectURI(registered, redirectURI string) error {
	for _, u := range strings.Split(registered, "\n") {
		if u == redirectURI {
			return nil
		}
	}
	return oerrors.ErrInvalidRedirectURI
}

// oauth2.AuthorizeGenerate and AccessGenerate.

func (c *call) Token(context.Context, *oauth2.GenerateBasic) (string, error) {
	return c.e.b.NewToken(), nil
}

func (c *call) accessToken(ti oauth2.TokenInfo, refresh bool) (string, string, error) {
	rec := c.rec
	rec.ClientID, rec.Subject, rec.Scope = ti.GetClientID(), ti.GetUserID(), ti.GetScope()
	iat := ti.GetAccessCreateAt()
	access, err := c.e.b.MintAccess(&rec, iat, iat.Add(ti.GetAccessExpiresIn()))
	if err != nil {
		return "", "", err
	}
	if refresh {
		return access, c.e.b.NewToken(), nil
	}
	return access, "", nil
}

type accessGenerate struct{ c *call }

// MapAccessGenerate needs a Token of another signature than
// AuthorizeGenerate's: the call answers both through accessGenerate.
func (c *call) access() oauth2.AccessGenerate { return accessGenerate{c} }

func (g accessGenerate) Token(_ context.Context, data *oauth2.GenerateBasic, refresh bool) (string, string, error) {
	return g.c.accessToken(data.TokenInfo, refresh)
}

// oauth2.TokenStore: our store, through the call.

// Create keeps what the manager issued, its records built by
// tokenstore.NewIssue (the one builder every issuance path uses).
func (c *call) Create(ctx context.Context, ti oauth2.TokenInfo) error {
	if code := ti.GetCode(); code != "" {
		rec := c.rec
		rec.GrantID = c.e.b.NewToken()
		at := ti.GetCodeCreateAt()
		rec.IssuedAt, rec.ExpiresAt = at.Unix(), at.Add(ti.GetCodeExpiresIn()).Unix()
		c.rec = rec
		return c.e.b.SaveCode(ctx, tokenstore.HashOf(code), rec, ti.GetCodeExpiresIn())
	}
	rec := c.rec
	rec.ClientID, rec.Subject, rec.Scope = ti.GetClientID(), ti.GetUserID(), ti.GetScope()
	rec.RedirectURI, rec.CodeChallenge, rec.CodeChallengeMethod = "", "", ""
	if ti.GetRefresh() != "" && rec.GrantID == "" {
		rec.GrantID = c.e.b.NewToken()
	}
	c.rec = rec
	iss := tokenstore.NewIssue(ti.GetAccess(), rec, ti.GetRefresh(), rec, ti.GetAccessCreateAt(), ti.GetAccessExpiresIn(), ti.GetRefreshExpiresIn())
	return c.e.b.SaveTokens(ctx, iss)
}

// GetByCode takes the code under the redemption's check.
func (c *call) GetByCode(ctx context.Context, code string) (oauth2.TokenInfo, error) {
	rec, err := c.e.b.TakeCode(ctx, tokenstore.HashOf(code), c.check)
	switch {
	case errors.Is(err, tokenstore.ErrNotFound):
		return nil, nil
	case err != nil:
		return nil, err
	}
	c.rec = rec
	ti := models.NewToken()
	ti.SetCode(code)
	ti.SetClientID(rec.ClientID)
	ti.SetUserID(rec.Subject)
	ti.SetScope(rec.Scope)
	ti.SetRedirectURI(rec.RedirectURI)
	ti.SetCodeChallenge(rec.CodeChallenge)
	ti.SetCodeChallengeMethod(oauth2.CodeChallengeMethod(rec.CodeChallengeMethod))
	// The store expires codes exactly (key TTLs); the record's whole seconds
	// only back that up, rounded up so a code never dies early.
	at := time.Unix(rec.IssuedAt, 0)
	ti.SetCodeCreateAt(at)
	ti.SetCodeExpiresIn(rec.Expiry().Sub(at) + time.Second)
	return ti, nil
}

// The store took the code in GetByCode: nothing is left to remove.
func (c *call) RemoveByCode(context.Context, string) error { return nil }

// The manager reads and removes tokens only for its own refresh grant, which
// the server does not use (refresh rotation is one store transaction).
var errUnused = errors.New("gooauth2: the manager's refresh grant is not used")

func (c *call) RemoveByAccess(context.Context, string) error  { return errUnused }
func (c *call) RemoveByRefresh(context.Context, string) error { return errUnused }
func (c *call) GetByAccess(context.Context, string) (oauth2.TokenInfo, error) {
	return nil, errUnused
}
func (c *call) GetByRefresh(context.Context, string) (oauth2.TokenInfo, error) {
	return nil, errUnused
}

// mapError names go-oauth2's errors in our terms; anything else (the
// store's, the signer's) is passed on.
func mapError(err error) error {
	switch {
	case errors.Is(err, oerrors.ErrInvalidRedirectURI):
		return ErrRedirectURI
	case errors.Is(err, oerrors.ErrInvalidAuthorizeCode):
		return ErrInvalidCode
	case errors.Is(err, oerrors.ErrMissingCodeVerifier), errors.Is(err, oerrors.ErrInvalidCodeChallenge):
		return ErrCodeVerifier
	case errors.Is(err, oerrors.ErrInvalidClient), errors.Is(err, oerrors.ErrUnauthorizedClient):
		return ErrClient
	}
	return err
}

var (
	_ oauth2.TokenStore             = (*call)(nil)
	_ oauth2.ClientStore            = (*call)(nil)
	_ oauth2.AuthorizeGenerate      = (*call)(nil)
	_ oauth2.AccessGenerate         = accessGenerate{}
	_ oauth2.ClientPasswordVerifier = clientInfo{}
)
