// Package checkpoint computes where a follower of the log may record its
// progress when it handles events out of order. It does no I/O: the
// follower writes the position it hands out wherever it keeps its
// checkpoint (a key-value bucket, a consumer's acknowledgement).
package checkpoint

import (
	"container/heap"
	"sync"
)

// Tracker computes a follower's checkpoint: the highest position such that
// every position delivered at or before it is done. Handlers finish out of
// order when several run at once, so a finished event beyond an unfinished
// one must not move the checkpoint: a restart from the checkpoint then
// handles every unfinished event again, and skips none.
//
// The follower tells it, in delivery order, of every position it was
// delivered: Start for one it handles, Pass for one that needs no handling,
// and Done once a started one is handled. A position at or below the
// checkpoint given again (a redelivery) is ignored. Positions the follower
// was never delivered (filtered out) are not waited for.
//
// Advance and Retreat serve a follower that writes the checkpoint in the
// background: Advance hands out the checkpoint when it moved past what was
// last handed out, Retreat hands it out again after its write failed, and
// Moved signals when it may have moved.
//
// Concurrency contract: every method is safe for concurrent use; Start and
// Pass must be called in delivery order, Done from any goroutine.
type Tracker struct {
	mu      sync.Mutex
	floor   uint64          // every position delivered at or before it is done
	open    posHeap         // delivered positions above the floor, done or not
	state   map[uint64]bool // position in open -> done
	written uint64          // last position handed out by Advance
	moved   chan struct{}   // signalled when the floor may have moved
}

// New returns a tracker whose checkpoint is from: every position up to it
// is done.
func New(from uint64) *Tracker {
	return &Tracker{floor: from, written: from, state: make(map[uint64]bool), moved: make(chan struct{}, 1)}
}

// Start records that pos was delivered and is being handled.
func (t *Tracker) Start(pos uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.startLocked(pos)
}

func (t *Tracker) startLocked(pos uint64) bool {
	if pos <= t.floor {
		return false
	}
	if _, ok := t.state[pos]; !ok {
		t.state[pos] = false
		heap.Push(&t.open, pos)
	}
	return true
}

// Done records that pos, started before, is handled, and moves the
// checkpoint over every leading done position.
func (t *Tracker) Done(pos uint64) {
	t.mu.Lock()
	t.doneLocked(pos)
	t.mu.Unlock()
	t.signal()
}

func (t *Tracker) doneLocked(pos uint64) {
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

// Pass records that pos was delivered and needs no handling.
func (t *Tracker) Pass(pos uint64) {
	t.mu.Lock()
	switch {
	case pos <= t.floor:
	case t.open.Len() == 0:
		t.floor = pos // nothing in progress: no need to remember it
	case t.startLocked(pos):
		t.doneLocked(pos)
	}
	t.mu.Unlock()
	t.signal()
}

// Checkpoint returns the highest position at or below which every
// delivered position is done.
func (t *Tracker) Checkpoint() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.floor
}

// Moved is signalled (it holds at most one signal) whenever the checkpoint
// may have moved or must be handed out again.
func (t *Tracker) Moved() <-chan struct{} { return t.moved }

// Advance returns the checkpoint if it moved past what Advance last
// returned (at first, New's from).
func (t *Tracker) Advance() (uint64, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.floor <= t.written {
		return 0, false
	}
	t.written = t.floor
	return t.floor, true
}

// Retreat forgets that Advance returned pos, after writing it failed, so
// that the next Advance returns the checkpoint again.
func (t *Tracker) Retreat(pos uint64) {
	t.mu.Lock()
	if t.written == pos {
		t.written = 0
	}
	t.mu.Unlock()
	t.signal()
}

func (t *Tracker) signal() {
	select {
	case t.moved <- struct{}{}:
	default:
	}
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
