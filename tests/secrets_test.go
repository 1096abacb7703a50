package tests

// Finding 3 of issue 11: the store held the session key, the refresh grace key and the private
// signing keys in clear, so a copied tokens.db or a Redis dump forged a session cookie for alice
// (then /authorize answered with a code, no password), id_tokens and JWT access tokens. These
// tests do what that attacker did, against the real binary.

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/redis/go-redis/v9"

	"github.com/oauth2gate/oauth2gate/authz"
	"github.com/oauth2gate/oauth2gate/authz/tokenstore"
	"github.com/oauth2gate/oauth2gate/authz/tokenstore/redistest"
)

// sharedSecretsKeyEnv holds the secrets_key the harness gives every instance on a Redis store
// (instance_test.go), as an operator gives every instance on one Redis the same key.
const sharedSecretsKeyEnv = "OAUTH2GATE_TEST_SECRETS_KEY"

var sharedSecretsKey = newSecretsKey()

func newSecretsKey() string {
	k := make([]byte, authz.SecretsKeySize)
	if _, err := rand.Read(k); err != nil {
		panic(err)
	}
	return base64.StdEncoding.EncodeToString(k)
}

func secretsKeyID(t *testing.T, b64 string) string {
	t.Helper()
	k, err := authz.ParseSecretsKey(b64)
	if err != nil {
		t.Fatal(err)
	}
	return authz.SecretsKeyID(k)
}

// The client and user of these tests: a first-party client, so a valid session alone makes
// /authorize answer with a code.
func secretsSpec(settings string) (gateSpec, clientSpec, userSpec) {
	web := clientSpec{ID: "web", Secret: randomSecret("web-"), Grants: "authorization_code refresh_token password",
		RedirectURIs: secLoopCB, Scopes: "openid read", SkipConsent: true}
	al := alice()
	return gateSpec{Settings: settings, Clients: []clientSpec{web}, Users: []userSpec{al}}, web, al
}

// loginCookie logs alice in through the real login page and returns her session cookie.
func loginCookie(t *testing.T, in *instance, web clientSpec, al userSpec) *http.Cookie {
	t.Helper()
	b := in.newBrowser(t)
	secCode(t, b, authParams(web.ID, secLoopCB, "code", "openid read", "login"), al)
	u, _ := url.Parse(in.url("/authorize"))
	for _, c := range b.c.Jar.Cookies(u) {
		if strings.Contains(c.Name, "session") {
			in.remember("session cookie", c.Value)
			return c
		}
	}
	t.Fatalf("no session cookie after logging in; cookies: %v", b.c.Jar.Cookies(u))
	return nil
}

// codeWithCookie sends one authorization request carrying only the given session cookie and
// returns the code /authorize answered with, or "" (the login page: the cookie was refused).
func codeWithCookie(t *testing.T, in *instance, web clientSpec, c *http.Cookie) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, in.url("/authorize")+"?"+authParams(web.ID, secLoopCB, "code", "openid read", "forged").Encode(), nil)
	req.Header.Set("Accept", "text/html")
	req.AddCookie(c)
	resp, err := in.http.Do(req)
	if err != nil {
		t.Fatalf("authorize: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 500 {
		t.Fatalf("authorize with a forged cookie answered %d", resp.StatusCode)
	}
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if loc == nil || !strings.HasPrefix(loc.String(), secLoopCB) {
		return ""
	}
	code := loc.Query().Get("code")
	in.remember("code", code)
	return code
}

// forgedSession is the cookie value the server would make for user, signed with key (the
// format is public: authz/session.go).
func forgedSession(key []byte, user string, now time.Time) (payload, value string) {
	p, _ := json.Marshal(map[string]any{"u": user, "t": now.Unix(), "e": now.Add(time.Hour).Unix()})
	enc := base64.RawURLEncoding
	return string(p), enc.EncodeToString(p) + "." + enc.EncodeToString(sessionMAC(key, p))
}

func sessionMAC(key, payload []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("session\x00"))
	m.Write(payload)
	return m.Sum(nil)
}

var (
	hexRun    = regexp.MustCompile(`[0-9a-fA-F]{32,}`)
	base64Run = regexp.MustCompile(`[A-Za-z0-9+/_-]{40,}={0,2}`)
	tokenRun  = regexp.MustCompile(`[!-~]{32,}`) // printable ASCII without spaces
)

// attackerViews is what someone holding a copy reads in it: the bytes as they are, and every hex
// or base64 run decoded, three levels deep (a hex value holding JSON holding a PEM), with JSON's
// \n escapes undone.
func attackerViews(data []byte) [][]byte {
	seen := map[string]bool{}
	var all [][]byte
	add := func(b []byte) bool {
		if len(b) == 0 || seen[string(b)] || len(all) > 50000 {
			return false
		}
		seen[string(b)] = true
		all = append(all, b)
		return true
	}
	level := [][]byte{data}
	add(data)
	for range 3 {
		var next [][]byte
		for _, v := range level {
			for _, b := range [][]byte{v, bytes.ReplaceAll(v, []byte(`\n`), []byte("\n"))} {
				if add(b) && !bytes.Equal(b, v) {
					next = append(next, b)
				}
				for _, m := range hexRun.FindAll(b, -1) {
					if d, err := hex.DecodeString(string(m[:len(m)/2*2])); err == nil && add(d) {
						next = append(next, d)
					}
				}
				for _, m := range base64Run.FindAll(b, -1) {
					for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
						if d, err := enc.DecodeString(string(m)); err == nil && add(d) {
							next = append(next, d)
						}
					}
				}
			}
		}
		level = next
	}
	return all
}

// keyCandidates are the values an attacker would try as the session key: every view of 32 to
// 512 bytes, and every token-like run of 32 or more printable characters in any view.
func keyCandidates(views [][]byte) [][]byte {
	seen := map[string]bool{}
	var out [][]byte
	add := func(b []byte) {
		if len(b) >= 32 && !seen[string(b)] {
			seen[string(b)] = true
			out = append(out, b)
		}
	}
	for _, v := range views {
		if len(v) <= 512 {
			add(v)
		}
		for _, m := range tokenRun.FindAll(v, -1) {
			add(m)
		}
		for _, m := range base64Run.FindAll(v, -1) {
			add(m)
		}
		for _, m := range hexRun.FindAll(v, -1) {
			add(m)
		}
	}
	return out
}

// privateKeys are the private keys found in any view, as PEM or as bare DER.
func privateKeys(views [][]byte) []crypto.Signer {
	var out []crypto.Signer
	parse := func(der []byte) {
		var k any
		var err error
		if k, err = x509.ParsePKCS8PrivateKey(der); err != nil {
			if k, err = x509.ParsePKCS1PrivateKey(der); err != nil {
				k, err = x509.ParseECPrivateKey(der)
			}
		}
		if s, ok := k.(crypto.Signer); err == nil && ok {
			out = append(out, s)
		}
	}
	for _, v := range views {
		parse(v)
		rest := v
		for {
			i := bytes.Index(rest, []byte("-----BEGIN"))
			if i < 0 {
				break
			}
			block, r := pem.Decode(rest[i:])
			if block == nil {
				rest = rest[i+len("-----BEGIN"):]
				continue
			}
			parse(block.Bytes)
			rest = r
		}
	}
	return out
}

// publishedKeys are the public keys of the server's JWKS, by kid.
func publishedKeys(t *testing.T, in *instance) map[string]crypto.PublicKey {
	t.Helper()
	resp, err := in.http.Get(in.url("/jwks"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil || len(set.Keys) == 0 {
		t.Fatalf("jwks: %v (%d keys)", err, len(set.Keys))
	}
	out := map[string]crypto.PublicKey{}
	for _, k := range set.Keys {
		out[k.KeyID] = k.Key
	}
	return out
}

func samePublicKey(a, b crypto.PublicKey) bool {
	type equaler interface{ Equal(crypto.PublicKey) bool }
	e, ok := a.(equaler)
	return ok && e.Equal(b)
}

// assertCopyForgesNothing does with data, a copy of the store, what the attacker of finding 3
// did: it looks for private key material and for the session key in every decoding of every
// part of it, and tries every candidate key as the session key, offline against alice's real
// cookie and online against /authorize. in must be running on the original store.
func assertCopyForgesNothing(t *testing.T, in *instance, web clientSpec, real *http.Cookie, data []byte) {
	t.Helper()
	if codeWithCookie(t, in, web, real) == "" {
		t.Fatal("alice's real session cookie gets no code: the requests the forgeries ride on are wrong")
	}
	views := attackerViews(data)
	for _, v := range views {
		if i := bytes.Index(v, []byte("PRIVATE KEY")); i >= 0 {
			t.Errorf("the copy holds private key material: …%q…", v[max(0, i-40):min(len(v), i+40)])
			break
		}
	}
	published := publishedKeys(t, in)
	for _, k := range privateKeys(views) {
		for kid, pub := range published {
			if samePublicKey(k.Public(), pub) {
				t.Errorf("the copy holds the private signing key %s: it forges id_tokens and JWT access tokens", kid)
			}
		}
	}
	cands := keyCandidates(views)
	if len(cands) > 20000 {
		t.Fatalf("%d key candidates: the store copy is larger than this test expects", len(cands))
	}
	p64, m64, _ := strings.Cut(real.Value, ".")
	payload, _ := base64.RawURLEncoding.DecodeString(p64)
	mac, _ := base64.RawURLEncoding.DecodeString(m64)
	if len(payload) == 0 || len(mac) != sha256.Size {
		t.Fatalf("alice's cookie %q is not payload.mac: the forger below no longer matches authz/session.go", real.Name)
	}
	offline, online := 0, 0
	now := time.Now()
	for _, c := range cands {
		if hmac.Equal(sessionMAC(c, payload), mac) {
			offline++
		}
		_, v := forgedSession(c, "alice", now)
		if code := codeWithCookie(t, in, web, &http.Cookie{Name: real.Name, Value: v}); code != "" {
			online++
		}
	}
	t.Logf("read %d bytes, %d decoded views, tried %d candidate session keys", len(data), len(views), len(cands))
	if offline > 0 {
		t.Errorf("%d values in the copy verify alice's real session cookie: the copy holds the session key", offline)
	}
	if online > 0 {
		t.Errorf("%d values in the copy forge a session cookie for alice that /authorize answers with a code", online)
	}
}

// sealedCount is how many sealed secrets (authz/secrets.go's "v1:" form) data holds, hex-encoded
// as both stores keep them.
func sealedCount(data []byte) int {
	return bytes.Count(data, []byte(hex.EncodeToString([]byte("v1:"))))
}

// TestFinding3_CopiedStoreForgesNothing: alice logs in and tokens are issued; Caddy stops and
// the store directory is copied. Nothing in the copy is private key material or the session key: no value
// in it, decoded in any way, forges a session cookie that /authorize accepts. The key that seals
// the secrets lives in Caddy's data dir, not in the store dir.
func TestFinding3_CopiedStoreForgesNothing(t *testing.T) {
	t.Parallel()
	spec, web, al := secretsSpec("")
	in := startGate(t, spec)
	real := loginCookie(t, in, web, al)
	tok := in.token(t, tokenCall{Form: form("grant_type", "password", "username", al.Name, "password", al.Password, "scope", "openid read"),
		Basic: basic(web.ID, web.Secret)}).mustToken(t)
	in.remember("access token", tok.Access)
	in.stop()

	// The thief copies the store directory and reads every entry out of the copy (its files are
	// pebble's, compressed: DumpFile is what any pebble reader gets from them).
	stolen := t.TempDir()
	if err := os.CopyFS(stolen, os.DirFS(in.storeDir)); err != nil {
		t.Fatal(err)
	}
	data, err := tokenstore.DumpFile(stolen)
	if err != nil {
		t.Fatal(err)
	}
	if n := sealedCount(data); n < 3 {
		t.Fatalf("the copy holds %d sealed secrets, want the session key, the grace key and the signing keys", n)
	}
	keyFile := filepath.Join(in.home, "data", "caddy", "oauth2-secrets.key")
	keyText, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatalf("the generated secrets key is not in Caddy's data dir: %v", err)
	}
	key, _ := authz.ParseSecretsKey(string(keyText))
	if rel, err := filepath.Rel(in.storeDir, keyFile); err == nil && !strings.HasPrefix(rel, "..") {
		t.Fatalf("the key file %s is inside the store dir", keyFile)
	}
	for _, enc := range []string{strings.TrimSpace(string(keyText)), hex.EncodeToString(key), string(key)} {
		if bytes.Contains(data, []byte(enc)) {
			t.Fatal("the copy holds the secrets key")
		}
	}
	if !strings.Contains(in.log.String(), "oauth2-secrets.key") || !strings.Contains(in.log.String(), "set secrets_key") {
		t.Error("the log does not say where the generated key is and that secrets_key should be set")
	}

	in.start()
	assertCopyForgesNothing(t, in, web, real, data)
}

// redisDump reads every key of the Redis the way someone holding a dump (or a replica, or the
// password) would: every key, of every type, with its DUMP serialisation too.
func redisDump(t *testing.T, addr string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	var out bytes.Buffer
	keys := 0
	iter := c.Scan(ctx, 0, "*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		keys++
		fmt.Fprintf(&out, "%s\n", k)
		switch typ := c.Type(ctx, k).Val(); typ {
		case "string":
			out.WriteString(c.Get(ctx, k).Val())
		case "hash":
			for f, v := range c.HGetAll(ctx, k).Val() {
				fmt.Fprintf(&out, "%s=%s\n", f, v)
			}
		case "set":
			out.WriteString(strings.Join(c.SMembers(ctx, k).Val(), "\n"))
		case "list":
			out.WriteString(strings.Join(c.LRange(ctx, k, 0, -1).Val(), "\n"))
		case "zset":
			out.WriteString(strings.Join(c.ZRange(ctx, k, 0, -1).Val(), "\n"))
		case "stream":
			for _, m := range c.XRange(ctx, k, "-", "+").Val() {
				fmt.Fprintf(&out, "%v\n", m.Values)
			}
		default:
			t.Errorf("key %q of type %q is not read by this test", k, typ)
		}
		out.WriteString("\n")
		out.WriteString(c.Dump(ctx, k).Val())
		out.WriteString("\n")
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	t.Logf("read %d Redis keys", keys)
	return out.Bytes()
}

// TestFinding3_RedisDumpForgesNothing: the same attack on a Redis store, with a real
// redis-server, read key by key as an attacker with a dump would.
func TestFinding3_RedisDumpForgesNothing(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	spec, web, al := secretsSpec("")
	in := startGateWith(t, spec, siteOptions{BasePath: "/o", Store: "store redis " + srv.URL()})
	real := loginCookie(t, in, web, al)
	tok := in.token(t, tokenCall{Form: form("grant_type", "password", "username", al.Name, "password", al.Password, "scope", "openid read"),
		Basic: basic(web.ID, web.Secret)}).mustToken(t)
	in.remember("access token", tok.Access)
	dump := redisDump(t, srv.Addr())
	if n := sealedCount(dump); n < 3 {
		t.Fatalf("the dump holds %d sealed secrets, want the session key, the grace key and the signing keys", n)
	}
	for _, enc := range []string{sharedSecretsKey, hex.EncodeToString([]byte(sharedSecretsKey))} {
		if bytes.Contains(dump, []byte(enc)) {
			t.Fatal("the dump holds the secrets key")
		}
	}
	assertCopyForgesNothing(t, in, web, real, dump)
}

// runLog is what Caddy logged during its latest run.
func runLog(in *instance) string {
	l := in.log.String()
	if i := strings.LastIndex(l, "=== e2e harness: caddy run #"); i >= 0 {
		return l[i:]
	}
	return l
}

// setCaddyfile rewrites the instance's Caddyfile, replacing old with new (which must change it).
func setCaddyfile(t *testing.T, in *instance, old, new string) {
	t.Helper()
	text := in.caddyfileText()
	if !strings.Contains(text, old) {
		t.Fatalf("the Caddyfile has no %q", old)
	}
	if err := os.WriteFile(in.file, []byte(strings.Replace(text, old, new, 1)), 0o600); err != nil {
		t.Fatal(err)
	}
}

// refusedStart runs `caddy validate` and `caddy run` on the instance's Caddyfile, which must fail,
// and returns what `caddy run` said.
func refusedStart(t *testing.T, in *instance, mustSay ...string) string {
	t.Helper()
	var said string
	for _, sub := range []string{"validate", "run"} {
		out, errOut, err := caddyCLI(t, in.home, sub, "--config", in.file, "--adapter", "caddyfile")
		msg := out + errOut
		if err == nil {
			t.Fatalf("caddy %s started on a store its key does not open:\n%s", sub, msg)
		}
		for _, s := range mustSay {
			if !strings.Contains(msg, s) {
				t.Errorf("caddy %s error does not say %q:\n%s", sub, s, msg)
			}
		}
		said = msg
	}
	return said
}

// TestFinding3_StoreSealedWithKeyADoesNotStartWithKeyB: a store sealed with key A refuses to
// start with key B (validate and run), saying which secret, that no key opens it and what to do;
// nothing is regenerated, so with key A again alice is still logged in and the signing keys are
// the same. Without secrets_key, a lost key file is refused the same way and named.
func TestFinding3_StoreSealedWithKeyADoesNotStartWithKeyB(t *testing.T) {
	t.Parallel()
	keyA, keyB := newSecretsKey(), newSecretsKey()
	spec, web, al := secretsSpec("secrets_key " + keyA)
	in := startGate(t, spec)
	in.remember("secrets key A", keyA)
	in.remember("secrets key B", keyB)
	real := loginCookie(t, in, web, al)
	before := publishedKeys(t, in)
	in.stop()

	setCaddyfile(t, in, "secrets_key "+keyA, "secrets_key "+keyB)
	msg := refusedStart(t, in, `\"session_key\" in the store`, "cannot be decrypted with secrets_key (key id "+secretsKeyID(t, keyB)+")",
		"sealed with key id "+secretsKeyID(t, keyA), "secrets_key_retired", "new secrets are not generated")
	for _, k := range []string{keyA, keyB} {
		if strings.Contains(msg, k) {
			t.Error("the error shows a secrets key")
		}
	}

	setCaddyfile(t, in, "secrets_key "+keyB, "secrets_key "+keyA)
	in.start()
	if codeWithCookie(t, in, web, real) == "" {
		t.Error("after the refused start alice's session is gone: the session key was regenerated")
	}
	for kid := range before {
		if _, ok := publishedKeys(t, in)[kid]; !ok {
			t.Errorf("after the refused start the signing key %s is gone", kid)
		}
	}
	in.stop()

	t.Run("lost key file", func(t *testing.T) {
		setCaddyfile(t, in, "secrets_key "+keyA+"\n", "")
		refusedStart(t, in, `\"session_key\" in the store`, "no secrets_key is set", filepath.Join(in.home, "data", "caddy", "oauth2-secrets.key"),
			"put back the key file")
		if _, err := os.Stat(filepath.Join(in.home, "data", "caddy", "oauth2-secrets.key")); err == nil {
			t.Error("a refused start left a new key file in place of the lost one")
		}
	})
}

// TestFinding3_RotateSecretsKey walks the documented rotation, starting from the generated key
// file: secrets_key the new key and secrets_key_retired the old one ({file.*} of the key file),
// start once (each secret is sealed again, logged), drop the retired key, start again. Alice
// stays logged in and the signing keys stay the same throughout; the old key alone no longer
// opens the store.
func TestFinding3_RotateSecretsKey(t *testing.T) {
	t.Parallel()
	spec, web, al := secretsSpec("")
	in := startGate(t, spec)
	real := loginCookie(t, in, web, al)
	kids := publishedKeys(t, in)
	in.stop()
	keyFile := filepath.Join(in.home, "data", "caddy", "oauth2-secrets.key")
	oldText, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	oldID := secretsKeyID(t, string(oldText))
	newKey := newSecretsKey()
	in.remember("secrets key", newKey)
	issuer := "issuer " + in.base + "\n"
	stillTheSame := func(t *testing.T, when string) {
		t.Helper()
		if codeWithCookie(t, in, web, real) == "" {
			t.Errorf("%s: alice's session is gone", when)
		}
		now := publishedKeys(t, in)
		for kid := range kids {
			if _, ok := now[kid]; !ok {
				t.Errorf("%s: the signing key %s is gone", when, kid)
			}
		}
	}

	setCaddyfile(t, in, issuer, issuer+"\t\tsecrets_key "+newKey+"\n\t\tsecrets_key_retired {file."+keyFile+"}\n")
	in.start()
	log := runLog(in)
	for _, name := range []string{"session_key", "refresh_grace_key", "signing_keys"} {
		if !regexp.MustCompile(`sealed with a retired key is now sealed with secrets_key.*"secret":"` + name + `".*"retired_key_id":"` + oldID + `"`).MatchString(log) {
			t.Errorf("the rotating start does not log that %s was sealed again:\n%s", name, log)
		}
	}
	stillTheSame(t, "during the rotation")
	in.stop()

	setCaddyfile(t, in, "\t\tsecrets_key_retired {file."+keyFile+"}\n", "")
	in.start()
	if strings.Contains(runLog(in), "now sealed") {
		t.Errorf("the start after the rotation sealed secrets again:\n%s", runLog(in))
	}
	stillTheSame(t, "after the rotation")
	in.stop()

	setCaddyfile(t, in, "\t\tsecrets_key "+newKey+"\n", "")
	refusedStart(t, in, "cannot be decrypted with secrets_key (key id "+oldID+")", "sealed with key id "+secretsKeyID(t, newKey), keyFile)
}

// TestFinding3_UpgradeSealsAClearStore: a store as the code before finding 3 left it (the session
// key, grace key and signing keys in clear, written through the store's own Secret) is taken
// over on the first start: the secrets are sealed and written back, each logged at info without
// its value; alice's session from before the upgrade still works (the cookie made with the old
// key, which also shows the forger of the tests above is right), the signing keys are the same.
func TestFinding3_UpgradeSealsAClearStore(t *testing.T) {
	t.Parallel()
	spec, web, al := secretsSpec("")
	in := startGate(t, spec)
	cookieName := loginCookie(t, in, web, al).Name
	in.stop()

	// The store written by the old code, in place of the new one.
	if err := os.RemoveAll(in.storeDir); err != nil {
		t.Fatal(err)
	}
	legacySession := randomSecret("") + randomSecret("")[:19] // 43 URL-safe characters, as randomToken made
	in.remember("legacy session key", legacySession)
	type storedKey struct {
		KID string `json:"kid"`
		Alg string `json:"alg"`
		PEM string `json:"pem"`
	}
	var legacyKeys []storedKey
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for alg, k := range map[string]crypto.Signer{"RS256": rsaKey, "ES256": ecKey} {
		der, _ := x509.MarshalPKCS8PrivateKey(k)
		tp, _ := (&jose.JSONWebKey{Key: k.Public()}).Thumbprint(crypto.SHA256)
		legacyKeys = append(legacyKeys, storedKey{KID: base64.RawURLEncoding.EncodeToString(tp)[:16], Alg: alg,
			PEM: string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))})
	}
	keysJSON, _ := json.Marshal(legacyKeys)
	st, err := tokenstore.OpenFile(in.storeDir, tokenstore.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for name, v := range map[string][]byte{"session_key": []byte(legacySession), "refresh_grace_key": []byte(randomSecret("grace-")), "signing_keys": keysJSON} {
		if _, err := st.Secret(ctx, name, func() ([]byte, error) { return v, nil }); err != nil {
			t.Fatal(err)
		}
	}
	st.Close()

	in.start()
	log := runLog(in)
	for _, name := range []string{"session_key", "refresh_grace_key", "signing_keys"} {
		if !regexp.MustCompile(`held in clear is now sealed with secrets_key.*"secret":"` + name + `"`).MatchString(log) {
			t.Errorf("the upgrade does not log that %s was sealed:\n%s", name, log)
		}
	}
	if strings.Contains(log, "PRIVATE KEY") {
		t.Error("the upgrade logs private key material")
	}
	_, v := forgedSession([]byte(legacySession), al.Name, time.Now())
	if codeWithCookie(t, in, web, &http.Cookie{Name: cookieName, Value: v}) == "" {
		t.Error("a session made with the key from before the upgrade is refused: the upgrade logged everyone out")
	}
	published := publishedKeys(t, in)
	for _, k := range legacyKeys {
		if _, ok := published[k.KID]; !ok {
			t.Errorf("the upgrade replaced the %s signing key %s", k.Alg, k.KID)
		}
	}
	in.stop()

	st, err = tokenstore.OpenFile(in.storeDir, tokenstore.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for _, name := range []string{"session_key", "refresh_grace_key", "signing_keys"} {
		v, err := st.Secret(ctx, name, func() ([]byte, error) { return nil, fmt.Errorf("%s is gone", name) })
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(v, []byte("v1:")) || bytes.Contains(v, []byte(legacySession)) || bytes.Contains(v, []byte("PRIVATE KEY")) {
			t.Errorf("after the upgrade the store holds %s as %.30q…, want it sealed", name, v)
		}
	}
}

// TestFinding3_SecretsKeyDirectives: secrets_key and secrets_key_retired adapt to the JSON fields
// with their placeholders kept for run time; a bad literal key fails adapt and validate naming
// the line; an unset {env.*}, and Redis without secrets_key, fail validate naming the option.
func TestFinding3_SecretsKeyDirectives(t *testing.T) {
	t.Parallel()
	cf := func(home string, lines ...string) string {
		t.Helper()
		text := "{\n\tadmin off\n\tpersist_config off\n\tauto_https off\n\toauth2 {\n\t\t" + strings.Join(lines, "\n\t\t") +
			"\n\t}\n}\n\nhttp://127.0.0.1:9 {\n\toauth2_server /o\n}\n"
		file := filepath.Join(home, "Caddyfile")
		if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return file
	}
	home := t.TempDir()
	file := cf(home, "store file "+filepath.Join(home, "store"), "secrets_key {env."+sharedSecretsKeyEnv+"}", "secrets_key_retired "+newSecretsKey()+" {file./run/secrets/old.key}")
	out, errOut, err := caddyCLI(t, home, "adapt", "--config", file, "--adapter", "caddyfile")
	if err != nil {
		t.Fatalf("adapt: %v\n%s", err, errOut)
	}
	var cfg struct {
		Apps struct {
			OAuth2 struct {
				SecretsKey        string   `json:"secrets_key"`
				SecretsKeyRetired []string `json:"secrets_key_retired"`
			} `json:"oauth2"`
		} `json:"apps"`
	}
	if err := json.Unmarshal([]byte(out), &cfg); err != nil {
		t.Fatal(err)
	}
	if o := cfg.Apps.OAuth2; o.SecretsKey != "{env."+sharedSecretsKeyEnv+"}" || len(o.SecretsKeyRetired) != 2 || o.SecretsKeyRetired[1] != "{file./run/secrets/old.key}" {
		t.Fatalf("adapted oauth2 app: %+v\n%s", o, out)
	}

	cases := []struct {
		name    string
		lines   []string
		subs    []string
		mention []string
	}{
		{"short literal key", []string{"secrets_key c2hvcnQ="}, []string{"adapt", "validate"}, []string{"Caddyfile:6", "secrets_key: the key is 5 bytes, want 32"}},
		{"retired key not base64", []string{"secrets_key " + newSecretsKey(), "secrets_key_retired not-a-key!"}, []string{"adapt", "validate"}, []string{"Caddyfile:7", "secrets_key_retired: the key is not base64"}},
		{"unset env", []string{"secrets_key {env.OAUTH2GATE_TEST_UNSET_KEY}"}, []string{"validate"}, []string{"secrets_key: evaluated placeholder {env.OAUTH2GATE_TEST_UNSET_KEY} is empty"}},
		// A Caddy with users on Redis runs the server, which needs the key; one without clients
		// and users only guards (TestGuardOnlyOnSharedRedis) and needs none.
		{"redis without secrets_key", []string{"store redis redis://127.0.0.1:9", "user alice " + hashSecret(t, "pw")}, []string{"validate"}, []string{"store redis needs secrets_key", "openssl rand -base64 32"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			home := t.TempDir()
			file := cf(home, tc.lines...)
			for _, sub := range tc.subs {
				out, errOut, err := caddyCLI(t, home, sub, "--config", file, "--adapter", "caddyfile")
				msg := out + errOut
				if err == nil {
					t.Errorf("caddy %s accepted:\n%s", sub, msg)
					continue
				}
				for _, m := range tc.mention {
					if !strings.Contains(msg, m) {
						t.Errorf("caddy %s error does not say %q:\n%s", sub, m, msg)
					}
				}
			}
		})
	}
}
