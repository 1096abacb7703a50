package caddymodule

import (
	"errors"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/oauth2gate/oauth2gate/authz/params"
)

// Caddy's access log records the request URI as it arrived, from a copy taken
// before any handler runs, so stripping ?access_token= from the request does
// not reach the log. When a token came in the query string and the server
// keeps access logs, the guard therefore skips Caddy's own entry for the
// request (the log_skip variable) and writes the same entry itself, to the
// same loggers, with the token's value redacted. A handler error on such a
// request is answered here too, since Caddy's error log would print the URI.

const redactedLogVar = "oauth2gate.redacted_log"

// httpAppLogger stands in for the http app when asking Caddy for its loggers.
type httpAppLogger struct{}

func (httpAppLogger) CaddyModule() caddy.ModuleInfo { return caddy.ModuleInfo{ID: "http"} }

type queryTokenLog struct {
	logs      *caddyhttp.ServerLogConfig
	accessLog *zap.Logger
	errorLog  *zap.Logger
}

// hasErrorRoutes reports whether the server being provisioned has
// handle_errors routes.
func hasErrorRoutes(ctx caddy.Context) bool {
	srv, ok := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	return ok && srv != nil && srv.Errors != nil && len(srv.Errors.Routes) > 0
}

func newQueryTokenLog(ctx caddy.Context) *queryTokenLog {
	srv, ok := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	if !ok || srv == nil || srv.Logs == nil {
		return nil
	}
	base := ctx.Logger(httpAppLogger{})
	return &queryTokenLog{logs: srv.Logs, accessLog: base.Named("log.access"), errorLog: base.Named("log.error")}
}

// redacts reports whether r's access log entry must be written by q, without
// the secret query parameters (q is nil when the server keeps no access log).
// The check stays apart from around so that the common request builds no
// closure.
func (q *queryTokenLog) redacts(r *http.Request) bool {
	return q != nil && params.HasSecret(r.URL.RawQuery)
}

// around runs a handler's serve behind q's redacted access log entry.
func (q *queryTokenLog) around(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler,
	serve func(http.ResponseWriter, *http.Request, caddyhttp.Handler) error) error {
	return q.serve(w, r, caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		return serve(w, r, next)
	}))
}

// loggers mirrors caddyhttp.ServerLogConfig's choice of named loggers.
func (q *queryTokenLog) loggers(base *zap.Logger, r *http.Request) []*zap.Logger {
	names := []string{q.logs.DefaultLoggerName}
	if v, ok := caddyhttp.GetVar(r.Context(), caddyhttp.AccessLoggerNameVarKey).([]any); ok {
		names = names[:0]
		for _, n := range v {
			if s, ok := n.(string); ok {
				names = append(names, s)
			}
		}
	} else {
		host, _, err := net.SplitHostPort(r.Host)
		if err != nil {
			host = r.Host
		}
		host = strings.ToLower(host)
		if hs, ok := q.logs.LoggerNames[host]; ok {
			names = hs
		} else {
			labels := strings.Split(host, ".")
			for i := range labels {
				if labels[i] == "" {
					continue
				}
				labels[i] = "*"
				if hs, ok := q.logs.LoggerNames[strings.Join(labels, ".")]; ok {
					names = hs
					break
				}
			}
		}
	}
	out := make([]*zap.Logger, 0, len(names))
	for _, n := range names {
		if n == "" {
			out = append(out, base)
		} else {
			out = append(out, base.Named(n))
		}
	}
	return out
}

// serve runs next for a request whose token came in the query string.
func (q *queryTokenLog) serve(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if done, _ := caddyhttp.GetVar(r.Context(), redactedLogVar).(bool); done {
		return next.ServeHTTP(w, r) // an outer oauth2 handler writes the entry
	}
	caddyhttp.SetVar(r.Context(), redactedLogVar, true)
	start := time.Now()
	orig := loggableOriginal(r)
	caddyhttp.SetVar(r.Context(), caddyhttp.LogSkipVar, true)
	rec := caddyhttp.NewResponseRecorder(w, nil, nil)
	err := next.ServeHTTP(rec, r)
	if err != nil {
		// Answer as Caddy would without handle_errors, and log without the token.
		status := http.StatusInternalServerError
		var he caddyhttp.HandlerError
		if errors.As(err, &he) && he.StatusCode != 0 {
			status = he.StatusCode
		}
		if rec.Status() == 0 {
			rec.WriteHeader(status)
		}
		lvl := zapcore.DebugLevel
		if status >= 500 {
			lvl = zapcore.ErrorLevel
		}
		for _, l := range q.loggers(q.errorLog, r) {
			if c := l.Check(lvl, "handled error"); c != nil {
				c.Write(zap.Object("request", orig), zap.Int("status", status), zap.String("err", err.Error()))
			}
		}
	}
	userID := ""
	if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
		userID, _ = repl.GetString("http.auth.user.id")
	}
	status := rec.Status()
	lvl := zapcore.InfoLevel
	if status >= 500 {
		lvl = zapcore.ErrorLevel
	}
	for _, l := range q.loggers(q.accessLog, r) {
		if c := l.Check(lvl, "handled request"); c != nil {
			c.Write(
				zap.Object("request", orig),
				zap.Int64("bytes_read", max(r.ContentLength, 0)),
				zap.String("user_id", userID),
				zap.Duration("duration", time.Since(start)),
				zap.Int("size", rec.Size()),
				zap.Int("status", status),
				zap.Object("resp_headers", caddyhttp.LoggableHTTPHeader{
					Header:               rec.Header(),
					ShouldLogCredentials: q.logs.ShouldLogCredentials,
				}),
			)
		}
	}
	return nil
}

// loggableOriginal is the request as it arrived, access_token redacted.
func loggableOriginal(r *http.Request) caddyhttp.LoggableHTTPRequest {
	c := r.Clone(r.Context())
	if orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok {
		c.Method, c.RemoteAddr, c.RequestURI = orig.Method, orig.RemoteAddr, orig.RequestURI
	}
	c.RequestURI = params.RedactURI(c.RequestURI)
	return caddyhttp.LoggableHTTPRequest{Request: c}
}
