package subscriber

import (
	"sync"

	"github.com/marketledger/ledger/runtime/checkpoint"
)

// tracker computes the subscription's checkpoint: checkpoint.Tracker's,
// the highest position such that every position delivered at or before it
// is done, corrected by the server's acknowledgement floor.
//
// The local computation is exact only for positions this process was the
// first to receive. A previous process may have left events delivered and
// unacknowledged (it crashed, or stopped with a fetch in flight); the server
// delivers them again only after the ack wait, and until then this process
// cannot tell them from positions the filter skipped. So up to the last
// position delivered before this process started (the barrier), the
// checkpoint is the server's acknowledgement floor, which counts them.
type tracker struct {
	local *checkpoint.Tracker

	mu      sync.Mutex
	server  uint64 // the server's ack floor, as last read
	barrier uint64 // last position delivered before this process started, when some were unacked
}

func newTracker(ackFloor, barrier uint64) *tracker {
	if barrier <= ackFloor {
		barrier = 0
	}
	return &tracker{local: checkpoint.New(ackFloor), server: ackFloor, barrier: barrier}
}

// uncertain reports whether the checkpoint still depends on deliveries made
// before this process started.
func (t *tracker) uncertain() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.server < t.barrier
}

// serverFloor records the server's ack floor.
func (t *tracker) serverFloor(f uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.server = max(t.server, f)
}

// start records that pos was delivered (again, for a redelivery).
func (t *tracker) start(pos uint64) { t.local.Start(pos) }

// done records that pos is handled and acknowledged.
func (t *tracker) done(pos uint64) { t.local.Done(pos) }

func (t *tracker) checkpoint() uint64 {
	floor := t.local.Checkpoint()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.server < t.barrier {
		return min(floor, t.server)
	}
	return max(floor, t.server)
}
