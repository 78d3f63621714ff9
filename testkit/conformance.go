package testkit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marketledger/ledger/events"
)

// ConformanceOptions tunes RunStoreConformance to the store under test.
type ConformanceOptions struct {
	// JetStream runs the subtests that go around the store to the JetStream
	// server (deleting and purging messages, weakening the stream) and must
	// be refused. The store must then have a JetStream() jetstream.JetStream
	// method, as *events.JetStreamStore has.
	JetStream bool
	// Disrupt, when set, is run once in its own goroutine midway through
	// each subtest that races appends (for example a stream leader stepdown
	// on a cluster). It returns when the disruption is over; an error fails
	// the subtest. The store must satisfy every check all the same.
	Disrupt func(ctx context.Context) error
	// UnavailableRetries is how many times an append that ended with
	// KindUnavailable (outcome unknown, as during a leader election) is
	// retried with the same decision and idempotency key. Store's contract
	// allows exactly that retry; the retry's answer is the one checked. Zero
	// means a KindUnavailable append fails the test.
	UnavailableRetries int
	// AppendTimeout bounds one append attempt, as a caller's request
	// deadline would, so that an attempt caught by a fault ends (as
	// KindUnavailable) in time to be retried. 0 means 15 seconds.
	AppendTimeout time.Duration
	// Timeout bounds each subtest; 0 means 90 seconds.
	Timeout time.Duration
	// SparsePositions says the store's positions increase but are not
	// dense within a decision (EventStoreDB's $all offsets): the suite then
	// checks a decision's first and last positions and the order between.
	SparsePositions bool
}

// RunStoreConformance checks that a store keeps every guarantee of the
// events.Store contract: optimistic concurrency per aggregate, atomic
// decisions, conflict isolation, idempotency for good, ordered and verified
// reads, positions in time, gapless subscriptions and refusal of invalid
// events.
//
// newStore must return a ready store that the suite may close; every call
// must return a store over the same log (a new client of the same server),
// so that the suite can race clients whose caches disagree. The log need not
// be empty, but nothing else may write to it while the suite runs, because
// some checks compare whole ranges of the log. The suite appends events of
// the contexts order, payment and listing with small JSON bodies, so a store
// with a TypeChecker that knows real schemas will refuse them.
func RunStoreConformance(t *testing.T, newStore func(t *testing.T) events.Store, opts ConformanceOptions) {
	if opts.Timeout == 0 {
		opts.Timeout = 90 * time.Second
	}
	if opts.AppendTimeout == 0 {
		opts.AppendTimeout = 15 * time.Second
	}
	s := &suite{newStore: newStore, opts: opts, run: randomToken()}
	tests := []struct {
		name string
		fn   func(*testing.T)
	}{
		{"AppendChecksExpectedVersion", s.testExpectedVersion},
		{"DecisionIsAtomicWithConsecutiveVersions", s.testAtomicDecision},
		{"FailedDecisionLeavesNothing", s.testFailedDecisionLeavesNothing},
		{"RacingAppendsHaveOneWinnerPerVersion", s.testRacingAppends},
		{"ConflictNeverFailsOtherAggregates", s.testConflictIsolation},
		{"IdempotencyReplaysAndRefuses", s.testIdempotency},
		{"ConcurrentIdempotentRetriesStoreOnce", s.testConcurrentIdempotency},
		{"InvalidEventsAreRefused", s.testInvalid},
		{"EndedContextFailsReads", s.testEndedContext},
		{"LoadReturnsVerifiedChainInOrder", s.testLoad},
		{"ReadSelectsRanges", s.testRead},
		{"PositionAtFollowsRecordedTime", s.testPositionAt},
		{"PositionAtNamesEventsOnly", s.testPositionAtEventsOnly},
		{"SubscribeCatchesUpThenGoesLive", s.testSubscribe},
		{"SubscribeFiltersBySubjects", s.testSubscribeFiltered},
		{"SubscribeFromTime", s.testSubscribeFromTime},
	}
	if opts.JetStream {
		tests = append(tests, struct {
			name string
			fn   func(*testing.T)
		}{"JetStreamRefusesDeleteAndPurge", s.testJetStreamTamper})
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t)
		})
	}
}

// suite is the state one RunStoreConformance run shares across subtests.
type suite struct {
	newStore func(t *testing.T) events.Store
	opts     ConformanceOptions
	// run makes aggregate ids unique to this run, so that the suite can run
	// twice against one log.
	run string
	seq atomic.Uint64
}

func randomToken() string {
	var b [4]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// ref returns a fresh aggregate of the given context that no other subtest
// or run touches.
func (s *suite) ref(context string) events.AggregateRef {
	return events.AggregateRef{Context: context, ID: fmt.Sprintf("tk%s-%d", s.run, s.seq.Add(1))}
}

// ctx returns the subtest's bounded context.
func (s *suite) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
	t.Cleanup(cancel)
	return ctx
}

// decision builds a decision of one event per name on ref at version.
func decision(ref events.AggregateRef, version uint64, names ...string) events.Decision {
	d := events.Decision{Aggregate: ref, ExpectedVersion: version}
	for _, n := range names {
		d.Events = append(d.Events, NewEvent(ref, n))
	}
	return d
}

// keyed gives d an idempotency key and a digest unique to this decision, as
// a command handler would, so that it may be retried after KindUnavailable.
func keyed(d events.Decision) events.Decision {
	d.IdempotencyKey = "cmd-" + d.Events[0].ID
	d.CommandDigest = "sha256:" + d.Events[0].ID
	return d
}

// retryStats counts the KindUnavailable retries of a subtest, for its log.
type retryStats struct{ n atomic.Int64 }

// append appends d and retries it, with the same idempotency key, while the
// outcome is KindUnavailable and retries are allowed. Decisions without a key
// are never retried: a retry could store them twice.
func (s *suite) append(ctx context.Context, st events.Store, d events.Decision, rs *retryStats) (events.Appended, error) {
	a, err := s.attempt(ctx, st, d)
	for i := 0; i < s.opts.UnavailableRetries && d.IdempotencyKey != "" &&
		events.KindOf(err) == events.KindUnavailable && ctx.Err() == nil; i++ {
		if rs != nil {
			rs.n.Add(1)
		}
		if !backoff(ctx, i) {
			break
		}
		a, err = s.attempt(ctx, st, d)
	}
	return a, err
}

// backoff waits before retry i (from 0): 50 ms, doubling, at most 1 s, so
// that retries span a leader election instead of all failing within it. It
// reports false if ctx ended first.
func backoff(ctx context.Context, i int) bool {
	timer := time.NewTimer(min(50*time.Millisecond<<i, time.Second))
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// attempt is one Append bounded by AppendTimeout.
func (s *suite) attempt(ctx context.Context, st events.Store, d events.Decision) (events.Appended, error) {
	ctx, cancel := context.WithTimeout(ctx, s.opts.AppendTimeout)
	defer cancel()
	return st.Append(ctx, d)
}

// mustAppend appends d and stops the subtest if that fails.
func (s *suite) mustAppend(ctx context.Context, t *testing.T, st events.Store, d events.Decision) events.Appended {
	t.Helper()
	a, err := s.append(ctx, st, d, nil)
	if err != nil {
		t.Fatalf("append %d event(s) to %s at version %d: %v", len(d.Events), d.Aggregate, d.ExpectedVersion, err)
	}
	return a
}

// mustLoad loads ref from the start and stops the subtest on error.
func mustLoad(ctx context.Context, t *testing.T, st events.Store, ref events.AggregateRef) []events.Event {
	t.Helper()
	evs, err := st.Load(ctx, ref, 0)
	if err != nil {
		t.Fatalf("load %s: %v", ref, err)
	}
	return evs
}

// readAll collects a Read and stops the subtest on error.
func readAll(ctx context.Context, t *testing.T, st events.Store, q events.Query) []events.Event {
	t.Helper()
	var out []events.Event
	for e, err := range st.Read(ctx, q) {
		if err != nil {
			t.Fatalf("read %+v: %v", q, err)
		}
		out = append(out, e)
	}
	return out
}

// disruption runs opts.Disrupt once in the background.
type disruption struct {
	once sync.Once
	done chan struct{}
	err  error
}

// disrupt starts opts.Disrupt (once per subtest, however often it is
// called) and registers a cleanup that waits for it and reports its error.
func (s *suite) disrupt(ctx context.Context, t *testing.T, d *disruption) {
	if s.opts.Disrupt == nil {
		return
	}
	d.once.Do(func() {
		d.done = make(chan struct{})
		go func() {
			defer close(d.done)
			d.err = s.opts.Disrupt(ctx)
		}()
		t.Cleanup(func() {
			<-d.done
			if d.err != nil {
				t.Errorf("disruption: %v", d.err)
			}
		})
	})
}

// ids returns the event ids of evs, for comparisons.
func ids(evs []events.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.ID
	}
	return out
}

// only keeps the events of evs whose id is in want.
func only(evs []events.Event, want map[string]bool) []events.Event {
	var out []events.Event
	for _, e := range evs {
		if want[e.ID] {
			out = append(out, e)
		}
	}
	return out
}

func idSet(evs ...[]events.Event) map[string]bool {
	m := make(map[string]bool)
	for _, es := range evs {
		for _, e := range es {
			m[e.ID] = true
		}
	}
	return m
}

// checkIncreasing reports positions that do not strictly increase.
func checkIncreasing(t *testing.T, what string, evs []events.Event) {
	t.Helper()
	for i := 1; i < len(evs); i++ {
		if evs[i].Position <= evs[i-1].Position {
			t.Errorf("%s: position %d (event %s) follows position %d: not strictly increasing",
				what, evs[i].Position, evs[i].ID, evs[i-1].Position)
			return
		}
	}
}

// equalIDs reports whether two id lists are equal and describes the first
// difference.
func equalIDs(got, want []string) (bool, string) {
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return false, fmt.Sprintf("first difference at index %d: got %s, want %s", i, got[i], want[i])
		}
	}
	if len(got) != len(want) {
		return false, fmt.Sprintf("got %d ids, want %d", len(got), len(want))
	}
	return true, ""
}
