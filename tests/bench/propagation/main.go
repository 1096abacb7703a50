// Command propagation measures cross-instance revocation: how long after
// instance A starts a refresh rotation (which revokes the old access token)
// instance B's oauth2_guard, which had the old token cached, refuses it.
//
//	go run ./tests/bench/propagation -a http://127.0.0.1:PA/oauth2/token \
//	    -b http://127.0.0.1:PB/orders -client app -secret app-secret -user alice -password pw -n 1000
//
// Per round: B is warmed with the current access token (two 200s, so its
// cache holds it), A rotates the refresh token, then B is polled until it
// answers 401. Every loop is bounded; any unexpected answer ends the run with
// a non-zero status. Talks to loopback servers only.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"
)

type pair struct{ access, refresh string }

func main() {
	tokenURL := flag.String("a", "", "instance A's token endpoint")
	guardURL := flag.String("b", "", "a URL guarded by oauth2_guard on instance B")
	client := flag.String("client", "app", "client_id (password and refresh_token grants)")
	secret := flag.String("secret", "", "client secret")
	user := flag.String("user", "alice", "username")
	password := flag.String("password", "", "password")
	n := flag.Int("n", 1000, "revocations to measure")
	warmGap := flag.Duration("warm-gap", 2*time.Millisecond, "pause between B's two warm-up requests (ristretto applies Sets asynchronously)")
	flag.Parse()
	for _, u := range []string{*tokenURL, *guardURL} {
		if pu, err := url.Parse(u); err != nil || !strings.HasPrefix(pu.Host, "127.") {
			fail("-a and -b must be loopback URLs (127.0.0.0/8), got %q", u)
		}
	}
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}

	token := func(form url.Values) (pair, time.Duration, error) {
		form.Set("client_id", *client)
		form.Set("client_secret", *secret)
		start := time.Now()
		resp, err := hc.PostForm(*tokenURL, form)
		if err != nil {
			return pair{}, 0, err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
		took := time.Since(start)
		if resp.StatusCode != http.StatusOK {
			return pair{}, took, fmt.Errorf("token endpoint: %d %s", resp.StatusCode, body)
		}
		var tr struct {
			Access  string `json:"access_token"`
			Refresh string `json:"refresh_token"`
		}
		if err := json.Unmarshal(body, &tr); err != nil || tr.Access == "" || tr.Refresh == "" {
			return pair{}, took, fmt.Errorf("token endpoint: no token pair in %s", body)
		}
		return pair{tr.Access, tr.Refresh}, took, nil
	}
	guard := func(access string) (int, error) {
		req, _ := http.NewRequest(http.MethodGet, *guardURL, nil)
		req.Header.Set("Authorization", "Bearer "+access)
		resp, err := hc.Do(req)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}

	cur, _, err := token(url.Values{"grant_type": {"password"}, "username": {*user}, "password": {*password}})
	if err != nil {
		fail("first token: %v", err)
	}
	var (
		delays   = make([]time.Duration, 0, *n) // rotation start -> B refuses
		rotates  = make([]time.Duration, 0, *n) // rotation request latency on A
		afterA   = make([]time.Duration, 0, *n) // A's answer -> B refuses
		lateOnes int                            // rounds where B still accepted after A had answered
	)
	for i := 0; i < *n; i++ {
		for w := 0; w < 2; w++ {
			code, err := guard(cur.access)
			if err != nil || code != http.StatusOK {
				fail("round %d: warming B: %d %v", i, code, err)
			}
			time.Sleep(*warmGap)
		}
		start := time.Now()
		next, took, err := token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {cur.refresh}})
		if err != nil {
			fail("round %d: rotation on A: %v", i, err)
		}
		answered := start.Add(took)
		polls := 0
		for {
			code, err := guard(cur.access)
			if err != nil {
				fail("round %d: polling B: %v", i, err)
			}
			if code == http.StatusUnauthorized {
				break
			}
			if code != http.StatusOK {
				fail("round %d: B answered %d", i, code)
			}
			polls++
			if time.Since(start) > 5*time.Second {
				fail("round %d: B still accepts the revoked token after 5s", i)
			}
		}
		refused := time.Now()
		if polls > 0 {
			lateOnes++
		}
		delays = append(delays, refused.Sub(start))
		rotates = append(rotates, took)
		afterA = append(afterA, refused.Sub(answered))
		cur = next
	}
	fmt.Printf("revocations: %d (refresh rotations on A, old access token cached on B)\n", *n)
	report("rotation request on A (includes every instance's ack)", rotates)
	report("A starts rotation -> B refuses", delays)
	report("A has answered -> B refuses (one request to B)", afterA)
	fmt.Printf("rounds where B still accepted the old token after A had answered: %d of %d\n", lateOnes, *n)
	fmt.Printf("BENCH propagation n=%d p50_ms=%.3f p99_ms=%.3f max_ms=%.3f late=%d\n", *n,
		ms(pct(delays, 50)), ms(pct(delays, 99)), ms(slices.Max(delays)), lateOnes)
}

func pct(d []time.Duration, p float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func report(what string, d []time.Duration) {
	fmt.Printf("%-55s p50 %7.3f ms  p90 %7.3f ms  p99 %7.3f ms  max %7.3f ms\n", what,
		ms(pct(d, 50)), ms(pct(d, 90)), ms(pct(d, 99)), ms(slices.Max(d)))
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "propagation: "+format+"\n", args...)
	os.Exit(1)
}
