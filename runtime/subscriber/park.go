package subscriber

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/marketledger/ledger/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ParkedStreamName is the stream that keeps parked events. It is not the
// issue's "ledger.parked.>": the LEDGER stream captures every subject under
// "ledger.", so a park record there would become part of the log and be read
// back as an event. Park records are the subscriber's bookkeeping, not facts.
const ParkedStreamName = "LEDGER_PARKED"

// ParkedSubjectPrefix starts every subject of the parking stream:
// parked.<name>.<position> holds a parked event, and
// parked.<name>.replayed.<position> records a successful replay of it.
const ParkedSubjectPrefix = "parked."

// Headers of a park record. The record also carries every header of the
// original message, and its body is the original body, byte for byte.
const (
	HeaderParkedPosition   = "Ledger-Parked-Position"
	HeaderParkedSubject    = "Ledger-Parked-Subject"
	HeaderParkedEventID    = "Ledger-Parked-Event-Id"
	HeaderParkedReason     = "Ledger-Parked-Reason"
	HeaderParkedAttempts   = "Ledger-Parked-Attempts"
	HeaderParkedRecordedAt = "Ledger-Parked-Recorded-At"
	HeaderParkedAt         = "Ledger-Parked-At"
	HeaderReplayedAt       = "Ledger-Replayed-At"
)

// maxReasonLen bounds the failure reason kept in a header.
const maxReasonLen = 1024

// ParkedStreamConfig returns the settings of the parking stream: file
// storage, no limits, nothing deleted or purged, so a parked event is kept
// until an operator decides otherwise.
func ParkedStreamConfig(replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        ParkedStreamName,
		Description: "ledger subscribers' parked (poison) events and their replays",
		Subjects:    []string{ParkedSubjectPrefix + ">"},
		Retention:   jetstream.LimitsPolicy,
		MaxMsgs:     -1, MaxBytes: -1, MaxAge: 0, MaxMsgsPerSubject: -1, MaxMsgSize: -1,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
		Duplicates:  2 * time.Minute,
		DenyDelete:  true,
		DenyPurge:   true,
		AllowDirect: true,
	}
}

// EnsureParkedStream creates the parking stream if it does not exist, with
// replicas replicas, or the LEDGER stream's when replicas is 0, so that a
// parked event is kept as durably as the event itself. A stream that
// exists is used as it is: raising its replicas is the operator's
// (`ledger serve` creates the stream, and raises them, on start), and a
// service's least-privileged user may only read the stream's settings.
func EnsureParkedStream(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.Stream, error) {
	const op = "subscriber.EnsureParkedStream"
	var st jetstream.Stream
	err := guard(ctx, js, op, []string{jsAPI}, func(ctx context.Context) error {
		var err error
		st, err = js.Stream(ctx, ParkedStreamName)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			if replicas == 0 {
				if replicas, err = LogReplicas(ctx, js); err != nil {
					return err
				}
			}
			st, err = js.CreateStream(ctx, ParkedStreamConfig(replicas))
		}
		if err != nil {
			return &events.Error{Op: op, Kind: events.KindUnavailable, Rule: "stream " + ParkedStreamName, Err: err}
		}
		return nil
	})
	return st, err
}

// LogReplicas returns the LEDGER stream's replicas: every stream and bucket
// beside the log takes them, so that nothing the ledger keeps is less
// durable than the log.
func LogReplicas(ctx context.Context, js jetstream.JetStream) (int, error) {
	st, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		return 0, &events.Error{Op: "subscriber.LogReplicas", Kind: events.KindUnavailable, Rule: "stream " + events.StreamName + " not reachable", Err: err}
	}
	return max(1, st.CachedInfo().Config.Replicas), nil
}

// jsAPI starts every JetStream API subject.
const jsAPI = "$JS.API."

// Parked is one parked event.
type Parked struct {
	// Subscription is the name of the subscription that parked it.
	Subscription string
	// Position, Subject and EventID identify the original event.
	Position uint64
	Subject  string
	EventID  string
	// Reason is the handler's last error.
	Reason string
	// Attempts is how many deliveries failed.
	Attempts int
	// ParkedAt is when it was parked.
	ParkedAt time.Time
	// Replayed is true once Replay handled it successfully.
	Replayed bool
	// Event is the original event, decoded and hash-checked.
	Event events.Event
}

func parkSubject(name string, pos uint64) string {
	return ParkedSubjectPrefix + name + "." + strconv.FormatUint(pos, 10)
}

func replayedSubject(name string, pos uint64) string {
	return ParkedSubjectPrefix + name + ".replayed." + strconv.FormatUint(pos, 10)
}

// park stores a durable copy of m with why it failed. It returns only after
// the server acknowledged the copy, so the caller may then ack m.
func park(ctx context.Context, js jetstream.JetStream, name string, m jetstream.Msg, meta *jetstream.MsgMetadata, attempts int, cause error) (Parked, error) {
	pos := meta.Sequence.Stream
	reason := cause.Error()
	if len(reason) > maxReasonLen {
		reason = reason[:maxReasonLen]
	}
	reason = strings.NewReplacer("\r", " ", "\n", " ").Replace(reason)
	pm := nats.NewMsg(parkSubject(name, pos))
	for k, vs := range m.Headers() {
		if strings.HasPrefix(k, "Nats-") {
			continue // the server's own (message id, atomic batch): they would steer the publish
		}
		for _, v := range vs {
			pm.Header.Add(k, v)
		}
	}
	now := time.Now().UTC()
	pm.Header.Set(HeaderParkedPosition, strconv.FormatUint(pos, 10))
	pm.Header.Set(HeaderParkedSubject, m.Subject())
	pm.Header.Set(HeaderParkedEventID, m.Headers().Get(events.HeaderID))
	pm.Header.Set(HeaderParkedReason, reason)
	pm.Header.Set(HeaderParkedAttempts, strconv.Itoa(attempts))
	pm.Header.Set(HeaderParkedRecordedAt, meta.Timestamp.UTC().Format(time.RFC3339Nano))
	pm.Header.Set(HeaderParkedAt, now.Format(time.RFC3339Nano))
	// A crash between parking and the ack delivers the event again and
	// parks it again; the dedupe window keeps one copy.
	pm.Header.Set(nats.MsgIdHdr, "park:"+name+":"+strconv.FormatUint(pos, 10))
	pm.Data = m.Data()
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	err := guard(pctx, js, "subscriber.park", []string{ParkedSubjectPrefix}, func(ctx context.Context) error {
		_, err := js.PublishMsg(ctx, pm)
		return err
	})
	if events.KindOf(err) == events.KindPermission {
		return Parked{}, err
	}
	if err != nil {
		return Parked{}, &events.Error{Op: "subscriber.park", Kind: events.KindUnavailable, Field: pm.Subject, Err: err}
	}
	return Parked{Subscription: name, Position: pos, Subject: m.Subject(), EventID: pm.Header.Get(HeaderParkedEventID),
		Reason: reason, Attempts: attempts, ParkedAt: now}, nil
}

// ListParked returns the events subscription name parked, oldest first,
// each marked Replayed once Replay handled it.
func ListParked(ctx context.Context, js jetstream.JetStream, name string) ([]Parked, error) {
	const op = "subscriber.ListParked"
	if err := ValidateName(name); err != nil {
		return nil, withOp(op, err)
	}
	if _, err := EnsureParkedStream(ctx, js, 0); err != nil {
		return nil, err
	}
	cons, err := js.OrderedConsumer(ctx, ParkedStreamName, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{ParkedSubjectPrefix + name + ".*", ParkedSubjectPrefix + name + ".replayed.*"}})
	if err != nil {
		return nil, &events.Error{Op: op, Kind: events.KindUnavailable, Err: err}
	}
	var out []Parked
	index := map[uint64]int{}
	pending := cons.CachedInfo().NumPending
	for pending > 0 {
		batch, err := cons.Fetch(int(min(pending, 256)), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, &events.Error{Op: op, Kind: events.KindUnavailable, Err: err}
		}
		n := 0
		for m := range batch.Messages() {
			n++
			meta, err := m.Metadata()
			if err != nil {
				return nil, &events.Error{Op: op, Kind: events.KindIntegrity, Err: err}
			}
			pending = meta.NumPending
			if err := collect(&out, index, name, m); err != nil {
				return nil, withOp(op, err)
			}
		}
		if err := batch.Error(); err != nil && n == 0 {
			return nil, &events.Error{Op: op, Kind: events.KindUnavailable, Err: err}
		}
	}
	return out, nil
}

// collect adds a park record to out, or marks the record a replay marker
// names as replayed.
func collect(out *[]Parked, index map[uint64]int, name string, m jetstream.Msg) error {
	h := m.Headers()
	pos, err := strconv.ParseUint(h.Get(HeaderParkedPosition), 10, 64)
	if err != nil {
		return &events.Error{Kind: events.KindIntegrity, Field: m.Subject(), Rule: "park record without a position"}
	}
	if strings.HasPrefix(m.Subject(), ParkedSubjectPrefix+name+".replayed.") {
		if i, ok := index[pos]; ok {
			(*out)[i].Replayed = true
		}
		return nil
	}
	attempts, _ := strconv.Atoi(h.Get(HeaderParkedAttempts))
	parkedAt, _ := time.Parse(time.RFC3339Nano, h.Get(HeaderParkedAt))
	recordedAt, _ := time.Parse(time.RFC3339Nano, h.Get(HeaderParkedRecordedAt))
	subject := h.Get(HeaderParkedSubject)
	orig := nats.Header{}
	for k, vs := range h {
		if !strings.HasPrefix(k, "Ledger-Parked-") && !strings.HasPrefix(k, "Nats-") {
			orig[k] = vs
		}
	}
	e, err := events.Decode(subject, orig, m.Data())
	if err != nil {
		return fmt.Errorf("parked event at position %d: %w", pos, err)
	}
	e.Position, e.RecordedAt = pos, recordedAt
	index[pos] = len(*out)
	*out = append(*out, Parked{Subscription: name, Position: pos, Subject: subject, EventID: h.Get(HeaderParkedEventID),
		Reason: h.Get(HeaderParkedReason), Attempts: attempts, ParkedAt: parkedAt, Event: e})
	return nil
}

// ReplayResult counts what Replay did.
type ReplayResult struct {
	// Replayed is how many parked events the handler accepted this time.
	Replayed int
	// Skipped is how many had been replayed before.
	Skipped int
}

// Replay delivers the events subscription name parked, oldest first, to h
// (after the handler was fixed). Each one h accepts is marked replayed with
// a record of its own; nothing is removed, so the parking stream keeps the
// whole history. Replay stops at the first event h refuses and returns its
// error: that event and the later ones stay parked for the next Replay.
func Replay(ctx context.Context, js jetstream.JetStream, name string, h Handler) (ReplayResult, error) {
	const op = "subscriber.Replay"
	var res ReplayResult
	parked, err := ListParked(ctx, js, name)
	if err != nil {
		return res, err
	}
	for _, p := range parked {
		if p.Replayed {
			res.Skipped++
			continue
		}
		if err := h(ctx, p.Event); err != nil {
			return res, fmt.Errorf("%s: event %s at position %d: %w", op, p.EventID, p.Position, err)
		}
		m := nats.NewMsg(replayedSubject(name, p.Position))
		m.Header.Set(HeaderParkedPosition, strconv.FormatUint(p.Position, 10))
		m.Header.Set(HeaderParkedEventID, p.EventID)
		m.Header.Set(HeaderReplayedAt, time.Now().UTC().Format(time.RFC3339Nano))
		if _, err := js.PublishMsg(ctx, m); err != nil {
			return res, &events.Error{Op: op, Kind: events.KindUnavailable, Field: m.Subject, Err: err}
		}
		res.Replayed++
	}
	return res, nil
}
