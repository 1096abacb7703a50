package tests

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// TestDurability: tokens returned to a client survive a graceful restart and a kill -9 of the
// process, and the store on disk holds no token in plain text.
func TestDurability(t *testing.T) {
	t.Parallel()
	svc := clientSpec{ID: "svc", Secret: randomSecret("svc-"), Grants: "client_credentials", Scopes: "read"}
	app := clientSpec{ID: "app", Secret: randomSecret("app-"), Grants: "password refresh_token", Scopes: "read write"}
	al := alice()
	in := startGate(t, gateSpec{Clients: []clientSpec{svc, app}, Users: []userSpec{al}})
	appAuth := basic(app.ID, app.Secret)

	var issuedTokens []string
	keep := func(tok issued) issued {
		issuedTokens = append(issuedTokens, tok.Access)
		if tok.Refresh != "" {
			issuedTokens = append(issuedTokens, tok.Refresh)
		}
		return tok
	}
	password := func(t *testing.T) issued {
		t.Helper()
		tok := keep(in.token(t, tokenCall{Form: form("grant_type", "password", "username", "alice", "password", al.Password), Basic: appAuth}).mustToken(t))
		if tok.Refresh == "" {
			t.Fatal("no refresh token")
		}
		return tok
	}
	refresh := func(t *testing.T, rt string) *reply {
		t.Helper()
		return in.token(t, tokenCall{Form: form("grant_type", "refresh_token", "refresh_token", rt), Basic: appAuth})
	}

	keep(in.token(t, tokenCall{Form: form("grant_type", "client_credentials"), Basic: basic(svc.ID, svc.Secret)}).mustToken(t))
	r1 := password(t)
	spent := password(t)
	keep(refresh(t, spent.Refresh).mustToken(t)) // spent.Refresh is now rotated away

	t.Run("graceful restart", func(t *testing.T) {
		in.restart()
		r2 := keep(refresh(t, r1.Refresh).mustToken(t))
		refresh(t, spent.Refresh).mustError(t, outcome{400, "invalid_grant"})

		// kill -9 right after the rotation answered: the new pair must be on disk already.
		in.kill()
		in.start()
		keep(refresh(t, r2.Refresh).mustToken(t))
	})

	t.Run("kill -9 right after issuing", func(t *testing.T) {
		fresh := password(t)
		in.kill()
		in.start()
		keep(refresh(t, fresh.Refresh).mustToken(t))
		refresh(t, fresh.Refresh).mustError(t, outcome{400, "invalid_grant"})
	})

	t.Run("store holds no plain token", func(t *testing.T) {
		in.stop()
		files := 0
		err := filepath.WalkDir(in.home, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			files++
			for _, tok := range issuedTokens {
				if bytes.Contains(data, []byte(tok)) {
					t.Errorf("%s holds an issued token in plain text (%.8s…)", path, tok)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if files == 0 {
			t.Errorf("no file written under %s", in.home)
		}
		if entries, err := os.ReadDir(in.storeDir); err != nil || len(entries) == 0 {
			t.Errorf("the store dir %s holds nothing (%v): tokens are not where `store file` says", in.storeDir, err)
		}
		in.start()
	})
}
