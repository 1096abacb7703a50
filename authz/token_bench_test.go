package authz

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// BenchmarkTokenClientCredentials is the token endpoint's hot path without
// the network: parse, authenticate (memoised secret), issue, store, answer.
func BenchmarkTokenClientCredentials(b *testing.B) {
	s := newTestServer(b, func(c *Config) { c.FailureBurst = -1 })
	body := "grant_type=client_credentials&client_id=conf&client_secret=s3cret"
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r := httptest.NewRequest(http.MethodPost, "/oauth2/token", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		w := httptest.NewRecorder()
		s.ServeEndpoint(w, r, "/oauth2")
		if w.Code != 200 {
			b.Fatal(w.Code, w.Body.String())
		}
	}
}
