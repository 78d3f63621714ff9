package policyview

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/node/embedded"
)

// setupTimeout bounds starting a server and what a test waits for.
const setupTimeout = 30 * time.Second

func TestDiscontinuityNamesTheMissingPositions(t *testing.T) {
	u := func(v uint64) *uint64 { return &v }
	tests := []struct {
		name   string
		trail  []uint64
		forgot bool
		record uint64
		f      events.PolicyFence
		want   string // "" when continuous
	}{
		{"first batch", []uint64{1, 2}, false, 3, events.PolicyFence{PreviousPolicyPosition: u(0), PolicyMessages: 2}, ""},
		{"next batch", []uint64{10, 12, 13}, true, 14, events.PolicyFence{PreviousPolicyPosition: u(10), PolicyMessages: 2}, ""},
		{"previous record missing", []uint64{30, 38, 41, 42}, true, 57, events.PolicyFence{PreviousPolicyPosition: u(40), PolicyMessages: 2},
			"policy log not continuous: record at 57 follows policy position 40 but the view last applied 38 (missing: policy message at 40); refusing fenced decisions"},
		{"message of the batch missing", []uint64{40, 41}, true, 57, events.PolicyFence{PreviousPolicyPosition: u(40), PolicyMessages: 3},
			"policy log not continuous: record at 57 closes a batch of 3 policy messages after position 40 but the view applied 1 (missing: 2 between 41 and 56); refusing fenced decisions"},
		{"first message of the log missing", []uint64{2}, false, 3, events.PolicyFence{PreviousPolicyPosition: u(0), PolicyMessages: 2},
			"policy log not continuous: record at 3 closes a batch of 2 policy messages after position 0 but the view applied 1 (missing: 1 between 1 and 2); refusing fenced decisions"},
		{"older than the last verified record", []uint64{50, 51}, true, 57, events.PolicyFence{PreviousPolicyPosition: u(40), PolicyMessages: 1},
			"policy log not continuous: record at 57 follows policy position 40, older than the view's last verified record; refusing fenced decisions"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := trail{recent: tt.trail, forgot: tt.forgot}
			got := ""
			if d := tr.check(tt.record, tt.f); d != nil {
				got = d.Error()
			}
			if got != tt.want {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

// logSource is a Source on a bare JetStream connection: the view must work
// on any stream that holds the log, whatever its settings.
type logSource struct{ js jetstream.JetStream }

func (s logSource) Follow(ctx context.Context, subjects []string, from uint64, fromTime time.Time,
	fn func(m jetstream.Msg, meta *jetstream.MsgMetadata) error) error {
	return events.Follow(ctx, s.js, subjects, from, fromTime, fn)
}

func (s logSource) PolicyHead(ctx context.Context) (uint64, error) {
	st, err := s.js.Stream(ctx, events.StreamName)
	if err != nil {
		return 0, err
	}
	m, err := st.GetLastMsgForSubject(ctx, contracts.PolicySubject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return m.Sequence, nil
}

func startServer(t *testing.T) (*nats.Conn, jetstream.JetStream) {
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
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// startStore starts a server with the LEDGER stream and a store on it.
func startStore(t *testing.T) (*events.JetStreamStore, jetstream.JetStream) {
	t.Helper()
	nc, js := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	if _, err := events.EnsureStream(ctx, js, 1); err != nil {
		t.Fatal(err)
	}
	st, err := events.NewJetStreamStore(ctx, nc, contracts.Fence())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st, js
}

func policyEvent(t testing.TB, payload any, agg string) events.Event {
	t.Helper()
	typ, version, data, err := contracts.Encode(payload)
	if err != nil {
		t.Fatal(err)
	}
	return events.Event{ID: events.NewID(), Type: typ, SchemaVersion: version, Source: "/ledger/policy",
		AggregateID: agg, OccurredAt: time.Now(), Data: data}
}

// freeze is one policy decision imposing freeze id, effective on recording;
// with an idempotency key its batch holds one more policy message.
func freeze(t testing.TB, id string, withKey bool) events.Decision {
	e := policyEvent(t, contracts.FreezeImposed{RuleID: id, Scope: contracts.Scope{All: true},
		BlockedOperations: []contracts.Operation{contracts.OpOrderPlace}, EffectiveAt: time.Now().UTC(),
		Activation: contracts.ActivationOnRecording, LegalBasis: "test order", Issuer: "tester"}, id)
	d := events.Decision{Aggregate: events.AggregateRef{Context: "policy", ID: id}, Events: []events.Event{e}}
	if withKey {
		d.IdempotencyKey, d.CommandDigest = "impose-"+id, "digest-"+id
	}
	return d
}

func appendOK(t testing.TB, st *events.JetStreamStore, d events.Decision) events.Appended {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	a, err := st.Append(ctx, d)
	if err != nil {
		t.Fatalf("append %s: %v", d.Aggregate, err)
	}
	return a
}

// copyLog copies every message of the LEDGER stream behind from into a new
// LEDGER stream behind to, at the same positions, on a stream that allows
// deleting messages (as an administrator could, or as a damaged block
// would lose them).
func copyLog(t *testing.T, from, to jetstream.JetStream) jetstream.Stream {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	src, err := from.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	cfg := events.StreamConfig(1)
	cfg.DenyDelete = false
	dst, err := to.CreateStream(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	last := src.CachedInfo().State.LastSeq
	for seq := uint64(1); seq <= last; seq++ {
		m, err := src.GetMsg(ctx, seq)
		if err != nil {
			t.Fatalf("read %d: %v", seq, err)
		}
		out := nats.NewMsg(m.Subject)
		for k, vs := range m.Header {
			if strings.HasPrefix(k, "Nats-") {
				continue // the checks and batch markers did their work when it was first stored
			}
			out.Header[k] = vs
		}
		out.Data = m.Data
		ack, err := to.PublishMsg(ctx, out)
		if err != nil || ack.Sequence != seq {
			t.Fatalf("copy %d: stored at %v, %v", seq, ack, err)
		}
	}
	return dst
}

// policyLog writes three policy batches with other contexts' decisions
// between them and returns the store and the positions of interest.
type policyLog struct {
	js                  jetstream.JetStream
	f1, f1Idem, record1 uint64 // batch 1: freeze f1 with its idempotency record
	f2, record2         uint64 // batch 2: freeze f2
	f3, record3         uint64 // batch 3: freeze f3
}

func writePolicyLog(t *testing.T) policyLog {
	st, js := startStore(t)
	order := func(id string) {
		e := events.Event{ID: events.NewID(), Type: "order.cancelled", SchemaVersion: 1, Source: "/ledger/order",
			AggregateID: id, OccurredAt: time.Now(), Data: []byte(`{}`)}
		appendOK(t, st, events.Decision{Aggregate: events.AggregateRef{Context: "order", ID: id}, Events: []events.Event{e}})
	}
	var l policyLog
	l.js = js
	order("o1")
	a := appendOK(t, st, freeze(t, "f1", true))
	l.f1, l.f1Idem, l.record1 = a.FirstPosition, a.FirstPosition+1, a.FirstPosition+2
	order("o2")
	a = appendOK(t, st, freeze(t, "f2", false))
	l.f2, l.record2 = a.FirstPosition, a.FirstPosition+1
	a = appendOK(t, st, freeze(t, "f3", false))
	l.f3, l.record3 = a.FirstPosition, a.FirstPosition+1
	head, err := st.PolicyHead(context.Background())
	if err != nil || head != l.record3 {
		t.Fatalf("policy head %d, %v; want the third record at %d (log %+v)", head, err, l.record3, l)
	}
	return l
}

// A view that starts on a log where a policy message is gone refuses every
// snapshot, names the gap, re-reads at most RereadsMax times and stays
// closed. Without the check it handed out snapshots at the head, with a
// freeze missing.
func TestViewFailsClosedOnAMissingPolicyMessage(t *testing.T) {
	l := writePolicyLog(t)
	tests := []struct {
		name    string
		missing func(policyLog) uint64
		want    func(policyLog) Discontinuity
	}{
		{"an event inside a batch", func(l policyLog) uint64 { return l.f2 }, func(l policyLog) Discontinuity {
			return Discontinuity{Record: l.record2, Previous: l.record1, LastApplied: l.record1, Messages: 1, Seen: 0}
		}},
		{"the previous batch's record", func(l policyLog) uint64 { return l.record1 }, func(l policyLog) Discontinuity {
			return Discontinuity{Record: l.record2, Previous: l.record1, LastApplied: l.f1Idem, Messages: 1, Seen: 1}
		}},
		{"the first policy message of the log", func(l policyLog) uint64 { return l.f1 }, func(l policyLog) Discontinuity {
			return Discontinuity{Record: l.record1, Previous: 0, LastApplied: 0, Messages: 2, Seen: 1}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, js := startServer(t)
			dst := copyLog(t, l.js, js)
			ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
			defer cancel()
			if err := dst.DeleteMsg(ctx, tt.missing(l)); err != nil {
				t.Fatal(err)
			}
			v, err := Start(ctx, logSource{js})
			if err != nil {
				t.Fatalf("Start on a log with a gap: %v; want a view failed closed", err)
			}
			defer v.Close()
			checkRefuses(t, v, tt.want(l))
			select {
			case <-v.done: // gave up re-reading: the message is gone
			case <-ctx.Done():
				t.Fatal("the view neither recovered nor gave up re-reading")
			}
			err = checkRefuses(t, v, tt.want(l))
			if !strings.Contains(err.Error(), fmt.Sprintf("still missing after %d re-reads", RereadsMax)) {
				t.Errorf("closed for good: %v; want it to say the message is still missing", err)
			}
			if got := v.Breaks(); got != RereadsMax+1 {
				t.Errorf("Breaks = %d, want %d (the first read and every re-read)", got, RereadsMax+1)
			}
		})
	}
}

// checkRefuses asserts that v refuses snapshots for the gap want, and
// returns the error Snapshot gave.
func checkRefuses(t *testing.T, v *View, want Discontinuity) error {
	t.Helper()
	for _, refresh := range []bool{false, true} {
		_, err := v.Snapshot(context.Background(), refresh)
		if events.KindOf(err) != events.KindUnavailable {
			t.Fatalf("Snapshot(refresh %v) = %v; want unavailable", refresh, err)
		}
		var gap *Discontinuity
		if !errors.As(err, &gap) {
			t.Fatalf("Snapshot: %v; want a Discontinuity", err)
		}
		if diff := cmp.Diff(want, *gap); diff != "" {
			t.Errorf("gap (-want +got):\n%s", diff)
		}
		if !strings.Contains(err.Error(), "policy log not continuous") || !strings.Contains(err.Error(), "refusing fenced decisions") {
			t.Errorf("Snapshot error %q does not say what is wrong", err)
		}
	}
	if err := v.Err(); err == nil {
		t.Error("Err = nil on a view failed closed")
	}
	_, err := v.Snapshot(context.Background(), false)
	return err
}

// The log without the gap is accepted, on the same stream settings.
func TestViewAcceptsTheCopiedLog(t *testing.T) {
	l := writePolicyLog(t)
	_, js := startServer(t)
	copyLog(t, l.js, js)
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	v, err := Start(ctx, logSource{js})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	snap, err := v.Snapshot(ctx, true)
	if err != nil || snap.Position != l.record3 || len(snap.Rules.Timeline) != 3 {
		t.Fatalf("Snapshot = position %d, %d rules, %v; want %d, 3 rules", snap.Position, len(snap.Rules.Timeline), err, l.record3)
	}
}

// A policy message the server skips once (a damaged block served from
// another replica on the next read) fails the live view closed until its
// re-read finds it; the view then holds the freeze. Without the check the
// view handed out snapshots at the head without it.
func TestViewRereadsAPolicyMessageItMissed(t *testing.T) {
	st, _ := startStore(t)
	appendOK(t, st, freeze(t, "f1", false))
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	head, err := st.PolicyHead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var dropped atomic.Uint64
	v, err := start(ctx, st, func(pos uint64) bool {
		// The first message after the head at start, once.
		return pos > head && dropped.CompareAndSwap(0, pos)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	a := appendOK(t, st, freeze(t, "f2", false))
	want := a.LastPosition + 1 // the batch's record
	for {
		snap, err := v.Snapshot(ctx, false)
		if err == nil && snap.Position == want {
			if len(snap.Rules.Timeline) != 2 || snap.Rules.Timeline[1].RuleID != "f2" {
				t.Fatalf("after the re-read the view holds %d rules (%+v); want f1 and f2", len(snap.Rules.Timeline), snap.Rules.Timeline)
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the view did not recover: %v (position %d, want %d)", err, snap.Position, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := dropped.Load(); got != a.FirstPosition {
		t.Errorf("dropped %d, want the freeze at %d", got, a.FirstPosition)
	}
	if got := v.Breaks(); got != 1 {
		t.Errorf("Breaks = %d, want 1", got)
	}
	if err := v.Err(); err != nil {
		t.Errorf("Err after recovery = %v", err)
	}
}

// Many policy batches, group-committed with one another and with fenced and
// unfenced decisions of other contexts from concurrent writers, form a
// continuous log: a live view and one started afterwards both follow it to
// the head without a break.
func TestViewFollowsConcurrentPolicyBatches(t *testing.T) {
	st, _ := startStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	live, err := Start(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	const policyWriters, freezesEach, orderWriters, ordersEach = 8, 8, 4, 20
	var wg sync.WaitGroup
	errs := make(chan error, policyWriters*freezesEach)
	for w := range policyWriters {
		wg.Go(func() {
			for i := range freezesEach {
				if _, err := st.Append(ctx, freeze(t, fmt.Sprintf("f-%d-%d", w, i), i%2 == 0)); err != nil {
					errs <- err
				}
			}
		})
	}
	for w := range orderWriters {
		wg.Go(func() {
			for i := range ordersEach {
				id := fmt.Sprintf("o-%d-%d", w, i)
				e := events.Event{ID: events.NewID(), Type: "order.placed", SchemaVersion: 1, Source: "/ledger/order",
					AggregateID: id, OccurredAt: time.Now(), Data: []byte(`{}`), PolicyPosition: live.Position()}
				// Fenced ones may lose to a policy batch; only the log's shape matters here.
				st.Append(ctx, events.Decision{Aggregate: events.AggregateRef{Context: "order", ID: id}, Events: []events.Event{e}, Fence: i%2 == 0})
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("policy append: %v", err)
	}
	head, err := st.PolicyHead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	late, err := Start(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	for name, v := range map[string]*View{"live": live, "started after": late} {
		snap, err := v.Snapshot(ctx, true)
		if err != nil || snap.Position != head || len(snap.Rules.Timeline) != policyWriters*freezesEach {
			t.Errorf("%s view: position %d, %d rules, %v; want %d, %d rules", name, snap.Position, len(snap.Rules.Timeline), err, head, policyWriters*freezesEach)
		}
		if b := v.Breaks(); b != 0 {
			t.Errorf("%s view: %d breaks on a continuous log", name, b)
		}
	}
}

// Records of the older layout (first in their batch, no
// previous_policy_position) are accepted unchecked, before and between
// batches of the current layout, even one whose policy_position is not the
// message before it (a batch could start inside another on a cluster).
func TestViewAcceptsLegacyPolicyRecords(t *testing.T) {
	st, js := startStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	defer cancel()
	raw := func(subject, data string) uint64 {
		t.Helper()
		ack, err := js.Publish(ctx, subject, []byte(data))
		if err != nil {
			t.Fatal(err)
		}
		return ack.Sequence
	}
	legacyBatch := func(previous uint64) {
		raw(contracts.PolicyFenceRecordSubject, fmt.Sprintf(`{"policy_position":%d,"decisions":1}`, previous))
		raw(events.SubjectPrefix+"policy._idem."+strings.Repeat("a", 64), `{"key":"k"}`)
	}
	legacyBatch(0)
	appendOK(t, st, freeze(t, "f1", true))
	legacyBatch(1) // not the message before it
	appendOK(t, st, freeze(t, "f2", false))
	head, err := st.PolicyHead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	v, err := Start(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	snap, err := v.Snapshot(ctx, true)
	if err != nil || snap.Position != head || len(snap.Rules.Timeline) != 2 {
		t.Fatalf("Snapshot = position %d, %d rules, %v; want %d, 2 rules", snap.Position, len(snap.Rules.Timeline), err, head)
	}
}
