package authz

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"slices"
	"sort"
	"sync"

	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"

	"github.com/oauth2gate/oauth2gate/authz/metrics"
	"github.com/oauth2gate/oauth2gate/authz/tokenstore"
)

// The operations behind the admin API (DESIGN.md, "Operating it"). Clients
// registered here are kept in the token store with their secret hashed, so
// they survive restarts and every instance on one shared store knows them:
// a token request for a client id that is not configured reads the store, so
// a client registered on one instance is usable on the next request at any
// instance, and a deleted one is refused there on the next request too.

// ClientInfo is a client as the admin API shows and takes it; never a secret.
type ClientInfo struct {
	ClientID     string   `json:"client_id"`
	Grants       []string `json:"grants"`
	Scopes       []string `json:"scopes"`
	RedirectURIs []string `json:"redirect_uris"`
	Name         string   `json:"name,omitempty"`
	Public       bool     `json:"public"`
	// Source is "config" (the Caddyfile or JSON config) or "registered".
	Source string `json:"source"`
}

// Admin errors; the admin API maps them to statuses.
var (
	// ErrBadClient: the registration is not a possible client (400).
	ErrBadClient = errors.New("invalid client")
	// ErrClientExists: the id is taken, by a client or a user (400).
	ErrClientExists = errors.New("client id is taken")
	// ErrConfiguredClient: the client comes from the configuration and is
	// changed there, not through the API (409).
	ErrConfiguredClient = errors.New("the client is configured, not registered: change the configuration instead")
	// ErrNoClient: no registered client has the id (404).
	ErrNoClient = errors.New("no such registered client")
)

// registeredClient is the stored document of a registered client.
type registeredClient struct {
	ID           string   `json:"id"`
	SecretHash   string   `json:"secret_hash,omitempty"`
	Public       bool     `json:"public,omitempty"`
	Grants       []string `json:"grants,omitempty"`
	RedirectURIs []string `json:"redirect_uris,omitempty"`
	Scopes       []string `json:"scopes,omitempty"`
	Name         string   `json:"name,omitempty"`
}

func (d *registeredClient) config() ClientConfig {
	return ClientConfig{ID: d.ID, SecretHash: d.SecretHash, Public: d.Public, Grants: d.Grants, RedirectURIs: d.RedirectURIs, Scopes: d.Scopes, Name: d.Name}
}

// parsedClient is a registered client ready for requests, kept while its
// stored document is unchanged (so a verified secret stays memoised).
type parsedClient struct {
	doc    string
	client *Client
}

// clientIDPattern bounds registered client ids: they go into store keys,
// labels and logs.
var clientIDPattern = regexp.MustCompile(`^[A-Za-z0-9._~-]{1,128}$`)

// registry holds the parsed registered clients.
type registry struct{ parsed sync.Map } // id -> *parsedClient

// lookupClient finds a configured client, else a registered one in the store.
func (s *Server) lookupClient(ctx context.Context, id string) (*Client, bool) {
	if c, ok := s.clients[id]; ok {
		return c, true
	}
	if !clientIDPattern.MatchString(id) {
		return nil, false
	}
	doc, err := s.store.GetClient(ctx, id)
	if err != nil {
		if !errors.Is(err, tokenstore.ErrNotFound) {
			s.logger.Warn("reading a registered client", zap.String("error", err.Error()))
		}
		s.registered.parsed.Delete(id)
		return nil, false
	}
	if v, ok := s.registered.parsed.Load(id); ok && v.(*parsedClient).doc == string(doc) {
		return v.(*parsedClient).client, true
	}
	var d registeredClient
	if json.Unmarshal(doc, &d) != nil || d.ID != id {
		return nil, false
	}
	c, err := newClient(d.config(), s.memoKey)
	if err != nil {
		return nil, false
	}
	s.registered.parsed.Store(id, &parsedClient{doc: string(doc), client: c})
	return c, true
}

// stillRegistered checks, after a registered client's token or code was
// saved, that the client was not deleted meanwhile: a deletion revokes
// what the store holds when it runs, so what a request issued after its
// lookup and before that revocation would outlive it. If the client is
// gone, everything it still has is revoked and the request must fail.
// Configured clients cannot be deleted.
func (s *Server) stillRegistered(ctx context.Context, c *Client) bool {
	if s.clients[c.ID] == c {
		return true
	}
	if _, err := s.store.GetClient(ctx, c.ID); !errors.Is(err, tokenstore.ErrNotFound) {
		return true // present, or the store cannot say: the deletion's own revocation stands
	}
	if _, err := s.revoke(ctx, tokenstore.Match{ClientID: c.ID}); err != nil {
		s.logger.Warn("revoking the tokens of a client deleted during issuance", zap.String("client_id", c.ID), zap.String("error", err.Error()))
	}
	return false
}

func infoOf(c *Client, source string) ClientInfo {
	return ClientInfo{
		ClientID: c.ID, Grants: nonNil(c.Grants), Scopes: nonNil([]string(c.Scopes)), RedirectURIs: nonNil(c.RedirectURIs),
		Name: c.Name, Public: c.Public, Source: source,
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return slices.Clone(s)
}

// Clients lists every client, configured and registered, without secrets.
func (s *Server) Clients(ctx context.Context) ([]ClientInfo, error) {
	var out []ClientInfo
	for _, c := range s.clients {
		out = append(out, infoOf(c, "config"))
	}
	docs, err := s.store.Clients(ctx)
	if err != nil {
		return nil, err
	}
	for id, doc := range docs {
		if _, dup := s.clients[id]; dup {
			continue
		}
		var d registeredClient
		if json.Unmarshal(doc, &d) != nil {
			continue
		}
		c, err := newClient(d.config(), s.memoKey)
		if err != nil {
			continue
		}
		out = append(out, infoOf(c, "registered"))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ClientID < out[j].ClientID })
	return out, nil
}

// RegisterClient registers a client and returns it with its secret (a
// confidential client's, shown once; the store keeps its bcrypt hash).
func (s *Server) RegisterClient(ctx context.Context, r *http.Request, in ClientInfo) (ClientInfo, string, error) {
	if in.ClientID == "" {
		in.ClientID = "c-" + randomToken()[:22]
	}
	if !clientIDPattern.MatchString(in.ClientID) {
		return ClientInfo{}, "", errors.Join(ErrBadClient, errorf("client_id must be 1 to 128 of A-Z a-z 0-9 . _ ~ -"))
	}
	if _, dup := s.clients[in.ClientID]; dup {
		return ClientInfo{}, "", ErrClientExists
	}
	if _, clash := s.userNamed(in.ClientID); clash {
		// See New: a client's own tokens would carry the user's identity.
		return ClientInfo{}, "", errors.Join(ErrClientExists, errorf("client_id %q is a user's name", in.ClientID))
	}
	// A taken id is told before the secret is hashed (the store's
	// SaveClient below stays the one that decides).
	if _, err := s.store.GetClient(ctx, in.ClientID); err == nil {
		return ClientInfo{}, "", ErrClientExists
	}
	d := registeredClient{ID: in.ClientID, Public: in.Public, Grants: in.Grants, RedirectURIs: in.RedirectURIs, Scopes: in.Scopes, Name: in.Name}
	var secret string
	if !in.Public {
		secret = randomToken()
		h, err := bcrypt.GenerateFromPassword([]byte(secret), bcrypt.DefaultCost)
		if err != nil {
			return ClientInfo{}, "", err
		}
		d.SecretHash = string(h)
	}
	c, err := newClient(d.config(), s.memoKey)
	if err != nil {
		return ClientInfo{}, "", errors.Join(ErrBadClient, err)
	}
	doc, err := json.Marshal(&d)
	if err != nil {
		return ClientInfo{}, "", err
	}
	if err := s.store.SaveClient(ctx, d.ID, doc); errors.Is(err, tokenstore.ErrExists) {
		return ClientInfo{}, "", ErrClientExists
	} else if err != nil {
		return ClientInfo{}, "", err
	}
	s.registered.parsed.Store(d.ID, &parsedClient{doc: string(doc), client: c})
	s.audit(EventAdminRegister, r, d.ID, "", zap.Strings("grants", c.Grants), zap.Bool("public", c.Public))
	return infoOf(c, "registered"), secret, nil
}

// DeleteClient removes a registered client and revokes its tokens; it
// returns how many tokens ended.
func (s *Server) DeleteClient(ctx context.Context, r *http.Request, id string) (int, error) {
	if _, ok := s.clients[id]; ok {
		return 0, ErrConfiguredClient
	}
	if err := s.store.DeleteClient(ctx, id); errors.Is(err, tokenstore.ErrNotFound) {
		return 0, ErrNoClient
	} else if err != nil {
		return 0, err
	}
	s.registered.parsed.Delete(id)
	n, err := s.revoke(ctx, tokenstore.Match{ClientID: id})
	s.audit(EventAdminDelete, r, id, "", zap.Int("revoked", n))
	return n, err
}

// Grants lists the active grants of a subject, a client or both.
func (s *Server) Grants(ctx context.Context, m tokenstore.Match) ([]tokenstore.Grant, error) {
	return tokenstore.Grants(ctx, s.store, m)
}

// RevokeMatching ends every token and grant of a subject, a client or both,
// in every cache at once (and, on a shared store, at every instance); it
// returns how many tokens (access and refresh) ended.
func (s *Server) RevokeMatching(ctx context.Context, r *http.Request, m tokenstore.Match) (int, error) {
	n, err := s.revoke(ctx, m)
	s.audit(EventAdminRevoke, r, m.ClientID, m.Subject, zap.Int("revoked", n))
	return n, err
}

func (s *Server) revoke(ctx context.Context, m tokenstore.Match) (int, error) {
	rev, n, err := tokenstore.RevokeMatching(ctx, s.store, m)
	s.dropFromCache(rev)
	metrics.Default.Revoked(metrics.ReasonAdmin, n)
	return n, err
}

// Admin audit events.
const (
	EventAdminRegister = "admin_client_registered"
	EventAdminDelete   = "admin_client_deleted"
	EventAdminRevoke   = "admin_revoke"
)
