package eventstoredb

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/testkit"
)

// fillLedger appends n decisions over a few aggregates to src and returns
// their event ids in log order.
func fillLedger(t *testing.T, src events.Store, run string, n int) []string {
	t.Helper()
	ctx := context.Background()
	versions := map[events.AggregateRef]uint64{}
	var ids []string
	for i := range n {
		ref := events.AggregateRef{Context: []string{"order", "payment", "listing"}[i%3], ID: fmt.Sprintf("m%s-%d", run, i%5)}
		d := decide(ref, versions[ref], strings.Repeat("s", 1+i%2))
		if i%4 == 0 {
			d = decide(ref, versions[ref], "a", "b", "c")
		}
		a, err := src.Append(ctx, d)
		if err != nil {
			t.Fatalf("append %d: %v", i, err)
		}
		versions[ref] = a.Version
		for _, e := range d.Events {
			ids = append(ids, e.ID)
		}
	}
	return ids
}

// ledgerIDs reads every ledger event of s whose aggregate id starts with
// prefix.
func ledgerIDs(t *testing.T, s events.Store, prefix string) []string {
	t.Helper()
	var out []string
	for e, err := range s.Read(context.Background(), events.Query{}) {
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(e.AggregateID, prefix) {
			out = append(out, e.ID)
		}
	}
	return out
}

func checkMirror(t *testing.T, src events.Store, dst *Store, prefix string) {
	t.Helper()
	want, got := ledgerIDs(t, src, prefix), ledgerIDs(t, dst, prefix)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("mirror holds %d events, the ledger %d, or in another order", len(got), len(want))
	}
}

// runMirrorChecks is the mirror test, against any source and destination.
func runMirrorChecks(t *testing.T, src events.Store, dst *Store, run, cpStream string) {
	ctx := context.Background()
	prefix := "m" + run + "-"
	fillLedger(t, src, run, 30)
	var head uint64
	for e, err := range src.Read(ctx, events.Query{}) {
		if err != nil {
			t.Fatal(err)
		}
		head = e.Position
	}
	var mid uint64
	n := 0
	for e := range src.Read(ctx, events.Query{}) {
		if n++; n == 20 {
			mid = e.Position
			break
		}
	}
	// A first run stops midway; a second resumes from the checkpoint.
	p, err := Mirror(ctx, src, dst, MirrorOptions{To: mid, CheckpointEvery: 7, CheckpointStream: cpStream})
	if err != nil {
		t.Fatalf("mirror up to %d: %v", mid, err)
	}
	if p.Position != mid {
		t.Errorf("first run checkpointed %d, want %d", p.Position, mid)
	}
	if got, _ := MirrorPosition(ctx, dst, cpStream); got != mid {
		t.Errorf("checkpoint = %d, want %d", got, mid)
	}
	p, err = Mirror(ctx, src, dst, MirrorOptions{CheckpointStream: cpStream})
	if err != nil {
		t.Fatalf("resumed mirror: %v", err)
	}
	if p.Position != head {
		t.Errorf("resumed run ended at %d, want the head %d", p.Position, head)
	}
	checkMirror(t, src, dst, prefix)
	// Nothing new: nothing copied.
	if p, err := Mirror(ctx, src, dst, MirrorOptions{CheckpointStream: cpStream}); err != nil || p.Copied != 0 {
		t.Errorf("mirror with nothing new = %+v, %v", p, err)
	}
	// Every mirrored aggregate loads with its chain verified.
	for i := range 5 {
		for _, c := range []string{"order", "payment", "listing"} {
			ref := events.AggregateRef{Context: c, ID: fmt.Sprintf("m%s-%d", run, i)}
			want, _ := src.Load(ctx, ref, 0)
			got, err := dst.Load(ctx, ref, 0)
			if err != nil || len(got) != len(want) {
				t.Errorf("mirrored %s: %d events, %v; ledger has %d", ref, len(got), err, len(want))
			}
		}
	}
}

func TestMirrorModel(t *testing.T) {
	src := modelStore(t, newModel())
	dst := modelStore(t, newModel())
	runMirrorChecks(t, src, dst, "x", CheckpointStream)
}

// TestMirrorRestartAfterCrash rewinds the checkpoint, as a crash between
// appends and the next checkpoint leaves it, and checks that the events
// copied since are recognised instead of written twice.
func TestMirrorRestartAfterCrash(t *testing.T) {
	ctx := context.Background()
	src := modelStore(t, newModel())
	dm := newModel()
	dst := modelStore(t, dm)
	fillLedger(t, src, "r", 12)
	if _, err := Mirror(ctx, src, dst, MirrorOptions{}); err != nil {
		t.Fatal(err)
	}
	_, next, err := dst.readCheckpoint(ctx, CheckpointStream)
	if err != nil {
		t.Fatal(err)
	}
	if err := dst.writeCheckpoint(ctx, CheckpointStream, next, 1); err != nil {
		t.Fatal(err)
	}
	before := len(dm.snapshot())
	p, err := Mirror(ctx, src, dst, MirrorOptions{})
	if err != nil {
		t.Fatalf("mirror after a rewound checkpoint: %v", err)
	}
	if p.Copied == 0 {
		t.Error("the restarted mirror copied nothing: the range was not replayed")
	}
	if added := len(dm.snapshot()) - before; added != 1 {
		t.Errorf("the restarted mirror added %d records, want 1 (its checkpoint)", added)
	}
	checkMirror(t, src, dst, "mr-")
}

func TestMirrorRefusesForeignStreams(t *testing.T) {
	ctx := context.Background()
	src := modelStore(t, newModel())
	fillLedger(t, src, "f", 9)
	dm := newModel()
	dst := modelStore(t, dm)
	dm.mustAppend("payment-mf-4", "PaymentMade", []byte(`{"x":1}`), []byte(`{"legacy":true}`))
	before := len(dm.snapshot())
	_, err := Mirror(ctx, src, dst, MirrorOptions{CheckpointEvery: 1})
	if events.KindOf(err) != events.KindInvalid || !strings.Contains(err.Error(), "payment-mf-4") || !strings.Contains(err.Error(), "foreign events") {
		t.Fatalf("mirror into a foreign stream: %v, want an invalid error naming the stream", err)
	}
	if after := len(dm.snapshot()); after != before {
		t.Errorf("the refused mirror wrote %d records", after-before)
	}
	if p, _ := MirrorPosition(ctx, dst, ""); p != 0 {
		t.Errorf("the refused mirror left checkpoint %d", p)
	}

	dm2 := newModel()
	dm2.mustAppend(CheckpointStream, "SomethingElse", []byte(`{}`), nil)
	if _, err := Mirror(ctx, src, modelStore(t, dm2), MirrorOptions{}); events.KindOf(err) != events.KindInvalid || !strings.Contains(err.Error(), CheckpointStream) {
		t.Errorf("mirror with a foreign checkpoint stream: %v", err)
	}
}

// TestMirrorEventStoreDB mirrors an embedded JetStream ledger into the real
// EventStoreDB named by LEDGER_ESDB_URL.
func TestMirrorEventStoreDB(t *testing.T) {
	url := serverURL(t)
	dst := openServer(t, url)
	node := testkit.StartNode(t)
	src := node.NewStore(t)
	// A checkpoint stream of its own, so that the run neither resumes from
	// nor disturbs an earlier run's checkpoint.
	run := strings.ReplaceAll(events.NewID()[24:], "-", "")
	runMirrorChecks(t, src, dst, run, "_ledger-mirror-checkpoint-test-"+run)
}
