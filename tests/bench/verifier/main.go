// Command verifier is the "small verifier" of the guard benchmark's third
// setup: what a Caddy user does today without oauth2gate, Caddy's built-in
// forward_auth asking an endpoint whether a bearer token is good. It keeps the
// valid tokens in memory (the cheapest verifier there can be) and answers 200
// or 401.
package main

import (
	"bufio"
	"flag"
	"log"
	"net/http"
	"os"
	"strings"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	file := flag.String("tokens", "", "file with one valid token a line")
	flag.Parse()
	f, err := os.Open(*file)
	if err != nil {
		log.Fatal(err)
	}
	valid := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if t := strings.TrimSpace(sc.Text()); t != "" {
			valid[t] = true
		}
	}
	f.Close()
	log.Printf("verifier: %d tokens on %s", len(valid), *addr)
	log.Fatal(http.ListenAndServe(*addr, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := r.Header.Get("Authorization")
		if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") && valid[h[7:]] {
			w.WriteHeader(http.StatusOK)
			return
		}
		w.WriteHeader(http.StatusUnauthorized)
	})))
}
