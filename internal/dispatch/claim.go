package dispatch

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/lib/pq"
)

// claim claims up to limit rows and starts a worker for each. It runs on
// bgCtx so that a claim that committed is always read back.
func (e *Engine) claim(bgCtx, handlerCtx context.Context, limit int) (int, error) {
	cfg := e.cfg
	token := newToken(cfg.Name)
	ctx, cancel := context.WithTimeout(bgCtx, 30*time.Second)
	defer cancel()
	rows, err := e.st.Stmt(nil, e.st.Queue.Claim).Query(ctx, e.st.NowArg(), pq.Array(e.methods), cfg.Webhooks != nil,
		limit, token, cfg.LeaseDuration.Microseconds())
	if err != nil {
		return 0, err
	}
	defer rows.Close()
	// Deliveries start only once the claim has committed (the last Next
	// reads the commit's acknowledgement): an outcome written while the
	// claim is still uncommitted would not see the row as claimed and be
	// lost.
	var claimed []*Row
	for rows.Next() {
		c := &Row{Token: token}
		var payload, metadata string
		dl := &c.Delivery
		if err := rows.Scan(&dl.ID, &dl.EventID, &dl.SubscriptionID, &dl.Subscription, &c.CallbackMethod,
			&c.WebhookURL, &c.configJSON, &c.subUpdatedAt, &dl.Topic, &payload, &metadata,
			&c.RetryCount, &dl.MaxRetries, &dl.CreatedAt, &c.Keyed); err != nil {
			return 0, err
		}
		dl.Payload = json.RawMessage(payload)
		dl.Attempt = c.RetryCount + 1
		if metadata != "" {
			if err := json.Unmarshal([]byte(metadata), &dl.Metadata); err != nil {
				e.log.Warn("unreadable event metadata", slog.String("event_id", dl.EventID.String()), slog.Any("error", err))
			}
		}
		claimed = append(claimed, c)
	}
	if err := rows.Err(); err != nil {
		return 0, err
	}
	e.mu.Lock()
	for _, c := range claimed {
		e.inflight[c.Delivery.ID] = token
	}
	e.mu.Unlock()
	for _, c := range claimed {
		e.busy.Add(1)
		e.workers.Add(1)
		go e.process(handlerCtx, bgCtx, c)
	}
	return len(claimed), nil
}

func newToken(name string) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return name + "/" + hex.EncodeToString(b[:])
}
