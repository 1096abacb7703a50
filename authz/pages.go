package authz

import (
	"bytes"
	"html/template"
	"net/http"

	"github.com/oauth2gate/oauth2gate/authz/ui"
)

type pages struct {
	login, consent, errPage *template.Template
}

func loadPages() (*pages, error) {
	parse := func(name string) (*template.Template, error) {
		t, err := template.ParseFS(ui.FS, "base.html", name)
		if err != nil {
			return nil, err
		}
		return t.Lookup(name), nil
	}
	var p pages
	var err error
	if p.login, err = parse("login.html"); err != nil {
		return nil, err
	}
	if p.consent, err = parse("consent.html"); err != nil {
		return nil, err
	}
	if p.errPage, err = parse("error.html"); err != nil {
		return nil, err
	}
	return &p, nil
}

// pageData is what the templates show.
type pageData struct {
	Title      string
	ClientName string
	Username   string
	Scopes     []string
	Action     string
	CSRF       string
	Error      string
}

// writePage renders an HTML page that no one may frame or cache
// (RFC 9700 §4.16 clickjacking; the pages sit behind a login).
func writePage(w http.ResponseWriter, status int, t *template.Template, d *pageData) {
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, t.Name(), d); err != nil {
		buf.Reset()
		buf.WriteString("internal error rendering page")
		status = http.StatusInternalServerError
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

func (s *Server) errorPage(w http.ResponseWriter, status int, title, msg string) {
	writePage(w, status, s.pages.errPage, &pageData{Title: title, Error: msg})
}
