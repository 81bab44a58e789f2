package main

import (
	"context"
	"database/sql"
	"net"
	"sync/atomic"
	"time"

	"github.com/lib/pq"
)

// roundTrips counts client→server→client turns on every connection opened
// through countingDialer: a turn is the first read after one or more writes.
// lib/pq writes each protocol message separately, so counting writes or
// driver calls would not show what the network sees; counting turns does
// (an unnamed statement with parameters is Parse/Describe/Sync, read,
// Bind/Execute/Sync, read: 2 turns; a prepared one is 1).
var roundTrips atomic.Int64

type countingDialer struct{ d net.Dialer }

func (c countingDialer) Dial(network, addr string) (net.Conn, error) {
	return c.DialContext(context.Background(), network, addr)
}

func (c countingDialer) DialTimeout(network, addr string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return c.DialContext(ctx, network, addr)
}

func (c countingDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	nc, err := c.d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: nc}, nil
}

type countingConn struct {
	net.Conn
	wrote bool // written since the last read
}

func (c *countingConn) Write(b []byte) (int, error) {
	c.wrote = true
	return c.Conn.Write(b)
}

func (c *countingConn) Read(b []byte) (int, error) {
	if c.wrote {
		c.wrote = false
		roundTrips.Add(1)
	}
	return c.Conn.Read(b)
}

// openDB opens a pool on dsn whose connections count round trips.
func openDB(dsn string, maxConns int) (*sql.DB, error) {
	conn, err := pq.NewConnector(dsn)
	if err != nil {
		return nil, err
	}
	conn.Dialer(countingDialer{})
	db := sql.OpenDB(conn)
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	return db, nil
}
