package outbox

// Rolling deploys and rollback against the previous release (issue 20):
// v0.2, built from this repository's history, runs beside the current
// code on one database under load, with a handler and a signed,
// authenticated webhook subscription. docs/migrating-from-0.2.md
// ("Upgrade and rollback") points at these tests.

import (
	"archive/tar"
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/outboxkit/outbox/internal/testutil"
	"github.com/outboxkit/outbox/keys"
	"github.com/outboxkit/outbox/subconfig"
	"github.com/outboxkit/outbox/webhook"
)

// previousRelease is the commit of v0.2, the previous release, before the
// v0.3 reshuffle. Its schema version is 9 (release 9 for the fence).
const previousRelease = "6230730"

// needPrevious ends a test that cannot build the previous release: a
// failure under CI (which has git and the full history), a skip elsewhere.
func needPrevious(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") != "" {
		t.Fatalf("%s\nCI must run this test: install git and clone with full history (fetch-depth: 0, or git fetch --unshallow).", msg)
	}
	t.Skipf("%s (skipped outside CI)", msg)
}

// buildPrevious extracts the previous release from this repository's
// history into a temporary directory, adds testdata/rolling/main.go to it
// as cmd/internal/rollworker, builds that against the previous release's
// own API and go.mod, and returns the binary.
func buildPrevious(t *testing.T) string {
	t.Helper()
	gitBin, err := exec.LookPath("git")
	if err != nil {
		needPrevious(t, "the git command is not on PATH: the previous release (%s) is built from this repository's history", previousRelease)
	}
	if out, err := exec.Command(gitBin, "rev-parse", "--verify", "--quiet", previousRelease+"^{commit}").CombinedOutput(); err != nil {
		needPrevious(t, "commit %s (v0.2, the previous release) is not in this clone's history: %v %s", previousRelease, err, out)
	}
	dir := t.TempDir()
	archive := exec.Command(gitBin, "archive", "--format=tar", previousRelease)
	stdout, err := archive.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	archive.Stderr = &stderr
	if err := archive.Start(); err != nil {
		t.Fatal(err)
	}
	if err := untar(stdout, dir); err != nil {
		_ = archive.Wait()
		t.Fatalf("git archive %s: %v %s", previousRelease, err, stderr.String())
	}
	if err := archive.Wait(); err != nil {
		t.Fatalf("git archive %s: %v %s", previousRelease, err, stderr.String())
	}
	main, err := os.ReadFile(filepath.Join("testdata", "rolling", "main.go"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "cmd", "internal", "rollworker"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cmd", "internal", "rollworker", "main.go"), main, 0o644); err != nil {
		t.Fatal(err)
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is not on PATH: %v", err)
	}
	bin := filepath.Join(dir, "rollworker")
	// With the test binary's -race flag (or without), the dependencies,
	// which the two releases share, come from the build cache it filled:
	// only the previous release's own packages are compiled.
	args := []string{"build", "-o", bin}
	if raceBuild {
		args = append(args, "-race")
	}
	build := exec.Command(goTool, append(args, "./cmd/internal/rollworker")...)
	build.Dir = dir
	build.Env = append(os.Environ(), "GOWORK=off")
	start := time.Now()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the previous release's worker: %v\n%s", err, out)
	}
	t.Logf("previous release %s built in %s", previousRelease, time.Since(start).Round(time.Millisecond))
	return bin
}

// untar writes the regular files and directories of a tar stream under dir.
func untar(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		name := filepath.Clean(h.Name)
		if filepath.IsAbs(name) || name == ".." || strings.HasPrefix(name, ".."+string(filepath.Separator)) {
			return fmt.Errorf("unsafe path %q in archive", h.Name)
		}
		path := filepath.Join(dir, name)
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(path, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return err
			}
			f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
			if err != nil {
				return err
			}
			if _, err := io.Copy(f, tr); err != nil {
				_ = f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
		}
	}
}

// rollReceiver is the webhook subscription's endpoint: it verifies every
// request with the Standard Webhooks reference library and checks its
// Authorization header; it refuses every 25th verified request with 503,
// so that retries move rows between processes too.
type rollReceiver struct {
	srv           *httptest.Server
	secret, token string

	requests atomic.Int64
	bad      atomic.Int64 // unsigned, badly signed or unauthenticated

	mu       sync.Mutex
	accepted map[string]int       // webhook-id (the event id) -> 2xx answers
	lastSeen map[string]time.Time // User-Agent -> last request's arrival
	badSeen  []string
}

func newRollReceiver(t *testing.T, secret, token string) *rollReceiver {
	t.Helper()
	r := &rollReceiver{secret: secret, token: token, accepted: map[string]int{}, lastSeen: map[string]time.Time{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		arrived := time.Now()
		body, _ := io.ReadAll(req.Body)
		ua := req.Header.Get("User-Agent")
		r.mu.Lock()
		r.lastSeen[ua] = arrived
		r.mu.Unlock()
		ref, err := standardwebhooks.NewWebhook(r.secret)
		if err == nil {
			err = ref.Verify(body, req.Header)
		}
		if err == nil && req.Header.Get("Authorization") != "Bearer "+r.token {
			err = errors.New("missing or wrong Authorization")
		}
		if err != nil {
			r.bad.Add(1)
			r.mu.Lock()
			r.badSeen = append(r.badSeen, fmt.Sprintf("%s from %s", err, ua))
			r.mu.Unlock()
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if r.requests.Add(1)%25 == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		r.mu.Lock()
		r.accepted[req.Header.Get(webhook.HeaderID)]++
		r.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *rollReceiver) acceptedCount(eventID string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.accepted[eventID]
}

func (r *rollReceiver) last(ua string) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastSeen[ua]
}

// rollFixture is a schema migrated by the current code, with keys, a
// handler subscription and a webhook subscription whose signing secret
// and Authorization header are sealed, and the previous release's worker.
type rollFixture struct {
	b       *bundle
	bin     string
	keySpec string // the same key, as the previous release's ParseKeys reads it
	recv    *rollReceiver
	logs    *testutil.LockedBuffer
}

func newRollFixture(t *testing.T) *rollFixture {
	t.Helper()
	bin := buildPrevious(t)
	k := newTestKey(t, "roll-2030")
	kp, err := keys.Static(k)
	if err != nil {
		t.Fatal(err)
	}
	f := &rollFixture{bin: bin, keySpec: k.ID + ":" + base64.StdEncoding.EncodeToString(k.Secret), logs: &testutil.LockedBuffer{}}
	f.b = setup(t, &Config{Keys: kp, Logger: slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	s := `"` + f.b.schema + `"`
	if _, err := f.b.db.Exec(`CREATE TABLE ` + s + `.roll_enqueued (origin text, seq int, event_id uuid NOT NULL, PRIMARY KEY (origin, seq));
		CREATE TABLE ` + s + `.roll_delivery (id bigserial PRIMARY KEY, queue_id uuid NOT NULL, event_id uuid NOT NULL,
			origin text NOT NULL, seq int NOT NULL, worker text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())`); err != nil {
		t.Fatal(err)
	}
	f.recv = newRollReceiver(t, newSecret(t), "roll-token-"+uuid.NewString())
	fast := subconfig.Duration(100 * time.Millisecond)
	ctx := ctxT(t)
	if _, err := f.b.ob.Subscribe(ctx, Subscription{Name: "roll-handler", TopicPattern: "roll.#", CallbackMethod: "roll",
		Config: subconfig.Config{BackoffInitial: fast}}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.b.ob.Subscribe(ctx, Subscription{Name: "roll-webhook", TopicPattern: "roll.#", WebhookURL: f.recv.srv.URL + "/hook",
		Config: subconfig.Config{Secrets: []string{f.recv.secret}, Headers: map[string]string{"Authorization": "Bearer " + f.recv.token},
			RetrySchedule: []subconfig.Duration{fast}, MaxRetries: intPtr(50)}}); err != nil {
		t.Fatal(err)
	}
	// Sealed at rest: neither the secret nor the token is in the table.
	f.b.assertNowhere(t, append(secretForms(t, f.recv.secret), f.recv.token))
	return f
}

// startPrevious starts the previous release's worker.
func (f *rollFixture) startPrevious(t *testing.T, name string, events int, args ...string) *proc {
	t.Helper()
	full := append([]string{"-keys", f.keySpec, "-origin", name, "-events", fmt.Sprint(events), "-rate", "150",
		"-ua", "outboxkit-test-" + name}, args...)
	return startWorker(t, f.bin, f.b, name, name+"-"+f.b.schema, full...)
}

// current is the current code's side: a dispatcher (handler and webhooks)
// and an enqueuer on one handle.
type current struct {
	name      string
	cancelRun context.CancelFunc
	runDone   chan error // Run's result
	finished  chan struct{}
	stopOnce  sync.Once
	stop      chan struct{} // closed to stop the enqueuer
	enqDone   chan struct{}
	enqueued  atomic.Int64
	enqErr    error     // why the enqueuer stopped early, read after enqDone
	returned  time.Time // when Run returned, read after runDone
}

// stopEnqueuer stops the enqueuer and waits for it.
func (c *current) stopEnqueuer() {
	c.stopOnce.Do(func() { close(c.stop) })
	<-c.enqDone
}

// startCurrent runs a dispatcher and, when events is not 0, an enqueuer
// (events < 0: until stopped) of ob, named name.
func (f *rollFixture) startCurrent(t *testing.T, ob *Outbox, name string, events int) *current {
	t.Helper()
	c := &current{name: name, runDone: make(chan error, 1), finished: make(chan struct{}), stop: make(chan struct{}), enqDone: make(chan struct{})}
	d, err := ob.NewDispatcher(DispatcherConfig{
		Name: name, Workers: 16, PollInterval: 100 * time.Millisecond, LeaseDuration: 2 * time.Second,
		RescueInterval: 200 * time.Millisecond, ShutdownTimeout: 5 * time.Second, ListenDSN: dsnApp(name + "-" + f.b.schema),
		CompletedRetention: -1, FailedRetention: -1, BackoffInitial: 100 * time.Millisecond,
		Webhooks: &WebhookOptions{AllowedNetworks: loopbackNetworks, UserAgent: "outboxkit-test-" + name},
	})
	if err != nil {
		t.Fatal(err)
	}
	ins := `INSERT INTO "` + f.b.schema + `".roll_delivery (queue_id, event_id, origin, seq, worker) VALUES ($1, $2, $3, $4, $5)`
	d.Handle("roll", Typed(func(ctx context.Context, dl *Delivery, p struct {
		Origin string `json:"origin"`
		Seq    int    `json:"seq"`
	}) error {
		_, err := f.b.db.ExecContext(ctx, ins, dl.ID, dl.EventID, p.Origin, p.Seq, name)
		return err
	}))
	ctx, cancel := context.WithCancel(context.Background())
	c.cancelRun = cancel
	go func() { err := d.Run(ctx); c.returned = time.Now(); c.runDone <- err; close(c.finished) }()
	t.Cleanup(func() {
		cancel()
		c.stopEnqueuer()
		select {
		case <-c.finished:
		case <-time.After(30 * time.Second):
			t.Errorf("Run of %s did not return after cancel", name)
		}
	})
	go func() {
		defer close(c.enqDone)
		tick := time.NewTicker(time.Second / 150)
		defer tick.Stop()
		for seq := 0; events < 0 || seq < events; seq++ {
			select {
			case <-c.stop:
				return
			case <-tick.C:
			}
			if err := f.enqueue(ob, name, seq); err != nil {
				c.enqErr = err
				return
			}
			c.enqueued.Add(1)
		}
	}()
	return c
}

// enqueue commits one event of origin and its roll_enqueued row together.
func (f *rollFixture) enqueue(ob *Outbox, origin string, seq int) error {
	ctx := context.Background()
	tx, err := ob.DB().BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	res, err := ob.Enqueue(ctx, tx, "roll.event", map[string]any{"origin": origin, "seq": seq}, nil)
	if err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO "`+f.b.schema+`".roll_enqueued (origin, seq, event_id) VALUES ($1, $2, $3)`,
		origin, seq, res.EventID); err != nil {
		return err
	}
	return tx.Commit()
}

// enqueuedBy counts the committed events of origin.
func (f *rollFixture) enqueuedBy(t testing.TB, origin string) int64 {
	t.Helper()
	return f.b.q(t, `SELECT count(*) FROM {s}.roll_enqueued WHERE origin = $1`, origin)
}

// drained waits until every committed event has its two rows, completed.
func (f *rollFixture) drained(t *testing.T, timeout time.Duration) {
	t.Helper()
	waitUntil(t, timeout, "every row delivered", func() bool {
		return f.b.q(t, `SELECT count(*) FROM {s}.event_queue WHERE status <> 'COMPLETED'`) == 0 &&
			f.b.q(t, `SELECT count(*) FROM {s}.event_queue`) == 2*f.b.q(t, `SELECT count(*) FROM {s}.roll_enqueued`)
	}, func() string {
		return fmt.Sprintf("%d rows not completed, %d rows for %d events", f.b.q(t, `SELECT count(*) FROM {s}.event_queue WHERE status <> 'COMPLETED'`),
			f.b.q(t, `SELECT count(*) FROM {s}.event_queue`), f.b.q(t, `SELECT count(*) FROM {s}.roll_enqueued`))
	})
}

// rollFigures are a run's counts.
type rollFigures struct {
	Events, HandlerDeliveries, WebhooksAccepted, HandlerDuplicates, WebhookDuplicates, Unsigned int64
	ByWorker                                                                                    map[string]int64
}

// check asserts that nothing was lost, that every duplicate is a row the
// fenced process held when it stopped (inFlight, queue ids), and that no
// webhook went out unsigned or unauthenticated; it returns the figures.
func (f *rollFixture) check(t *testing.T, inFlight map[uuid.UUID]bool) rollFigures {
	t.Helper()
	b := f.b
	fig := rollFigures{ByWorker: map[string]int64{}}
	fig.Events = b.q(t, `SELECT count(*) FROM {s}.roll_enqueued`)
	if n := b.q(t, `SELECT count(*) FROM {s}.system_event`); n != fig.Events {
		t.Errorf("%d events stored, %d committed by the enqueuers", n, fig.Events)
	}
	if n := b.q(t, `SELECT count(*) FROM {s}.roll_enqueued e WHERE NOT EXISTS (SELECT 1 FROM {s}.roll_delivery d WHERE d.event_id = e.event_id)`); n != 0 {
		t.Errorf("%d events never reached the handler (lost)", n)
	}
	rows, err := b.db.Query(`SELECT event_id FROM "` + b.schema + `".roll_enqueued`)
	if err != nil {
		t.Fatal(err)
	}
	var events []string
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		events = append(events, id)
	}
	if err := rows.Close(); err != nil {
		t.Fatal(err)
	}
	webhookRowsInFlight := map[string]bool{}
	for id := range inFlight {
		var ev string
		if err := b.db.QueryRow(`SELECT q.event_id FROM "`+b.schema+`".event_queue q JOIN "`+b.schema+`".event_subscription s
			ON s.id = q.subscription_id WHERE q.id = $1 AND s.subscriber_name = 'roll-webhook'`, id).Scan(&ev); err == nil {
			webhookRowsInFlight[ev] = true
		}
	}
	for _, ev := range events {
		n := f.recv.acceptedCount(ev)
		fig.WebhooksAccepted += int64(n)
		switch {
		case n == 0:
			t.Errorf("event %s never reached the webhook receiver (lost)", ev)
		case n > 1:
			fig.WebhookDuplicates += int64(n - 1)
			if !webhookRowsInFlight[ev] {
				t.Errorf("event %s accepted %d times by the receiver, and its row was not in flight at the fence", ev, n)
			}
		}
	}
	for id, n := range b.duplicatesIn(t, "roll_delivery") {
		fig.HandlerDuplicates += int64(n - 1)
		if !inFlight[id] {
			t.Errorf("queue row %s handled %d times, and was not in flight at the fence", id, n)
		}
	}
	fig.HandlerDeliveries = b.q(t, `SELECT count(*) FROM {s}.roll_delivery`)
	wrows, err := b.db.Query(`SELECT worker, count(*) FROM "` + b.schema + `".roll_delivery GROUP BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	for wrows.Next() {
		var w string
		var n int64
		if err := wrows.Scan(&w, &n); err != nil {
			t.Fatal(err)
		}
		fig.ByWorker[w] = n
	}
	if err := wrows.Close(); err != nil {
		t.Fatal(err)
	}
	fig.Unsigned = f.recv.bad.Load()
	if fig.Unsigned != 0 {
		f.recv.mu.Lock()
		t.Errorf("%d webhooks unsigned or unauthenticated: %v", fig.Unsigned, f.recv.badSeen)
		f.recv.mu.Unlock()
	}
	return fig
}

// TestRollingDeployBesideV02: the previous release (v0.2) and this one run
// side by side on a schema this one migrated (version 10, which admits
// v0.2), both enqueuing and delivering to a handler and a webhook
// subscription whose secret and credential are sealed. Then a later
// release's migration raises the fence above this release: this release
// stops at once (its dispatcher returns a *SchemaFenceError, its Enqueue
// refuses), v0.2 (which predates the fence) goes on, and the later
// release takes over the rows this one held. Nothing is lost, no row is
// delivered twice unless this release held it when it was fenced, and the
// receiver verifies every webhook.
func TestRollingDeployBesideV02(t *testing.T) {
	t.Parallel()
	f := newRollFixture(t)
	b := f.b
	start := time.Now()

	// A v0.2 process that calls Migrate at start-up cannot start on
	// version 10: golang-migrate of v0.2 has no file for it (see the guide).
	mig := f.startPrevious(t, "v02-migrate", 0, "-migrate")
	select {
	case <-mig.done:
	case <-time.After(60 * time.Second):
		t.Fatal("v0.2 with -migrate did not exit")
	}
	var exit *exec.ExitError
	if !errors.As(mig.err, &exit) || exit.ExitCode() != 3 || !strings.Contains(mig.out.String(), "no migration found for version 10") {
		t.Fatalf("v0.2's Migrate on version 10: %v\n%s", mig.err, mig.out.String())
	}

	t.Logf("%s: v0.2's Migrate refused version 10", time.Since(start).Round(time.Millisecond))

	// Side by side.
	const previousEvents = 300
	prev := f.startPrevious(t, "v02", previousEvents)
	cur := f.startCurrent(t, b.ob, "v03", -1)
	waitUntil(t, 60*time.Second, "both releases enqueuing and delivering", func() bool {
		return f.enqueuedBy(t, "v02") >= 100 && cur.enqueued.Load() >= 100 &&
			b.q(t, `SELECT count(DISTINCT worker) FROM {s}.roll_delivery WHERE worker IN ('v02', 'v03')`) == 2 &&
			!f.recv.last("outboxkit-test-v02").IsZero() && !f.recv.last("outboxkit-test-v03").IsZero()
	}, func() string {
		return fmt.Sprintf("%d of v0.2's events; %s", f.enqueuedBy(t, "v02"), prev.out.String())
	})

	// A later release's migration raises the fence above this release.
	t.Logf("%s: side by side", time.Since(start).Round(time.Millisecond))
	fencedAt := time.Now()
	futureMigration(t, b.db, b.schema, 11, 11)
	var runErr error
	select {
	case runErr = <-cur.runDone:
	case <-time.After(20 * time.Second):
		t.Fatal("this release's dispatcher did not stop after the fence moved")
	}
	stoppedIn := cur.returned.Sub(fencedAt)
	if fe := asFence(t, "Run", runErr); !fe.TooOld() || fe.MinRelease != 11 {
		t.Fatalf("Run: %+v", fe)
	}
	// Held rows: claimed by this release, outcome not written.
	inFlight := b.queueIDs(t, `status = 'PROCESSING' AND locked_by LIKE 'v03/%'`)
	select {
	case <-cur.enqDone:
	case <-time.After(20 * time.Second):
		t.Fatal("this release's enqueuer was not refused")
	}
	if fe := asFence(t, "Enqueue", cur.enqErr); !fe.TooOld() {
		t.Fatalf("Enqueue: %+v", fe)
	}
	if out := f.logs.String(); !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "schema fenced") {
		t.Fatalf("no Error log saying why:\n%s", out)
	}

	// The later release (played by this code judging itself release 11)
	// takes over beside v0.2, which does not read the fence.
	future := handleFor(t, b, Config{Logger: b.ob.log}, 11)
	fut := f.startCurrent(t, future, "v04", 0)
	waitUntil(t, 60*time.Second, "the rows this release held, rescued", func() bool {
		return b.q(t, `SELECT count(*) FROM {s}.event_queue WHERE status = 'PROCESSING' AND locked_by LIKE 'v03/%'`) == 0
	}, nil)
	t.Logf("%s: held rows rescued", time.Since(start).Round(time.Millisecond))
	waitUntil(t, 60*time.Second, "v0.2's events enqueued", func() bool { return f.enqueuedBy(t, "v02") == previousEvents },
		func() string { return prev.out.String() })
	prev.stop(t, 30*time.Second)
	if !strings.Contains(prev.out.String(), fmt.Sprintf("enqueued %d", previousEvents)) {
		t.Fatalf("v0.2's output: %s", prev.out.String())
	}
	f.drained(t, 60*time.Second)
	t.Logf("%s: drained", time.Since(start).Round(time.Millisecond))
	fut.cancelRun()
	if err := <-fut.runDone; err != nil {
		t.Fatalf("the later release's Run: %v", err)
	}

	// And the rows a rescue took from it (their reason may have been
	// replaced since by a failed attempt).
	for id := range b.queueIDs(t, `failure_reason LIKE 'lease expired: dispatcher v03/%'`) {
		inFlight[id] = true
	}
	fig := f.check(t, inFlight)
	// This release sent nothing once stopped (a request it sent as it was
	// cut off may arrive a moment later).
	if last := f.recv.last("outboxkit-test-v03"); last.After(cur.returned.Add(500 * time.Millisecond)) {
		t.Errorf("a webhook of the fenced release arrived %s after its Run returned", last.Sub(cur.returned))
	}
	if n := b.q(t, `SELECT count(*) FROM {s}.roll_delivery WHERE worker = 'v03' AND at > $1`, cur.returned.Add(500*time.Millisecond)); n != 0 {
		t.Errorf("%d handler runs of the fenced release after its Run returned", n)
	}
	if fig.HandlerDuplicates+fig.WebhookDuplicates > int64(len(inFlight)) {
		t.Errorf("%d duplicates, %d rows in flight at the fence", fig.HandlerDuplicates+fig.WebhookDuplicates, len(inFlight))
	}
	if fig.ByWorker["v02"] == 0 || fig.ByWorker["v03"] == 0 || fig.ByWorker["v04"] == 0 {
		t.Errorf("deliveries by worker %v: each release should have delivered", fig.ByWorker)
	}
	t.Logf("rolling deploy: %d events (v0.2 %d, v0.3 %d), %d handler deliveries %v, %d webhooks accepted (%d requests); "+
		"duplicates %d handler + %d webhook, %d rows in flight at the fence; unsigned or unauthenticated webhooks %d; "+
		"v0.3 stopped %s after the fence moved; %s in all",
		fig.Events, f.enqueuedBy(t, "v02"), f.enqueuedBy(t, "v03"), fig.HandlerDeliveries, fig.ByWorker, fig.WebhooksAccepted,
		f.recv.requests.Load(), fig.HandlerDuplicates, fig.WebhookDuplicates, len(inFlight), fig.Unsigned,
		stoppedIn.Round(time.Millisecond), time.Since(start).Round(time.Second))
}

// TestRollbackToV02: the way back from this release to v0.2, under load,
// as docs/migrating-from-0.2.md ("Upgrade and rollback") writes it.
// MigrateTo(9) reverts migration 10 while this release runs: it keeps
// every row (the fence is all it drops), this release keeps working on
// version 9, and the sealed secrets stay as they are, which v0.2 reads.
// v0.2 processes then start, their own start-up Migrate included, and take
// over; nothing is lost or sent twice, and every webhook verifies.
func TestRollbackToV02(t *testing.T) {
	t.Parallel()
	f := newRollFixture(t)
	b := f.b
	ctx := ctxT(t)
	cur := f.startCurrent(t, b.ob, "v03", -1)
	waitUntil(t, 60*time.Second, "this release delivering", func() bool {
		return b.q(t, `SELECT count(*) FROM {s}.roll_delivery`) > 50
	}, nil)

	before := f.snapshot(t)
	if err := b.ob.MigrateTo(ctx, 9); err != nil {
		t.Fatal(err)
	}
	if n := b.q(t, `SELECT count(*) FROM pg_tables WHERE schemaname = $1 AND tablename = 'outboxkit_fence'`, b.schema); n != 0 {
		t.Fatal("the fence is still there")
	}
	var version int
	if err := b.db.QueryRow(`SELECT version FROM "` + b.schema + `".` + MigrationsTable).Scan(&version); err != nil || version != 9 {
		t.Fatalf("history at %d (%v)", version, err)
	}
	after := f.snapshot(t)
	for table, ids := range before.ids {
		for id := range ids {
			if !after.ids[table][id] {
				t.Errorf("%s row %s lost by the down migration", table, id)
			}
		}
	}
	for name, cfg := range before.configs {
		if after.configs[name] != cfg {
			t.Errorf("subscription %s's stored config changed: %s -> %s", name, cfg, after.configs[name])
		}
	}
	// This release still runs on version 9: its enqueuer and dispatcher
	// went on.
	n := cur.enqueued.Load()
	waitUntil(t, 30*time.Second, "this release enqueuing on version 9", func() bool { return cur.enqueued.Load() > n+20 }, nil)
	select {
	case err := <-cur.runDone:
		t.Fatalf("this release's dispatcher stopped on version 9: %v", err)
	default:
	}

	// v0.2 starts, Migrate at start-up included (nothing to apply at 9),
	// and takes over.
	const previousEvents = 300
	prev := f.startPrevious(t, "v02", previousEvents, "-migrate")
	waitUntil(t, 60*time.Second, "v0.2 migrated, enqueuing and delivering", func() bool {
		return strings.Contains(prev.out.String(), "migrated") && f.enqueuedBy(t, "v02") > 0 &&
			b.q(t, `SELECT count(*) FROM {s}.roll_delivery WHERE worker = 'v02'`) > 0 && !f.recv.last("outboxkit-test-v02").IsZero()
	}, func() string { return prev.out.String() })
	cur.stopEnqueuer()
	if cur.enqErr != nil {
		t.Fatalf("this release's enqueuer: %v", cur.enqErr)
	}
	cur.cancelRun()
	if err := <-cur.runDone; err != nil {
		t.Fatalf("this release's Run: %v", err)
	}
	waitUntil(t, 60*time.Second, "v0.2's events enqueued", func() bool { return f.enqueuedBy(t, "v02") == previousEvents },
		func() string { return prev.out.String() })
	f.drained(t, 60*time.Second)
	prev.stop(t, 30*time.Second)
	fig := f.check(t, nil)
	t.Logf("rollback: %d events (v0.3 %d, v0.2 %d), %d handler deliveries %v, %d webhooks accepted; duplicates %d + %d; unsigned %d",
		fig.Events, f.enqueuedBy(t, "v03"), f.enqueuedBy(t, "v02"), fig.HandlerDeliveries, fig.ByWorker, fig.WebhooksAccepted,
		fig.HandlerDuplicates, fig.WebhookDuplicates, fig.Unsigned)

	// And forward again: Migrate brings the fence back.
	if err := b.ob.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	if n := b.q(t, `SELECT count(*) FROM {s}.outboxkit_fence WHERE schema_version = 10 AND min_release = 9`); n != 1 {
		t.Fatal("fence not restored")
	}
}

// rollSnapshot is the ids of every library table's rows and the stored
// subscription configs.
type rollSnapshot struct {
	ids     map[string]map[string]bool
	configs map[string]string
}

func (f *rollFixture) snapshot(t *testing.T) rollSnapshot {
	t.Helper()
	s := rollSnapshot{ids: map[string]map[string]bool{}, configs: map[string]string{}}
	for _, table := range []string{"system_event", "event_queue", "event_subscription", "integration_log", "security_event"} {
		s.ids[table] = map[string]bool{}
		rows, err := f.b.db.Query(`SELECT id::text FROM "` + f.b.schema + `".` + table)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				t.Fatal(err)
			}
			s.ids[table][id] = true
		}
		if err := rows.Close(); err != nil {
			t.Fatal(err)
		}
	}
	rows, err := f.b.db.Query(`SELECT subscriber_name, subscription_config::text FROM "` + f.b.schema + `".event_subscription`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var cfg sql.NullString
		if err := rows.Scan(&name, &cfg); err != nil {
			t.Fatal(err)
		}
		s.configs[name] = cfg.String
	}
	return s
}
