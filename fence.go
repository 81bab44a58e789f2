package outbox

import (
	"context"
	"errors"
	"fmt"

	"github.com/outboxkit/outbox/internal/fence"
)

// allow is the version fence's word on a write through q (nil: the pool):
// nil while the schema admits this process, a *SchemaFenceError when it
// does not, or the error of a fence that could not be read. It sends SQL
// only when the handle's verdict is missing or older than the fence
// interval (30 s), never per event.
func (o *Outbox) allow(ctx context.Context, q Querier, op string) error {
	var err error
	if q == nil {
		err = o.fence.Allow(ctx, nil)
	} else {
		err = o.fence.Allow(ctx, q)
	}
	if err == nil {
		return nil
	}
	if fenced := fenceError(err); fenced != err {
		return fenced
	}
	return fmt.Errorf("outbox: %s: %w", op, err)
}

// fenceError turns the fence's verdict into a *SchemaFenceError; other
// errors pass through.
func fenceError(err error) error {
	var fe *fence.Error
	if !errors.As(err, &fe) {
		return err
	}
	return &SchemaFenceError{Release: fe.Release, NeedsSchema: fe.MinSchema, Schema: fe.Schema, MinRelease: fe.MinRelease}
}
