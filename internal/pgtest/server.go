package pgtest

import (
	"context"
	"database/sql"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Server is a PostgreSQL server of a test's own, in a temporary directory,
// that the test may stop and start: outages are tested against a real
// server without touching the shared one other tests use.
type Server struct {
	t    testing.TB
	bin  string // directory of initdb, pg_ctl and postgres
	dir  string // data directory
	port int
	// asUser runs the server binaries as this user when the test runs as
	// root (PostgreSQL refuses to run as root).
	asUser string
}

// NewServer initialises and starts a fresh cluster on a free loopback port
// and stops and removes it when the test ends. Under -short it skips, as
// DB does; a missing PostgreSQL installation fails the test.
func NewServer(t testing.TB) *Server {
	t.Helper()
	if testing.Short() {
		DB(t) // skips (or fails under CI) the same way
	}
	bin, err := serverBinDir()
	if err != nil {
		t.Fatalf("pgtest: %v\nInstall the PostgreSQL server (on Debian: apt-get install postgresql).", err)
	}
	s := &Server{t: t, bin: bin}
	if os.Geteuid() == 0 {
		if _, err := user.Lookup("postgres"); err != nil {
			t.Fatalf("pgtest: running as root and there is no postgres user to run a server as: %v", err)
		}
		s.asUser = "postgres"
	}
	dir, err := os.MkdirTemp("", "pgtest-server-")
	if err != nil {
		t.Fatal(err)
	}
	s.dir = filepath.Join(dir, "data")
	t.Cleanup(func() {
		s.stop("immediate")
		_ = os.RemoveAll(dir)
	})
	if s.asUser != "" {
		if out, err := exec.Command("chown", "-R", s.asUser, dir).CombinedOutput(); err != nil {
			t.Fatalf("pgtest: chown %s: %v\n%s", dir, err, out)
		}
	}
	s.port = freePort(t)
	s.run("initdb", "-D", s.dir, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions")
	s.Start()
	return s
}

// DSN returns a lib/pq connection string for database postgres on the server.
func (s *Server) DSN() string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable&connect_timeout=2", s.port)
}

// Start starts the server (again) on its port and waits until it accepts
// connections.
func (s *Server) Start() {
	s.t.Helper()
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off",
		s.port, s.dir)
	s.run("pg_ctl", "-D", s.dir, "-o", opts, "-l", filepath.Join(s.dir, "server.log"), "-w", "-t", "60", "start")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.WaitReady(ctx); err != nil {
		s.t.Fatalf("pgtest: server on port %d did not accept connections: %v", s.port, err)
	}
}

// Stop stops the server at once (mode immediate: connections are cut, as in
// a crash or a lost network).
func (s *Server) Stop() {
	s.t.Helper()
	s.stop("immediate")
}

// WaitReady waits until the server answers a query.
func (s *Server) WaitReady(ctx context.Context) error {
	db, err := sql.Open("postgres", s.DSN())
	if err != nil {
		return err
	}
	defer db.Close()
	for {
		var one int
		if err = db.QueryRowContext(ctx, "SELECT 1").Scan(&one); err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (s *Server) stop(mode string) {
	cmd := s.command("pg_ctl", "-D", s.dir, "-m", mode, "-w", "stop")
	_ = cmd.Run() // stopping a stopped server is fine
}

func (s *Server) run(name string, args ...string) {
	s.t.Helper()
	if out, err := s.command(name, args...).CombinedOutput(); err != nil {
		s.t.Fatalf("pgtest: %s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func (s *Server) command(name string, args ...string) *exec.Cmd {
	path := filepath.Join(s.bin, name)
	if s.asUser != "" {
		return exec.Command("runuser", append([]string{"-u", s.asUser, "--", path}, args...)...)
	}
	return exec.Command(path, args...)
}

// serverBinDir finds the directory of the PostgreSQL server binaries: the
// PG_BIN environment variable, then pg_config --bindir, then the newest
// Debian installation.
func serverBinDir() (string, error) {
	if d := os.Getenv("PG_BIN"); d != "" {
		return d, nil
	}
	ok := func(d string) bool {
		_, err := os.Stat(filepath.Join(d, "initdb"))
		return err == nil
	}
	if out, err := exec.Command("pg_config", "--bindir").Output(); err == nil {
		if d := strings.TrimSpace(string(out)); ok(d) {
			return d, nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return versionOf(dirs[i]) > versionOf(dirs[j]) })
	for _, d := range dirs {
		if ok(d) {
			return d, nil
		}
	}
	return "", fmt.Errorf("no PostgreSQL server binaries (initdb, pg_ctl) found; set PG_BIN to their directory")
}

func versionOf(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
