// Command stockserver is the baseline for tests/bench/run.sh: go-oauth2's stock
// setup (github.com/go-oauth2/oauth2/v4, the version in go.mod) serving
// client_credentials tokens on POST /token with plain net/http.
//
//   - server.NewDefaultServer + manage.NewDefaultManager
//   - store.NewFileTokenStore(<-db>): go-oauth2's buntdb file store
//   - store.NewClientStore with one client, plain-text secret
//   - client_credentials is the only allowed grant
//   - client credentials read from the form body (client_id, client_secret),
//     or from HTTP Basic when the form carries none
//
// It exists only to be measured; it is not part of oauth2gate.
package main

import (
	"flag"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/go-oauth2/oauth2/v4"
	"github.com/go-oauth2/oauth2/v4/errors"
	"github.com/go-oauth2/oauth2/v4/manage"
	"github.com/go-oauth2/oauth2/v4/models"
	"github.com/go-oauth2/oauth2/v4/server"
	"github.com/go-oauth2/oauth2/v4/store"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:9096", "listen address (loopback only)")
	db := flag.String("db", "stock-tokens.db", "buntdb file for go-oauth2's file token store")
	clientID := flag.String("client-id", "bench", "client id")
	clientSecret := flag.String("client-secret", "bench-secret", "client secret (plain text, as go-oauth2's stock client store keeps it)")
	flag.Parse()

	// Listen first: a port clash must not leave a fresh empty token file behind.
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatalf("listen: %v", err)
	}

	manager := manage.NewDefaultManager()
	manager.MustTokenStorage(store.NewFileTokenStore(*db))

	clients := store.NewClientStore()
	if err := clients.Set(*clientID, &models.Client{ID: *clientID, Secret: *clientSecret}); err != nil {
		log.Fatalf("client store: %v", err)
	}
	manager.MapClientStorage(clients)

	srv := server.NewDefaultServer(manager)
	srv.SetAllowedGrantType(oauth2.ClientCredentials)
	srv.SetClientInfoHandler(func(r *http.Request) (string, string, error) {
		// The bench sends the credentials in the body (RFC 6749 §2.3.1 allows
		// both); fall back to Basic so either works.
		if id, secret, err := server.ClientFormHandler(r); err == nil {
			return id, secret, nil
		}
		return server.ClientBasicHandler(r)
	})
	srv.SetInternalErrorHandler(func(err error) *errors.Response {
		log.Printf("internal error: %v", err)
		return nil
	})

	mux := http.NewServeMux()
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		if err := srv.HandleTokenRequest(w, r); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
	})

	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sig
		_ = hs.Close()
	}()

	log.Printf("stockserver: listening on http://%s/token, token db %s", ln.Addr(), *db)
	if err := hs.Serve(ln); err != nil && err != http.ErrServerClosed {
		log.Fatalf("serve: %v", err)
	}
}
