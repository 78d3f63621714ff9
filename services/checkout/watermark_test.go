package checkout

import "testing"

// TestWatermarkHoldsBackAtTheOldestUnfinished: the checkpoint never passes
// an event still being handled, however many later ones finished.
func TestWatermarkHoldsBackAtTheOldestUnfinished(t *testing.T) {
	w := newWatermark(10)
	if _, ok := w.advance(); ok {
		t.Fatal("advanced with nothing delivered")
	}
	w.start(11)
	w.pass(12)
	w.start(13)
	w.start(14)
	w.finish(13)
	w.finish(14)
	if p, ok := w.advance(); ok {
		t.Fatalf("advanced to %d while 11 is in progress", p)
	}
	w.finish(11)
	if p, ok := w.advance(); !ok || p != 14 {
		t.Fatalf("advance = %d %t; want 14", p, ok)
	}
	w.start(15)
	w.pass(16)
	if p, ok := w.advance(); ok {
		t.Fatalf("advanced to %d while 15 is in progress", p)
	}
	w.retreat(14) // writing 14 failed: it is handed out again
	if p, ok := w.advance(); !ok || p != 14 {
		t.Fatalf("after a failed write advance = %d %t; want 14 again", p, ok)
	}
	w.finish(15)
	if p, ok := w.advance(); !ok || p != 16 {
		t.Fatalf("advance = %d %t; want 16", p, ok)
	}
}
