package tests

// More of issue 6 item 1's promises, with hashes as operators make them and
// parameter names as attackers may encode them.

import (
	"fmt"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestRFC6749_2_3_1_UnknownUserOrClientCostsAsMuchAsAKnownOne: with hashes made the way
// the project tells operators to make them (`caddy hash-password`, bcrypt cost 14 by default),
// a wrong password of a known user must take as long as any password of an unknown user, and a
// wrong secret of a known client as long as any secret of an unknown client
// (authz/owners.go: "an unknown user costs the same bcrypt as a known one").
func TestRFC6749_2_3_1_UnknownUserOrClientCostsAsMuchAsAKnownOne(t *testing.T) {
	t.Parallel()
	hashOf := func(plain string) string {
		out, err := exec.Command(caddyBin, "hash-password", "--plaintext", plain).Output()
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out))
	}
	secret, password := randomSecret("svc-"), randomSecret("pw-")
	in := startCaddy(t, fmt.Sprintf("failure_limit off\nclient svc {\n\tsecret %s\n\tgrants client_credentials password\n\tscopes read\n}\nuser alice %s\n", hashOf(secret), hashOf(password)))
	in.remember("client secret", secret)
	in.remember("user password", password)
	in.token(t, tokenCall{Form: form("grant_type", "client_credentials"), Basic: basic("svc", secret)}).mustToken(t) // memoises svc's secret
	median := func(c tokenCall) time.Duration {
		var ds []time.Duration
		for range 3 {
			start := time.Now()
			in.token(t, c)
			ds = append(ds, time.Since(start))
		}
		return secMedian(ds)
	}
	for _, pair := range []struct {
		known, unknown string
		k, u           tokenCall
	}{
		{"wrong password of alice", "unknown user",
			tokenCall{Form: form("grant_type", "password", "username", "alice", "password", "x-"+password), Basic: basic("svc", secret)},
			tokenCall{Form: form("grant_type", "password", "username", "nosuchuser", "password", "x-"+password), Basic: basic("svc", secret)}},
		{"wrong secret of svc", "unknown client",
			tokenCall{Form: form("grant_type", "client_credentials"), Basic: basic("svc", "x-"+secret)},
			tokenCall{Form: form("grant_type", "client_credentials"), Basic: basic("nosuchclient", "x-"+secret)}},
	} {
		k, u := median(pair.k), median(pair.u)
		if ratio := float64(max(k, u)) / float64(min(k, u)); ratio > 3 {
			t.Errorf("%s answers in %v, %s in %v (factor %.0f): timing tells whether the %s exists",
				pair.known, k, pair.unknown, u, ratio, strings.TrimPrefix(pair.unknown, "unknown "))
		}
	}
}

// TestRFC9700_NoSecretInLogWithPercentEncodedParameterName: a token request whose URL
// names client_secret or password with a percent-encoded character (client%5Fsecret) is decoded
// and honoured by the token endpoint (allow_get_token_request), but the access log's redaction
// matches raw parameter names only, so the secret is logged in plain text.
func TestRFC9700_NoSecretInLogWithPercentEncodedParameterName(t *testing.T) {
	t.Parallel()
	svc := clientSpec{ID: "svc", Secret: randomSecret("svc-"), Grants: "client_credentials password", Scopes: "read"}
	al := alice()
	in := startGateWith(t, gateSpec{Settings: "allow_get_token_request", Clients: []clientSpec{svc}, Users: []userSpec{al}},
		siteOptions{BasePath: "/o", SiteExtra: "log"})
	for _, q := range []string{
		"grant_type=client_credentials&client_id=svc&client%5Fsecret=" + url.QueryEscape(svc.Secret),
		"grant_type=password&client_id=svc&client_secret=" + url.QueryEscape(svc.Secret) + "&username=alice&pass%77ord=" + url.QueryEscape(al.Password),
	} {
		resp, err := in.http.Get(in.url("/token") + "?" + q)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		t.Logf("GET /o/token?%s… -> %d", q[:40], resp.StatusCode)
	}
	secWaitForLog(t, in, "/sec-log-marker")
	in.assertLogClean(t, in.log.String())
}
