// Package redistest runs a real redis-server (Debian's package) on a free
// loopback port for tests: no persistence, its own temporary directory, and
// stopped when the test ends. Tests can stop and start it again on the same
// port to play an outage.
package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oauth2gate/oauth2gate/internal/proclog"
)

const (
	startTimeout = 10 * time.Second
	stopTimeout  = 5 * time.Second
)

// Server is one redis-server process.
type Server struct {
	Port int
	dir  string
	args []string
	log  *proclog.Buffer

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// Start runs redis-server with the extra arguments (e.g. "--requirepass",
// "secret") and stops it when t ends. It fails t when redis-server is missing.
// An extra argument that does not start with "--" comes first: a config file
// (a Sentinel's, with "--sentinel" among the extras).
func Start(t testing.TB, extra ...string) *Server {
	t.Helper()
	s, err := StartProcess(t.TempDir(), extra...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("redis-server log (tail):\n%s", proclog.Tail(s.log.String(), 4000))
		}
	})
	return s
}

// StartProcess is Start for callers without a testing.TB (a benchmark
// program); dir holds redis-server's working files. Call Stop when done.
func StartProcess(dir string, extra ...string) (*Server, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, errors.New("redis-server is not installed: run `bash tests/install-deps.sh` (Debian package redis-server)")
	}
	var lastErr error
	for range 5 { // the free port can be taken between probe and bind
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		s := &Server{Port: port, dir: dir, log: &proclog.Buffer{}}
		var conf []string
		opts := extra
		if len(opts) > 0 && !strings.HasPrefix(opts[0], "--") {
			conf, opts = opts[:1], opts[1:]
		}
		s.args = append(append(conf,
			"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--dir", dir, "--daemonize", "no", "--protected-mode", "yes",
		), opts...)
		if lastErr = s.start(bin); lastErr == nil {
			return s, nil
		}
	}
	return nil, lastErr
}

// Addr is host:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)) }

// URL is redis://127.0.0.1:<port>.
func (s *Server) URL() string { return "redis://" + s.Addr() }

// Log is what redis-server printed.
func (s *Server) Log() string { return s.log.String() }

func (s *Server) start(bin string) error {
	cmd := exec.Command(bin, s.args...)
	cmd.Dir = s.dir
	cmd.Stdout = s.log
	cmd.Stderr = s.log
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting redis-server: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("redis-server exited during start-up on port %d:\n%s", s.Port, proclog.Tail(s.log.String(), 2000))
		default:
		}
		if s.answers() {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.Stop()
	return fmt.Errorf("redis-server did not answer on %s within %v", s.Addr(), startTimeout)
}

// answers reports whether the server replies to PING (+PONG, or -NOAUTH
// when it wants a password).
func (s *Server) answers() bool {
	c, err := net.DialTimeout("tcp", s.Addr(), 200*time.Millisecond)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && (strings.HasPrefix(line, "+") || strings.HasPrefix(line, "-"))
}

// Stop ends the server (SIGTERM, then SIGKILL after 5 s) and waits for it;
// the port is free again when it returns.
func (s *Server) Stop() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(os.Interrupt)
	select {
	case <-exited:
	case <-time.After(stopTimeout):
		_ = cmd.Process.Kill()
		<-exited
	}
}

// Restart starts the server again on the same port, after Stop.
func (s *Server) Restart() error {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return err
	}
	var lastErr error
	for range 50 { // the old socket may linger a moment
		if lastErr = s.start(bin); lastErr == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return lastErr
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
