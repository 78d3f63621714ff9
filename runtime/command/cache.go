package command

import (
	"sync"

	"github.com/marketledger/ledger/events"
)

// cacheMax bounds how many aggregates' states a runner keeps.
const cacheMax = 100_000

// cached is an aggregate's state at a version. The state is a private copy
// (Aggregate.Clone): callers only ever get clones of it.
type cached struct {
	state   any
	version uint64
}

// stateCache keeps the newest known state of recently used aggregates. It
// is only an accelerator: the store still checks the expected version of
// every append, so a stale entry costs a conflict and a reload, never a
// wrong decision.
type stateCache struct {
	mu sync.Mutex
	m  map[events.AggregateRef]cached
}

func (c *stateCache) get(ref events.AggregateRef) (cached, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[ref]
	return v, ok
}

func (c *stateCache) put(ref events.AggregateRef, v cached) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= cacheMax {
		// Dropping everything at the bound is crude but keeps the memory
		// bounded without bookkeeping on the hot path.
		c.m = make(map[events.AggregateRef]cached)
	}
	if cur, ok := c.m[ref]; ok && cur.version > v.version {
		return
	}
	c.m[ref] = v
}
