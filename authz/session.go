package authz

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"time"
)

const (
	sessionCookie = "oauth2gate_session"
	csrfCookie    = "oauth2gate_csrf"
)

// session is who logged in and when; it travels in a cookie signed with a
// key kept in the store, so sessions survive restarts and reloads.
type session struct {
	User     string `json:"u"`
	AuthTime int64  `json:"t"`
	Expires  int64  `json:"e"`
}

func (s *Server) sign(purpose string, data []byte) []byte {
	m := hmac.New(sha256.New, s.sessionKey)
	m.Write([]byte(purpose))
	m.Write([]byte{0})
	m.Write(data)
	return m.Sum(nil)
}

// secureCookies reports whether r's cookies are Secure: always when the
// issuer is https, so that Caddy on plain http behind a TLS-terminating load
// balancer still marks them, and on any TLS connection.
func (s *Server) secureCookies(r *http.Request) bool { return s.httpsIssuer || r.TLS != nil }

// cookieName is name with the __Host- prefix on Secure cookies: the browser
// then takes the cookie only from a secure origin, for this host alone and
// path /, so a sibling subdomain or a plain-http page cannot plant or
// shadow it (RFC 6265bis §4.1.3.2).
func (s *Server) cookieName(r *http.Request, name string) string {
	if s.secureCookies(r) {
		return "__Host-" + name
	}
	return name
}

func (s *Server) cookie(r *http.Request, path, name, value string, maxAge int) *http.Cookie {
	secure := s.secureCookies(r)
	if path == "" || secure {
		path = "/" // __Host- cookies must have path /
	}
	return &http.Cookie{
		Name:     s.cookieName(r, name),
		Value:    value,
		Path:     path,
		MaxAge:   maxAge,
		HttpOnly: true,
		SameSite: http.SameSiteLaxMode,
		Secure:   secure,
	}
}

func (s *Server) setSession(w http.ResponseWriter, r *http.Request, path, user string) {
	now := s.now()
	payload, _ := json.Marshal(session{User: user, AuthTime: now.Unix(), Expires: now.Add(s.cfg.SessionTTL).Unix()})
	enc := base64.RawURLEncoding
	v := enc.EncodeToString(payload) + "." + enc.EncodeToString(s.sign("session", payload))
	http.SetCookie(w, s.cookie(r, path, sessionCookie, v, int(s.cfg.SessionTTL.Seconds())))
}

// readSession returns the logged-in user, or nil.
func (s *Server) readSession(r *http.Request) (*User, *session) {
	c, err := r.Cookie(s.cookieName(r, sessionCookie))
	if err != nil {
		return nil, nil
	}
	p64, m64, ok := strings.Cut(c.Value, ".")
	if !ok {
		return nil, nil
	}
	enc := base64.RawURLEncoding
	payload, err1 := enc.DecodeString(p64)
	mac, err2 := enc.DecodeString(m64)
	if err1 != nil || err2 != nil || !hmac.Equal(mac, s.sign("session", payload)) {
		return nil, nil
	}
	var sess session
	if json.Unmarshal(payload, &sess) != nil || s.now().Unix() >= sess.Expires {
		return nil, nil
	}
	u, ok := s.users[sess.User]
	if !ok {
		return nil, nil
	}
	return u, &sess
}

// csrfToken returns the form token for this browser, setting the cookie it is
// bound to if there is none yet (double-submit, with the form value an HMAC of
// the cookie so that a planted cookie alone is not enough).
func (s *Server) csrfToken(w http.ResponseWriter, r *http.Request, path string) string {
	var v string
	if c, err := r.Cookie(s.cookieName(r, csrfCookie)); err == nil && len(c.Value) >= 32 {
		v = c.Value
	} else {
		var b [32]byte
		_, _ = rand.Read(b[:])
		v = base64.RawURLEncoding.EncodeToString(b[:])
		http.SetCookie(w, s.cookie(r, path, csrfCookie, v, int((12*time.Hour).Seconds())))
	}
	return base64.RawURLEncoding.EncodeToString(s.sign("csrf", []byte(v)))
}

func (s *Server) checkCSRF(r *http.Request, formValue string) bool {
	c, err := r.Cookie(s.cookieName(r, csrfCookie))
	if err != nil || formValue == "" {
		return false
	}
	got, err := base64.RawURLEncoding.DecodeString(formValue)
	if err != nil {
		return false
	}
	return hmac.Equal(got, s.sign("csrf", []byte(c.Value)))
}
