package events

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// Limits of the append path (TigerBeetle style: a bound on everything).
const (
	// MaxBatchMsgs bounds one group-commit batch; the server's own limit
	// per atomic batch is 1,000 messages.
	MaxBatchMsgs = 512
	// AppendQueueMax bounds decisions waiting for the group committer.
	AppendQueueMax = 4096
	// MaxIdempotencyKeyLen bounds an idempotency key.
	MaxIdempotencyKeyLen = 256
	// batchTimeout bounds one batch commit round trip.
	batchTimeout = 10 * time.Second
	// inflightRetries bounds retries of a batch refused for "too many in flight".
	inflightRetries = 20
)

// idemToken is the aggregate-id position token of idempotency records:
// ledger.<context>._idem.<sha256(key)>. It cannot collide with an aggregate
// id, which must start with a letter or digit.
const idemToken = "_idem"

// fenceToken names the per-context subject of policy fence records:
// ledger.<context>._fence.
const fenceToken = "_fence"

// JetStreamStore is the Store on one JetStream stream. Appends from many
// goroutines are group-committed: one goroutine collects the decisions that
// arrive while the previous batch is in flight and commits them as one atomic
// batch, each decision carrying its own per-aggregate expected-sequence
// check. A batch refused by a check is split and retried until the
// conflicting decision stands alone, so a conflict on one aggregate never
// fails another's append.
type JetStreamStore struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	checker TypeChecker
	// fenceSource is the context whose decisions move the fence (WithFence).
	fenceSource string
	log         *zap.Logger

	queue   chan *pending
	closing chan struct{}
	done    chan struct{}
	once    sync.Once

	mu    sync.Mutex
	heads map[AggregateRef]head
	// fenceHead is the newest policy position the committer knows of.
	fenceHead uint64
	// depth is the most batches in flight at once.
	depth int
	// leaderChange is closed, and replaced, when the stream elects a
	// leader: a batch in flight at that moment may have been dropped by the
	// old leader and is sent again at once (publishBatch).
	leaderChange chan struct{}
	advisory     *nats.Subscription

	observer Observer

	stats struct {
		batches, decisions, conflicts, policyConflicts atomic.Uint64
		leaderChanges, resends, resolvedStored         atomic.Uint64
	}
}

// Stats are the store's append counters since it was opened.
type Stats struct {
	Batches         uint64 // atomic batches committed
	Decisions       uint64 // decisions committed
	Conflicts       uint64 // decisions refused for a stale expected version
	PolicyConflicts uint64 // fenced decisions refused for a newer policy
	LeaderChanges   uint64 // stream leader elections seen
	Resends         uint64 // batches sent again after no answer or a lost batch
	ResolvedStored  uint64 // resent batches found stored by an earlier send
}

// Stats returns the append counters.
func (s *JetStreamStore) Stats() Stats {
	return Stats{Batches: s.stats.batches.Load(), Decisions: s.stats.decisions.Load(),
		Conflicts: s.stats.conflicts.Load(), PolicyConflicts: s.stats.policyConflicts.Load(),
		LeaderChanges: s.stats.leaderChanges.Load(), Resends: s.stats.resends.Load(), ResolvedStored: s.stats.resolvedStored.Load()}
}

// head is what the store knows of an aggregate's last event.
type head struct {
	version uint64
	seq     uint64
	hash    string
}

type pending struct {
	d      Decision
	msgs   []*nats.Msg
	expect head   // the head the decision was sealed on
	last   head   // the head after the decision
	idem   string // idempotency record subject, or ""
	result chan appendResult
}

type appendResult struct {
	a   Appended
	err error
}

// Option configures a JetStreamStore.
type Option func(*JetStreamStore)

// WithTypeChecker makes the store refuse events the checker rejects.
func WithTypeChecker(c TypeChecker) Option { return func(s *JetStreamStore) { s.checker = c } }

// DefaultPipelineDepth is how many group-commit batches may be in flight at
// once: while one is being stored, the next is sent, which hides the round
// trip. The server's own limit is 50 atomic batches in flight per stream.
const DefaultPipelineDepth = 2

// WithPipelineDepth sets how many batches may be in flight at once (1..16).
func WithPipelineDepth(n int) Option {
	return func(s *JetStreamStore) { s.depth = min(max(n, 1), 16) }
}

// WithFence names the fence's source: the context whose decisions move the
// fence (this ledger's policy context). A fenced decision is stored only if
// nothing was stored on ledger.<source>.> after the position it was decided
// under, and the source's own decisions are appended first, never in a batch
// with fenced ones (ADR 0004). A store opened without a source refuses
// fenced decisions.
func WithFence(source string) Option { return func(s *JetStreamStore) { s.fenceSource = source } }

// FenceSubject returns the subject filter fenced decisions are checked
// against, ledger.<source>.> ("" when the store has no fence source).
func (s *JetStreamStore) FenceSubject() string {
	if s.fenceSource == "" {
		return ""
	}
	return SubjectPrefix + s.fenceSource + ".>"
}

// FenceRecordSubject returns the subject of the record that ends every batch
// of the fence source's decisions, ledger.<source>._fence. It lies under
// FenceSubject, so a follower of the source sees it in order with the
// source's events.
func (s *JetStreamStore) FenceRecordSubject() string {
	if s.fenceSource == "" {
		return ""
	}
	return FenceRecordSubjectOf(s.fenceSource)
}

// FenceRecordSubjectOf returns the subject of the fence records of a store
// whose fence source is source.
func FenceRecordSubjectOf(source string) string { return SubjectPrefix + source + "." + fenceToken }

// Observer hears of the store's appends and group-commit batches, for
// metrics. Its methods are called concurrently, on the append path, and
// must return at once.
type Observer interface {
	// Appended reports one Append: how long it took, and its error.
	Appended(d time.Duration, err error)
	// Committed reports one batch sent: the decisions and messages it
	// carried and how long it took to settle.
	Committed(decisions, messages int, d time.Duration)
}

// WithObserver makes the store report its appends and batches to o.
func WithObserver(o Observer) Option { return func(s *JetStreamStore) { s.observer = o } }

// WithLogger sets the store's logger.
func WithLogger(l *zap.Logger) Option { return func(s *JetStreamStore) { s.log = l } }

// Logger returns the store's logger, so that followers started on the store
// (the policy view) report where the store does.
func (s *JetStreamStore) Logger() *zap.Logger { return s.log }

// NewJetStreamStore opens the store on nc. The LEDGER stream must exist with
// safe settings (see EnsureStream); NewJetStreamStore checks them.
func NewJetStreamStore(ctx context.Context, nc *nats.Conn, opts ...Option) (*JetStreamStore, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, &Error{Op: "events.NewJetStreamStore", Kind: KindUnavailable, Err: err}
	}
	wctx, cancel := context.WithTimeout(ctx, LeaderWaitMax)
	defer cancel()
	st, err := WaitStreamLeader(wctx, js, StreamName)
	if err != nil {
		return nil, &Error{Op: "events.NewJetStreamStore", Kind: KindUnavailable, Rule: "stream " + StreamName + " not reachable", Err: err}
	}
	if err := CheckStreamConfig(st.CachedInfo().Config); err != nil {
		return nil, withOp("events.NewJetStreamStore", err)
	}
	s := &JetStreamStore{
		nc: nc, js: js, log: zap.NewNop(),
		queue:   make(chan *pending, AppendQueueMax),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
		heads:   make(map[AggregateRef]head),
		depth:   DefaultPipelineDepth,
	}
	for _, o := range opts {
		o(s)
	}
	s.leaderChange = make(chan struct{})
	if err := s.watchLeader(); err != nil {
		// Without the advisory a lost batch is sent again after
		// firstAckWait instead of at once: slower, never less safe.
		s.log.Warn("cannot follow the stream's leader elections; lost batches are sent again after a time-out", zap.Error(err))
	}
	go s.commitLoop()
	return s, nil
}

// JetStream returns the underlying JetStream context.
func (s *JetStreamStore) JetStream() jetstream.JetStream { return s.js }

// Close stops the group committer; decisions still queued fail with
// KindUnavailable and nothing of them is stored.
func (s *JetStreamStore) Close() error {
	s.once.Do(func() { close(s.closing) })
	<-s.done
	if s.advisory != nil {
		s.advisory.Unsubscribe()
	}
	return nil
}

// Append implements Store.
func (s *JetStreamStore) Append(ctx context.Context, d Decision) (Appended, error) {
	if s.observer == nil {
		return s.append(ctx, d)
	}
	start := time.Now()
	a, err := s.append(ctx, d)
	s.observer.Appended(time.Since(start), err)
	return a, err
}

func (s *JetStreamStore) append(ctx context.Context, d Decision) (Appended, error) {
	const op = "events.Append"
	if err := s.validateDecision(d); err != nil {
		return Appended{}, withOp(op, err)
	}
	// A used idempotency key is not looked up first: the batch itself
	// checks that the key's record subject is empty, and a refusal is
	// answered below from the record that made it. The common case, a key
	// never used, costs no read.
	var idemSubj string
	if d.IdempotencyKey != "" {
		idemSubj = idemSubject(d.Aggregate.Context, d.IdempotencyKey)
	}
	h, err := s.resolveHead(ctx, d.Aggregate, d.ExpectedVersion)
	if err != nil {
		if d.IdempotencyKey != "" && KindOf(err) == KindConflict {
			// The aggregate moved: perhaps by this very command, stored by
			// an earlier attempt whose answer was lost. Answer as it did.
			if a, found, lerr := s.lookupIdempotency(ctx, idemSubj, d); found || lerr != nil {
				return a, lerr
			}
		}
		return Appended{}, err
	}
	p, err := s.prepare(d, h, idemSubj)
	if err != nil {
		return Appended{}, err
	}
	select {
	case s.queue <- p:
	case <-ctx.Done():
		return Appended{}, &Error{Op: op, Kind: KindUnavailable, Rule: "not queued", Err: ctx.Err()}
	case <-s.closing:
		return Appended{}, &Error{Op: op, Kind: KindUnavailable, Rule: "store closed"}
	}
	select {
	case r := <-p.result:
		if r.err != nil && d.IdempotencyKey != "" && KindOf(r.err) == KindConflict {
			// The idempotency record's own check may be what failed: a
			// concurrent append with the same key won. Answer as it did.
			if a, found, err := s.lookupIdempotency(ctx, idemSubj, d); found || err != nil {
				return a, err
			}
		}
		return r.a, r.err
	case <-ctx.Done():
		return Appended{}, &Error{Op: op, Kind: KindUnavailable, Rule: "outcome unknown: the decision may still be stored", Err: ctx.Err()}
	}
}

func (s *JetStreamStore) validateDecision(d Decision) error {
	if err := ValidateContext(d.Aggregate.Context); err != nil {
		return err
	}
	if err := ValidateAggregateID(d.Aggregate.ID); err != nil {
		return err
	}
	if n := len(d.Events); n == 0 || n > MaxEventsPerDecision {
		return invalid("", "events", fmt.Sprintf("a decision has 1..%d events, got %d", MaxEventsPerDecision, n))
	}
	if err := validateKey("", d.IdempotencyKey, d.CommandDigest); err != nil {
		return err
	}
	if err := validateParts(d); err != nil {
		return err
	}
	for i := range d.Events {
		e := &d.Events[i]
		field := "events/" + strconv.Itoa(i)
		if d.Fence && e.PolicyPosition != d.Events[0].PolicyPosition {
			return invalid("", field+"/policyposition", "all events of a fenced decision record the same policy position")
		}
		if d.Fence && s.fenceSource == "" {
			return invalid("", "fence", "the store has no fence source (events.WithFence): it cannot fence a decision")
		}
		if d.Fence && d.Aggregate.Context == s.fenceSource {
			return invalid("", "fence", "policy decisions are the fence's source and cannot be fenced")
		}
		if err := e.Validate(); err != nil {
			return prefixField(field, err)
		}
		if e.Context() != d.Aggregate.Context || e.AggregateID != d.Aggregate.ID {
			return invalid("", field, fmt.Sprintf("event %s/%s does not belong to aggregate %s", e.Context(), e.AggregateID, d.Aggregate))
		}
		if s.checker != nil {
			if err := s.checker.CheckEvent(e.Type, e.SchemaVersion, e.Data); err != nil {
				return prefixField(field, err)
			}
		}
	}
	return nil
}

func validateKey(prefix, key, digest string) error {
	if key == "" {
		return nil
	}
	if len(key) > MaxIdempotencyKeyLen {
		return invalid("", prefix+"idempotency_key", fmt.Sprintf("at most %d bytes", MaxIdempotencyKeyLen))
	}
	if digest == "" || len(digest) > 128 {
		return invalid("", prefix+"command_digest", "required with an idempotency key, at most 128 bytes")
	}
	return nil
}

// validateParts checks that a decision's parts share out its events, one
// or more each, with keys used once.
func validateParts(d Decision) error {
	if len(d.Parts) == 0 {
		return nil
	}
	if d.IdempotencyKey != "" || d.CommandDigest != "" {
		return invalid("", "idempotency_key", "a decision with parts carries its keys in its parts")
	}
	n := 0
	keys := make(map[string]bool, len(d.Parts))
	for i, p := range d.Parts {
		field := "parts/" + strconv.Itoa(i) + "/"
		if p.Events < 1 {
			return invalid("", field+"events", "every part has at least one event")
		}
		n += p.Events
		if err := validateKey(field, p.IdempotencyKey, p.CommandDigest); err != nil {
			return err
		}
		if p.IdempotencyKey != "" && keys[p.IdempotencyKey] {
			return invalid("", field+"idempotency_key", "a key is used by one part only")
		}
		keys[p.IdempotencyKey] = p.IdempotencyKey != ""
	}
	if n != len(d.Events) {
		return invalid("", "parts", fmt.Sprintf("the parts own %d events, the decision has %d", n, len(d.Events)))
	}
	return nil
}

func prefixField(prefix string, err error) error {
	var e *Error
	if errors.As(err, &e) {
		c := *e
		c.Field = prefix + "/" + strings.TrimPrefix(e.Field, "/")
		return &c
	}
	return &Error{Kind: KindInvalid, Field: prefix, Rule: err.Error()}
}

// prepare seals and encodes the decision's events on head h.
func (s *JetStreamStore) prepare(d Decision, h head, idemSubj string) (*pending, error) {
	evs := make([]Event, len(d.Events))
	copy(evs, d.Events)
	lastHash := SealAt(evs, h.version, h.hash, h.seq)
	p := &pending{d: d, expect: h, idem: idemSubj, result: make(chan appendResult, 1)}
	p.last = head{version: h.version + uint64(len(evs)), hash: lastHash}
	for i := range evs {
		m, err := Encode(&evs[i])
		if err != nil {
			return nil, prefixField("events/"+strconv.Itoa(i), err)
		}
		if i == 0 {
			m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(h.seq, 10))
			m.Header.Set(jetstream.ExpectedLastSubjSeqSubjHeader, d.Aggregate.Subject())
		}
		p.msgs = append(p.msgs, m)
	}
	record := func(subj string, rec idemRecord) {
		b, _ := json.Marshal(rec)
		m := nats.NewMsg(subj)
		m.Data = b
		m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, "0")
		p.msgs = append(p.msgs, m)
	}
	if idemSubj != "" {
		record(idemSubj, idemRecord{Key: d.IdempotencyKey, Digest: d.CommandDigest,
			Aggregate: d.Aggregate.String(), Version: p.last.version, Events: len(evs)})
	}
	// A part's record follows every event of the decision: the events stay
	// contiguous, and After counts the messages between the part's last
	// event and its record.
	cum := 0
	for _, part := range d.Parts {
		cum += part.Events
		if part.IdempotencyKey == "" {
			continue
		}
		record(idemSubject(d.Aggregate.Context, part.IdempotencyKey), idemRecord{Key: part.IdempotencyKey,
			Digest: part.CommandDigest, Aggregate: d.Aggregate.String(), Version: h.version + uint64(cum),
			Events: part.Events, After: len(p.msgs) - cum})
	}
	return p, nil
}

// AppendsParts implements PartsAppender.
func (s *JetStreamStore) AppendsParts() {}

// idemRecord is stored right after a decision's events, in the same atomic
// batch, on a subject of its own that may only ever hold one message.
type idemRecord struct {
	Key       string `json:"key"`
	Digest    string `json:"command_digest"`
	Aggregate string `json:"aggregate"`
	Version   uint64 `json:"version"`
	Events    int    `json:"events"`
	// After counts the messages stored between the command's last event
	// and this record: 0 for a decision of one command, whose record
	// follows its events; for a part of a decision with parts, the events
	// of the later parts and the records before this one.
	After int `json:"after,omitempty"`
}

func idemSubject(context, key string) string {
	sum := sha256.Sum256([]byte(key))
	return SubjectPrefix + context + "." + idemToken + "." + hex.EncodeToString(sum[:])
}

// IsControlSubject reports whether subject holds one of the store's own
// records (an idempotency record or a policy fence) rather than an event.
// Their third token starts with '_', which no aggregate id can.
func IsControlSubject(subject string) bool {
	parts := strings.SplitN(subject, ".", 4)
	return len(parts) >= 3 && strings.HasPrefix(parts[2], "_")
}

// LookupIdempotency implements IdempotencyLookup.
func (s *JetStreamStore) LookupIdempotency(ctx context.Context, ref AggregateRef, key, digest string) (Appended, bool, error) {
	return s.lookupIdempotency(ctx, idemSubject(ref.Context, key), Decision{Aggregate: ref, IdempotencyKey: key, CommandDigest: digest})
}

func (s *JetStreamStore) lookupIdempotency(ctx context.Context, subj string, d Decision) (Appended, bool, error) {
	m, err := s.getLast(ctx, subj)
	if err != nil || m == nil {
		return Appended{}, false, err
	}
	var rec idemRecord
	if err := json.Unmarshal(m.Data, &rec); err != nil {
		return Appended{}, true, &Error{Op: "events.Append", Kind: KindIntegrity, Field: subj, Rule: "unreadable idempotency record", Err: err}
	}
	if rec.Key != d.IdempotencyKey || rec.Digest != d.CommandDigest || rec.Aggregate != d.Aggregate.String() {
		return Appended{}, true, &Error{Op: "events.Append", Kind: KindDuplicate, Field: "idempotency_key",
			Rule: "the key was already used for a different command"}
	}
	last := m.Sequence - uint64(rec.After) - 1
	return Appended{Version: rec.Version, FirstPosition: last - uint64(rec.Events) + 1,
		LastPosition: last, Replayed: true}, true, nil
}

// resolveHead returns the aggregate's head if it is at version expected, and
// a conflict error if it is not.
func (s *JetStreamStore) resolveHead(ctx context.Context, ref AggregateRef, expected uint64) (head, error) {
	s.mu.Lock()
	h, ok := s.heads[ref]
	s.mu.Unlock()
	if ok && h.version == expected {
		return h, nil // a stale cache fails the server-side check, never silently
	}
	if ok && h.version > expected {
		return head{}, conflict(ref, expected, h.version)
	}
	m, err := s.getLast(ctx, ref.Subject())
	if err != nil {
		return head{}, err
	}
	h = head{hash: GenesisHash}
	if m != nil {
		e, err := Decode(m.Subject, m.Header, m.Data)
		if err != nil {
			return head{}, err
		}
		h = head{version: e.AggregateVersion, seq: m.Sequence, hash: e.Hash}
	}
	s.remember(ref, h)
	if h.version != expected {
		return head{}, conflict(ref, expected, h.version)
	}
	return h, nil
}

func conflict(ref AggregateRef, expected, actual uint64) error {
	return &Error{Op: "events.Append", Kind: KindConflict, Field: "expected_version",
		Rule: fmt.Sprintf("aggregate %s is at version %d, the decision expected %d", ref, actual, expected)}
}

func (s *JetStreamStore) remember(ref AggregateRef, h head) {
	s.mu.Lock()
	if cur, ok := s.heads[ref]; !ok || cur.version <= h.version {
		s.heads[ref] = h
	}
	s.mu.Unlock()
}

func (s *JetStreamStore) forget(ref AggregateRef) {
	s.mu.Lock()
	delete(s.heads, ref)
	s.mu.Unlock()
}
