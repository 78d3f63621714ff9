package subscriber

import "testing"

func TestTrackerWaitsForEveryEarlierPosition(t *testing.T) {
	tr := newTracker(10, 0)
	for _, p := range []uint64{11, 13, 14} { // 12 was filtered out
		tr.start(p)
	}
	tr.done(14)
	tr.done(13)
	if got := tr.checkpoint(); got != 10 {
		t.Errorf("checkpoint %d while 11 is open, want 10", got)
	}
	tr.done(11)
	if got := tr.checkpoint(); got != 14 {
		t.Errorf("checkpoint %d, want 14", got)
	}
	tr.start(12) // late and below the floor: a stray redelivery
	if got := tr.checkpoint(); got != 14 {
		t.Errorf("checkpoint %d, want 14", got)
	}
}

func TestTrackerTrustsTheServerBelowTheBarrier(t *testing.T) {
	tr := newTracker(5, 9) // 6..9 were delivered to a previous process
	tr.start(10)
	tr.done(10)
	if got := tr.checkpoint(); got != 5 {
		t.Errorf("checkpoint %d before the server confirms 6..9, want 5", got)
	}
	tr.serverFloor(10)
	if got := tr.checkpoint(); got != 10 {
		t.Errorf("checkpoint %d, want 10", got)
	}
}
