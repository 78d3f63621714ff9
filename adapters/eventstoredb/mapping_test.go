package eventstoredb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/EventStore/EventStore-Client-Go/v4/esdb"
	"github.com/marketledger/ledger/events"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func sealedEvent(t *testing.T) events.Event {
	t.Helper()
	wib := time.FixedZone("WIB", 7*3600)
	e := events.Event{
		ID: events.NewID(), Type: "order.placed", SchemaVersion: 2, Source: "/ledger/order",
		AggregateID: "ord-1", OccurredAt: time.Date(2023, 10, 4, 16, 59, 59, 123456789, wib),
		CorrelationID: "corr-1", CausationID: "cmd-1", PolicyPosition: 42, Data: []byte(`{"total":100}`),
	}
	evs := []events.Event{e}
	events.Seal(evs, 4, strings.Repeat("a", 64))
	return evs[0]
}

// recorded stores d as the server would, at revision rev and position pos.
func recorded(stream string, rev, pos uint64, d esdb.EventData) *esdb.RecordedEvent {
	return &esdb.RecordedEvent{EventID: d.EventID, EventType: d.EventType, StreamID: stream, EventNumber: rev,
		Position: esdb.Position{Commit: pos, Prepare: pos}, CreatedDate: time.Unix(1696413599, 0).UTC(),
		Data: d.Data, UserMetadata: d.Metadata}
}

func TestEnvelopeRoundTrip(t *testing.T) {
	e := sealedEvent(t)
	d, err := ToEventData(&e, 0)
	if err != nil {
		t.Fatal(err)
	}
	if d.EventID.String() != e.ID || d.EventType != "order.placed" || string(d.Data) != `{"total":100}` || d.ContentType != esdb.ContentTypeJson {
		t.Fatalf("event data = %+v", d)
	}
	var meta map[string]string
	if err := json.Unmarshal(d.Metadata, &meta); err != nil {
		t.Fatalf("metadata is not a JSON object of strings: %v", err)
	}
	want := map[string]string{
		"specversion": "1.0", "id": e.ID, "type": "order.placed", "source": "/ledger/order", "subject": "ord-1",
		"time": "2023-10-04T16:59:59.123456789+07:00", "dataschema": "urn:marketledger:schema:order.placed:v2",
		"datacontenttype": "application/json", "correlationid": "corr-1", "causationid": "cmd-1",
		"policyposition": "42", "aggregateversion": "5", "prevhash": strings.Repeat("a", 64), "hash": e.Hash,
	}
	for k, v := range want {
		if meta[k] != v {
			t.Errorf("metadata %s = %q, want %q", k, meta[k], v)
		}
	}
	if len(meta) != len(want) {
		t.Errorf("metadata has %d attributes, want %d: %v", len(meta), len(want), meta)
	}
	got, ok, err := FromRecorded(recorded("order-ord-1", 4, 9000, d))
	if err != nil || !ok {
		t.Fatalf("FromRecorded = %v, %v", ok, err)
	}
	if got.ID != e.ID || got.Hash != e.Hash || !got.OccurredAt.Equal(e.OccurredAt) || got.OccurredAt.Format(time.RFC3339Nano) != "2023-10-04T16:59:59.123456789+07:00" ||
		got.PolicyPosition != 42 || got.SchemaVersion != 2 || got.AggregateVersion != 5 || got.Position != 9000 ||
		got.CorrelationID != "corr-1" || got.CausationID != "cmd-1" || got.RecordedAt.IsZero() {
		t.Errorf("round trip = %+v\nwant %+v", got, e)
	}
}

func TestMirroredEnvelopeCarriesLedgerPosition(t *testing.T) {
	e := sealedEvent(t)
	d, err := ToEventData(&e, 777)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(d.Metadata), `"ledgerposition":"777"`) {
		t.Errorf("metadata %s lacks the ledger position", d.Metadata)
	}
	if _, ok, err := FromRecorded(recorded("order-ord-1", 4, 10, d)); err != nil || !ok {
		t.Errorf("a mirrored event does not decode: %v", err)
	}
}

func TestToEventDataRefusesUnsealedAndInvalid(t *testing.T) {
	e := sealedEvent(t)
	e.Hash = ""
	if _, err := ToEventData(&e, 0); events.KindOf(err) != events.KindInvalid {
		t.Errorf("unsealed event: %v, want invalid", err)
	}
	e = sealedEvent(t)
	e.Data = []byte(`[1]`)
	if _, err := ToEventData(&e, 0); events.KindOf(err) != events.KindInvalid {
		t.Errorf("array body: %v, want invalid", err)
	}
}

func TestFromRecordedRefusesTampering(t *testing.T) {
	e := sealedEvent(t)
	d, _ := ToEventData(&e, 0)
	cases := map[string]func(r *esdb.RecordedEvent){
		"changed body":          func(r *esdb.RecordedEvent) { r.Data = []byte(`{"total":1}`) },
		"stream of another id":  func(r *esdb.RecordedEvent) { r.StreamID = "order-ord-2" },
		"stream of another ctx": func(r *esdb.RecordedEvent) { r.StreamID = "payment-ord-1" },
		"esdb type differs":     func(r *esdb.RecordedEvent) { r.EventType = "order.cancelled" },
		"esdb id differs":       func(r *esdb.RecordedEvent) { r.EventID[15] ^= 1 },
		"revision differs":      func(r *esdb.RecordedEvent) { r.EventNumber = 7 },
		"unknown attribute": func(r *esdb.RecordedEvent) {
			r.UserMetadata = append(r.UserMetadata[:len(r.UserMetadata)-1], `,"extra":"x"}`...)
		},
		"changed policy position": func(r *esdb.RecordedEvent) {
			r.UserMetadata = []byte(strings.Replace(string(r.UserMetadata), `"42"`, `"41"`, 1))
		},
		"no position from server":  func(r *esdb.RecordedEvent) { r.Position = esdb.Position{Commit: ^uint64(0), Prepare: ^uint64(0)} },
		"metadata not even json {": func(r *esdb.RecordedEvent) { r.UserMetadata = []byte(`{"specversion":"1.0",`) },
	}
	for name, spoil := range cases {
		r := recorded("order-ord-1", 4, 10, d)
		r.Data = append([]byte(nil), r.Data...)
		r.UserMetadata = append([]byte(nil), r.UserMetadata...)
		spoil(r)
		_, ok, err := FromRecorded(r)
		if name == "metadata not even json {" {
			// Unparseable metadata is not recognisably the ledger's.
			if ok || err != nil {
				t.Errorf("%s: ok=%v err=%v, want a foreign event", name, ok, err)
			}
			continue
		}
		if events.KindOf(err) != events.KindIntegrity {
			t.Errorf("%s: got %v (ok=%v), want an integrity error", name, err, ok)
		}
	}
}

func TestForeignEventsAreNotTheLedgers(t *testing.T) {
	for _, r := range []*esdb.RecordedEvent{
		{StreamID: "$settings", UserMetadata: []byte(`{"specversion":"1.0"}`)},
		{StreamID: "customer-7", UserMetadata: []byte(`{"app":"crm"}`)},
		{StreamID: "customer-7"},
		{StreamID: "_idem-order-ab", UserMetadata: []byte(`{"specversion":"1.0"}`)},
		{StreamID: "Order-1", UserMetadata: []byte(`{"specversion":"1.0"}`)},
	} {
		if _, ok, err := FromRecorded(r); ok || err != nil {
			t.Errorf("%s %s: ok=%v err=%v, want a foreign event", r.StreamID, r.UserMetadata, ok, err)
		}
	}
}

func TestStreamNames(t *testing.T) {
	ref := events.AggregateRef{Context: "order", ID: "ord-1_a"}
	if got := StreamName(ref); got != "order-ord-1_a" {
		t.Errorf("StreamName = %q", got)
	}
	if got, ok := ParseStreamName("order-ord-1_a"); !ok || got != ref {
		t.Errorf("ParseStreamName = %v, %v", got, ok)
	}
	for _, s := range []string{"$ce-order", "_idem-order-ab", "order", "order-", "-x", "Order-x", "order-x.y", IdempotencyStream("order", "k")} {
		if _, ok := ParseStreamName(s); ok {
			t.Errorf("ParseStreamName(%q) accepted a stream that is no aggregate's", s)
		}
	}
	if got := IdempotencyStream("order", "cmd-1"); !strings.HasPrefix(got, "_idem-order-") || len(got) != len("_idem-order-")+64 {
		t.Errorf("IdempotencyStream = %q", got)
	}
}

func TestExpectedRevision(t *testing.T) {
	if _, ok := ExpectedRevision(0).(esdb.NoStream); !ok {
		t.Errorf("version 0 -> %T, want NoStream", ExpectedRevision(0))
	}
	for _, v := range []uint64{1, 2, 1 << 40} {
		if r, ok := ExpectedRevision(v).(esdb.StreamRevision); !ok || r.Value != v-1 {
			t.Errorf("version %d -> %#v, want Revision(%d)", v, ExpectedRevision(v), v-1)
		}
	}
}

func TestErrorCodesToKinds(t *testing.T) {
	want := map[esdb.ErrorCode]events.Kind{
		esdb.ErrorCodeWrongExpectedVersion: events.KindConflict,
		esdb.ErrorUnavailable:              events.KindUnavailable,
		esdb.ErrorCodeDeadlineExceeded:     events.KindUnavailable,
		esdb.ErrorCodeConnectionClosed:     events.KindUnavailable,
		esdb.ErrorCodeNotLeader:            events.KindUnavailable,
		esdb.ErrorAborted:                  events.KindUnavailable,
		esdb.ErrorCodeAccessDenied:         events.KindInvalid,
		esdb.ErrorCodeUnauthenticated:      events.KindInvalid,
		esdb.ErrorCodeStreamDeleted:        events.KindNotFound,
		esdb.ErrorCodeResourceNotFound:     events.KindNotFound,
		esdb.ErrorCodeUnsupportedFeature:   events.KindInvalid,
		esdb.ErrorCodeUnknown:              events.KindOther,
		esdb.ErrorCodeInternalServer:       events.KindOther,
	}
	for code, kind := range want {
		err := MapError("op", fmt.Errorf("wrapped: %w", &codeError{code: code, msg: "x"}))
		if events.KindOf(err) != kind {
			t.Errorf("code %d -> %v, want %s", code, err, kind)
		}
	}
	if err := MapError("op", &codeError{code: esdb.ErrorCodeAccessDenied}); !strings.Contains(err.Error(), "$admins") {
		t.Errorf("access denied message does not say what to fix: %v", err)
	}
	if err := MapError("op", &codeError{code: esdb.ErrorCodeUnauthenticated}); !strings.Contains(err.Error(), "username and password") {
		t.Errorf("authentication message does not say what to fix: %v", err)
	}
	grpc := map[codes.Code]events.Kind{codes.Unavailable: events.KindUnavailable, codes.PermissionDenied: events.KindInvalid,
		codes.Unauthenticated: events.KindInvalid, codes.DeadlineExceeded: events.KindUnavailable, codes.Internal: events.KindOther}
	for c, kind := range grpc {
		if err := MapError("op", status.Error(c, "x")); events.KindOf(err) != kind {
			t.Errorf("gRPC %s -> %v, want %s", c, err, kind)
		}
		// The client wraps gRPC errors it cannot classify in an Unknown code.
		wrapped, _ := esdb.FromError(status.Error(c, "x"))
		if err := MapError("op", wrapped); events.KindOf(err) != kind {
			t.Errorf("esdb-wrapped gRPC %s -> %v, want %s", c, err, kind)
		}
	}
	for _, e := range []error{context.Canceled, context.DeadlineExceeded} {
		if err := MapError("op", e); events.KindOf(err) != events.KindUnavailable {
			t.Errorf("%v -> %v, want unavailable", e, err)
		}
	}
	if MapError("op", nil) != nil {
		t.Error("nil error mapped to an error")
	}
	le := &events.Error{Kind: events.KindIntegrity}
	if err := MapError("op", le); !errors.Is(err, events.ErrIntegrity) {
		t.Errorf("a ledger error was remapped: %v", err)
	}
}

func TestUnknownAppendOutcomeIsUnavailable(t *testing.T) {
	if err := unknownOutcome(MapError("op", &codeError{code: esdb.ErrorCodeInternalServer})); events.KindOf(err) != events.KindUnavailable {
		t.Errorf("an unclassified append failure = %v, want unavailable (outcome unknown)", err)
	}
	if err := unknownOutcome(MapError("op", &codeError{code: esdb.ErrorCodeAccessDenied})); events.KindOf(err) != events.KindInvalid {
		t.Errorf("access denied on append = %v, want invalid", err)
	}
}

func TestSubjectMatching(t *testing.T) {
	cases := []struct {
		pattern, subject string
		want             bool
	}{
		{"ledger.order.>", "ledger.order.o1.placed", true},
		{"ledger.order.o1.*", "ledger.order.o1.placed", true},
		{"ledger.order.o1.*", "ledger.order.o12.placed", false},
		{"ledger.order.*", "ledger.order.o1.placed", false},
		{"ledger.payment.>", "ledger.order.o1.placed", false},
		{"ledger.>", "ledger.order.o1.placed", true},
		{"ledger.order.o1.placed", "ledger.order.o1.placed", true},
	}
	for _, c := range cases {
		if got := matchSubject(c.pattern, c.subject); got != c.want {
			t.Errorf("match(%q, %q) = %v", c.pattern, c.subject, got)
		}
	}
}

func TestLedgerStreamRegexAgreesWithParse(t *testing.T) {
	m := newModel()
	c := m.client()
	sub, err := c.subscribeAll(context.Background(), esdb.Start{}, ledgerStreamRegex)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.close()
	for _, s := range []string{"$settings", "_idem-order-ab", "Order-1", "order-a1", "ledger-mirror-checkpoint"} {
		m.mustAppend(s, "x.y", []byte(`{}`), nil)
	}
	for _, want := range []string{"customer-7", "order-a1", "ledger-mirror-checkpoint"} {
		r, err := sub.next()
		if err != nil || r.StreamID != want {
			t.Fatalf("filtered subscription gave %v, %v; want %s", r, err, want)
		}
		if _, ok := ParseStreamName(r.StreamID); !ok {
			t.Errorf("the regex passes %s, which ParseStreamName refuses", r.StreamID)
		}
	}
}
