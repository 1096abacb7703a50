package authz

import (
	"net/http"

	"github.com/oauth2gate/oauth2gate/authz/cors"
)

// endpointCORS is what an endpoint tells browsers (Fetch §3.2).
type endpointCORS struct {
	methods []string
	headers []string
	// public: any origin may read it (JWKS, metadata: public documents).
	public bool
}

var (
	// The token and revocation endpoints take a form, the client's Basic
	// credentials (a confidential client in a browser is a mistake, but it
	// must be able to read the invalid_client that tells it so) and, for
	// userinfo, the bearer token.
	corsForm       = endpointCORS{methods: []string{"POST"}, headers: []string{"authorization", "content-type"}}
	corsUserinfo   = endpointCORS{methods: []string{"GET", "POST"}, headers: []string{"authorization", "content-type"}}
	corsPublicDocs = endpointCORS{methods: []string{"GET", "HEAD"}, public: true}
	// corsEndpoints: /authorize is navigated to, never fetched; /introspect
	// is for resource servers, whose secrets never live in a browser.
	corsEndpoints = map[string]endpointCORS{
		"/token":    corsForm,
		"/revoke":   corsForm,
		"/userinfo": corsUserinfo,
		"/jwks":     corsPublicDocs,
	}
	// corsExposed are the answer headers a script may read beyond the
	// safelisted ones: why it was refused, how long to wait.
	corsExposed = "WWW-Authenticate, Retry-After"
)

// allowedOrigins is every origin some client lists in allowed_origins.
func allowedOrigins(clients map[string]*Client) cors.Set {
	s := cors.Set{}
	for _, c := range clients {
		for _, o := range c.AllowedOrigins {
			s[o] = struct{}{}
		}
	}
	return s
}

// answerCORS puts the CORS headers of endpoint on w's answer and answers a
// preflight itself; it reports whether it did. A preflight from an origin no
// client allows is left to the endpoint, which answers OPTIONS as before
// (405) and without CORS headers, so the browser refuses.
func (s *Server) answerCORS(w http.ResponseWriter, r *http.Request, endpoint string) bool {
	ep, ok := corsEndpoints[endpoint]
	if !ok {
		return false
	}
	return s.applyCORS(w, r, ep)
}

func (s *Server) applyCORS(w http.ResponseWriter, r *http.Request, ep endpointCORS) bool {
	h := w.Header()
	if ep.public {
		// A wildcard, so never with credentials (Fetch §3.2.5).
		h.Set(cors.AllowOrigin, "*")
		if cors.IsPreflight(r) {
			cors.Preflight{Origin: "*", Methods: ep.methods}.Write(w)
			return true
		}
		return false
	}
	// The answer depends on Origin whatever it is: a shared cache must not
	// hand one origin's answer to another.
	cors.AddVary(h, "Origin")
	origin := s.origins.Match(r)
	if origin == "" {
		return false
	}
	if cors.IsPreflight(r) {
		cors.Preflight{Origin: origin, Methods: ep.methods, Headers: ep.headers}.Write(w)
		return true
	}
	cors.Allow(h, origin, corsExposed)
	return false
}
