package command_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/node/embedded"
	"github.com/marketledger/ledger/runtime/command"
)

// added is the one event of the test aggregate, a counter.
type added struct {
	N int `json:"n"`
}

type codec struct{}

func (codec) Encode(v any) (string, int, []byte, error) {
	b, err := json.Marshal(v)
	return "counter.added", 1, b, err
}

func (codec) Decode(typ string, version int, data []byte) (any, error) {
	var a added
	err := json.Unmarshal(data, &a)
	return a, err
}

func counter(clone bool) command.Aggregate[int] {
	a := command.Aggregate[int]{Context: "counter", Initial: func(string) int { return 0 },
		Evolve: func(s int, p any) int { return s + p.(added).N }}
	if clone {
		a.Clone = func(s int) int { return s }
	}
	return a
}

func newRunner(t *testing.T) (*command.Runner, *events.JetStreamStore) {
	t.Helper()
	srv, err := embedded.Start(embedded.Config{DataDir: t.TempDir(), Port: embedded.RandomPort})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx := context.Background()
	js, _ := jetstream.New(nc)
	if _, err := events.EnsureStream(ctx, js, 1); err != nil {
		t.Fatal(err)
	}
	st, err := events.NewJetStreamStore(ctx, nc, contracts.Fence())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &command.Runner{Store: st, Codec: codec{}, Source: "/test", Clock: time.Now}, st
}

func add(n int) func(int, struct{}, time.Time) ([]any, error) {
	return func(int, struct{}, time.Time) ([]any, error) { return []any{added{N: n}}, nil }
}

func TestRunRetriesConflictsUntilEveryCommandLands(t *testing.T) {
	for _, clone := range []bool{false, true} {
		t.Run(fmt.Sprintf("clone=%t", clone), func(t *testing.T) {
			r, _ := newRunner(t)
			agg := counter(clone)
			var wg sync.WaitGroup
			for i := range 6 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					meta := command.Meta{CommandID: fmt.Sprintf("c%d", i), Command: i}
					if _, err := command.Run(context.Background(), r, agg, "c1", meta, nil, add(1)); err != nil {
						t.Error(err)
					}
				}()
			}
			wg.Wait()
			got, v, err := command.Load(context.Background(), r, agg, "c1")
			if err != nil || got != 6 || v != 6 {
				t.Errorf("counter = %d at version %d (%v), want 6 at 6", got, v, err)
			}
		})
	}
}

func TestRunReplaysAnIdempotentCommand(t *testing.T) {
	r, _ := newRunner(t)
	agg := counter(true)
	meta := command.Meta{CommandID: "c1", IdempotencyKey: "k1", Command: "add 5"}
	first, err := command.Run(context.Background(), r, agg, "c2", meta, nil, add(5))
	if err != nil {
		t.Fatal(err)
	}
	again, err := command.Run(context.Background(), r, agg, "c2", meta, nil, add(5))
	if err != nil || !again.Replayed || again.Appended.LastPosition != first.Appended.LastPosition || again.State != 5 {
		t.Errorf("replay = %+v, %v; want the first result, state 5", again, err)
	}
	meta.Command = "add 7"
	if _, err := command.Run(context.Background(), r, agg, "c2", meta, nil, add(7)); events.KindOf(err) != events.KindDuplicate {
		t.Errorf("same key, other command: err = %v, want duplicate", err)
	}
}

// A retry answered "replayed" is exactly the first result (docs/faults.md):
// the state the command left and the events it appended, not the state
// after commands that came later.
func TestRunReplayIsTheFirstResultNotTheCurrentState(t *testing.T) {
	for _, clone := range []bool{false, true} {
		t.Run(fmt.Sprintf("clone=%t", clone), func(t *testing.T) {
			ctx := context.Background()
			r, _ := newRunner(t)
			agg := counter(clone)
			meta := command.Meta{CommandID: "c1", IdempotencyKey: "k1", Command: "add 5"}
			first, err := command.Run(ctx, r, agg, "c3", meta, nil, add(5))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := command.Run(ctx, r, agg, "c3", command.Meta{CommandID: "c2", Command: "add 3"}, nil, add(3)); err != nil {
				t.Fatal(err)
			}
			again, err := command.Run(ctx, r, agg, "c3", meta, nil, add(5))
			if err != nil || !again.Replayed {
				t.Fatalf("retry = %+v, %v; want replayed", again, err)
			}
			if again.State != first.State || again.Version != first.Version || again.Appended.FirstPosition != first.Appended.FirstPosition ||
				again.Appended.LastPosition != first.Appended.LastPosition {
				t.Errorf("retry answered state %d at version %d, positions %d..%d; the first result was state %d at version %d, positions %d..%d",
					again.State, again.Version, again.Appended.FirstPosition, again.Appended.LastPosition,
					first.State, first.Version, first.Appended.FirstPosition, first.Appended.LastPosition)
			}
			if len(again.Events) != len(first.Events) {
				t.Fatalf("retry answered %d events, the first result %d", len(again.Events), len(first.Events))
			}
			for i := range first.Events {
				if a, b := again.Events[i], first.Events[i]; a.ID != b.ID || a.Type != b.Type || string(a.Data) != string(b.Data) {
					t.Errorf("event %d: retry %s %s %s, first %s %s %s", i, a.ID, a.Type, a.Data, b.ID, b.Type, b.Data)
				}
			}
		})
	}
}

func TestRunDecidesAgainUnderANewerPolicy(t *testing.T) {
	r, st := newRunner(t)
	ctx := context.Background()
	pol := events.Event{ID: events.NewID(), Type: "policy.freeze_imposed", SchemaVersion: 1, Source: "/test",
		AggregateID: "f1", OccurredAt: time.Now(), Data: []byte(`{}`)}
	if _, err := st.Append(ctx, events.Decision{Aggregate: events.AggregateRef{Context: "policy", ID: "f1"}, Events: []events.Event{pol}}); err != nil {
		t.Fatal(err)
	}
	var refreshed []bool
	stale := func(ctx context.Context, refresh bool) (command.Policy[string], error) {
		refreshed = append(refreshed, refresh)
		if !refresh {
			return command.Policy[string]{Position: 0, Rules: "open"}, nil // a view that missed the freeze
		}
		head, err := st.PolicyHead(ctx)
		return command.Policy[string]{Position: head, Rules: "frozen"}, err
	}
	_, err := command.Run(ctx, r, counter(false), "c3", command.Meta{CommandID: "c1", Command: 1}, stale,
		func(_ int, rules string, _ time.Time) ([]any, error) {
			if rules == "frozen" {
				return nil, &events.Error{Kind: events.KindFrozen, Rule: "frozen"}
			}
			return []any{added{N: 1}}, nil
		})
	if !errors.Is(err, events.ErrFrozen) {
		t.Fatalf("err = %v, want the decision taken again under the freeze", err)
	}
	if len(refreshed) != 2 || refreshed[0] || !refreshed[1] {
		t.Errorf("policy snapshots taken with refresh = %v, want [false true]", refreshed)
	}
	if evs, _ := st.Load(ctx, events.AggregateRef{Context: "counter", ID: "c3"}, 0); len(evs) != 0 {
		t.Errorf("the stale decision was stored: %d events", len(evs))
	}
}

// racingStore lets another sender's decision land at a chosen moment of a
// command's run: just before its first load (so it decides on a state the
// other copy made) or just after it (so it decides on a state that is no
// longer current).
type racingStore struct {
	*events.JetStreamStore
	once       sync.Once
	afterLoad  bool
	interleave func()
}

func (s *racingStore) Load(ctx context.Context, ref events.AggregateRef, after uint64) ([]events.Event, error) {
	if !s.afterLoad {
		s.once.Do(s.interleave)
		return s.JetStreamStore.Load(ctx, ref, after)
	}
	evs, err := s.JetStreamStore.Load(ctx, ref, after)
	s.once.Do(s.interleave)
	return evs, err
}

// TestRunSameKeyRacingGetsTheFirstResult: one idempotent command sent twice
// at once (two process managers handling the same step), the other copy
// landing before or after this one loaded the aggregate. The decider
// refuses to apply it twice; both senders must get the first result, and
// it is stored once.
func TestRunSameKeyRacingGetsTheFirstResult(t *testing.T) {
	for _, afterLoad := range []bool{false, true} {
		t.Run(fmt.Sprintf("afterLoad=%t", afterLoad), func(t *testing.T) {
			r, st := newRunner(t)
			agg := counter(false)
			once := func(s int, _ struct{}, _ time.Time) ([]any, error) {
				if s > 0 {
					return nil, &events.Error{Op: "confirm", Kind: events.KindConflict, Rule: "already confirmed"}
				}
				return []any{added{N: 1}}, nil
			}
			meta := command.Meta{CommandID: "c1", IdempotencyKey: "confirm:o1", Command: "confirm o1"}
			var first command.Result[int]
			var firstErr error
			racing := &racingStore{JetStreamStore: st, afterLoad: afterLoad, interleave: func() {
				first, firstErr = command.Run(context.Background(), r, agg, "o1", meta, nil, once)
			}}
			second, err := command.Run(context.Background(), &command.Runner{Store: racing, Codec: codec{}, Source: "/test", Clock: time.Now},
				agg, "o1", meta, nil, once)
			if firstErr != nil {
				t.Fatal(firstErr)
			}
			if err != nil || !second.Replayed || second.Appended.LastPosition != first.Appended.LastPosition {
				t.Fatalf("second sender: %+v, %v; want the first result (position %d)", second, err, first.Appended.LastPosition)
			}
			if got, v, err := command.Load(context.Background(), r, agg, "o1"); err != nil || got != 1 || v != 1 {
				t.Errorf("state %d at version %d (%v); want 1 at 1", got, v, err)
			}
		})
	}
}

// TestRunDecidesAgainWhenTheCachedStateIsStale: a runner decides first on
// its cached state without asking the store; another process moved the
// aggregate since. A refusal on the stale state must not reach the caller:
// the command is decided again on the current state.
func TestRunDecidesAgainWhenTheCachedStateIsStale(t *testing.T) {
	r, st := newRunner(t)
	other := &command.Runner{Store: st, Codec: codec{}, Source: "/other", Clock: time.Now}
	agg := counter(true)
	ctx := context.Background()
	if _, err := command.Run(ctx, r, agg, "c3", command.Meta{CommandID: "a", Command: "a"}, nil, add(1)); err != nil {
		t.Fatal(err) // r caches the counter at 1
	}
	if _, err := command.Run(ctx, other, agg, "c3", command.Meta{CommandID: "b", Command: "b"}, nil, add(1)); err != nil {
		t.Fatal(err) // the other process moves it to 2
	}
	atLeastTwo := func(s int, _ struct{}, _ time.Time) ([]any, error) {
		if s < 2 {
			return nil, &events.Error{Op: "take", Kind: events.KindInvalid, Rule: fmt.Sprintf("needs 2, has %d", s)}
		}
		return []any{added{N: 10}}, nil
	}
	res, err := command.Run(ctx, r, agg, "c3", command.Meta{CommandID: "c", Command: "c"}, nil, atLeastTwo)
	if err != nil || res.State != 12 {
		t.Fatalf("decided on a stale state: %+v, %v; want state 12", res, err)
	}
	// A decision on the stale state that the store refuses is decided again.
	if _, err := command.Run(ctx, other, agg, "c3", command.Meta{CommandID: "d", Command: "d"}, nil, add(1)); err != nil {
		t.Fatal(err)
	}
	res, err = command.Run(ctx, r, agg, "c3", command.Meta{CommandID: "e", Command: "e"}, nil, add(100))
	if err != nil || res.State != 113 {
		t.Fatalf("after a conflict on the stale state: %+v, %v; want state 113", res, err)
	}
}

// TestRunTakesTurnsOnAHotAggregate sends many commands at once to one
// aggregate, as a flash sale does to one listing: they take turns instead
// of racing, so every one lands on its first append and none gives up
// under contention.
func TestRunTakesTurnsOnAHotAggregate(t *testing.T) {
	for _, clone := range []bool{false, true} {
		t.Run(fmt.Sprintf("clone=%t", clone), func(t *testing.T) {
			r, st := newRunner(t)
			agg := counter(clone)
			const n = 64
			var wg sync.WaitGroup
			for i := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					meta := command.Meta{CommandID: fmt.Sprintf("h%d", i), Command: i}
					if _, err := command.Run(context.Background(), r, agg, "hot", meta, nil, add(1)); err != nil {
						t.Error(err)
					}
				}()
			}
			wg.Wait()
			if got, v, err := command.Load(context.Background(), r, agg, "hot"); err != nil || got != n || v != n {
				t.Errorf("counter = %d at version %d (%v), want %d", got, v, err, n)
			}
			if c := st.Stats().Conflicts; c != 0 {
				t.Errorf("%d appends lost a race on the aggregate, want 0: commands of one runner take turns", c)
			}
		})
	}
}

// TestRunTurnsAreByAggregate checks that a command waiting for its turn on
// one aggregate does not hold up another aggregate's commands.
func TestRunTurnsAreByAggregate(t *testing.T) {
	r, _ := newRunner(t)
	agg := counter(true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	entered, release := make(chan struct{}), make(chan struct{})
	held := make(chan error, 1)
	go func() {
		_, err := command.Run(ctx, r, agg, "a", command.Meta{CommandID: "slow", Command: "slow"}, nil,
			func(int, struct{}, time.Time) ([]any, error) {
				close(entered)
				<-release
				return []any{added{N: 1}}, nil
			})
		held <- err
	}()
	<-entered
	if _, err := command.Run(ctx, r, agg, "b", command.Meta{CommandID: "other", Command: "other"}, nil, add(1)); err != nil {
		t.Fatalf("a command on another aggregate while one is deciding: %v", err)
	}
	// A second command on the held aggregate waits for its turn, and gives
	// up when its context ends, having stored nothing.
	wctx, wcancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer wcancel()
	if _, err := command.Run(wctx, r, agg, "a", command.Meta{CommandID: "waits", Command: "waits"}, nil, add(100)); events.KindOf(err) != events.KindUnavailable {
		t.Errorf("waiting past its context: %v, want unavailable", err)
	}
	close(release)
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	if got, _, err := command.Load(ctx, r, agg, "a"); err != nil || got != 1 {
		t.Errorf("counter a = %d (%v), want 1", got, err)
	}
}
