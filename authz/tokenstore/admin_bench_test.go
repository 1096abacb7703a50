package tokenstore

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oauth2gate/oauth2gate/authz/tokenstore/redistest"
)

// BenchmarkRevokeBySubject: revoking a user with n live grants (each an
// access and a refresh token in its own family, as the password or code
// flow makes them) among as many grants of other users, on the file store
// and on a real redis-server. One op is one RevokeMatching; the store is
// filled again, off the clock, before each.
//
//	go test ./authz/tokenstore -run '^$' -bench RevokeBySubject -benchtime 3x
func BenchmarkRevokeBySubject(b *testing.B) {
	srv := redistest.Start(b)
	for _, n := range []int{1000, 10000} {
		for _, kind := range []string{"file", "redis"} {
			b.Run(fmt.Sprintf("%s/%d", kind, n), func(b *testing.B) {
				ctx := context.Background()
				var s Store
				var err error
				if kind == "file" {
					s, err = OpenFile(b.TempDir(), FileOptions{ReplayWindow: time.Hour})
				} else {
					s, err = OpenRedis(srv.URL(), RedisOptions{KeyPrefix: fmt.Sprintf("bench%d-%d:", n, time.Now().UnixNano())})
				}
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				fill := func(round int) {
					for i := range n {
						for _, who := range []string{"alice", fmt.Sprintf("user%d", i)} {
							iss := issueFor(who, "app", fmt.Sprintf("g-%d-%s-%d", round, who, i), true)
							if err := s.SaveTokens(ctx, iss); err != nil {
								b.Fatal(err)
							}
						}
					}
				}
				b.ResetTimer()
				for r := 0; r < b.N; r++ {
					b.StopTimer()
					fill(r)
					b.StartTimer()
					_, got, err := RevokeMatching(ctx, s, Match{Subject: "alice"})
					if err != nil || got != 2*n {
						b.Fatalf("revoked %d tokens (%v), want %d", got, err, 2*n)
					}
				}
			})
		}
	}
}

// BenchmarkFileSaveTokens: the file store's issuance from concurrent
// callers (each answered after its fsync, which they share), of an access
// and a refresh token in a family (the code and password flows) and of an
// access token alone (client_credentials).
//
//	go test ./authz/tokenstore -run '^$' -bench FileSaveTokens -count 3
func BenchmarkFileSaveTokens(b *testing.B) {
	for _, family := range []bool{true, false} {
		name := "family"
		if !family {
			name = "client_credentials"
		}
		b.Run(name, func(b *testing.B) {
			s, err := OpenFile(b.TempDir(), FileOptions{ReplayWindow: time.Hour})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			var seq atomic.Int64
			b.SetParallelism(16)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := seq.Add(1)
					iss := issueFor(fmt.Sprintf("user%d", i%5000), "app", fmt.Sprintf("g%d", i), family)
					if !family {
						iss.AccessRecord.Subject, iss.AccessRecord.GrantID = "", ""
					}
					if err := s.SaveTokens(ctx, iss); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
