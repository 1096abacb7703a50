package caddymodule

import (
	"io"
	"net/http"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/oauth2gate/oauth2gate/authz/cors"
	"github.com/oauth2gate/oauth2gate/authz/gateway"
)

// corsWriter makes the CORS headers of what the upstream answers the
// guard's (cors.TakeOver), when the final status is written: reverse_proxy
// adds the upstream's headers to the ones the guard set, and two
// Access-Control-Allow-Origin values make a browser refuse the answer.
type corsWriter struct {
	// A value, not a pointer: one allocation less per request.
	caddyhttp.ResponseWriterWrapper
	origin string
	done   bool
}

func (c *corsWriter) own() {
	if !c.done {
		c.done = true
		cors.TakeOver(c.Header(), c.origin, gateway.Exposed)
	}
}

// WriteHeader implements http.ResponseWriter; 1xx answers pass as they are.
func (c *corsWriter) WriteHeader(status int) {
	if status >= 200 {
		c.own()
	}
	c.ResponseWriterWrapper.WriteHeader(status)
}

// Write implements http.ResponseWriter.
func (c *corsWriter) Write(b []byte) (int, error) {
	c.own()
	return c.ResponseWriterWrapper.Write(b)
}

// ReadFrom implements io.ReaderFrom, which file_server's copy would
// otherwise take past Write.
func (c *corsWriter) ReadFrom(r io.Reader) (int64, error) {
	c.own()
	return c.ResponseWriterWrapper.ReadFrom(r)
}

// withCORS answers a preflight from a listed origin (true: done), or puts
// the guard's CORS headers on w and returns the writer for what follows. The
// headers go on w at once too, so that the guard's refusals and an error
// answered by Caddy (a 502 from reverse_proxy, handle_errors) carry them;
// what a handler before the guard set is taken over as an upstream's is.
func (g *Guard) withCORS(w http.ResponseWriter, r *http.Request) (http.ResponseWriter, bool) {
	if g.cors.Preflight(w, r) {
		return w, true
	}
	origin := g.cors.Origin(r)
	cors.TakeOver(w.Header(), origin, gateway.Exposed)
	return &corsWriter{ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: w}, origin: origin}, false
}

var _ http.ResponseWriter = (*corsWriter)(nil)
