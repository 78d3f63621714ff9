package projections

import (
	"bytes"
	"context"
	"errors"
	"iter"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/projections/internal/logtest"
	"github.com/marketledger/ledger/projections/models"
	"github.com/marketledger/ledger/projections/notary"
)

// freshRows folds the events keep selects into fresh keyed models: the
// reference every index answer must equal, byte for byte.
func freshRows(t *testing.T, evs []events.Event, ps []any, keep func(*events.Event) bool) map[string]models.Keyed {
	t.Helper()
	ms, err := keyedModels()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]models.Keyed{}
	for _, m := range ms {
		out[m.Name()] = m
	}
	for i := range evs {
		if keep != nil && !keep(&evs[i]) {
			continue
		}
		for _, m := range ms {
			if err := m.Apply(evs[i], ps[i]); err != nil {
				t.Fatal(err)
			}
		}
	}
	return out
}

// TestIndexEqualsFreshFold checks, for random points on each of the three
// clocks (and business instants as known at random positions), that every
// row the index answers equals, byte for byte, the row of a fresh fold
// stopped at the same point, that a row the fold does not hold is not
// found, and that listing pages gives the same rows. It then deletes the
// index, builds it again and asks again.
func TestIndexEqualsFreshFold(t *testing.T) {
	env := startEnv(t)
	g := logtest.Generate(t, env.Store, logtest.Config{Seed: 31, Listings: 8, Flows: 120})
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "asof.db")
	ix, err := OpenIndex(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.Build(ctx, env.Store, 0); err != nil {
		t.Fatal(err)
	}
	g.More(30, 4, 32) // built in two folds: the second carries on from the first
	if err := ix.Build(ctx, env.Store, 0); err != nil {
		t.Fatal(err)
	}
	evs, ps := logtest.ReadAll(t, env.Store)
	final := freshRows(t, evs, ps, nil)
	rng := rand.New(rand.NewPCG(31, 3))
	type query struct {
		at      AsOf
		knownAt uint64
		keep    func(*events.Event) bool
	}
	var qs []query
	const points = 6
	for range points {
		e := evs[rng.IntN(len(evs))]
		qs = append(qs, query{AtPosition(e.Position), 0, func(x *events.Event) bool { return x.Position <= e.Position }})
	}
	for range points {
		e := evs[rng.IntN(len(evs))]
		at := e.RecordedAt.Add(time.Duration(rng.IntN(2000)-1000) * time.Microsecond)
		if at.Before(evs[0].RecordedAt) {
			at = evs[0].RecordedAt
		}
		pos, err := env.Store.PositionAt(ctx, at)
		if err != nil {
			t.Fatal(err)
		}
		qs = append(qs, query{AtRecorded(at), 0, func(x *events.Event) bool { return x.Position <= pos }})
	}
	lo, hi := evs[0].OccurredAt, evs[0].OccurredAt
	for i := range evs {
		lo, hi = minTime(lo, evs[i].OccurredAt), maxTime(hi, evs[i].OccurredAt)
	}
	for i := range 2 * points {
		at := lo.Add(time.Duration(rng.Int64N(int64(hi.Sub(lo)))))
		if i == 0 {
			at = hi
		}
		var knownAt uint64
		keep := BusinessFilter(at)
		if i%2 == 1 { // as known at a random position: bitemporal
			knownAt = evs[len(evs)/2+rng.IntN(len(evs)/2)].Position
			keep = func(x *events.Event) bool { return x.Position <= knownAt && BusinessFilter(at)(x) }
		}
		qs = append(qs, query{AtBusiness(at), knownAt, keep})
	}
	for i := range 4 { // business instants near the log's start, where few events are out of order
		qs = append(qs, query{AtBusiness(evs[i*3].OccurredAt), 0, BusinessFilter(evs[i*3].OccurredAt)})
	}

	check := func(name string, ix *Index) map[string]int {
		t.Helper()
		rq := NewRowQuerier(ctx, ix, env.Store)
		methods := map[string]int{}
		for _, q := range qs {
			want := freshRows(t, evs, ps, q.keep)
			for _, model := range models.ModelNames() {
				fresh := want[model]
				keys := fresh.RowKeys()
				if len(keys) > 4 {
					keys = append(keys[:2], keys[len(keys)-2:]...)
				}
				if fk := final[model].RowKeys(); len(fk) > 0 { // perhaps not there yet
					keys = append(keys, fk[len(fk)-1])
				}
				for _, key := range keys {
					got, err := rq.Row(ctx, model, key, q.at, q.knownAt)
					body, ok := fresh.Row(key)
					switch {
					case !ok && !errors.Is(err, events.ErrNotFound):
						t.Errorf("%s: %s %s %q (known at %d): got %v, want not found", name, q.at, model, key, q.knownAt, err)
					case ok && err != nil:
						t.Errorf("%s: %s %s %q (known at %d): %v", name, q.at, model, key, q.knownAt, err)
					case ok && !bytes.Equal(got.Rows[0].State, body):
						t.Errorf("%s: %s %s %q (known at %d, %s): got\n%s\nwant\n%s", name, q.at, model, key, q.knownAt, got.Method, got.Rows[0].State, body)
					case ok:
						methods[string(q.at.Clock)+"/"+got.Method]++
					}
				}
				// Two pages of the whole model equal the fresh fold's rows.
				var listed []string
				after := ""
				for {
					limit := 1000
					if q.at.Clock == ClockPosition {
						limit = 7 // pages, where each is a lookup
					}
					page, err := rq.List(ctx, model, "", after, limit, q.at, q.knownAt)
					if err != nil {
						t.Fatalf("%s: list %s %s: %v", name, model, q.at, err)
					}
					for _, r := range page.Rows {
						listed = append(listed, r.Key)
						if body, _ := fresh.Row(r.Key); !bytes.Equal(r.State, body) {
							t.Errorf("%s: list %s %s %q differs from a fresh fold", name, model, q.at, r.Key)
						}
					}
					if after = page.Next; after == "" {
						break
					}
				}
				if strings.Join(listed, ",") != strings.Join(fresh.RowKeys(), ",") {
					t.Errorf("%s: list %s %s: got %d keys, want %d", name, model, q.at, len(listed), len(fresh.RowKeys()))
				}
			}
		}
		return methods
	}
	methods := check("built", ix)
	t.Logf("answers by clock and method: %v", methods)
	if methods["position/index"] == 0 || methods["recorded/index"] == 0 || methods["business/index"] == 0 {
		t.Errorf("some clock never answered from the index: %v", methods)
	}

	// A rebuildable cache: delete it, build it again, the same answers.
	if err := ix.Close(); err != nil {
		t.Fatal(err)
	}
	if err := RemoveIndex(path); err != nil {
		t.Fatal(err)
	}
	ix2, err := OpenIndex(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ix2.Close()
	if ix2.Head() != 0 {
		t.Fatalf("a removed index starts at head %d", ix2.Head())
	}
	if err := ix2.Build(ctx, env.Store, 0); err != nil {
		t.Fatal(err)
	}
	check("rebuilt", ix2)
}

// TestIndexBadInput: each bad point names the parameter, and a point past
// the index's head waits, bounded, and then says how far behind it is.
func TestIndexBadInput(t *testing.T) {
	env := startEnv(t)
	logtest.Generate(t, env.Store, logtest.Config{Seed: 5, Listings: 3, Flows: 6})
	ctx := context.Background()
	ix, err := OpenIndex(filepath.Join(t.TempDir(), "asof.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	evs, _ := logtest.ReadAll(t, env.Store)
	last := evs[len(evs)-1]
	rq := NewRowQuerier(ctx, ix, env.Store)
	rq.Wait = 50 * time.Millisecond
	_, err = rq.Row(ctx, models.ModelOrders, "o-1", AtPosition(last.Position), 0)
	if !errors.Is(err, events.ErrUnavailable) || !strings.Contains(err.Error(), "behind") {
		t.Errorf("unbuilt index: got %v, want how far behind it is", err)
	}
	if err := ix.Build(ctx, env.Store, 0); err != nil {
		t.Fatal(err)
	}
	var anOrder string
	for _, e := range evs {
		if e.Context() == "order" {
			anOrder = e.AggregateID
		}
	}
	tests := []struct {
		model, key string
		at         AsOf
		knownAt    uint64
		is         error
		field      string
	}{
		{"nope", "o-1", AtPosition(1), 0, events.ErrNotFound, "model"},
		{models.ModelOrders, "no-such-order", AtPosition(last.Position), 0, events.ErrInvalid, "key"},
		{models.ModelOrders, anOrder, AtPosition(1), 0, events.ErrNotFound, "key"}, // placed later
		{models.ModelOrders, "o-1", AtPosition(last.Position + 1), 0, events.ErrInvalid, "as_of"},
		{models.ModelOrders, "o-1", AsOf{Clock: "wall"}, 0, events.ErrInvalid, "clock"},
		{models.ModelOrders, "o-1", AtBusiness(last.OccurredAt), last.Position + 5, events.ErrInvalid, "known_at"},
		{models.ModelOrders, "o-1", AtPosition(3), 2, events.ErrInvalid, "known_at"},
		{models.ModelOrders, "a\x00b", AtPosition(3), 0, events.ErrInvalid, "key"},
	}
	for _, tt := range tests {
		_, err := rq.Row(ctx, tt.model, tt.key, tt.at, tt.knownAt)
		var e *events.Error
		if !errors.Is(err, tt.is) || !errors.As(err, &e) || e.Field != tt.field {
			t.Errorf("%s %q %s: got %v, want %v naming %s", tt.model, tt.key, tt.at, err, tt.is, tt.field)
		}
	}
}

// TestIndexStartsAgainForOtherModelVersions: an index built by other
// versions of the models is emptied when opened, never served.
func TestIndexStartsAgainForOtherModelVersions(t *testing.T) {
	env := startEnv(t)
	logtest.Generate(t, env.Store, logtest.Config{Seed: 7, Listings: 2, Flows: 3})
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "asof.db")
	ix, err := OpenIndex(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.Build(ctx, env.Store, 0); err != nil || ix.Head() == 0 {
		t.Fatalf("build: head %d, %v", ix.Head(), err)
	}
	if err := ix.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyModels, []byte("orders/v0\n"))
	}); err != nil {
		t.Fatal(err)
	}
	ix.Close()
	ix, err = OpenIndex(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	if ix.Head() != 0 {
		t.Errorf("an index of other model versions opened at head %d", ix.Head())
	}
}

// TestCatalogueBusinessByLookup asks every listing of the catalogue at
// business instants in the middle of a log written by many workers (so
// out-of-order business times surround every instant): the answers equal a
// fresh fold, and most are lookups, not folds, since an out-of-order event
// that touched neither the listing nor the rules leaves its row as the
// prefix has it, derived at the time of the last event the fold applies.
func TestCatalogueBusinessByLookup(t *testing.T) {
	env := startEnv(t)
	logtest.Generate(t, env.Store, logtest.Config{Seed: 37, Listings: 24, Flows: 150, Workers: 16})
	ctx := context.Background()
	ix, err := OpenIndex(filepath.Join(t.TempDir(), "asof.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	if err := ix.Build(ctx, env.Store, 0); err != nil {
		t.Fatal(err)
	}
	evs, ps := logtest.ReadAll(t, env.Store)
	rq := NewRowQuerier(ctx, ix, env.Store)
	methods := map[string]int{}
	for i := range 8 {
		at := AtBusiness(evs[len(evs)/4+i*len(evs)/16].OccurredAt)
		fresh := freshRows(t, evs, ps, BusinessFilter(at.Time))[models.ModelCatalogue]
		for _, key := range fresh.RowKeys() {
			got, err := rq.Row(ctx, models.ModelCatalogue, key, at, 0)
			if err != nil {
				t.Fatalf("%s %q: %v", at, key, err)
			}
			if body, _ := fresh.Row(key); !bytes.Equal(got.Rows[0].State, body) {
				t.Errorf("%s %q (%s): got\n%s\nwant\n%s", at, key, got.Method, got.Rows[0].State, body)
			}
			methods[got.Method]++
		}
	}
	t.Logf("catalogue answers by method: %v", methods)
	if methods["index"] <= methods["fold"] {
		t.Errorf("most catalogue answers fold: %v", methods)
	}
}

// cutStore is a log that cannot be read past position cut, as a log that
// went away in the middle of a build.
type cutStore struct {
	events.Store
	cut uint64
}

func (c cutStore) Read(ctx context.Context, q events.Query) iter.Seq2[events.Event, error] {
	return func(yield func(events.Event, error) bool) {
		for e, err := range c.Store.Read(ctx, q) {
			if err == nil && e.Position > c.cut {
				yield(events.Event{}, &events.Error{Op: "test", Kind: events.KindUnavailable, Rule: "the log went away"})
				return
			}
			if !yield(e, err) {
				return
			}
		}
	}
}

// TestIndexBuildCheckpointsOnTheWay: a build over more than indexCkptEvery
// positions checkpoints every indexCkptEvery, so one stopped part way
// starts again from its last checkpoint, and ends equal to a build that
// was never stopped.
func TestIndexBuildCheckpointsOnTheWay(t *testing.T) {
	defer func(n uint64) { indexCkptEvery = n }(indexCkptEvery)
	indexCkptEvery = 10
	env := startEnv(t)
	logtest.Generate(t, env.Store, logtest.Config{Seed: 11, Listings: 3, Flows: 12})
	ctx := t.Context()
	head, err := env.Store.LastPosition(ctx)
	if err != nil || head < 4*indexCkptEvery {
		t.Fatalf("log of %d positions (%v), want at least %d", head, err, 4*indexCkptEvery)
	}
	path := filepath.Join(t.TempDir(), "asof.db")
	ix, err := OpenIndex(path)
	if err != nil {
		t.Fatal(err)
	}
	cut := 3*indexCkptEvery + indexCkptEvery/2
	if err := ix.Build(ctx, cutStore{Store: env.Store, cut: cut}, head); err == nil {
		t.Fatal("a build over a log cut short succeeded")
	}
	if ix.ckptAt != 3*indexCkptEvery {
		t.Fatalf("stopped at %d, the build kept a checkpoint at %d; want %d", cut, ix.ckptAt, 3*indexCkptEvery)
	}
	ix.Close()
	if ix, err = OpenIndex(path); err != nil {
		t.Fatal(err)
	}
	defer ix.Close()
	if err := ix.Build(ctx, env.Store, head); err != nil || ix.Head() != head {
		t.Fatalf("build again: head %d of %d, %v", ix.Head(), head, err)
	}
	whole, err := OpenIndex(filepath.Join(t.TempDir(), "whole.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer whole.Close()
	if err := whole.Build(ctx, env.Store, head); err != nil {
		t.Fatal(err)
	}
	resumed, built := NewRowQuerier(ctx, ix, env.Store), NewRowQuerier(ctx, whole, env.Store)
	// The Merkle root at every position, from the frontiers the builds
	// kept (the resumed one restored its frontier at the checkpoint), is
	// the root of the log's events up to it.
	var ref notary.Frontier
	refAt := map[uint64]notary.Hash{}
	for e, err := range env.Store.Read(ctx, events.Query{To: head}) {
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := notary.EventLeaf(&e)
		if err != nil {
			t.Fatal(err)
		}
		ref.Append(notary.LeafHash(leaf))
		refAt[e.Position], _ = ref.Root()
	}
	var want notary.Hash
	for p := uint64(1); p <= head; p++ {
		if r, ok := refAt[p]; ok {
			want = r
		}
		for name, rq := range map[string]*RowQuerier{"resumed": resumed, "whole": built} {
			if _, got, err := rq.TreeAt(ctx, p); err != nil || got != want {
				t.Fatalf("%s index: root at %d %s (%v), the log's %s", name, p, got, err, want)
			}
		}
	}
	for _, m := range []string{"orders", "catalogue", "balances"} {
		for _, at := range []uint64{indexCkptEvery, 3*indexCkptEvery + 1, head} {
			a, errA := resumed.List(ctx, m, "", "", 1000, AtPosition(at), 0)
			b, errB := built.List(ctx, m, "", "", 1000, AtPosition(at), 0)
			if errA != nil || errB != nil || !reflect.DeepEqual(a.Rows, b.Rows) || (at == head && len(a.Rows) == 0) {
				t.Fatalf("%s at %d: the resumed build answers %d rows (%v), the whole one %d (%v)", m, at, len(a.Rows), errA, len(b.Rows), errB)
			}
		}
	}
}
