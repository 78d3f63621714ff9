package testkit_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
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

// raceResult is what one fence race saw.
type raceResult struct {
	rounds         int
	fencedAccepted int64
	fencedRefused  int64
	policyAttempts int
	violations     []string
	insideReads    int64 // heads read inside a policy batch being applied
}

// Sizes of the race: a policy batch as large as a committer batch, and
// enough chasers that one is nearly always reading the head or sending.
const (
	racePolicyMsgs = 500
	raceChasers    = 12
	// racePolicyAttempts bounds the sends of one policy batch; a batch
	// still refused after that many is a starved policy append.
	racePolicyAttempts = 2000
	// raceAim is how far past the followed head a chaser aims.
	raceAim = racePolicyMsgs + 4*raceChasers
)

// fenceRace runs rounds policy batches laid out as layout on c while
// raceChasers clients, each on its own connection, send 2-message fenced
// batches (an event and a fence record checking ledger.policy.> at the head
// they just read from the leader) as fast as they can. It then judges the
// raw log.
func fenceRace(t *testing.T, c *testkit.Cluster, layout fenceLayout, rounds int, prefix string) raceResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), max(45*time.Second, time.Duration(rounds)*300*time.Millisecond))
	defer cancel()
	var res raceResult
	var accepted, refused, attempts, inside atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, raceChasers)
	followed := followPolicy(t, ctx, c)
	for w := range raceChasers {
		nc := c.Connect(t)
		js, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 0))
			for i := 0; !stop.Load() && ctx.Err() == nil; i++ {
				// The follower's head: a policy view sees positions inside a
				// batch, since consumers are served as each message is
				// applied (reads of the stream are isolated from the batch,
				// deliveries are not).
				// Half the attempts aim ahead of it, at a position where
				// the next policy batch's messages may land: the apply runs
				// ahead of any delivery, and a check against a position
				// inside a batch is the worst a client can send. The other
				// half use the head as seen, as a service would.
				h := followed.Load()
				head := h.seq
				if batchLeft(h.subject) > 0 {
					inside.Add(1)
				}
				if i%2 == 1 {
					head += 1 + rng.Uint64N(raceAim)
				}
				ev := plainMsg(fmt.Sprintf("%sorder.%s-w%d-%d.placed", events.SubjectPrefix, prefix, w, i))
				ev.Header.Set(events.HeaderPolicyPosition, strconv.FormatUint(head, 10))
				attempts.Add(1)
				_, err = publishBatch(js, []*nats.Msg{ev, fenceCheck(events.SubjectPrefix+"order._fence", head)})
				switch apiErrCode(err) {
				case 0:
					if err != nil {
						errs <- err
						return
					}
					accepted.Add(1)
				case jetstream.JSErrCodeStreamWrongLastSequence, jetstream.JSErrCodeStreamWrongLastSequenceConstant,
					jetstreamext.JSErrCodeAtomicPublishTooManyInflight:
					refused.Add(1)
				default:
					errs <- err
					return
				}
			}
		}()
	}
	nc := c.Connect(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	first := uint64(0)
	for r := range rounds {
		// Let every chaser send at least once under the previous head.
		for seen := attempts.Load(); attempts.Load() < seen+raceChasers && ctx.Err() == nil; {
			time.Sleep(time.Millisecond)
		}
		ack, n, err := sendPolicyBatch(ctx, nc, js, layout, fmt.Sprintf("%s-%d", prefix, r))
		res.policyAttempts += n
		if err != nil {
			t.Fatalf("round %d: policy batch: %v after %d attempts", r, err, n)
		}
		if first == 0 {
			first = ack.Sequence - racePolicyMsgs
		}
		res.rounds++
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("chaser: %v", err)
	}
	res.fencedAccepted, res.fencedRefused, res.insideReads = accepted.Load(), refused.Load(), inside.Load()
	res.violations = judgeFence(t, ctx, js, 1)
	return res
}

// batchLeft says, for the subject of a policy head, how many policy messages
// of its round's batch follow it before the batch's last one (0 when the
// head is not inside a batch). Both layouts end with at least one message
// after the last ".set" before index racePolicyMsgs-2.
func batchLeft(subj string) uint64 {
	var round string
	var k int
	tail := strings.TrimPrefix(subj, events.SubjectPrefix+"policy.")
	i := strings.LastIndexByte(tail, '-')
	if i < 0 || !strings.HasSuffix(tail, ".set") {
		return 0
	}
	round = tail[:i]
	k, err := strconv.Atoi(strings.TrimSuffix(tail[i+1:], ".set"))
	if round == "" || err != nil || k >= racePolicyMsgs-2 {
		return 0
	}
	return uint64(racePolicyMsgs - 2 - k)
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

// racePolicyBody makes each policy message of the race about as large as a
// stored event, so that applying a batch takes as long as it would.
var racePolicyBody = []byte(`{"pad":"` + strings.Repeat("x", 1000) + `"}`)

// sendPolicyBatch sends one policy batch of racePolicyMsgs messages with
// its fence record where layout says, on the policy head it reads from the
// leader, and sends it again (reading the head again) while it is refused.
// It returns the attempts made.
func sendPolicyBatch(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, layout fenceLayout, round string) (*jetstreamext.BatchAck, int, error) {
	for n := 1; ; n++ {
		head, err := leaderLast(ctx, nc, policyFilter)
		if err != nil {
			return nil, n, err
		}
		var msgs []*nats.Msg
		for k := range racePolicyMsgs - 1 {
			m := plainMsg(fmt.Sprintf("%spolicy.%s-%d.set", events.SubjectPrefix, round, k))
			m.Data = racePolicyBody
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
			if n >= racePolicyAttempts {
				return nil, n, err
			}
			time.Sleep(time.Duration(n%4) * time.Millisecond)
			continue
		}
		return ack, n, err
	}
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
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from})
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

// TestFencedCheckCannotPassInsideAPolicyBatch races fenced 2-message batches
// against large policy batches on three nodes. With the policy batch's
// check on its last message the server holds the check's in-flight marker
// until the whole batch is applied, so no fenced batch can pass against a
// position inside it: asserted over every round. With the check on the
// first message (the layout before) the marker is gone once that message is
// applied; the count of fenced events let through is logged, not asserted,
// since it is a rare race (about 1 in 20 rounds here).
func TestFencedCheckCannotPassInsideAPolicyBatch(t *testing.T) {
	if testing.Short() {
		t.Skip("three-node race")
	}
	c := testkit.StartCluster(t, 3)
	start := time.Now()
	last := fenceRace(t, c, fenceLast, 40, "last")
	t.Logf("%s: %d rounds, %d policy attempts, fenced %d accepted %d refused, %d heads read inside a batch, %d let through, %s",
		fenceLast, last.rounds, last.policyAttempts, last.fencedAccepted, last.fencedRefused, last.insideReads, len(last.violations), time.Since(start))
	for _, v := range last.violations {
		t.Errorf("%s: %s", fenceLast, v)
	}
	if last.fencedAccepted == 0 {
		t.Errorf("no fenced batch was accepted: the race did not run")
	}
}

// TestFenceFirstLetsFencedChecksThrough shows the window the fence-last
// layout closes: the same race with the policy batch's check on its first
// message. It logs what it sees (a rare race cannot be asserted); run it
// with LEDGER_FENCE_FIRST_ROUNDS=30 -v.
func TestFenceFirstLetsFencedChecksThrough(t *testing.T) {
	rounds, _ := strconv.Atoi(os.Getenv("LEDGER_FENCE_FIRST_ROUNDS"))
	if rounds <= 0 {
		t.Skip("set LEDGER_FENCE_FIRST_ROUNDS to run the fence-first race")
	}
	c := testkit.StartCluster(t, 3)
	start := time.Now()
	first := fenceRace(t, c, fenceFirst, rounds, "first")
	t.Logf("%s: %d rounds, %d policy attempts, fenced %d accepted %d refused, %d heads read inside a batch, %d let through, %s",
		fenceFirst, first.rounds, first.policyAttempts, first.fencedAccepted, first.fencedRefused, first.insideReads, len(first.violations), time.Since(start))
	for _, v := range first.violations {
		t.Logf("%s: %s", fenceFirst, v)
	}
}
