package authz

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"

	"github.com/oauth2gate/oauth2gate/authz/cache"
	"github.com/oauth2gate/oauth2gate/authz/tokenstore"
)

// deletingStore deletes a registered client through the server right after
// the token endpoint has read it: the deletion then falls between the
// client's lookup and the issuance of its token.
type deletingStore struct {
	tokenstore.Store
	srv  *Server
	id   string
	once sync.Once
}

func (d *deletingStore) GetClient(ctx context.Context, id string) ([]byte, error) {
	doc, err := d.Store.GetClient(ctx, id)
	if err == nil && id == d.id && d.srv != nil {
		d.once.Do(func() {
			if _, err := d.srv.DeleteClient(ctx, httptest.NewRequest(http.MethodDelete, "/oauth2/clients/"+id, nil), id); err != nil {
				panic(err)
			}
		})
	}
	return doc, err
}

// TestDeletedClientGetsNoToken: a token request of a registered client that
// is deleted while the request is under way gets no token that outlives
// the deletion (the delete's revocation ran before the token was saved).
func TestDeletedClientGetsNoToken(t *testing.T) {
	st, err := tokenstore.OpenFile(t.TempDir(), tokenstore.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := cache.New(cache.Options{MaxTokens: 10000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); st.Close() })
	ds := &deletingStore{Store: st}
	srv, err := New(context.Background(), Config{Issuer: "http://issuer.test", SecretsKey: testSecretsKey(t)}, ds, c, nil)
	if err != nil {
		t.Fatal(err)
	}
	reg := httptest.NewRequest(http.MethodPost, "/oauth2/clients", nil)
	info, secret, err := srv.RegisterClient(context.Background(), reg, ClientInfo{Grants: []string{GrantClientCredentials}, Scopes: []string{"read"}})
	if err != nil {
		t.Fatal(err)
	}
	ds.srv, ds.id = srv, info.ClientID
	a := tokenRequest(t, srv, url.Values{"grant_type": {"client_credentials"}}, info.ClientID, secret)
	if a.status != http.StatusUnauthorized || a.body["error"] != "invalid_client" {
		t.Errorf("a token request whose client was deleted under way: %d %v, want 401 invalid_client", a.status, a.body)
	}
	if tok, _ := a.body["access_token"].(string); tok != "" {
		if _, err := srv.Verify(context.Background(), tok); err == nil {
			t.Fatal("the token issued while its client was deleted still passes")
		}
	}
	grants, err := srv.Grants(context.Background(), tokenstore.Match{ClientID: info.ClientID})
	if err != nil {
		t.Fatal(err)
	}
	if len(grants) != 0 {
		t.Fatalf("the deleted client still has %d grants", len(grants))
	}
}

// TestRedirectURISchemes: what a client may register as its redirect URI.
func TestRedirectURISchemes(t *testing.T) {
	for _, ok := range []string{"https://app.test/cb", "http://127.0.0.1:8765/callback", "com.example.app:/oauth2redirect", "urn:ietf:wg:oauth:2.0:oob"} {
		if err := checkRedirectURI(ok); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
	for _, bad := range []string{
		"javascript://example.com/%0aalert(document.domain)", "JAVASCRIPT://example.com/%0aalert(1)", "javascript:alert(1)",
		"data://x/text/html,<script>alert(1)</script>", "vbscript://x/msgbox", "file:///etc/passwd", "blob:https://a.test/uuid",
		"https:/cb", "http:cb", "/cb", "cb", "https://a.test/cb#frag",
	} {
		if err := checkRedirectURI(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}
