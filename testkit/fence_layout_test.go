package testkit_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/testkit"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"
)

// These tests probe the server, not the store: raw atomic batches with
// nats.go and jetstreamext, so that what they show holds for any client that
// lays its batches out the same way.

const (
	policyFilter = events.SubjectPrefix + "policy.>"
	// probeWait bounds one raw request or batch.
	probeWait = 10 * time.Second
)

// fenceCheck returns a message on subject that carries the check "the last
// message on ledger.policy.> is at pos".
func fenceCheck(subject string, pos uint64) *nats.Msg {
	m := nats.NewMsg(subject)
	m.Data = []byte(`{}`)
	m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(pos, 10))
	m.Header.Set(jetstream.ExpectedLastSubjSeqSubjHeader, policyFilter)
	return m
}

func plainMsg(subject string) *nats.Msg {
	m := nats.NewMsg(subject)
	m.Data = []byte(`{}`)
	return m
}

// leaderLast asks the stream leader (not a replica: no direct get) for the
// position of the last message on subject, 0 if there is none.
func leaderLast(ctx context.Context, nc *nats.Conn, subject string) (uint64, error) {
	seq, _, err := leaderLastMsg(ctx, nc, subject)
	return seq, err
}

// leaderLastMsg is leaderLast that also returns the message's subject.
func leaderLastMsg(ctx context.Context, nc *nats.Conn, subject string) (uint64, string, error) {
	req, _ := json.Marshal(map[string]string{"last_by_subj": subject})
	resp, err := nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+events.StreamName, req)
	if err != nil {
		return 0, "", err
	}
	var r struct {
		Message *struct {
			Seq     uint64 `json:"seq"`
			Subject string `json:"subject"`
		} `json:"message"`
		Error *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return 0, "", err
	}
	if r.Error != nil {
		if r.Error.Code == 404 {
			return 0, "", nil
		}
		return 0, "", r.Error
	}
	return r.Message.Seq, r.Message.Subject, nil
}

// connectNodes starts one embedded node or a cluster of n and connects to
// it.
func connectNodes(t *testing.T, n int) *nats.Conn {
	t.Helper()
	if n == 1 {
		return testkit.StartNode(t).Connect(t)
	}
	return testkit.StartCluster(t, n).Connect(t)
}

func apiErrCode(err error) jetstream.ErrorCode {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode
	}
	return 0
}

func publishBatch(js jetstream.JetStream, msgs []*nats.Msg) (*jetstreamext.BatchAck, error) {
	ctx, cancel := context.WithTimeout(context.Background(), probeWait)
	defer cancel()
	return jetstreamext.PublishMsgBatch(ctx, js, msgs, jetstreamext.BatchFlowControl{AckTimeout: probeWait})
}

// TestPolicyCheckInsideABatchCountsOnlyStoredMessages pins down how the
// server evaluates Nats-Expected-Last-Subject-Sequence on ledger.policy.>
// for a message of an atomic batch whose earlier messages match the same
// filter: against the messages stored before the batch, never counting the
// batch's own. A fence record placed last in a policy batch therefore
// expects the policy head as it was before the batch.
func TestPolicyCheckInsideABatchCountsOnlyStoredMessages(t *testing.T) {
	for _, nodes := range []int{1, 3} {
		t.Run(fmt.Sprintf("%d nodes", nodes), func(t *testing.T) {
			nc := connectNodes(t, nodes)
			js, err := jetstream.New(nc)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), probeWait)
			defer cancel()
			if _, err := js.Publish(ctx, events.SubjectPrefix+"policy.r0.set", []byte(`{}`)); err != nil {
				t.Fatal(err)
			}
			head, err := leaderLast(ctx, nc, policyFilter)
			if err != nil || head == 0 {
				t.Fatalf("policy head = %d, %v", head, err)
			}
			batch := func(expect uint64) []*nats.Msg {
				return []*nats.Msg{plainMsg(events.SubjectPrefix + "policy.r1.set"), plainMsg(events.SubjectPrefix + "order.o1.placed"),
					plainMsg(events.SubjectPrefix + "policy.r2.set"), fenceCheck(events.SubjectPrefix+"policy._fence", expect)}
			}
			// Counting the batch's two earlier policy messages is refused:
			// they are not stored yet when the check is evaluated.
			if _, err := publishBatch(js, batch(head+3)); apiErrCode(err) != jetstream.JSErrCodeStreamWrongLastSequence {
				t.Errorf("check on the head plus the batch's own policy messages: got %v, want 10071", err)
			}
			ack, err := publishBatch(js, batch(head))
			if err != nil {
				t.Fatalf("check on the head before the batch, carried by its last message: %v", err)
			}
			if ack.Sequence != head+4 {
				t.Errorf("batch stored up to %d, want %d", ack.Sequence, head+4)
			}
			// The head is now the fence record itself: the next policy batch
			// names it, which chains the records for a follower.
			if got, err := leaderLast(ctx, nc, policyFilter); err != nil || got != ack.Sequence {
				t.Errorf("policy head after the batch = %d, %v; want the fence record at %d", got, err, ack.Sequence)
			}
		})
	}
}

// fenceLayout says where a policy batch carries its check on ledger.policy.>.
type fenceLayout int

const (
	fenceFirst fenceLayout = iota // the record before the batch's policy messages
	fenceLast                     // the record after them: the batch's last message
)

func (l fenceLayout) String() string { return [...]string{"fence first", "fence last"}[l] }

// The window race. nats-server v2.15.2 applies a replicated batch message by
// message, taking the stream lock for each, and a proposal's
// expected-subject check (evaluated on the leader under that lock, against
// what is applied so far) can run between two of them. The in-flight marker
// that blocks a concurrent check on ledger.policy.> lasts until the message
// carrying the policy batch's own check is applied. With the check on the
// batch's first message, a fenced check that names the position of message
// k of the batch passes if it is evaluated after message k is applied and
// before message k+1 is, and the fenced batch is then stored after the whole
// policy batch. With the check on the last message, every fenced check
// evaluated while the batch is applied is refused (10164).
//
// The window after one message is about as long as storing the next one
// takes, so the race makes it long and aims at it exactly: a policy batch is
// a few messages of half a MiB each (a batch of 500 small messages, as a
// committer sends, leaves windows of microseconds: 0 violations in more than
// 290 rounds), and each chaser aims at one position of the batch about to be
// sent (the head read from the leader plus 1 to windowPolicyMsgs), so that
// whichever message is being applied when a chaser is evaluated, a chaser
// aimed at it exists. The chasers send only while a policy batch is in
// flight, so that the CPU goes to the race.
const (
	// windowPolicyMsgs is the size of a policy batch in the race.
	windowPolicyMsgs = 8
	// windowBodyBytes is the size of each policy message's body, half the
	// server's default max_payload.
	windowBodyBytes = 512 << 10
	// windowChasers is one fenced client per position of a policy batch.
	windowChasers = windowPolicyMsgs
	// windowPolicyAttempts bounds the sends of one policy batch.
	windowPolicyAttempts = 1000
	// windowFirstRoundsMax and windowFirstBudget bound the fence-first
	// race, which stops at its first violation. At the hit rate measured
	// on two loaded cores (a violation in 49 of 90 rounds under -race, 28
	// of 90 without: TestFenceFirstLetsFencedChecksThrough) 40 rounds all
	// miss with a probability below 1e-6.
	windowFirstRoundsMax = 40
	windowFirstBudget    = 25 * time.Second
	// windowLastRoundsMin and windowLastBudget bound the fence-last race:
	// at least as many rounds as fence first needed, and never fewer than
	// this many, in which the fence-first layout lets three to five
	// through.
	windowLastRoundsMin = 10
	windowLastBudget    = 25 * time.Second
)

// windowRun says how long a window race runs.
type windowRun struct {
	roundsMax   int
	budget      time.Duration // no round starts after it is spent
	stopAtFirst bool          // stop after the first round that let a fenced batch through
	prefix      string        // of the race's subjects
}

// windowResult is what one window race saw.
type windowResult struct {
	rounds         int
	roundsHit      int // rounds whose policy batch let a fenced batch through, seen from the acks
	fencedAccepted int64
	fencedRefused  int64 // 10071: the check named another position
	fencedBlocked  int64 // 10164: a check on ledger.policy.> was in flight
	insideHeads    int   // 10071 refusals that reported a head inside a policy batch
	violations     []string
	took           time.Duration
}

// raceRound is one round of the window race: the policy head its policy
// batch expects, opened to the chasers just before the batch is sent and
// over once the batch is stored and every chaser has finished the attempt
// it was making then.
type raceRound struct {
	base  uint64
	start chan struct{}
	over  chan struct{}
	next  *raceRound // set before start is closed
}

func newRaceRound() *raceRound {
	return &raceRound{start: make(chan struct{}), over: make(chan struct{})}
}

// fencedAck is an accepted fenced batch: the policy position its check
// named and the position it was stored at.
type fencedAck struct{ aim, seq uint64 }

// refusedHead returns the policy head a 10071 refusal reports ("wrong last
// sequence: N").
func refusedHead(err error) (uint64, bool) {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorCode != jetstream.JSErrCodeStreamWrongLastSequence {
		return 0, false
	}
	i := strings.LastIndexByte(apiErr.Description, ' ')
	n, err := strconv.ParseUint(apiErr.Description[i+1:], 10, 64)
	return n, err == nil
}

// windowChaser is one fenced client of the window race, on a connection of
// its own. While a round is open it sends 2-message fenced batches (an event
// and a fence record) in a tight loop, each checking ledger.policy.> at the
// round's base plus 1+w%windowPolicyMsgs, and keeps what the server
// answered: accepted batches with their positions, the heads reported by
// refusals.
type windowChaser struct {
	w        int
	js       jetstream.JetStream
	prefix   string
	done     atomic.Int64 // attempts finished
	accepted atomic.Int64
	refused  atomic.Int64
	blocked  atomic.Int64
	mu       sync.Mutex
	acks     []fencedAck
	heads    []uint64 // reported by 10071 refusals
}

func (ch *windowChaser) run(ctx context.Context, r *raceRound, stop *atomic.Bool) error {
	for i := 0; ; r = r.next {
		select {
		case <-r.start:
		case <-ctx.Done():
			return nil
		}
		for open := true; open && !stop.Load() && ctx.Err() == nil; i++ {
			select {
			case <-r.over:
				open = false
				continue
			default:
			}
			aim := r.base + 1 + uint64(ch.w%windowPolicyMsgs)
			ev := plainMsg(fmt.Sprintf("%sorder.%s-w%d-%d.placed", events.SubjectPrefix, ch.prefix, ch.w, i))
			ev.Header.Set(events.HeaderPolicyPosition, strconv.FormatUint(aim, 10))
			ack, err := publishBatch(ch.js, []*nats.Msg{ev, fenceCheck(events.SubjectPrefix+"order._fence", aim)})
			if head, ok := refusedHead(err); ok {
				ch.refused.Add(1)
				ch.mu.Lock()
				ch.heads = append(ch.heads, head)
				ch.mu.Unlock()
			} else {
				switch apiErrCode(err) {
				case 0:
					if err != nil {
						return err
					}
					ch.accepted.Add(1)
					ch.mu.Lock()
					ch.acks = append(ch.acks, fencedAck{aim, ack.Sequence})
					ch.mu.Unlock()
				case jetstream.JSErrCodeStreamWrongLastSequenceConstant:
					ch.blocked.Add(1)
				case jetstreamext.JSErrCodeAtomicPublishTooManyInflight:
					ch.refused.Add(1)
				default:
					return err
				}
			}
			ch.done.Add(1)
		}
		if stop.Load() || ctx.Err() != nil {
			return nil
		}
	}
}

// windowRace runs policy batches of windowPolicyMsgs laid out as layout on
// c, one per round, against windowChasers fenced clients, each on its own
// connection, and judges the raw log from where the race started.
func windowRace(t *testing.T, c *testkit.Cluster, layout fenceLayout, run windowRun) windowResult {
	t.Helper()
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), run.budget+20*time.Second)
	defer cancel()
	nc := c.Connect(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	from, err := leaderLast(ctx, nc, events.SubjectPrefix+">")
	if err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, windowChasers)
	round := newRaceRound()
	chasers := make([]*windowChaser, windowChasers)
	for w := range chasers {
		cjs, err := jetstream.New(c.Connect(t))
		if err != nil {
			t.Fatal(err)
		}
		ch := &windowChaser{w: w, js: cjs, prefix: run.prefix}
		chasers[w] = ch
		wg.Go(func() {
			if err := ch.run(ctx, round, &stop); err != nil {
				errs <- err
			}
		})
	}
	body := []byte(`{"pad":"` + strings.Repeat("x", windowBodyBytes) + `"}`)
	var res windowResult
	var batches [][2]uint64 // first and last position of each policy batch
	for res.rounds < run.roundsMax && time.Since(start) < run.budget {
		head, err := leaderLast(ctx, nc, policyFilter)
		if err != nil {
			t.Fatal(err)
		}
		round.base, round.next = head, newRaceRound()
		close(round.start)
		ack, n, err := sendWindowPolicyBatch(ctx, nc, js, layout, body, fmt.Sprintf("%s-%d", run.prefix, res.rounds))
		if err != nil {
			t.Fatalf("round %d: policy batch: %v after %d attempts", res.rounds, err, n)
		}
		batches = append(batches, [2]uint64{ack.Sequence + 1 - windowPolicyMsgs, ack.Sequence})
		res.rounds++
		// A fenced batch let through by this policy batch was in flight when
		// the batch was stored: wait for each chaser's current attempt.
		if err := awaitAttempts(ctx, chasers); err != nil {
			t.Fatalf("round %d: %v", res.rounds, err)
		}
		close(round.over)
		round = round.next
		hits := 0
		for _, ch := range chasers {
			ch.mu.Lock()
			for _, a := range ch.acks {
				if slices.ContainsFunc(batches, func(b [2]uint64) bool { return a.aim < b[1] && b[1] < a.seq }) {
					hits++
				}
			}
			ch.mu.Unlock()
		}
		if hits > res.roundsHit {
			res.roundsHit = hits
			if run.stopAtFirst {
				break
			}
		}
	}
	stop.Store(true)
	close(round.start) // the round that never started: let the chasers see stop
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("chaser: %v", err)
	}
	for _, ch := range chasers {
		res.fencedAccepted += ch.accepted.Load()
		res.fencedRefused += ch.refused.Load()
		res.fencedBlocked += ch.blocked.Load()
		for _, h := range ch.heads {
			if slices.ContainsFunc(batches, func(b [2]uint64) bool { return b[0] <= h && h < b[1] }) {
				res.insideHeads++
			}
		}
	}
	res.violations = judgeFence(t, ctx, js, from+1)
	res.took = time.Since(start)
	return res
}

// awaitAttempts waits until every chaser has finished the attempt it was
// making when called.
func awaitAttempts(ctx context.Context, chasers []*windowChaser) error {
	seen := make([]int64, len(chasers))
	for i, ch := range chasers {
		seen[i] = ch.done.Load()
	}
	for i, ch := range chasers {
		for ch.done.Load() <= seen[i] {
			if ctx.Err() != nil {
				return fmt.Errorf("chaser %d: no attempt finished: %w", i, ctx.Err())
			}
			time.Sleep(time.Millisecond)
		}
	}
	return nil
}

// sendWindowPolicyBatch sends one policy batch of windowPolicyMsgs messages
// with its fence record where layout says, on the policy head it reads from
// the leader, and sends it again (reading the head again) while it is
// refused. It returns the attempts made.
func sendWindowPolicyBatch(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, layout fenceLayout, body []byte, round string) (*jetstreamext.BatchAck, int, error) {
	for n := 1; ; n++ {
		head, err := leaderLast(ctx, nc, policyFilter)
		if err != nil {
			return nil, n, err
		}
		var msgs []*nats.Msg
		for k := range windowPolicyMsgs - 1 {
			m := plainMsg(fmt.Sprintf("%spolicy.%s-%d.set", events.SubjectPrefix, round, k))
			m.Data = body
			msgs = append(msgs, m)
		}
		fence := fenceCheck(events.SubjectPrefix+"policy._fence", head)
		if layout == fenceFirst {
			msgs = append([]*nats.Msg{fence}, msgs...)
		} else {
			msgs = append(msgs, fence)
		}
		ack, err := publishBatch(js, msgs)
		switch apiErrCode(err) {
		case jetstream.JSErrCodeStreamWrongLastSequence, jetstream.JSErrCodeStreamWrongLastSequenceConstant,
			jetstreamext.JSErrCodeAtomicPublishTooManyInflight:
			if n >= windowPolicyAttempts {
				return nil, n, err
			}
			continue
		}
		return ack, n, err
	}
}

func (r windowResult) String() string {
	return fmt.Sprintf("%d rounds, %d with a fenced batch let through (seen from the acks); fenced %d accepted, %d refused (%d naming a head inside a policy batch), %d blocked by a check in flight; %d violations in the log; %s",
		r.rounds, r.roundsHit, r.fencedAccepted, r.fencedRefused, r.insideHeads, r.fencedBlocked, len(r.violations), r.took.Round(time.Millisecond))
}

// policyHead is a position on ledger.policy.> and its subject.
type policyHead struct {
	seq     uint64
	subject string
}

// followPolicy follows ledger.policy.> from its start on a connection of its
// own, as a policy view does, and keeps the newest delivered message.
func followPolicy(t *testing.T, ctx context.Context, c *testkit.Cluster) *atomic.Pointer[policyHead] {
	t.Helper()
	js, err := jetstream.New(c.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.OrderedConsumer(ctx, events.StreamName, jetstream.OrderedConsumerConfig{FilterSubjects: []string{policyFilter}})
	if err != nil {
		t.Fatal(err)
	}
	var head atomic.Pointer[policyHead]
	head.Store(&policyHead{})
	cc, err := cons.Consume(func(m jetstream.Msg) {
		if md, err := m.Metadata(); err == nil {
			head.Store(&policyHead{seq: md.Sequence.Stream, subject: m.Subject()})
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Stop)
	return &head
}

// judgeFence reads the raw log from position from and returns every
// message that records a policy position (ce-policyposition) older than a
// message on ledger.policy.> stored before it: a decision made under an
// older policy and stored after a newer one. It decodes nothing but that
// header.
func judgeFence(t *testing.T, ctx context.Context, js jetstream.JetStream, from uint64) []string {
	t.Helper()
	st, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	last := info.State.LastSeq
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from, HeadersOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	it, err := cons.Messages()
	if err != nil {
		t.Fatal(err)
	}
	defer it.Stop()
	var bad []string
	var policyHead uint64
	policy := policyFilter[:len(policyFilter)-1]
	for seq := uint64(0); seq < last; {
		m, err := it.Next()
		if err != nil {
			t.Fatalf("reading the log at %d of %d: %v", seq, last, err)
		}
		md, err := m.Metadata()
		if err != nil {
			t.Fatal(err)
		}
		seq = md.Sequence.Stream
		if len(m.Subject()) > len(policy) && m.Subject()[:len(policy)] == policy {
			policyHead = seq
			continue
		}
		if v := m.Headers().Get(events.HeaderPolicyPosition); v != "" {
			p, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				t.Fatalf("position %d: %s %q: %v", seq, events.HeaderPolicyPosition, v, err)
			}
			if p < policyHead {
				bad = append(bad, fmt.Sprintf("%s at %d decided under policy %d, stored after the policy message at %d", m.Subject(), seq, p, policyHead))
			}
		}
	}
	return bad
}

// TestFencedCheckCannotPassInsideAPolicyBatch shows, on three nodes and at
// the server level, the window a policy batch leaves open when its check on
// ledger.policy.> is carried by its first message, and that carrying it on
// the last message closes it. Both layouts run the same window race (see
// windowPolicyMsgs) on one cluster: with the fence record first it must let
// a fenced batch through (a fenced event stored after a policy batch with a
// policy position inside it, judged from the raw log), and it stops at the
// first round that does; with the fence record last it must let none
// through in at least as many rounds, and at least windowLastRoundsMin.
// Measured on two shared cores (load average 10 to 18), 10 runs under -race
// and 10 without: fence first let one through in every run, after 1 to 4
// rounds; fence last let none through in any run. A run took 4 to 20 s
// under -race, 1.4 to 9 s without (docs/adr/0004-policy-fence.md).
func TestFencedCheckCannotPassInsideAPolicyBatch(t *testing.T) {
	if testing.Short() {
		t.Skip("three-node race")
	}
	c := testkit.StartCluster(t, 3)
	first := windowRace(t, c, fenceFirst, windowRun{roundsMax: windowFirstRoundsMax, budget: windowFirstBudget, stopAtFirst: true, prefix: "first"})
	t.Logf("%s: %s", fenceFirst, first)
	for _, v := range first.violations {
		t.Logf("%s: %s", fenceFirst, v)
	}
	if len(first.violations) == 0 {
		t.Errorf("%s: no fenced batch passed its check inside a policy batch in %d rounds: the race did not open the window it must show", fenceFirst, first.rounds)
	}
	last := windowRace(t, c, fenceLast, windowRun{roundsMax: max(first.rounds, windowLastRoundsMin), budget: windowLastBudget, prefix: "last"})
	t.Logf("%s: %s", fenceLast, last)
	for _, v := range last.violations {
		t.Errorf("%s: %s", fenceLast, v)
	}
	if last.rounds < first.rounds {
		t.Errorf("%s: %d rounds in %s, fewer than the %d %s needed", fenceLast, last.rounds, windowLastBudget, first.rounds, fenceFirst)
	}
	if last.fencedBlocked == 0 {
		t.Errorf("%s: no fenced check was refused for a policy batch in flight: the race did not run", fenceLast)
	}
}

// TestFenceFirstLetsFencedChecksThrough measures the window race's hit rate
// with the fence record first: it runs LEDGER_FENCE_FIRST_ROUNDS rounds
// without stopping and logs how many let a fenced batch through (at most one
// a round: the check that passes holds the in-flight marker until its own
// batch is applied, after the policy batch). Run it with
// LEDGER_FENCE_FIRST_ROUNDS=30 go test -race -run TestFenceFirstLetsFencedChecksThrough -v.
// Measured on two shared cores, three runs of 30 rounds each way: 16, 15
// and 18 rounds hit under -race (20 to 27 s a run), 11, 8 and 9 without
// (3 to 6 s).
func TestFenceFirstLetsFencedChecksThrough(t *testing.T) {
	rounds, _ := strconv.Atoi(os.Getenv("LEDGER_FENCE_FIRST_ROUNDS"))
	if rounds <= 0 {
		t.Skip("set LEDGER_FENCE_FIRST_ROUNDS to measure the fence-first hit rate")
	}
	c := testkit.StartCluster(t, 3)
	first := windowRace(t, c, fenceFirst, windowRun{roundsMax: rounds, budget: time.Duration(rounds) * 3 * time.Second, prefix: "first"})
	t.Logf("%s: %s", fenceFirst, first)
	for _, v := range first.violations {
		t.Logf("%s: %s", fenceFirst, v)
	}
}
