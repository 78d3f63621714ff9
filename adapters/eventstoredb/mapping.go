package eventstoredb

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/google/uuid"
	"github.com/marketledger/ledger/events"
	"github.com/nats-io/nats.go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// StreamName returns the EventStoreDB stream of an aggregate:
// "<context>-<aggregate_id>". A context never contains '-', so the first '-'
// splits the name unambiguously, and EventStoreDB's category projection
// ($ce-<context>) sees the context as the category.
func StreamName(ref events.AggregateRef) string {
	return ref.Context + "-" + ref.ID
}

// ParseStreamName is the inverse of StreamName. It reports false for any
// stream that cannot hold a ledger aggregate: system streams ($...), the
// adapter's own records (_idem-...) and names whose parts break the ledger's
// token rules.
func ParseStreamName(stream string) (events.AggregateRef, bool) {
	c, id, ok := strings.Cut(stream, "-")
	if !ok || events.ValidateContext(c) != nil || events.ValidateAggregateID(id) != nil {
		return events.AggregateRef{}, false
	}
	return events.AggregateRef{Context: c, ID: id}, true
}

// ledgerStreamRegex selects, server side, the streams ParseStreamName
// accepts, so that a subscription to $all is not sent every other
// application's events. It mirrors the token rules of events.ValidateContext
// and events.ValidateAggregateID.
const ledgerStreamRegex = `^[a-z][a-z0-9_]{0,31}-[A-Za-z0-9][A-Za-z0-9_-]{0,127}$`

// ExpectedRevision maps a decision's ExpectedVersion (the number of events
// the aggregate has) to the revision its stream must be at: no stream for a
// new aggregate, otherwise the 0-based revision of its last event.
func ExpectedRevision(version uint64) esdb.ExpectedRevision {
	if version == 0 {
		return esdb.NoStream{}
	}
	return esdb.Revision(version - 1)
}

// envelope is the event metadata: the CloudEvents attributes under their
// JSON-format names and the ledger's extensions. Values are the exact
// strings the JetStream store writes as ce- headers (numbers as decimal
// strings), because the hash covers those strings and because JSON numbers
// above 2^53 would lose precision in JavaScript tools.
type envelope struct {
	SpecVersion      string `json:"specversion"`
	ID               string `json:"id"`
	Type             string `json:"type"`
	Source           string `json:"source"`
	Subject          string `json:"subject"`
	Time             string `json:"time"`
	DataSchema       string `json:"dataschema"`
	DataContentType  string `json:"datacontenttype"`
	CorrelationID    string `json:"correlationid,omitempty"`
	CausationID      string `json:"causationid,omitempty"`
	PolicyPosition   string `json:"policyposition"`
	AggregateVersion string `json:"aggregateversion"`
	PrevHash         string `json:"prevhash"`
	Hash             string `json:"hash"`
	// LedgerPosition is set on mirrored events only: the event's position
	// in the ledger log it was copied from. It is not part of the hash.
	LedgerPosition string `json:"ledgerposition,omitempty"`
}

// ToEventData encodes a sealed event (aggregate version and hashes set) as
// an EventStoreDB event: the ledger id as event id, the CloudEvents type as
// event type, the body as data and the envelope as metadata. It validates
// the event as events.Encode does. ledgerPosition, when not 0, records the
// source position of a mirrored event.
func ToEventData(e *events.Event, ledgerPosition uint64) (esdb.EventData, error) {
	m, err := events.Encode(e)
	if err != nil {
		return esdb.EventData{}, err
	}
	h := m.Header
	env := envelope{
		SpecVersion:      h.Get(events.HeaderSpecVersion),
		ID:               h.Get(events.HeaderID),
		Type:             h.Get(events.HeaderType),
		Source:           h.Get(events.HeaderSource),
		Subject:          h.Get(events.HeaderSubject),
		Time:             h.Get(events.HeaderTime),
		DataSchema:       h.Get(events.HeaderDataSchema),
		DataContentType:  h.Get(events.HeaderContentType),
		CorrelationID:    h.Get(events.HeaderCorrelationID),
		CausationID:      h.Get(events.HeaderCausationID),
		PolicyPosition:   h.Get(events.HeaderPolicyPosition),
		AggregateVersion: h.Get(events.HeaderAggregateVersion),
		PrevHash:         h.Get(events.HeaderPrevHash),
		Hash:             h.Get(events.HeaderHash),
	}
	if ledgerPosition != 0 {
		env.LedgerPosition = fmt.Sprint(ledgerPosition)
	}
	meta, err := json.Marshal(env)
	if err != nil {
		return esdb.EventData{}, err
	}
	id, err := uuid.Parse(e.ID)
	if err != nil {
		return esdb.EventData{}, &events.Error{Op: "eventstoredb.ToEventData", Kind: events.KindInvalid, Field: "id", Rule: err.Error()}
	}
	return esdb.EventData{
		EventID:     id,
		EventType:   e.Type,
		ContentType: esdb.ContentTypeJson,
		Data:        e.Data,
		Metadata:    meta,
	}, nil
}

// IsLedgerMetadata reports whether metadata claims to be a ledger envelope
// (a JSON object with a CloudEvents specversion). Events without it are
// another application's and are skipped by reads; events with it must
// decode and verify, or the read fails.
func IsLedgerMetadata(metadata []byte) bool {
	if len(metadata) == 0 || firstByte(metadata) != '{' {
		return false
	}
	var probe struct {
		SpecVersion *string `json:"specversion"`
	}
	return json.Unmarshal(metadata, &probe) == nil && probe.SpecVersion != nil
}

func firstByte(b []byte) byte {
	b = bytes.TrimLeft(b, " \t\r\n")
	if len(b) == 0 {
		return 0
	}
	return b[0]
}

// FromRecorded decodes a stored EventStoreDB event. It returns ok=false,
// and no error, for an event that is not the ledger's (its stream is not an
// aggregate stream, or its metadata is not a ledger envelope). A ledger
// event that breaks any rule, fails its own hash check, or disagrees with
// the stream, event id or event type it was stored under, is an integrity
// error. Position is the event's log position in $all; RecordedAt is the
// server's creation time.
func FromRecorded(r *esdb.RecordedEvent) (e events.Event, ok bool, err error) {
	ref, isAgg := ParseStreamName(r.StreamID)
	if !isAgg || !IsLedgerMetadata(r.UserMetadata) {
		return events.Event{}, false, nil
	}
	e, err = decodeLedger(ref, r)
	if err != nil {
		return events.Event{}, true, &events.Error{Op: "eventstoredb.Decode", Kind: events.KindIntegrity,
			Field: fmt.Sprintf("stream %s revision %d", r.StreamID, r.EventNumber), Rule: "not a valid ledger event", Err: err}
	}
	return e, true, nil
}

func decodeLedger(ref events.AggregateRef, r *esdb.RecordedEvent) (events.Event, error) {
	var env envelope
	dec := json.NewDecoder(bytes.NewReader(r.UserMetadata))
	dec.DisallowUnknownFields() // an unknown attribute is refused, never dropped
	if err := dec.Decode(&env); err != nil {
		return events.Event{}, fmt.Errorf("metadata: %w", err)
	}
	h := nats.Header{}
	set := func(k, v string) {
		if v != "" {
			h.Set(k, v)
		}
	}
	set(events.HeaderSpecVersion, env.SpecVersion)
	set(events.HeaderID, env.ID)
	set(events.HeaderType, env.Type)
	set(events.HeaderSource, env.Source)
	set(events.HeaderSubject, env.Subject)
	set(events.HeaderTime, env.Time)
	set(events.HeaderDataSchema, env.DataSchema)
	set(events.HeaderContentType, env.DataContentType)
	set(events.HeaderCorrelationID, env.CorrelationID)
	set(events.HeaderCausationID, env.CausationID)
	set(events.HeaderPolicyPosition, env.PolicyPosition)
	set(events.HeaderAggregateVersion, env.AggregateVersion)
	set(events.HeaderPrevHash, env.PrevHash)
	set(events.HeaderHash, env.Hash)
	// The subject is rebuilt from where the event is stored, so that Decode's
	// check that it agrees with the attributes also checks the stream name
	// and the ESDB event type against them.
	name := r.EventType
	if c, n, ok := strings.Cut(r.EventType, "."); ok && c == ref.Context {
		name = n
	}
	subject := events.SubjectPrefix + ref.Context + "." + ref.ID + "." + name
	e, err := events.Decode(subject, h, r.Data)
	if err != nil {
		return e, err
	}
	if r.EventType != e.Type {
		return e, fmt.Errorf("stored event type %q differs from the CloudEvents type %q", r.EventType, e.Type)
	}
	if id, err := uuid.Parse(e.ID); err != nil || id != r.EventID {
		return e, fmt.Errorf("stored event id %s differs from the CloudEvents id %s", r.EventID, e.ID)
	}
	if r.EventNumber+1 != e.AggregateVersion {
		return e, fmt.Errorf("stored at revision %d but carries aggregate version %d", r.EventNumber, e.AggregateVersion)
	}
	pos, err := PositionOf(r)
	if err != nil {
		return e, err
	}
	e.Position = pos
	e.RecordedAt = r.CreatedDate
	return e, nil
}

// PositionOf returns the ledger position of a stored event: its log
// position in $all. Events appended through gRPC commit themselves, so their
// commit and prepare positions are equal; the prepare position is used
// because it is unique per event even for events of an old explicit
// transaction. A server that does not report positions on stream reads
// (both fields unset) cannot serve the ledger.
func PositionOf(r *esdb.RecordedEvent) (uint64, error) {
	p := r.Position.Prepare
	if p == 0 || p == math.MaxUint64 || p >= 1<<63 {
		return 0, fmt.Errorf("the server reported no $all position for %s@%d; EventStoreDB 22.10 or later reports it on stream reads", r.StreamID, r.EventNumber)
	}
	return p, nil
}

// allPosition is where a forward read of $all starts to include the event
// at ledger position p.
func allPosition(p uint64) esdb.Position { return esdb.Position{Commit: p, Prepare: p} }

// Error messages for the kinds a caller must act on, so that one line tells
// an operator what to fix.
const (
	ruleAccessDenied = "access denied: the EventStoreDB user lacks the ACL for this stream " +
		"(reading $all needs a member of $admins or $ops, or an ACL granting $all read)"
	ruleUnauthenticated = "authentication failed: check the username and password in the connection string"
	ruleUnavailable     = "EventStoreDB could not be reached or did not answer in time"
	ruleDeleted         = "the stream was deleted in EventStoreDB"
)

// codeKind maps an EventStoreDB client error code to the ledger's error
// kind and the rule to report.
func codeKind(code esdb.ErrorCode) (events.Kind, string) {
	switch code {
	case esdb.ErrorCodeWrongExpectedVersion:
		return events.KindConflict, "the stream is not at the expected revision"
	case esdb.ErrorUnavailable, esdb.ErrorCodeDeadlineExceeded, esdb.ErrorCodeConnectionClosed,
		esdb.ErrorCodeNotLeader, esdb.ErrorAborted:
		return events.KindUnavailable, ruleUnavailable
	case esdb.ErrorCodeAccessDenied:
		return events.KindInvalid, ruleAccessDenied
	case esdb.ErrorCodeUnauthenticated:
		return events.KindInvalid, ruleUnauthenticated
	case esdb.ErrorCodeStreamDeleted:
		return events.KindNotFound, ruleDeleted
	case esdb.ErrorCodeResourceNotFound:
		return events.KindNotFound, "not found"
	case esdb.ErrorCodeUnsupportedFeature:
		return events.KindInvalid, "the EventStoreDB node does not support this request"
	default:
		return events.KindOther, "unexpected EventStoreDB error"
	}
}

// codeError is an error carrying an EventStoreDB error code; the client's
// own *esdb.Error cannot be built outside its package, and the in-memory
// model used in tests needs to fail the same way.
type codeError struct {
	code esdb.ErrorCode
	msg  string
}

func (e *codeError) Error() string { return e.msg }

// errorCode finds the EventStoreDB error code in err's chain, falling back
// to the gRPC status code for errors the client did not wrap.
func errorCode(err error) (esdb.ErrorCode, bool) {
	var ce *codeError
	if errors.As(err, &ce) {
		return ce.code, true
	}
	var ee *esdb.Error
	if errors.As(err, &ee) {
		if ee.Code() != esdb.ErrorCodeUnknown {
			return ee.Code(), true
		}
		if inner := ee.Err(); inner != nil {
			if c, ok := grpcCode(inner); ok {
				return c, true
			}
		}
		return esdb.ErrorCodeUnknown, true
	}
	return grpcCode(err)
}

func grpcCode(err error) (esdb.ErrorCode, bool) {
	s, ok := status.FromError(err)
	if !ok {
		return esdb.ErrorCodeUnknown, false
	}
	switch s.Code() {
	case codes.Unavailable:
		return esdb.ErrorUnavailable, true
	case codes.DeadlineExceeded, codes.Canceled:
		return esdb.ErrorCodeDeadlineExceeded, true
	case codes.PermissionDenied:
		return esdb.ErrorCodeAccessDenied, true
	case codes.Unauthenticated:
		return esdb.ErrorCodeUnauthenticated, true
	case codes.NotFound:
		return esdb.ErrorCodeResourceNotFound, true
	}
	return esdb.ErrorCodeUnknown, true
}

// MapError turns an error of the EventStoreDB client into a ledger error of
// the right Kind: WrongExpectedVersion is a conflict, an unreachable or slow
// server (or an ended context) unavailable, access denied and failed
// authentication invalid with a message that names the fix, a deleted
// stream not found. Other errors keep KindOther.
func MapError(op string, err error) error {
	if err == nil {
		return nil
	}
	var le *events.Error
	if errors.As(err, &le) {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return &events.Error{Op: op, Kind: events.KindUnavailable, Rule: "the request ended before EventStoreDB answered", Err: err}
	}
	code, _ := errorCode(err)
	kind, rule := codeKind(code)
	return &events.Error{Op: op, Kind: kind, Rule: rule, Err: err}
}

// mapCtx maps err, preferring the context's own error once ctx has ended:
// the client reports a cancelled call in several ways.
func mapCtx(ctx context.Context, op string, err error) error {
	if err != nil && ctx.Err() != nil {
		return &events.Error{Op: op, Kind: events.KindUnavailable, Rule: "the request ended before EventStoreDB answered", Err: ctx.Err()}
	}
	return MapError(op, err)
}

// matchSubject reports whether a NATS-style subject matches a pattern with
// '*' (one token) and '>' (the rest) wildcards, as Query.Subjects uses them.
func matchSubject(pattern, subject string) bool {
	for {
		pt, prest, pmore := strings.Cut(pattern, ".")
		st, srest, smore := strings.Cut(subject, ".")
		if pt == ">" {
			return true
		}
		if pt != "*" && pt != st {
			return false
		}
		if !pmore || !smore {
			return pmore == smore
		}
		pattern, subject = prest, srest
	}
}

// matchAny reports whether subject matches one of patterns (or patterns is
// empty).
func matchAny(patterns []string, subject string) bool {
	if len(patterns) == 0 {
		return true
	}
	for _, p := range patterns {
		if matchSubject(p, subject) {
			return true
		}
	}
	return false
}
