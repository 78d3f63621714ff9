package bundle

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/projections"
	"github.com/marketledger/ledger/projections/models"
	"github.com/marketledger/ledger/projections/notary"
)

// RowProof is the evidence for one row of a point query: the newest signed
// notary checkpoint, and every event that wrote the row up to the answer's
// position with its proof of inclusion in the checkpoint's Merkle tree. A
// client checks it without trusting the server (VerifyRow): the checkpoint's
// signature, each event's hash, each inclusion, and that the events end
// with the row's version.
type RowProof struct {
	Checkpoint contracts.NotaryCheckpointed `json:"checkpoint"`
	// CheckpointPosition is where the checkpoint itself is in the log.
	CheckpointPosition uint64        `json:"checkpoint_position"`
	Events             []ProvenEvent `json:"events"`
}

// ProvenEvent is one event with its inclusion proof. The event's data
// travels as a string of its exact bytes, which its hash covers: a JSON
// tool that re-indents the answer must not change them.
type ProvenEvent struct {
	Event events.Event          `json:"event"` // Data is in Data
	Data  string                `json:"data"`
	Proof notary.InclusionProof `json:"proof"`
}

// event returns the event with its data.
func (pe *ProvenEvent) event() events.Event {
	e := pe.Event
	e.Data = []byte(pe.Data)
	return e
}

// RowAnswer is a point query's answer with its proof, as the HTTP API and
// `ledger state --proof --json` write it and `ledger verify` reads it.
type RowAnswer struct {
	projections.RowAnswer
	Proof *RowProof `json:"proof,omitempty"`
}

// maxProofEvents bounds the events one proof carries.
const maxProofEvents = 10_000

// ProveRow adds to a one-row answer from the index the events that wrote
// the row and their inclusion proofs against the newest signed checkpoint,
// which must cover the answer's version.
func ProveRow(ctx context.Context, store projections.LogStore, ix *projections.Index, nt *notary.Notary, a *projections.RowAnswer) (*RowAnswer, error) {
	const op = "projections.ProveRow"
	if len(a.Rows) != 1 || a.Method != "index" {
		return nil, &events.Error{Op: op, Kind: events.KindInvalid, Field: "proof",
			Rule: "a proof covers one row answered from the index; this business instant was answered by a fold"}
	}
	row := a.Rows[0]
	cp, cpPos, err := newestCheckpoint(ctx, store)
	if err != nil {
		return nil, err
	}
	if cp.Position < row.Version {
		return nil, &events.Error{Op: op, Kind: events.KindUnavailable, Field: "proof",
			Rule: fmt.Sprintf("the newest signed checkpoint covers position %d; the row's version is %d: ask again after the next checkpoint", cp.Position, row.Version)}
	}
	hist, err := ix.History(a.Model, row.Key, row.Version)
	if err != nil {
		return nil, err
	}
	if len(hist) > maxProofEvents {
		return nil, &events.Error{Op: op, Kind: events.KindInvalid, Field: "proof",
			Rule: fmt.Sprintf("the row was written by %d events, more than a proof carries (%d)", len(hist), maxProofEvents)}
	}
	p := &RowProof{Checkpoint: cp, CheckpointPosition: cpPos}
	for _, pos := range hist {
		if pos == 0 {
			continue // a row the model holds before any event
		}
		e, err := eventAt(ctx, store, pos)
		if err != nil {
			return nil, err
		}
		ip, err := nt.Inclusion(ctx, pos, cp.TreeSize)
		if err != nil {
			return nil, err
		}
		data := string(e.Data)
		e.Data = nil
		p.Events = append(p.Events, ProvenEvent{Event: e, Data: data, Proof: ip})
	}
	return &RowAnswer{RowAnswer: *a, Proof: p}, nil
}

// selfContained are the models whose rows are a fold of the events that
// wrote them alone, so that a verifier recomputes a row's state from its
// proof. Other models' rows depend on other rows (a balance on the
// authorization a capture releases, a listing's flags on the rules and the
// model's time): their events are proven, their state is not recomputed.
var selfContained = map[string]bool{models.ModelOrders: true, models.ModelPolicy: true}

// VerifyRow checks a saved answer offline: the checkpoint is signed (by
// trusted, when given), every event's content hash holds, every event is in
// the checkpoint's tree, the events are in position order, and the last is
// the row's version, at or before the answer's position. For a model whose
// rows are self-contained it also folds the events and requires the row's
// state, and reports stateChecked.
func VerifyRow(a *RowAnswer, trusted ed25519.PublicKey) (stateChecked bool, err error) {
	const op = "projections.VerifyRow"
	bad := func(field, rule string) error {
		return &events.Error{Op: op, Kind: events.KindIntegrity, Field: field, Rule: rule}
	}
	if a.Proof == nil {
		return false, bad("proof", "the answer carries no proof: ask with proof=true")
	}
	if len(a.Rows) != 1 {
		return false, bad("rows", "a proof covers exactly one row")
	}
	root, err := notary.VerifyCheckpoint(a.Proof.Checkpoint, trusted)
	if err != nil {
		return false, err
	}
	m, err := models.NewModel(a.Model)
	if err != nil {
		return false, err
	}
	var last uint64
	for i := range a.Proof.Events {
		pe := &a.Proof.Events[i]
		e := pe.event()
		if e.ComputeHash() != e.Hash {
			return false, bad(fmt.Sprintf("events[%d]", i), fmt.Sprintf("the event at position %d does not match its hash", e.Position))
		}
		if e.Position <= last {
			return false, bad(fmt.Sprintf("events[%d]", i), "events are not in position order")
		}
		last = e.Position
		if pe.Proof.TreeSize != a.Proof.Checkpoint.TreeSize {
			return false, bad(fmt.Sprintf("events[%d].proof", i), "proof is not against the checkpoint's tree")
		}
		if err := pe.Proof.Verify(&e, root); err != nil {
			return false, bad(fmt.Sprintf("events[%d].proof", i), err.Error())
		}
		if p, err := models.DecodePayload(&e); err != nil || m.Apply(e, p) != nil {
			return false, bad(fmt.Sprintf("events[%d]", i), "the event does not fold")
		}
	}
	row := a.Rows[0]
	if row.Version != 0 && last != row.Version {
		return false, bad("rows[0].version", fmt.Sprintf("the row's version is %d, the last proven event is at %d", row.Version, last))
	}
	if row.Version > a.Position {
		return false, bad("position", "the row's version is after the answer's position")
	}
	if !selfContained[a.Model] {
		return false, nil
	}
	body, ok := m.(models.Keyed).Row(row.Key)
	var want, got bytes.Buffer
	if !ok || json.Compact(&want, body) != nil || json.Compact(&got, row.State) != nil || !bytes.Equal(want.Bytes(), got.Bytes()) {
		return false, bad("rows[0].state", "the row's state is not the fold of the proven events")
	}
	return true, nil
}

// newestCheckpoint returns the newest notary checkpoint in the log and its
// position.
func newestCheckpoint(ctx context.Context, store projections.LogStore) (contracts.NotaryCheckpointed, uint64, error) {
	const op = "projections.ProveRow"
	st, err := store.JetStream().Stream(ctx, events.StreamName)
	if err != nil {
		return contracts.NotaryCheckpointed{}, 0, &events.Error{Op: op, Kind: events.KindUnavailable, Err: err}
	}
	m, err := st.GetLastMsgForSubject(ctx, events.SubjectPrefix+contracts.ServiceNotary+".>")
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return contracts.NotaryCheckpointed{}, 0, &events.Error{Op: op, Kind: events.KindUnavailable, Field: "proof",
			Rule: "the notary has signed no checkpoint yet"}
	}
	if err != nil {
		return contracts.NotaryCheckpointed{}, 0, &events.Error{Op: op, Kind: events.KindUnavailable, Err: err}
	}
	e, err := eventAt(ctx, store, m.Sequence)
	if err != nil {
		return contracts.NotaryCheckpointed{}, 0, err
	}
	p, err := models.DecodePayload(&e)
	if err != nil {
		return contracts.NotaryCheckpointed{}, 0, err
	}
	cp, ok := p.(contracts.NotaryCheckpointed)
	if !ok {
		return contracts.NotaryCheckpointed{}, 0, &events.Error{Op: op, Kind: events.KindIntegrity, Field: fmt.Sprintf("position %d", m.Sequence),
			Rule: "the newest notary event is not a checkpoint"}
	}
	return cp, m.Sequence, nil
}

// eventAt reads the event at pos.
func eventAt(ctx context.Context, store events.Store, pos uint64) (events.Event, error) {
	for e, err := range store.Read(ctx, events.Query{From: pos, To: pos}) {
		if err != nil {
			return events.Event{}, err
		}
		return e, nil
	}
	return events.Event{}, &events.Error{Op: "projections.ProveRow", Kind: events.KindNotFound, Field: fmt.Sprintf("position %d", pos), Rule: "no event there"}
}
