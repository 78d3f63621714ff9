package eventstoredb

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
	"github.com/marketledger/ledger/events"
)

// Idempotency keys are kept for good in one small stream per key and
// context. The JetStream store writes the key's record in the same atomic
// batch as the decision; EventStoreDB cannot append to two streams at once
// (before KurrentDB 25.1), so the record is a write-ahead intent instead:
//
//  1. the intent (key, digest, expected version and the sealed events
//     themselves) is appended to the key's stream, expecting the stream's
//     current revision, so exactly one caller claims the key;
//  2. the events are appended to the aggregate's stream at the expected
//     revision;
//  3. a "done" record with the result, or a "void" record if the aggregate
//     had moved on, follows the intent.
//
// A caller that finds an intent without its outcome (its writer crashed, or
// is still running) completes it: it appends the intent's events itself.
// Event ids make that idempotent: whichever of the two appends comes second
// finds the same ids at the same versions and reports success. If the
// aggregate's stream holds other events at those versions, the intent can
// never be stored any more (a stream only grows), so it is voided and the
// key is free again, as a refused decision leaves it with JetStream.

// idemStreamPrefix starts every key stream. A context cannot start with
// '_', so no aggregate stream can be taken for a key stream.
const idemStreamPrefix = "_idem-"

// idemEventType is the ESDB event type of key records.
const idemEventType = "ledger-idempotency"

// IdempotencyStream returns the stream that holds the records of an
// idempotency key in a context: "_idem-<context>-<hex sha256 of key>".
func IdempotencyStream(context, key string) string {
	sum := sha256.Sum256([]byte(key))
	return idemStreamPrefix + context + "-" + hex.EncodeToString(sum[:])
}

// States of a key record.
const (
	idemIntent = "intent"
	idemDone   = "done"
	idemVoid   = "void"
)

// idemRecord is one record of a key stream; the newest one is the key's
// state.
type idemRecord struct {
	State           string      `json:"state"`
	Key             string      `json:"key"`
	Digest          string      `json:"command_digest"`
	Aggregate       string      `json:"aggregate"`
	ExpectedVersion uint64      `json:"expected_version"`
	Version         uint64      `json:"version,omitempty"`
	FirstPosition   uint64      `json:"first_position,omitempty"`
	LastPosition    uint64      `json:"last_position,omitempty"`
	Events          []idemEvent `json:"events,omitempty"`
}

// idemEvent is one sealed, encoded event of an intent, as it will be
// appended to the aggregate's stream.
type idemEvent struct {
	ID       string          `json:"id"`
	Type     string          `json:"type"`
	Data     json.RawMessage `json:"data"`
	Metadata json.RawMessage `json:"metadata"`
}

func (r *idemRecord) sameCommand(ref events.AggregateRef, key, digest string) bool {
	return r.Key == key && r.Digest == digest && r.Aggregate == ref.String()
}

func (r *idemRecord) ref() (events.AggregateRef, bool) {
	c, id, ok := strings.Cut(r.Aggregate, "/")
	return events.AggregateRef{Context: c, ID: id}, ok
}

// eventData decodes an intent's events back into what is appended.
func (r *idemRecord) eventData() ([]string, []esdb.EventData, error) {
	evIDs := make([]string, len(r.Events))
	datas := make([]esdb.EventData, len(r.Events))
	for i, e := range r.Events {
		id, err := uuid.Parse(e.ID)
		if err != nil {
			return nil, nil, err
		}
		evIDs[i] = e.ID
		datas[i] = esdb.EventData{EventID: id, EventType: e.Type, ContentType: esdb.ContentTypeJson,
			Data: e.Data, Metadata: e.Metadata}
	}
	return evIDs, datas, nil
}

func recordData(r idemRecord) esdb.EventData {
	b, _ := json.Marshal(r) // only strings, numbers and raw JSON: cannot fail
	return esdb.EventData{EventID: uuid.Must(uuid.NewV7()), EventType: idemEventType,
		ContentType: esdb.ContentTypeJson, Data: b}
}

// keyState is the newest record of a key stream and its revision.
type keyState struct {
	exists bool
	rev    uint64
	rec    idemRecord
}

func (k keyState) next() esdb.ExpectedRevision {
	if !k.exists {
		return esdb.NoStream{}
	}
	return esdb.Revision(k.rev)
}

func (k keyState) nextRev() uint64 {
	if !k.exists {
		return 0
	}
	return k.rev + 1
}

func (s *Store) readKey(ctx context.Context, stream string) (keyState, error) {
	const op = "eventstoredb.Append"
	var k keyState
	for r, err := range s.b.readStream(ctx, stream, true, 0, 1) {
		if err != nil {
			return k, mapCtx(ctx, op, err)
		}
		if err := json.Unmarshal(r.Data, &k.rec); err != nil {
			return k, &events.Error{Op: op, Kind: events.KindIntegrity, Field: "stream " + stream, Rule: "unreadable idempotency record", Err: err}
		}
		k.exists, k.rev = true, r.EventNumber
	}
	return k, nil
}

// errVoided says that an intent was found unstorable and voided.
var errVoided = errors.New("eventstoredb: idempotency intent voided")

// maxClaimRounds bounds how often Append re-reads a key whose stream other
// callers keep changing under it.
const maxClaimRounds = 8

func duplicateErr() error {
	return &events.Error{Op: "eventstoredb.Append", Kind: events.KindDuplicate, Field: "idempotency_key",
		Rule: "the key was already used for a different command"}
}

func (s *Store) appendKeyed(ctx context.Context, d events.Decision) (events.Appended, error) {
	const op = "eventstoredb.Append"
	stream := IdempotencyStream(d.Aggregate.Context, d.IdempotencyKey)
	for range maxClaimRounds {
		k, err := s.readKey(ctx, stream)
		if err != nil {
			return events.Appended{}, err
		}
		if k.exists && k.rec.State != idemVoid {
			if !k.rec.sameCommand(d.Aggregate, d.IdempotencyKey, d.CommandDigest) {
				return events.Appended{}, duplicateErr()
			}
			a, err := s.settle(ctx, stream, k)
			if errors.Is(err, errVoided) {
				continue
			}
			if err != nil {
				return events.Appended{}, err
			}
			a.Replayed = true
			return a, nil
		}
		lastHash, err := s.head(ctx, d.Aggregate, d.ExpectedVersion)
		if err != nil {
			return events.Appended{}, err
		}
		evs, datas, err := seal(d, lastHash)
		if err != nil {
			return events.Appended{}, withOp(op, err)
		}
		intent := idemRecord{State: idemIntent, Key: d.IdempotencyKey, Digest: d.CommandDigest,
			Aggregate: d.Aggregate.String(), ExpectedVersion: d.ExpectedVersion}
		for _, x := range datas {
			intent.Events = append(intent.Events, idemEvent{ID: x.EventID.String(), Type: x.EventType, Data: x.Data, Metadata: x.Metadata})
		}
		// The intent carries the ledger's own id strings, which may differ
		// in letter case from uuid.String.
		for i := range evs {
			intent.Events[i].ID = evs[i].ID
		}
		if err := s.b.appendEvents(ctx, stream, k.next(), []esdb.EventData{recordData(intent)}); err != nil {
			m := mapCtx(ctx, op, err)
			if events.KindOf(m) == events.KindConflict {
				continue // another caller moved the key: look again
			}
			return events.Appended{}, unknownOutcome(m)
		}
		intentRev := k.nextRev()
		a, err := s.write(ctx, d.Aggregate, d.ExpectedVersion, ids(evs), datas)
		switch {
		case err == nil:
			s.mark(ctx, stream, intentRev, intent, idemDone, a)
			return a, nil
		case events.KindOf(err) == events.KindConflict:
			s.mark(ctx, stream, intentRev, intent, idemVoid, events.Appended{})
		}
		return events.Appended{}, err
	}
	return events.Appended{}, &events.Error{Op: op, Kind: events.KindUnavailable, Field: "idempotency_key",
		Rule: "the key's record kept changing under concurrent retries; retry"}
}

// settle returns the result of a key whose newest record is done, or
// completes an intent: it stores the intent's events if the aggregate is
// still where the intent expected it, and voids the intent if it is not.
func (s *Store) settle(ctx context.Context, stream string, k keyState) (events.Appended, error) {
	const op = "eventstoredb.Append"
	if k.rec.State == idemDone {
		return events.Appended{Version: k.rec.Version, FirstPosition: k.rec.FirstPosition, LastPosition: k.rec.LastPosition}, nil
	}
	ref, ok := k.rec.ref()
	evIDs, datas, err := k.rec.eventData()
	if !ok || err != nil || len(datas) == 0 {
		return events.Appended{}, &events.Error{Op: op, Kind: events.KindIntegrity, Field: "stream " + stream, Rule: "malformed idempotency intent", Err: err}
	}
	a, err := s.write(ctx, ref, k.rec.ExpectedVersion, evIDs, datas)
	switch {
	case err == nil:
		s.mark(ctx, stream, k.rev, k.rec, idemDone, a)
		return a, nil
	case events.KindOf(err) == events.KindConflict:
		s.mark(ctx, stream, k.rev, k.rec, idemVoid, events.Appended{})
		return events.Appended{}, errVoided
	}
	return events.Appended{}, err
}

// mark appends the outcome of the intent at revision intentRev. It is best
// effort: if another caller has already recorded the outcome, or the server
// cannot be reached, the intent stays and the next reader settles it the
// same way.
func (s *Store) mark(ctx context.Context, stream string, intentRev uint64, intent idemRecord, state string, a events.Appended) {
	rec := idemRecord{State: state, Key: intent.Key, Digest: intent.Digest, Aggregate: intent.Aggregate,
		ExpectedVersion: intent.ExpectedVersion}
	if state == idemDone {
		rec.Version, rec.FirstPosition, rec.LastPosition = a.Version, a.FirstPosition, a.LastPosition
	}
	_ = s.b.appendEvents(ctx, stream, esdb.Revision(intentRev), []esdb.EventData{recordData(rec)})
}

// LookupIdempotency implements events.IdempotencyLookup. It never appends:
// an intent whose events are not stored yet reads as an unused key, and an
// Append with that key settles it.
func (s *Store) LookupIdempotency(ctx context.Context, ref events.AggregateRef, key, digest string) (events.Appended, bool, error) {
	k, err := s.readKey(ctx, IdempotencyStream(ref.Context, key))
	if err != nil || !k.exists || k.rec.State == idemVoid {
		return events.Appended{}, false, err
	}
	if !k.rec.sameCommand(ref, key, digest) {
		return events.Appended{}, true, duplicateErr()
	}
	if k.rec.State == idemDone {
		return events.Appended{Version: k.rec.Version, FirstPosition: k.rec.FirstPosition, LastPosition: k.rec.LastPosition, Replayed: true}, true, nil
	}
	iref, ok := k.rec.ref()
	evIDs, _, err := k.rec.eventData()
	if !ok || err != nil {
		return events.Appended{}, false, &events.Error{Op: "eventstoredb.LookupIdempotency", Kind: events.KindIntegrity, Rule: "malformed idempotency intent", Err: err}
	}
	a, found, err := s.findStored(ctx, iref, k.rec.ExpectedVersion, evIDs)
	if err != nil || !found {
		return events.Appended{}, false, err
	}
	a.Replayed = true
	return a, true, nil
}
