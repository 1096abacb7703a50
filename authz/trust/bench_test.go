package trust

import (
	"context"
	"fmt"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// BenchmarkVerifyJWT: another issuer's JWT access token, warm (the verified-token cache) and
// cold (every token new: parse, RS256 or ES256 verify, claims).
//
//	go test ./authz/trust -run xxx -bench VerifyJWT -benchmem
func BenchmarkVerifyJWT(b *testing.B) {
	e := setup(b, nil).started(b)
	for _, tc := range []struct {
		alg jose.SignatureAlgorithm
		key any
		kid string
	}{{jose.RS256, e.p.rsa, "rsa1"}, {jose.ES256, e.p.ec, "ec1"}} {
		toks := make([]string, 4096)
		for i := range toks {
			c := e.p.claims(e.clk.now())
			c["jti"] = fmt.Sprint(i)
			toks[i] = sign(b, tc.alg, tc.key, tc.kid, nil, c)
		}
		ctx := context.Background()
		b.Run(string(tc.alg)+"/cold", func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				p, err := parseJWT(toks[i%len(toks)], allAlgs)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := e.is.verifyJWT(ctx, p); err != nil {
					b.Fatal(err)
				}
			}
		})
		for _, tok := range toks {
			if _, err := e.route.Verify(ctx, tok); err != nil {
				b.Fatal(err)
			}
		}
		e.set.verified.Wait()
		b.Run(string(tc.alg)+"/warm", func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				if _, err := e.route.Verify(ctx, toks[i%len(toks)]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
