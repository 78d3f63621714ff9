package subscriber

import (
	"container/heap"
	"sync"
)

// tracker computes the checkpoint: the highest position such that every
// position delivered at or before it is done. Handlers finish out of order
// when several run at once, so a finished event beyond an unfinished one
// must not move the checkpoint.
//
// The local computation is exact only for positions this process was the
// first to receive. A previous process may have left events delivered and
// unacknowledged (it crashed, or stopped with a fetch in flight); the server
// delivers them again only after the ack wait, and until then this process
// cannot tell them from positions the filter skipped. So up to the last
// position delivered before this process started (the barrier), the
// checkpoint is the server's acknowledgement floor, which counts them.
type tracker struct {
	mu      sync.Mutex
	floor   uint64          // local: every position delivered here at or before it is done
	server  uint64          // the server's ack floor, as last read
	barrier uint64          // last position delivered before this process started, when some were unacked
	open    posHeap         // delivered positions not yet below the floor
	state   map[uint64]bool // position -> done
}

func newTracker(ackFloor, barrier uint64) *tracker {
	if barrier <= ackFloor {
		barrier = 0
	}
	return &tracker{floor: ackFloor, server: ackFloor, barrier: barrier, state: make(map[uint64]bool)}
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
func (t *tracker) start(pos uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if pos <= t.floor {
		return
	}
	if _, ok := t.state[pos]; !ok {
		t.state[pos] = false
		heap.Push(&t.open, pos)
	}
}

// done records that pos is handled and acknowledged, and moves the floor
// over every leading done position.
func (t *tracker) done(pos uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.state[pos]; !ok {
		return
	}
	t.state[pos] = true
	for t.open.Len() > 0 && t.state[t.open[0]] {
		p := heap.Pop(&t.open).(uint64)
		delete(t.state, p)
		t.floor = p
	}
}

func (t *tracker) checkpoint() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.server < t.barrier {
		return min(t.floor, t.server)
	}
	return max(t.floor, t.server)
}

type posHeap []uint64

func (h posHeap) Len() int           { return len(h) }
func (h posHeap) Less(i, j int) bool { return h[i] < h[j] }
func (h posHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *posHeap) Push(x any)        { *h = append(*h, x.(uint64)) }
func (h *posHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
