package checkpoint

import "testing"

// The checkpoint waits for every earlier delivered position, however many
// later ones are done, and ignores a late redelivery below it.
func TestTrackerWaitsForEveryEarlierPosition(t *testing.T) {
	tr := New(10)
	for _, p := range []uint64{11, 13, 14} { // 12 was filtered out
		tr.Start(p)
	}
	tr.Done(14)
	tr.Done(13)
	if got := tr.Checkpoint(); got != 10 {
		t.Errorf("checkpoint %d while 11 is open, want 10", got)
	}
	tr.Done(11)
	if got := tr.Checkpoint(); got != 14 {
		t.Errorf("checkpoint %d, want 14", got)
	}
	tr.Start(12) // late and below the checkpoint: a stray redelivery
	if got := tr.Checkpoint(); got != 14 {
		t.Errorf("checkpoint %d, want 14", got)
	}
}

// Advance never hands out a position past one still being handled, and
// hands a position out again after Retreat (its write failed).
func TestTrackerAdvanceHoldsBackAtTheOldestUnfinished(t *testing.T) {
	tr := New(10)
	if _, ok := tr.Advance(); ok {
		t.Fatal("advanced with nothing delivered")
	}
	tr.Start(11)
	tr.Pass(12)
	tr.Start(13)
	tr.Start(14)
	tr.Done(13)
	tr.Done(14)
	if p, ok := tr.Advance(); ok {
		t.Fatalf("advanced to %d while 11 is in progress", p)
	}
	tr.Done(11)
	if p, ok := tr.Advance(); !ok || p != 14 {
		t.Fatalf("advance = %d %t; want 14", p, ok)
	}
	tr.Start(15)
	tr.Pass(16)
	if p, ok := tr.Advance(); ok {
		t.Fatalf("advanced to %d while 15 is in progress", p)
	}
	tr.Retreat(14) // writing 14 failed: it is handed out again
	if p, ok := tr.Advance(); !ok || p != 14 {
		t.Fatalf("after a failed write advance = %d %t; want 14 again", p, ok)
	}
	tr.Done(15)
	if p, ok := tr.Advance(); !ok || p != 16 {
		t.Fatalf("advance = %d %t; want 16", p, ok)
	}
	select {
	case <-tr.Moved():
	default:
		t.Error("Moved not signalled after the checkpoint moved")
	}
}

// Positions passed while nothing is in progress move the checkpoint at
// once; a position done twice or never started changes nothing.
func TestTrackerPassAndStrayDone(t *testing.T) {
	tr := New(0)
	tr.Pass(3)
	tr.Pass(5)
	if got := tr.Checkpoint(); got != 5 {
		t.Errorf("checkpoint %d after passing 3 and 5, want 5", got)
	}
	tr.Done(7) // never started
	tr.Start(8)
	tr.Done(8)
	tr.Done(8)
	tr.Pass(4) // below the checkpoint
	if got := tr.Checkpoint(); got != 8 {
		t.Errorf("checkpoint %d, want 8", got)
	}
}
