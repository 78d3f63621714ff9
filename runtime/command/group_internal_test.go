package command

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/node/nodetest"
)

type unit struct {
	N int `json:"n"`
}

type unitCodec struct{}

func (unitCodec) Encode(v any) (string, int, []byte, error) {
	b, err := json.Marshal(v)
	return "stock.reserved", 1, b, err
}

func (unitCodec) Decode(string, int, []byte) (any, error) { return unit{N: 1}, nil }

var stockAgg = Aggregate[int]{Context: "stock", Initial: func(string) int { return 0 },
	Evolve: func(s int, p any) int { return s + p.(unit).N }, Clone: func(s int) int { return s }}

var errSoldOut = errors.New("sold out")

func groupRunner(t *testing.T) (*Runner, *events.JetStreamStore) {
	t.Helper()
	st := nodetest.Start(t).Store
	return &Runner{Store: st, Codec: unitCodec{}, Source: "/test", Clock: time.Now}, st
}

// queuedOn waits until n commands wait in ref's lane.
func queuedOn(t *testing.T, r *Runner, ref events.AggregateRef, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.turns.mu.Lock()
		got := 0
		if l := r.turns.m[ref]; l != nil {
			got = len(l.queue)
		}
		r.turns.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d commands queued on %s, want %d", got, ref, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// holdFirst runs one command on ref whose decision waits for release, and
// returns once it is deciding: the commands sent next queue behind it.
func holdFirst(t *testing.T, r *Runner, id string) (release func(), result <-chan error) {
	entered, rel := make(chan struct{}), make(chan struct{})
	res := make(chan error, 1)
	go func() {
		_, err := Run(context.Background(), r, stockAgg, id, Meta{CommandID: "first", Command: "first"}, nil,
			func(int, struct{}, time.Time) ([]any, error) {
				close(entered)
				<-rel
				return []any{unit{N: 1}}, nil
			})
		res <- err
	}()
	<-entered
	return func() { close(rel) }, res
}

// TestRunDecidesTheQueueOfAHotAggregateTogether: the commands queued behind
// a decision on one aggregate are decided in turn and appended as one
// decision with a part each, so a flash sale's reservations take one append
// per group, not one each; each command is answered with its own events and
// positions, and each key answers its own first result when sent again.
func TestRunDecidesTheQueueOfAHotAggregateTogether(t *testing.T) {
	r, st := groupRunner(t)
	ref := events.AggregateRef{Context: "stock", ID: "hot"}
	release, first := holdFirst(t, r, ref.ID)
	const n = 40
	results := make([]Result[int], n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			meta := Meta{CommandID: fmt.Sprintf("c%02d", i), IdempotencyKey: fmt.Sprintf("k%02d", i), Command: i}
			res, err := Run(context.Background(), r, stockAgg, ref.ID, meta, nil, func(int, struct{}, time.Time) ([]any, error) {
				return []any{unit{N: 1}}, nil
			})
			if err != nil {
				t.Error(err)
			}
			results[i] = res
		})
	}
	queuedOn(t, r, ref, n)
	release()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if s := st.Stats(); s.Decisions != 2 || s.Conflicts != 0 {
		t.Errorf("%d decisions (%d conflicts) for 1 + %d commands, want 2 (0): the queue is decided together", s.Decisions, s.Conflicts, n)
	}
	seen := map[uint64]bool{}
	for i, res := range results {
		if len(res.Events) != 1 || res.Appended.FirstPosition != res.Appended.LastPosition || res.Events[0].CausationID != fmt.Sprintf("c%02d", i) {
			t.Fatalf("command %d: %+v", i, res)
		}
		pos := res.Appended.FirstPosition
		if seen[pos] {
			t.Fatalf("position %d answered twice", pos)
		}
		seen[pos] = true
		var stored events.Event
		for e, err := range st.Read(context.Background(), events.Query{From: pos, To: pos}) {
			if err != nil {
				t.Fatal(err)
			}
			stored = e
		}
		if stored.ID != res.Events[0].ID || stored.AggregateVersion != res.Version || res.State != int(res.Version) {
			t.Fatalf("command %d answered event %s v%d state %d; the log has %s v%d at %d", i, res.Events[0].ID, res.Version, res.State,
				stored.ID, stored.AggregateVersion, pos)
		}
		again, err := Run(context.Background(), r, stockAgg, ref.ID, Meta{CommandID: "again", IdempotencyKey: fmt.Sprintf("k%02d", i), Command: i}, nil,
			func(int, struct{}, time.Time) ([]any, error) { return []any{unit{N: 1}}, nil })
		if err != nil || !again.Replayed || again.Appended.FirstPosition != pos || again.Appended.LastPosition != pos || again.Version != res.Version {
			t.Fatalf("command %d sent again: %+v %v, want its first result at %d v%d", i, again.Appended, err, pos, res.Version)
		}
	}
	if got, v, err := Load(context.Background(), r, stockAgg, ref.ID); err != nil || got != n+1 || v != n+1 {
		t.Errorf("aggregate = %d at version %d (%v), want %d", got, v, err, n+1)
	}
}

// TestRunGroupRefusesPastTheStock: in a group, each command is decided on
// the state its predecessors leave, so the ones past the stock are refused
// by the rule, none for contention, and none of them holds anything.
func TestRunGroupRefusesPastTheStock(t *testing.T) {
	r, st := groupRunner(t)
	ref := events.AggregateRef{Context: "stock", ID: "few"}
	release, first := holdFirst(t, r, ref.ID)
	const n, stock = 30, 10
	var ok sync.WaitGroup
	var mu sync.Mutex
	landed, refused := 0, 0
	for i := range n {
		ok.Go(func() {
			meta := Meta{CommandID: fmt.Sprintf("c%02d", i), IdempotencyKey: fmt.Sprintf("k%02d", i), Command: i}
			_, err := Run(context.Background(), r, stockAgg, ref.ID, meta, nil, func(s int, _ struct{}, _ time.Time) ([]any, error) {
				if s >= stock {
					return nil, errSoldOut
				}
				return []any{unit{N: 1}}, nil
			})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				landed++
			case errors.Is(err, errSoldOut):
				refused++
			default:
				t.Error(err)
			}
		})
	}
	queuedOn(t, r, ref, n)
	release()
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	ok.Wait()
	if landed != stock-1 || refused != n-stock+1 {
		t.Errorf("%d landed, %d refused; want %d and %d", landed, refused, stock-1, n-stock+1)
	}
	if got, _, err := Load(context.Background(), r, stockAgg, ref.ID); err != nil || got != stock {
		t.Errorf("aggregate = %d (%v), want %d", got, err, stock)
	}
	if c := st.Stats().Conflicts; c != 0 {
		t.Errorf("%d conflicts, want 0", c)
	}
}
