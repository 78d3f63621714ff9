package testkit_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
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

// leaderChangeWait bounds one raw batch of the leader-change race: a batch
// whose ack is lost in an election is given up on quickly, as a client with
// a short timeout would.
const leaderChangeWait = 2 * time.Second

// leaderChangeChasers is how many clients send fenced batches during the
// leader-change race, each on its own connection.
const leaderChangeChasers = 8

// publishBatchWithin is publishBatch bounded by d.
func publishBatchWithin(js jetstream.JetStream, msgs []*nats.Msg, d time.Duration) (*jetstreamext.BatchAck, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return jetstreamext.PublishMsgBatch(ctx, js, msgs, jetstreamext.BatchFlowControl{AckTimeout: d})
}

// leaderChangeRace runs rounds of: a small policy batch (a freeze and its
// fence record, last, checking the head before it) sent while the stream
// leader is asked to step down, and fenced 2-message batches from
// leaderChangeChasers clients that check ledger.policy.> at the head their
// own follower of the policy subject has delivered (a service's view), sent
// as fast as they can across the election. Batches whose outcome is unknown
// are not counted; the raw log is judged at the end.
func leaderChangeRace(t *testing.T, c *testkit.Cluster, rounds int) (violations []string, accepted, refused, unknown int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 80*time.Second)
	defer cancel()
	var stop atomic.Bool
	var wg sync.WaitGroup
	var nAcc, nRef, nUnk, attempts atomic.Int64
	followed := followPolicy(t, ctx, c)
	for w := range leaderChangeChasers {
		js, err := jetstream.New(c.Connect(t))
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load() && ctx.Err() == nil; i++ {
				head := followed.Load().seq
				ev := plainMsg(fmt.Sprintf("%sorder.lc-w%d-%d.placed", events.SubjectPrefix, w, i))
				ev.Header.Set(events.HeaderPolicyPosition, strconv.FormatUint(head, 10))
				attempts.Add(1)
				_, err := publishBatchWithin(js, []*nats.Msg{ev, fenceCheck(events.SubjectPrefix+"order._fence", head)}, leaderChangeWait)
				switch {
				case err == nil:
					nAcc.Add(1)
				case apiErrCode(err) != 0:
					nRef.Add(1)
				default:
					nUnk.Add(1)
					time.Sleep(time.Millisecond)
				}
			}
		}()
	}
	nc := c.Connect(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0))
	for r := range rounds {
		for seen := attempts.Load(); attempts.Load() < seen+leaderChangeChasers && ctx.Err() == nil; {
			time.Sleep(time.Millisecond)
		}
		if ctx.Err() != nil {
			t.Fatalf("round %d: %v", r, ctx.Err())
		}
		stepped := make(chan error, 1)
		go func() {
			time.Sleep(time.Duration(rng.IntN(3000)) * time.Microsecond)
			_, err := c.StepDownStreamLeader(ctx)
			stepped <- err
		}()
		if err := sendFreezeAcrossElection(ctx, nc, js, fmt.Sprintf("lc-%d", r)); err != nil {
			t.Fatalf("round %d: policy batch: %v", r, err)
		}
		if err := <-stepped; err != nil {
			t.Fatalf("round %d: stepdown: %v", r, err)
		}
	}
	stop.Store(true)
	wg.Wait()
	return judgeFence(t, ctx, js, 1), nAcc.Load(), nRef.Load(), nUnk.Load()
}

// sendFreezeAcrossElection sends a policy batch (one freeze message and the
// fence record checking the head before it) until it is stored, reading the
// head from the leader before each send. A send whose outcome is unknown is
// resolved by looking for the freeze's subject in the log.
func sendFreezeAcrossElection(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, round string) error {
	subj := events.SubjectPrefix + "policy." + round + ".imposed"
	for n := 1; ctx.Err() == nil; n++ {
		rctx, cancel := context.WithTimeout(ctx, leaderChangeWait)
		head, hsubj, err := leaderLastMsg(rctx, nc, policyFilter)
		cancel()
		if err != nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if hsubj == subj || hsubj == events.SubjectPrefix+"policy._fence" {
			rctx, cancel := context.WithTimeout(ctx, leaderChangeWait)
			got, _ := leaderLast(rctx, nc, subj)
			cancel()
			if got != 0 {
				return nil // stored by an attempt whose ack was lost
			}
		}
		m := plainMsg(subj)
		_, err = publishBatchWithin(js, []*nats.Msg{m, fenceCheck(events.SubjectPrefix+"policy._fence", head)}, leaderChangeWait)
		if err == nil {
			return nil
		}
		if n > 500 {
			return err
		}
		time.Sleep(time.Duration(n%4) * time.Millisecond)
	}
	return ctx.Err()
}

// TestFencedCheckHoldsAcrossALeaderChange races raw fenced batches against
// policy batches sent while the stream leader steps down, on three nodes,
// and judges the raw log: no message decided under a policy position may be
// stored after a newer policy message.
func TestFencedCheckHoldsAcrossALeaderChange(t *testing.T) {
	if testing.Short() {
		t.Skip("three-node race")
	}
	rounds := 12
	if n, _ := strconv.Atoi(os.Getenv("LEDGER_LEADER_CHANGE_ROUNDS")); n > 0 {
		rounds = n
	}
	c := testkit.StartCluster(t, 3)
	start := time.Now()
	bad, acc, ref, unk := leaderChangeRace(t, c, rounds)
	t.Logf("%d rounds: fenced %d accepted, %d refused, %d unknown; %d let through; %s", rounds, acc, ref, unk, len(bad), time.Since(start))
	for _, v := range bad {
		t.Error(v)
	}
}

// storeLeaderChangeRace is leaderChangeRace through the store: fenced
// writers (stores on connections of their own, as other processes) decide
// under the policy head their follower of ledger.policy.> has delivered, as
// a service's policy view does, and decide again on any error; a policy
// store appends one freeze per round, retrying when the outcome is unknown,
// while the stream leader is asked to step down. The raw log is judged.
func storeLeaderChangeRace(t *testing.T, c *testkit.Cluster, rounds int, budget time.Duration) (bad []string, accepted, refused, unknown int64, done int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), budget+30*time.Second)
	defer cancel()
	policy := c.NewStore(t)
	followed := followPolicy(t, ctx, c)
	var stop atomic.Bool
	var wg sync.WaitGroup
	var nAcc, nRef, nUnk, attempts atomic.Int64
	for w := range 4 {
		ws := c.NewStore(t)
		for k := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; !stop.Load() && ctx.Err() == nil; i++ {
					ref := events.AggregateRef{Context: "order", ID: fmt.Sprintf("slc-w%d-%d-%d", w, k, i)}
					e := testkit.NewEvent(ref, "placed")
					e.PolicyPosition = followed.Load().seq
					attempts.Add(1)
					actx, acancel := context.WithTimeout(ctx, 15*time.Second)
					_, err := ws.Append(actx, events.Decision{Aggregate: ref, Events: []events.Event{e}, Fence: true})
					acancel()
					switch {
					case err == nil:
						nAcc.Add(1)
					case events.KindOf(err) == events.KindConflict:
						nRef.Add(1)
					default:
						nUnk.Add(1)
						time.Sleep(time.Millisecond)
					}
				}
			}()
		}
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0))
	begin := time.Now()
	for r := 0; r < rounds && time.Since(begin) < budget; r++ {
		for seen := attempts.Load(); attempts.Load() < seen+16 && ctx.Err() == nil; {
			time.Sleep(time.Millisecond)
		}
		stepped := make(chan error, 1)
		go func() {
			time.Sleep(time.Duration(rng.IntN(3000)) * time.Microsecond)
			_, err := c.StepDownStreamLeader(ctx)
			stepped <- err
		}()
		ref := events.AggregateRef{Context: "policy", ID: fmt.Sprintf("slc-freeze-%d", r)}
		ev := testkit.NewEvent(ref, "freeze_imposed")
		for n := 0; ; n++ {
			_, err := policy.Append(ctx, events.Decision{Aggregate: ref, Events: []events.Event{ev},
				IdempotencyKey: ref.ID, CommandDigest: ref.ID})
			if err == nil {
				break
			}
			if events.KindOf(err) != events.KindUnavailable || n > 200 {
				t.Fatalf("round %d: freeze: %v", r, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err := <-stepped; err != nil {
			t.Fatalf("round %d: stepdown: %v", r, err)
		}
		done++
	}
	stop.Store(true)
	wg.Wait()
	js, err := jetstream.New(c.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	return judgeFence(t, ctx, js, 1), nAcc.Load(), nRef.Load(), nUnk.Load(), done
}

// TestFreezeHoldsAcrossALeaderChange: three nodes; each round appends a
// freeze through the store while the stream leader steps down and fenced
// writers in four other stores decide under their (possibly stale) view of
// the policy head. Judged from the raw log: no fenced event is stored after
// a policy message with a ce-policyposition before it.
func TestFreezeHoldsAcrossALeaderChange(t *testing.T) {
	if testing.Short() {
		t.Skip("three-node race")
	}
	rounds := 30
	if n, _ := strconv.Atoi(os.Getenv("LEDGER_LEADER_CHANGE_ROUNDS")); n > 0 {
		rounds = n
	}
	c := testkit.StartCluster(t, 3)
	start := time.Now()
	bad, acc, ref, unk, done := storeLeaderChangeRace(t, c, rounds, 40*time.Second)
	t.Logf("%d rounds: fenced %d accepted, %d refused, %d unknown; %d let through; %s", done, acc, ref, unk, len(bad), time.Since(start))
	for _, v := range bad {
		t.Error(v)
	}
}

// TestFirstPolicyMessageAcrossALeaderChange is the raw race with, in every
// round, a policy subject that holds no message yet (ledger.p<round>.>), so
// that every check expects 0: the case of a ledger's first freeze.
func TestFirstPolicyMessageAcrossALeaderChange(t *testing.T) {
	if testing.Short() {
		t.Skip("three-node race")
	}
	rounds := 30
	if n, _ := strconv.Atoi(os.Getenv("LEDGER_LEADER_CHANGE_ROUNDS")); n > 0 {
		rounds = n
	}
	c := testkit.StartCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 85*time.Second)
	defer cancel()
	var round atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	var nAcc, nRef, nUnk, attempts atomic.Int64
	filter := func(r int64) string { return fmt.Sprintf("%sp%d.>", events.SubjectPrefix, r) }
	for w := range leaderChangeChasers {
		js, err := jetstream.New(c.Connect(t))
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load() && ctx.Err() == nil; i++ {
				r := round.Load()
				ev := plainMsg(fmt.Sprintf("%sorder.fp%d-w%d-%d.placed", events.SubjectPrefix, r, w, i))
				fence := plainMsg(events.SubjectPrefix + "order._fence")
				fence.Header.Set(jetstream.ExpectedLastSubjSeqHeader, "0")
				fence.Header.Set(jetstream.ExpectedLastSubjSeqSubjHeader, filter(r))
				attempts.Add(1)
				_, err := publishBatchWithin(js, []*nats.Msg{ev, fence}, leaderChangeWait)
				switch {
				case err == nil:
					nAcc.Add(1)
				case apiErrCode(err) != 0:
					nRef.Add(1)
				default:
					nUnk.Add(1)
					time.Sleep(time.Millisecond)
				}
			}
		}()
	}
	nc := c.Connect(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0))
	start := time.Now()
	done := 0
	for r := int64(1); r <= int64(rounds) && time.Since(start) < 60*time.Second; r++ {
		round.Store(r)
		for seen := attempts.Load(); attempts.Load() < seen+2*leaderChangeChasers && ctx.Err() == nil; {
			time.Sleep(time.Millisecond)
		}
		stepped := make(chan error, 1)
		go func() {
			time.Sleep(time.Duration(rng.IntN(3000)) * time.Microsecond)
			_, err := c.StepDownStreamLeader(ctx)
			stepped <- err
		}()
		subj := fmt.Sprintf("%sp%d.freeze", events.SubjectPrefix, r)
		for n := 1; ; n++ {
			fence := plainMsg(fmt.Sprintf("%sp%d._fence", events.SubjectPrefix, r))
			fence.Header.Set(jetstream.ExpectedLastSubjSeqHeader, "0")
			fence.Header.Set(jetstream.ExpectedLastSubjSeqSubjHeader, filter(r))
			_, err := publishBatchWithin(js, []*nats.Msg{plainMsg(subj), fence}, leaderChangeWait)
			if err == nil || apiErrCode(err) == jetstream.JSErrCodeStreamWrongLastSequence {
				break // stored, now or by an attempt whose ack was lost
			}
			if n > 2000 || ctx.Err() != nil {
				t.Fatalf("round %d: policy batch: %v", r, err)
			}
			time.Sleep(time.Duration(n%4) * time.Millisecond)
		}
		// Keep the chasers on this round's subject a while after the
		// policy message, as services whose view lags.
		for seen := attempts.Load(); attempts.Load() < seen+4*leaderChangeChasers && ctx.Err() == nil; {
			time.Sleep(time.Millisecond)
		}
		if err := <-stepped; err != nil {
			t.Fatalf("round %d: stepdown: %v", r, err)
		}
		done++
	}
	stop.Store(true)
	wg.Wait()
	// Judge: per round, no chaser event stored after the round's first
	// policy message.
	st, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	it, err := cons.Messages()
	if err != nil {
		t.Fatal(err)
	}
	defer it.Stop()
	first := map[int64]uint64{}
	var bad []string
	for seq := uint64(0); seq < info.State.LastSeq; {
		m, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		md, _ := m.Metadata()
		seq = md.Sequence.Stream
		var r int64
		var rest string
		if n, _ := fmt.Sscanf(m.Subject(), events.SubjectPrefix+"p%d.%s", &r, &rest); n == 2 {
			if first[r] == 0 {
				first[r] = seq
			}
			continue
		}
		if n, _ := fmt.Sscanf(m.Subject(), events.SubjectPrefix+"order.fp%d-%s", &r, &rest); n == 2 && first[r] != 0 {
			bad = append(bad, fmt.Sprintf("%s at %d checked p%d.> empty, stored after its message at %d", m.Subject(), seq, r, first[r]))
		}
	}
	it.Stop()
	t.Logf("%d rounds: fenced %d accepted, %d refused, %d unknown; %d let through; %s", done, nAcc.Load(), nRef.Load(), nUnk.Load(), len(bad), time.Since(start))
	for _, v := range bad {
		t.Error(v)
	}
}
