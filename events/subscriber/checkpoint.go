package subscriber

import (
	"container/heap"
	"sync"
)

// tracker computes the checkpoint: the highest position such that every
// position delivered at or before it is done. Handlers finish out of order
// when several run at once, so a finished event beyond an unfinished one
// must not move the checkpoint.
type tracker struct {
	mu    sync.Mutex
	floor uint64
	open  posHeap          // delivered positions not yet known to be below the floor
	state map[uint64]bool  // position -> done
}

func newTracker(floor uint64) *tracker {
	return &tracker{floor: floor, state: make(map[uint64]bool)}
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
	return t.floor
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
