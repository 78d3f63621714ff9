package command

import (
	"context"
	"sync"

	"github.com/marketledger/ledger/events"
)

// turns serializes the commands of one aggregate within one runner: they
// take turns, in the order they arrived, instead of racing. Commands that
// race on a hot aggregate (a flash sale on one listing) would otherwise all
// load the same version, all but one lose at the append, and reload: each
// round costs every contender a round trip to the log, and with enough
// contenders a command loses every one of its MaxAttempts. Taking turns, a
// command decides on the state its predecessor left in the cache and wins
// its first append; only writers in other processes can still race it.
//
// Commands of different aggregates never wait for each other: the group
// commit still puts their decisions in one batch.
type turns struct {
	mu sync.Mutex
	m  map[events.AggregateRef]*turn
}

// turn is one aggregate's queue: a one-slot semaphore (a channel, whose
// waiting senders are served first come, first served) and how many
// commands hold or wait for it.
type turn struct {
	slot    chan struct{}
	waiters int
}

// take waits for ref's turn and returns the function that ends it. It
// gives up when ctx ends, returning ctx's error.
func (ts *turns) take(ctx context.Context, ref events.AggregateRef) (func(), error) {
	ts.mu.Lock()
	if ts.m == nil {
		ts.m = make(map[events.AggregateRef]*turn)
	}
	t := ts.m[ref]
	if t == nil {
		t = &turn{slot: make(chan struct{}, 1)}
		ts.m[ref] = t
	}
	t.waiters++
	ts.mu.Unlock()
	select {
	case t.slot <- struct{}{}:
		return func() {
			<-t.slot
			ts.leave(ref, t)
		}, nil
	case <-ctx.Done():
		ts.leave(ref, t)
		return nil, ctx.Err()
	}
}

// leave forgets ref's queue once nobody holds or waits for it, so that the
// map holds only the aggregates being decided.
func (ts *turns) leave(ref events.AggregateRef, t *turn) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if t.waiters--; t.waiters == 0 {
		delete(ts.m, ref)
	}
}
