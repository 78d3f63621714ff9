package testkit_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/runtime/policyview"
	"github.com/marketledger/ledger/testkit"
)

// TestPolicyViewContinuousOnAClusterUnderConcurrentPolicyBatches: three
// nodes; two policy stores (two processes' committers) append many freezes
// at once, which their committers batch together, while two other stores run
// fenced loops. A policy view that followed it all live and one started
// afterwards both reach the policy head with every freeze and without finding
// a gap: the continuity check refuses no log the committers write.
func TestPolicyViewContinuousOnAClusterUnderConcurrentPolicyBatches(t *testing.T) {
	if testing.Short() {
		t.Skip("three-node scenario")
	}
	c := testkit.StartCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	live, err := policyview.Start(ctx, c.NewStore(t))
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	policyStores := []*events.JetStreamStore{c.NewStore(t), c.NewStore(t)}
	fencedStores := []*events.JetStreamStore{c.NewStore(t), c.NewStore(t)}
	const appendersPerStore, freezesEach = 6, 5
	stop := make(chan struct{})
	var fenced sync.WaitGroup
	for w, st := range fencedStores {
		fenced.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				head, err := st.PolicyHead(ctx)
				if err != nil {
					return
				}
				ref := events.AggregateRef{Context: "order", ID: fmt.Sprintf("o-%d-%d", w, i)}
				e := testkit.NewEvent(ref, "placed")
				e.PolicyPosition = head
				st.Append(ctx, events.Decision{Aggregate: ref, Events: []events.Event{e}, Fence: true}) // refusals are expected
			}
		})
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(policyStores)*appendersPerStore*freezesEach)
	for s, st := range policyStores {
		for a := range appendersPerStore {
			wg.Go(func() {
				for i := range freezesEach {
					id := fmt.Sprintf("f-%d-%d-%d", s, a, i)
					if _, err := st.Append(ctx, freezeDecision(t, id, i%2 == 0)); err != nil {
						errs <- fmt.Errorf("freeze %s: %w", id, err)
					}
				}
			})
		}
	}
	wg.Wait()
	close(stop)
	fenced.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	head, err := policyStores[0].PolicyHead(ctx)
	if err != nil {
		t.Fatal(err)
	}
	late, err := policyview.Start(ctx, c.NewStore(t))
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	want := len(policyStores) * appendersPerStore * freezesEach
	js, err := jetstream.New(c.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	if info, err := js.Stream(ctx, events.StreamName); err == nil {
		if si, err := info.Info(ctx, jetstream.WithSubjectFilter(contracts.PolicyFenceRecordSubject)); err == nil {
			t.Logf("%d freezes in %d policy batches", want, si.State.Subjects[contracts.PolicyFenceRecordSubject])
		}
	}
	for name, v := range map[string]*policyview.View{"live": live, "started after": late} {
		snap, err := v.Snapshot(ctx, true)
		if err != nil || snap.Position != head || len(snap.Rules.Timeline) != want {
			t.Errorf("%s view: position %d, %d rules, %v; want %d, %d rules", name, snap.Position, len(snap.Rules.Timeline), err, head, want)
		}
		if b := v.Breaks(); b != 0 {
			t.Errorf("%s view found %d gaps in a continuous log", name, b)
		}
	}
}

// freezeDecision is one policy decision imposing freeze id on recording, with
// a real policy body (the view decodes it); with an idempotency key its batch
// holds one more policy message.
func freezeDecision(t testing.TB, id string, withKey bool) events.Decision {
	t.Helper()
	typ, version, data, err := contracts.Encode(contracts.FreezeImposed{RuleID: id, Scope: contracts.Scope{All: true},
		BlockedOperations: []contracts.Operation{contracts.OpOrderPlace}, EffectiveAt: time.Now().UTC(),
		Activation: contracts.ActivationOnRecording, LegalBasis: "test order", Issuer: "tester"})
	if err != nil {
		t.Fatal(err)
	}
	e := events.Event{ID: events.NewID(), Type: typ, SchemaVersion: version, Source: "/ledger/policy",
		AggregateID: id, OccurredAt: time.Now(), Data: data}
	d := events.Decision{Aggregate: events.AggregateRef{Context: "policy", ID: id}, Events: []events.Event{e}}
	if withKey {
		d.IdempotencyKey, d.CommandDigest = "impose-"+id, "digest-"+id
	}
	return d
}
