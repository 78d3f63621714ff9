package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// storedMsg is one message as read from the stream.
type storedMsg struct {
	Subject  string
	Sequence uint64
	Header   nats.Header
	Data     []byte
	Time     time.Time
}

// msgGet asks the stream leader (not a possibly lagging direct-get replica)
// for one message. It returns nil, nil when there is none.
func (s *JetStreamStore) msgGet(ctx context.Context, req map[string]any) (*storedMsg, error) {
	body, _ := json.Marshal(req)
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, batchTimeout)
		defer cancel()
	}
	resp, err := s.request(ctx, "$JS.API.STREAM.MSG.GET."+StreamName, body)
	if err != nil {
		return nil, &Error{Op: "events.read", Kind: KindUnavailable, Err: err}
	}
	var r struct {
		Error   *jetstream.APIError `json:"error"`
		Message *struct {
			Subject string    `json:"subject"`
			Seq     uint64    `json:"seq"`
			Hdrs    []byte    `json:"hdrs"`
			Data    []byte    `json:"data"`
			Time    time.Time `json:"time"`
		} `json:"message"`
	}
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return nil, &Error{Op: "events.read", Kind: KindUnavailable, Err: err}
	}
	if r.Error != nil {
		if r.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound {
			return nil, nil
		}
		return nil, &Error{Op: "events.read", Kind: KindUnavailable, Err: r.Error}
	}
	m := &storedMsg{Subject: r.Message.Subject, Sequence: r.Message.Seq, Data: r.Message.Data, Time: r.Message.Time}
	if len(r.Message.Hdrs) > 0 {
		if m.Header, err = nats.DecodeHeadersMsg(r.Message.Hdrs); err != nil {
			return nil, &Error{Op: "events.read", Kind: KindIntegrity, Field: fmt.Sprintf("position %d", m.Sequence), Err: err}
		}
	}
	return m, nil
}

// requestTimeout bounds one API request: a request lost in a leader change
// is sent again rather than waited for until the caller's deadline.
const requestTimeout = 2 * time.Second

// request sends a JetStream API request, again after each requestTimeout,
// until it is answered or ctx ends. The requests it sends are reads.
func (s *JetStreamStore) request(ctx context.Context, subject string, body []byte) (*nats.Msg, error) {
	for {
		rctx, cancel := context.WithTimeout(ctx, requestTimeout)
		// A request the old leader took and will not answer is sent again
		// as soon as the stream has a new leader.
		changed := s.leaderChanged()
		go func() {
			select {
			case <-changed:
				cancel()
			case <-rctx.Done():
			}
		}()
		resp, err := s.nc.RequestWithContext(rctx, subject, body)
		cancel()
		if err != nil && errors.Is(err, context.Canceled) && ctx.Err() == nil {
			continue
		}
		if err == nil || ctx.Err() != nil || !(errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrTimeout)) {
			return resp, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond): // no responders: an election is under way
		}
	}
}

func (s *JetStreamStore) getLast(ctx context.Context, subject string) (*storedMsg, error) {
	return s.msgGet(ctx, map[string]any{"last_by_subj": subject})
}

// Load implements Store. A full load reads the aggregate with an ordered
// consumer, which the stream leader serves, and verifies the whole chain from
// the first event. When the caller already holds the aggregate up to
// afterVersion and this store appended or loaded that same head, one leader
// read of the aggregate's last message tells whether anything is newer: the
// common case of a command on a cached aggregate costs one round trip.
func (s *JetStreamStore) Load(ctx context.Context, ref AggregateRef, afterVersion uint64) ([]Event, error) {
	const op = "events.Load"
	if err := ValidateContext(ref.Context); err != nil {
		return nil, withOp(op, err)
	}
	if err := ValidateAggregateID(ref.ID); err != nil {
		return nil, withOp(op, err)
	}
	last, err := s.getLast(ctx, ref.Subject())
	if err != nil {
		return nil, withOp(op, err)
	}
	if last == nil {
		return nil, nil
	}
	s.mu.Lock()
	h, known := s.heads[ref]
	s.mu.Unlock()
	known = known && afterVersion > 0 && h.version == afterVersion // this store saw the caller's version
	if known && last.Sequence == h.seq {
		return nil, nil // the caller holds the newest version
	}
	// Walk back from the newest event to the caller's version: the cost
	// grows with what is new, not with the aggregate's whole history.
	evs, anchor, err := s.loadOrdered(ctx, ref, last, afterVersion)
	if err != nil {
		return nil, withOp(op, err)
	}
	if known && h.hash != anchor.hash {
		// The stored event at the caller's version is not the one this
		// store saw there: start over from the genesis, where the chain
		// check names what is wrong.
		anchor.version = 0
	}
	if afterVersion > 0 && anchor.version != afterVersion {
		// The walk never met the caller's version (the aggregate is behind
		// it): hand back the whole history, which the caller starts over
		// from.
		return s.Load(ctx, ref, 0)
	}
	if err := VerifyChain(evs, anchor.version, anchor.hash); err != nil {
		return nil, err
	}
	if n := len(evs); n > 0 {
		s.remember(ref, head{version: evs[n-1].AggregateVersion, seq: evs[n-1].Position, hash: evs[n-1].Hash})
	}
	return evs, nil
}

// MaxAggregateEvents bounds how many events Load reads back for one
// aggregate.
const MaxAggregateEvents = 1 << 20

// anchor is where a chain walked back ends: the genesis, or the event the
// caller already holds, whose hash the first returned event must link to.
type anchor struct {
	version uint64
	hash    string
}

// loadOrdered reads an aggregate back along its own chain, newest first:
// from last (its newest message), each event's previous one (PrevPosition,
// or the position just before within a decision), each a read by position
// from the stream leader, down to version after+1. The event at version
// after (when after > 0) is read too, as the anchor the first returned one
// must link to. Filtered scans from the start of the stream grow with the
// whole log; this grows with what is read only.
func (s *JetStreamStore) loadOrdered(ctx context.Context, ref AggregateRef, last *storedMsg, after uint64) ([]Event, anchor, error) {
	m := last
	var back []Event
	for {
		e, err := decodeStored(m.Subject, m.Header, m.Data, m.Sequence, m.Time)
		if err != nil {
			return nil, anchor{}, err
		}
		if e.Context() != ref.Context || e.AggregateID != ref.ID {
			return nil, anchor{}, integrity(&e, "the chain of %s leads to an event of %s/%s", ref, e.Context(), e.AggregateID)
		}
		if after > 0 && e.AggregateVersion == after {
			slices.Reverse(back)
			return back, anchor{version: after, hash: e.Hash}, nil
		}
		back = append(back, e)
		if e.AggregateVersion <= 1 || len(back) >= MaxAggregateEvents || (after > 0 && e.AggregateVersion < after) {
			break
		}
		prev := e.PrevPosition
		if prev == 0 {
			prev = e.Position - 1
		}
		if m, err = s.msgGet(ctx, map[string]any{"seq": prev}); err != nil {
			return nil, anchor{}, err
		}
		if m == nil {
			return nil, anchor{}, integrity(&e, "previous event at position %d is missing from the stream", prev)
		}
	}
	slices.Reverse(back)
	return back, anchor{hash: GenesisHash}, nil
}

// Read implements Store.
func (s *JetStreamStore) Read(ctx context.Context, q Query) iter.Seq2[Event, error] {
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
	switch {
	case !q.FromTime.IsZero():
		t := q.FromTime
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &t
	case q.From > 1:
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, q.From
	}
	subjects := q.Subjects
	if len(subjects) == 0 {
		subjects = []string{SubjectPrefix + ">"}
	}
	return s.read(ctx, subjects, cfg, q.To)
}

// read yields decoded events matching subjects until position to, or until
// the log's last position when the read started, as the stream leader knew
// it (to == 0), so a read sees every append acknowledged before it. Decoding (hash
// checks included) runs on decodeWorkers goroutines over chunks of messages
// while the next chunk is fetched; chunks are yielded in order.
func (s *JetStreamStore) read(ctx context.Context, subjects []string, cfg jetstream.OrderedConsumerConfig, to uint64) iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		parent := ctx
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		chunks := make(chan *chunk, decodeWorkers*2)
		var complete atomic.Bool
		go s.fetch(ctx, subjects, cfg, to, chunks, &complete)
		defer func() {
			// A read the caller's context cut short must not look like the
			// end of the log.
			if !complete.Load() && parent.Err() != nil {
				yield(Event{}, &Error{Op: "events.Read", Kind: KindUnavailable, Rule: "read cut short", Err: parent.Err()})
			}
		}()
		for c := range chunks {
			<-c.done
			for i := range c.events {
				if !yield(c.events[i], nil) {
					return
				}
			}
			if c.err != nil {
				yield(Event{}, c.err)
				return
			}
		}
	}
}

const (
	decodeWorkers = 2
	chunkMsgs     = 256
)

type chunk struct {
	msgs   []jetstream.Msg
	events []Event
	err    error
	done   chan struct{}
}

func (c *chunk) decode() {
	defer close(c.done)
	c.events = make([]Event, 0, len(c.msgs))
	for _, m := range c.msgs {
		if c.err != nil {
			return
		}
		if IsControlSubject(m.Subject()) {
			continue
		}
		meta, err := m.Metadata()
		if err != nil {
			c.err = &Error{Op: "events.Read", Kind: KindIntegrity, Err: err}
			return
		}
		e, err := decodeStored(m.Subject(), m.Headers(), m.Data(), meta.Sequence.Stream, meta.Timestamp)
		if err != nil {
			c.err = err
			return
		}
		c.events = append(c.events, e)
	}
}

// fetch reads messages with an ordered consumer and hands them out in
// chunks; it closes out when done, after an error chunk, or when ctx ends.
func (s *JetStreamStore) fetch(ctx context.Context, subjects []string, cfg jetstream.OrderedConsumerConfig, to uint64, out chan<- *chunk, complete *atomic.Bool) {
	defer close(out)
	sem := make(chan struct{}, decodeWorkers)
	send := func(c *chunk) bool {
		if c.done == nil {
			c.done = make(chan struct{})
			if c.err != nil {
				close(c.done)
			} else {
				sem <- struct{}{}
				go func() { c.decode(); <-sem }()
			}
		}
		select {
		case out <- c:
			return true
		case <-ctx.Done():
			return false
		}
	}
	fail := func(kind Kind, err error) {
		if ctx.Err() != nil {
			return
		}
		send(&chunk{err: &Error{Op: "events.Read", Kind: kind, Err: err}})
	}
	// The read's consumer (Follow's) is a one-replica consumer, which the server may
	// place on any replica of the stream, and a replica may not yet have
	// applied what the leader acknowledged: its pending count can reach 0
	// before the log's end. So the read ends at the leader's last position
	// when it starts (or at to, if lower); a replica with nothing pending
	// short of that end is waited for, or, in a filtered read, the leader is
	// asked whether a matching message is left.
	end, err := s.leaderLastSeq(ctx)
	if err != nil {
		fail(KindUnavailable, err)
		return
	}
	if to > 0 && to < end {
		end = to
	}
	whole := len(subjects) == 1 && subjects[0] == SubjectPrefix+">"
	from, fromTime := uint64(1), time.Time{}
	switch cfg.DeliverPolicy {
	case jetstream.DeliverByStartSequencePolicy:
		from = cfg.OptStartSeq
	case jetstream.DeliverByStartTimePolicy:
		fromTime = *cfg.OptStartTime
	}
	// A read of every subject must see every position: the stream denies
	// deletes and purges and has no limits, so a position the server skips
	// was lost (a damaged block it could not read) or removed behind the
	// ledger's back, and reading past it would hide the loss.
	var next uint64
	if fromTime.IsZero() {
		next = from
	}
	errDone := errors.New("read done")
	// A consumer created with nothing pending may sit on a replica that has
	// not applied the end yet, or the range may hold nothing that matches:
	// the leader says which.
	created := func(at, pending uint64) error {
		if pending > 0 {
			return nil
		}
		left, err := s.matchingLeft(ctx, subjects, whole, max(at, 1), end, at == 0)
		if err != nil {
			return err
		}
		if !left {
			complete.Store(true)
			return errDone
		}
		return nil
	}
	c := &chunk{}
	err = s.follow(ctx, subjects, from, fromTime, created, func(m jetstream.Msg, meta *jetstream.MsgMetadata) error {
		if whole && next != 0 && meta.Sequence.Stream != next {
			if len(c.msgs) > 0 && !send(c) {
				return errDone
			}
			c = &chunk{}
			send(&chunk{err: missingPositions(next, meta.Sequence.Stream-1)})
			return errDone
		}
		next = meta.Sequence.Stream + 1
		last := meta.Sequence.Stream >= end
		if !last && meta.NumPending == 0 {
			left, err := s.matchingLeft(ctx, subjects, whole, next, end, false)
			if err != nil {
				return err
			}
			last = !left
		}
		if meta.Sequence.Stream <= end {
			c.msgs = append(c.msgs, m)
		}
		if last {
			complete.Store(true)
		}
		if last || len(c.msgs) == chunkMsgs {
			if len(c.msgs) > 0 && !send(c) {
				return errDone
			}
			c = &chunk{}
		}
		if last {
			return errDone
		}
		return nil
	})
	if errors.Is(err, errDone) || ctx.Err() != nil {
		return
	}
	if len(c.msgs) > 0 && !send(c) {
		return
	}
	kind := KindUnavailable
	if KindOf(err) == KindIntegrity {
		kind = KindIntegrity
	}
	fail(kind, err)
}

// leaderLastSeq returns the stream's last position as its leader knows it:
// every append acknowledged before the call is at or before it.
func (s *JetStreamStore) leaderLastSeq(ctx context.Context) (uint64, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, batchTimeout)
		defer cancel()
	}
	resp, err := s.request(ctx, "$JS.API.STREAM.INFO."+StreamName, nil)
	if err != nil {
		return 0, err
	}
	var r struct {
		Error *jetstream.APIError `json:"error"`
		State struct {
			LastSeq uint64 `json:"last_seq"`
		} `json:"state"`
	}
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return 0, err
	}
	if r.Error != nil {
		return 0, r.Error
	}
	return r.State.LastSeq, nil
}

// matchingLeft reports whether a message matching subjects is stored at a
// position from from to end, asking the leader. A read of the whole log
// needs no question: every position matches. byTime: the read starts at an
// instant, whose position is unknown; the replica's answer that nothing is
// pending is taken as it is.
func (s *JetStreamStore) matchingLeft(ctx context.Context, subjects []string, whole bool, from, end uint64, byTime bool) (bool, error) {
	if byTime || from > end {
		return false, nil
	}
	if whole {
		return true, nil
	}
	for _, subj := range subjects {
		m, err := s.msgGet(ctx, map[string]any{"seq": from, "next_by_subj": subj})
		if err != nil {
			return false, err
		}
		if m != nil && m.Sequence <= end {
			return true, nil
		}
	}
	return false, nil
}

// missingPositions is the error of a read of the whole log that found the
// positions from..to absent.
func missingPositions(from, to uint64) error {
	field := "position " + strconv.FormatUint(from, 10)
	if to > from {
		field = fmt.Sprintf("positions %d to %d", from, to)
	}
	return &Error{Op: "events.Read", Kind: KindIntegrity, Field: field,
		Rule: "missing from the stream, which denies deletes and purges: the message was lost or removed outside the ledger"}
}

func decodeStored(subject string, h nats.Header, data []byte, seq uint64, ts time.Time) (Event, error) {
	e, err := decode(subject, h, data)
	if err != nil {
		var le *Error
		if errors.As(err, &le) {
			c := *le
			c.Field = fmt.Sprintf("position %d: %s", seq, le.Field)
			return e, &c
		}
		return e, err
	}
	e.Position, e.RecordedAt = seq, ts
	return e, nil
}

// Subscribe implements Store on Follow: catch-up then live, gapless and
// duplicate-free across the boundary and across any failure of the server
// that serves it. q.Subjects becomes the consumer's filter, so the server
// sends only the events the subscriber asked for; the store's own records
// are skipped.
func (s *JetStreamStore) Subscribe(ctx context.Context, q Query, fn func(Event) error) error {
	if err := q.CheckSubscription(); err != nil {
		return err
	}
	subjects := q.Subjects
	if len(subjects) == 0 {
		subjects = []string{SubjectPrefix + ">"}
	}
	return s.Follow(ctx, subjects, q.From, q.FromTime, func(m jetstream.Msg, meta *jetstream.MsgMetadata) error {
		if IsControlSubject(m.Subject()) {
			return nil
		}
		e, err := decodeStored(m.Subject(), m.Headers(), m.Data(), meta.Sequence.Stream, meta.Timestamp)
		if err != nil {
			return err
		}
		e.Behind = meta.NumPending
		return fn(e)
	})
}

// PositionAt implements Store using the server's time index. The answer is
// always an event's position: the store's own records that follow an event
// (idempotency records, fences) are stepped over backwards.
func (s *JetStreamStore) PositionAt(ctx context.Context, t time.Time) (uint64, error) {
	after := t.Add(time.Nanosecond).UTC()
	m, err := s.msgGet(ctx, map[string]any{"start_time": after.Format(time.RFC3339Nano)})
	if err != nil {
		return 0, err
	}
	var pos uint64
	if m != nil {
		pos = m.Sequence - 1
	} else if pos, err = s.LastPosition(ctx); err != nil {
		return 0, err
	}
	return s.eventAtOrBefore(ctx, pos)
}

// eventAtOrBefore returns the position of the last event at or before pos.
func (s *JetStreamStore) eventAtOrBefore(ctx context.Context, pos uint64) (uint64, error) {
	for ; pos > 0; pos-- {
		m, err := s.msgGet(ctx, map[string]any{"seq": pos})
		if err != nil {
			return 0, err
		}
		if m != nil && !IsControlSubject(m.Subject) {
			return pos, nil
		}
	}
	return 0, nil
}

// LastPosition returns the position of the newest message in the stream.
func (s *JetStreamStore) LastPosition(ctx context.Context) (uint64, error) {
	st, err := s.js.Stream(ctx, StreamName)
	if err != nil {
		return 0, &Error{Op: "events.LastPosition", Kind: KindUnavailable, Err: err}
	}
	return st.CachedInfo().State.LastSeq, nil
}

// PolicyHead returns the position of the newest policy event (0 if none),
// as the stream leader knows it.
func (s *JetStreamStore) PolicyHead(ctx context.Context) (uint64, error) {
	if s.fenceSource == "" {
		return 0, nil
	}
	m, err := s.getLast(ctx, s.FenceSubject())
	if err != nil || m == nil {
		return 0, err
	}
	return m.Sequence, nil
}
