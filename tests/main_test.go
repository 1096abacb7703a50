// Package tests holds the end-to-end tests of oauth2gate: they build the real Caddy binary with
// the module compiled in, run it on free loopback ports with a generated Caddyfile, and talk to it
// over HTTP the way OAuth clients and browsers do. Nothing is mocked.
package tests

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

const modulePath = "github.com/oauth2gate/oauth2gate"

// caddyBin is the Caddy binary every test runs; TestMain sets it once.
var caddyBin string

// repoRoot is the directory holding go.mod; TestMain sets it once.
var repoRoot string

func TestMain(m *testing.M) { os.Exit(runSuite(m)) }

func runSuite(m *testing.M) int {
	root, err := findRepoRoot()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	repoRoot = root

	if p := os.Getenv("OAUTH2GATE_CADDY"); p != "" {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			if abs, err := filepath.Abs(p); err == nil {
				caddyBin = abs
				return m.Run()
			}
		}
		fmt.Fprintf(os.Stderr, "OAUTH2GATE_CADDY=%q is not an existing file; building ./cmd/caddy instead\n", p)
	}

	dir, err := os.MkdirTemp("", "oauth2gate-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "caddy")
	build := exec.Command("go", "build", "-o", bin, "./cmd/caddy")
	build.Dir = root
	out, err := build.CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building the caddy binary (go build -o %s ./cmd/caddy in %s) failed: %v\n%s\n", bin, root, err, out)
		return 1
	}
	caddyBin = bin
	return m.Run()
}

// findRepoRoot walks up from the working directory (tests/ under go test) to the module root.
func findRepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for range 16 {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(data, []byte("module "+modulePath)) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		dir = parent
	}
	return "", errors.New("cannot find the repository root (a go.mod declaring module " + modulePath + ") above the working directory")
}
