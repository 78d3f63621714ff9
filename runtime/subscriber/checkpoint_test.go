package subscriber

import "testing"

// How the checkpoint waits for earlier positions is checkpoint.Tracker's
// (runtime/checkpoint); this is what the subscription adds to it.
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
