package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"sync"
	"time"

	"github.com/outboxkit/outbox/integrationlog"
)

// The recorders phase (issue 16): the cost of integrationlog's Transport
// and Middleware on the calls they record. Every point runs the plain call and
// the recorded call back to back: outbound (an http.Client against a local
// httptest server) and inbound (a handler behind Middleware, driven over
// loopback HTTP), at 1 and at -rec-conc concurrent callers. It reports p50
// and p99 latency and throughput, and counts the records in
// integration_log once the log is closed: every call must be recorded.

// recPoint is one measurement.
type recPoint struct {
	p50, p99 time.Duration
	rate     float64 // calls per second
	calls    int64   // calls made (warm-up included)
}

// runRecorders measures every direction and concurrency once (one run).
func (b *bench) runRecorders(ctx context.Context) error {
	body, _ := json.Marshal(newOrder(123456789))
	for _, dir := range []string{"outbound", "inbound"} {
		for _, c := range []int{1, b.recConc} {
			sfx := fmt.Sprintf("%s, %d caller", dir, c)
			if c > 1 {
				sfx += "s"
			}
			plain, err := b.recMeasure(ctx, dir, c, body, nil)
			if err != nil {
				return err
			}
			il, err := integrationlog.New(b.ob, integrationlog.Config{})
			if err != nil {
				return err
			}
			if _, err := b.db.ExecContext(ctx, fmt.Sprintf(`TRUNCATE "%s".integration_log`, b.schema)); err != nil {
				return err
			}
			rec, err := b.recMeasure(ctx, dir, c, body, il)
			if err != nil {
				return err
			}
			closeCtx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			flushStart := time.Now()
			err = closeLog(closeCtx, il)
			flush := time.Since(flushStart)
			cancel()
			if err != nil {
				return fmt.Errorf("close the integration log: %w", err)
			}
			var stored int64
			if err := b.db.QueryRowContext(ctx, fmt.Sprintf(`SELECT count(*) FROM "%s".integration_log`, b.schema)).Scan(&stored); err != nil {
				return err
			}
			us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
			b.res.add("recorders "+sfx+": plain p50", "µs", us(plain.p50))
			b.res.add("recorders "+sfx+": recorded p50", "µs", us(rec.p50))
			b.res.add("recorders "+sfx+": recorded p50 - plain p50", "µs", us(rec.p50-plain.p50))
			b.res.ceiling("recorders "+sfx+": recorded p50 - plain p50", 50)
			b.res.add("recorders "+sfx+": plain p99", "µs", us(plain.p99))
			b.res.add("recorders "+sfx+": recorded p99", "µs", us(rec.p99))
			b.res.add("recorders "+sfx+": plain throughput", "calls/s", plain.rate)
			b.res.add("recorders "+sfx+": recorded throughput", "calls/s", rec.rate)
			target := 0.0
			if c > 1 {
				target = 0.8
			}
			b.res.compare("recorders "+sfx+": recorded throughput", "recorders "+sfx+": plain throughput", target)
			b.res.add("recorders "+sfx+": recorded calls", "calls", float64(rec.calls))
			b.res.add("recorders "+sfx+": records in integration_log after Close", "records", float64(stored))
			b.res.compare("recorders "+sfx+": records in integration_log after Close", "recorders "+sfx+": recorded calls", 1)
			b.res.add("recorders "+sfx+": Close (flush of the backlog)", "ms", float64(flush)/float64(time.Millisecond))
			b.log.Info("recorders", "point", sfx, "plain_p50", plain.p50, "recorded_p50", rec.p50,
				"plain_rate", plain.rate, "recorded_rate", rec.rate, "calls", rec.calls, "stored", stored, "flush", flush)
		}
	}
	return nil
}

// recMeasure runs conc callers making calls for b.recDur after a warm-up,
// recorded by il (nil: plain), and returns their latency and throughput.
func (b *bench) recMeasure(ctx context.Context, dir string, conc int, body []byte, il *integrationlog.Log) (recPoint, error) {
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"id":"ch_1234567890","object":"charge","status":"succeeded","amount":1999}`))
	})
	var h http.Handler = api
	if dir == "inbound" && il != nil {
		h = il.Middleware("bench", nil)(api)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	base := &http.Transport{MaxIdleConns: 2 * conc, MaxIdleConnsPerHost: 2 * conc, IdleConnTimeout: time.Minute}
	defer base.CloseIdleConnections()
	var rt http.RoundTripper = base
	if dir == "outbound" && il != nil {
		rt = il.Transport("bench", base, &integrationlog.HTTPOptions{ExternalID: integrationlog.ExternalIDFromJSON("id")})
	}
	client := &http.Client{Transport: rt}
	call := func() error {
		req, err := http.NewRequestWithContext(ctx, "POST", srv.URL+"/v1/charges?customer=cust_1", bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer sk_test_1234567890")
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.Body.Close()
	}

	var (
		mu       sync.Mutex
		lats     []time.Duration
		calls    int64
		firstErr error
		wg       sync.WaitGroup
	)
	measuring := make(chan struct{})
	stop := make(chan struct{})
	for range conc {
		wg.Go(func() {
			var mine []time.Duration
			var n int64
			on := false
			defer func() {
				mu.Lock()
				lats = append(lats, mine...)
				calls += n
				mu.Unlock()
			}()
			for {
				select {
				case <-stop:
					return
				case <-measuring:
					on = true
				default:
				}
				start := time.Now()
				if err := call(); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				n++
				if on {
					mine = append(mine, time.Since(start))
				}
			}
		})
	}
	time.Sleep(300 * time.Millisecond) // warm-up: connections open, pools filled
	close(measuring)
	t0 := time.Now()
	time.Sleep(b.recDur)
	close(stop)
	elapsed := time.Since(t0)
	wg.Wait()
	if firstErr != nil {
		return recPoint{}, firstErr
	}
	sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
	at := func(p float64) time.Duration {
		if len(lats) == 0 {
			return 0
		}
		return lats[max(0, min(len(lats)-1, int(p/100*float64(len(lats))+0.5)-1))]
	}
	// Calls finished after stop are not in lats: the rate counts the
	// measured window only.
	return recPoint{p50: at(50), p99: at(99), rate: float64(len(lats)) / elapsed.Seconds(), calls: calls}, nil
}

// closeLog closes il (written against the interface, so that the phase
// also builds against versions without IntegrationLog.Close, which wrote
// synchronously).
func closeLog(ctx context.Context, il *integrationlog.Log) error {
	if c, ok := any(il).(interface{ Close(context.Context) error }); ok {
		return c.Close(ctx)
	}
	return nil
}
