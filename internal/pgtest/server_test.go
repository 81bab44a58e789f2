package pgtest

import (
	"context"
	"database/sql"
	"testing"
	"time"
)

func TestServerStopStart(t *testing.T) {
	t.Parallel()
	s := NewServer(t)
	db, err := sql.Open("postgres", s.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, "CREATE TABLE t (x int); INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	if err := db.PingContext(ctx); err == nil {
		t.Fatal("ping succeeded with the server stopped")
	}
	s.Start()
	var x int
	if err := db.QueryRowContext(ctx, "SELECT x FROM t").Scan(&x); err != nil || x != 1 {
		t.Fatalf("after restart: x=%d err=%v", x, err)
	}
}
