package outbox_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/outboxkit/outbox"
)

// A dispatcher stops with a *SchemaFenceError when the schema does not
// admit its release: a later release's migration raised the version fence
// (deploy that release here), or the schema lacks migrations this release
// needs (apply them). Either way, let the process exit loudly.
func ExampleSchemaFenceError() {
	ob, dsn, done := exampleOutbox()
	defer done()
	d, err := ob.NewDispatcher(outbox.DispatcherConfig{ListenDSN: dsn})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // this example stops at once; a service runs until shutdown
	err = d.Run(ctx)
	var fenced *outbox.SchemaFenceError
	switch {
	case errors.As(err, &fenced) && fenced.TooOld():
		log.Fatalf("this release (%d) is fenced off by schema version %d: deploy release %d or later", fenced.Release, fenced.Schema, fenced.MinRelease)
	case errors.As(err, &fenced):
		log.Fatalf("the schema (version %d) lacks migrations this release needs: %v", fenced.Schema, err)
	case err != nil:
		log.Fatal(err)
	}
	fmt.Println("stopped")
	// Output: stopped
}

// Reredact applies redaction rules changed to mask more to the rows the
// logs already hold; a run cut off resumes from its cursor.
func ExampleOutbox_Reredact() {
	ob, _, done := exampleOutbox()
	defer done()
	ctx := context.Background()
	opts := &outbox.ReredactOptions{} // Redactor: the new rules; nil: the handle's
	res, err := ob.Reredact(ctx, opts)
	if err != nil && !errors.Is(err, outbox.ErrSchemaFenced) {
		// Cut off (a lost connection, a deadline): go on from where it
		// stopped; the counts are then those of the rest.
		opts.Resume = res.Cursor
		res, err = ob.Reredact(ctx, opts)
	}
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("integration_log: %d rewritten, security_event: %d rewritten\n", res.IntegrationLog.Changed, res.SecurityEvent.Changed)
	// Output: integration_log: 0 rewritten, security_event: 0 rewritten
}
