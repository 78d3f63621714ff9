// Package eventhttp serves reads of the ledger over HTTP: a paged read of the
// global log (GET /v1/events) and a live subscription as server-sent events
// (GET /v1/subscribe), resumable with Last-Event-ID.
//
// It only reads: it must never append, and never hand out a store control
// record (idempotency records, policy fences) as an event. Bad input is
// answered with 400 and an RFC 9457 problem+json body naming the field and
// the rule it broke.
package eventhttp

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"iter"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/marketledger/ledger/runtime/service"

	"github.com/marketledger/ledger/events"
)

// Limits of one request.
const (
	// DefaultLimit is how many events a page holds when limit is not given.
	DefaultLimit = 100
	// MaxLimit bounds limit.
	MaxLimit = 1000
	// MaxScan bounds the events one page reads to fill itself when a type
	// filter skips most of them; the page then ends early with its cursor.
	MaxScan = 10_000
	// MaxFilters bounds the subject and type filters of one request.
	MaxFilters = 16
	// DefaultHeartbeat is the interval of SSE heartbeat comments, which keep
	// proxies from closing an idle stream.
	DefaultHeartbeat = 15 * time.Second
	// sseBuffer bounds the events read ahead of a slow SSE client.
	sseBuffer = 256
	// writeTimeout bounds one write to an SSE client.
	writeTimeout = 30 * time.Second
)

// Reader is the part of events.Store the handlers use.
type Reader interface {
	Read(ctx context.Context, q events.Query) iter.Seq2[events.Event, error]
	Subscribe(ctx context.Context, q events.Query, fn func(events.Event) error) error
}

// Options configure the handlers.
type Options struct {
	// KnownType, when set, refuses a type filter it reports unknown (the
	// contracts module has the list; this module may not import it).
	KnownType func(string) bool
	// Heartbeat is the interval of SSE heartbeat comments
	// (DefaultHeartbeat when 0).
	Heartbeat time.Duration
}

// Handler serves GET /v1/events and GET /v1/subscribe.
type Handler struct {
	r   Reader
	opt Options
	mux *http.ServeMux
}

// New returns the handlers over r. Mount it with Register on the API's mux,
// or serve it as it is (it answers 404 for any other path).
func New(r Reader, opt Options) *Handler {
	if opt.Heartbeat <= 0 {
		opt.Heartbeat = DefaultHeartbeat
	}
	h := &Handler{r: r, opt: opt, mux: http.NewServeMux()}
	h.Register(h.mux)
	return h
}

// Register mounts the two routes on mux.
func (h *Handler) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/events", h.events)
	mux.HandleFunc("GET /v1/subscribe", h.subscribe)
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// Event is the JSON form of one event, the same in a page and in an SSE
// data line.
type Event struct {
	Position         uint64    `json:"position"`
	RecordedAt       time.Time `json:"recorded_at"`
	ID               string    `json:"id"`
	Type             string    `json:"type"`
	SchemaVersion    int       `json:"schema_version"`
	Source           string    `json:"source"`
	Subject          string    `json:"subject"`
	AggregateID      string    `json:"aggregate_id"`
	AggregateVersion uint64    `json:"aggregate_version"`
	OccurredAt       string    `json:"occurred_at"`
	CorrelationID    string    `json:"correlation_id,omitempty"`
	CausationID      string    `json:"causation_id,omitempty"`
	PolicyPosition   uint64    `json:"policy_position"`
	// PrevPosition is the position of the aggregate's previous event, on
	// the first event of a decision; the hash covers it when it is set.
	PrevPosition uint64 `json:"prev_position,omitempty"`
	PrevHash     string `json:"prev_hash"`
	Hash         string `json:"hash"`
	// Traceparent is the W3C trace context of the decision that stored
	// the event (the CloudEvents distributed-tracing extension), when it
	// was traced.
	Traceparent string          `json:"traceparent,omitempty"`
	Data        json.RawMessage `json:"data"`
	// DataRaw holds the body's bytes as stored, when they are not the
	// compact JSON that data is served as (insignificant white space):
	// the hash covers these bytes (docs/verifying.md).
	DataRaw []byte `json:"data_raw,omitempty"`
}

// ToJSON converts an event to its JSON form. The business time keeps the
// producer's offset (a WIB instant stays +07:00).
func ToJSON(e events.Event) Event {
	return Event{Position: e.Position, RecordedAt: e.RecordedAt.UTC(), ID: e.ID, Type: e.Type, SchemaVersion: e.SchemaVersion,
		Source: e.Source, Subject: e.Subject(), AggregateID: e.AggregateID, AggregateVersion: e.AggregateVersion,
		OccurredAt: e.OccurredAt.Format(time.RFC3339Nano), CorrelationID: e.CorrelationID, CausationID: e.CausationID,
		PolicyPosition: e.PolicyPosition, PrevPosition: e.PrevPosition, PrevHash: e.PrevHash, Hash: e.Hash,
		Traceparent: e.Traceparent, Data: e.Data, DataRaw: rawIfNotCompact(e.Data)}
}

// rawIfNotCompact returns body when compacting it would change its bytes,
// and nil when it is compact already (every body the services store).
func rawIfNotCompact(body []byte) []byte {
	var b bytes.Buffer
	if json.Compact(&b, body) != nil || bytes.Equal(b.Bytes(), body) {
		return nil
	}
	return body
}

// encodeJSON writes v as JSON without escaping <, > and &: a body is served
// with the bytes its hash covers.
func encodeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// Page is the body of GET /v1/events.
type Page struct {
	Events []Event `json:"events"`
	// Next is the position to ask for next (from=Next): one past the last
	// position this page looked at.
	Next uint64 `json:"next"`
	// More is true when the page stopped at its limit (or its scan bound)
	// before the end of the range: ask again at once. When false the page
	// reached the head (or to); new events will appear at Next.
	More bool `json:"more"`
}

// badInput is a request parameter that breaks a rule.
type badInput struct{ field, rule string }

func (b *badInput) Error() string { return b.field + ": " + b.rule }

// writeProblem answers with the ledger's one problem type: a bad parameter
// as an invalid request naming it, anything else with status as given.
func writeProblem(w http.ResponseWriter, status int, title string, err error) {
	if b, ok := err.(*badInput); ok {
		service.ProblemOf(&events.Error{Kind: events.KindInvalid, Reason: events.ReasonMalformed, Field: b.field, Rule: b.rule}).Write(w)
		return
	}
	if status == http.StatusBadRequest {
		service.ProblemOf(&events.Error{Kind: events.KindInvalid, Reason: events.ReasonMalformed, Rule: err.Error()}).Write(w)
		return
	}
	p := service.ProblemOf(err)
	p.Status, p.Title = status, title
	p.Write(w)
}

// filter is what a request selects.
type filter struct {
	from, to uint64
	subjects []string
	types    map[string]bool
	// correlation, when set, keeps the events of one flow: a client that
	// sent Ledger-Correlation-Id follows its checkout across the order,
	// listing and payment aggregates it touched.
	correlation string
	limit       int
}

func (f *filter) match(e *events.Event) bool {
	if len(f.types) > 0 && !f.types[e.Type] {
		return false
	}
	if f.correlation != "" && e.CorrelationID != f.correlation {
		return false
	}
	if len(f.subjects) == 0 {
		return true
	}
	s := e.Subject()
	for _, p := range f.subjects {
		if SubjectMatches(p, s) {
			return true
		}
	}
	return false
}

func (h *Handler) parse(q map[string][]string, sse bool) (*filter, error) {
	f := &filter{from: 1, limit: DefaultLimit}
	var err error
	if v := first(q, "from"); v != "" {
		if f.from, err = parsePosition("from", v); err != nil {
			return nil, err
		}
	}
	if v := first(q, "to"); v != "" && !sse {
		if f.to, err = parsePosition("to", v); err != nil {
			return nil, err
		}
		if f.to < f.from {
			return nil, &badInput{"to", fmt.Sprintf("the range ends (%d) before it starts (%d)", f.to, f.from)}
		}
	}
	if v := first(q, "limit"); v != "" && !sse {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxLimit {
			return nil, &badInput{"limit", fmt.Sprintf("must be an integer 1..%d, got %q", MaxLimit, v)}
		}
		f.limit = n
	}
	subjects, types := split(q["subject"]), split(q["type"])
	if len(subjects) > MaxFilters || len(types) > MaxFilters {
		return nil, &badInput{"subject", fmt.Sprintf("at most %d subject and %d type filters", MaxFilters, MaxFilters)}
	}
	for _, s := range subjects {
		if err := ValidateSubject(s); err != nil {
			return nil, &badInput{"subject", err.Error()}
		}
	}
	f.subjects = subjects
	if v := q["correlation_id"]; len(v) > 0 {
		if len(v) > 1 || events.ValidateAggregateID(v[0]) != nil {
			return nil, &badInput{"correlation_id", fmt.Sprintf("one id of 1 to 128 letters, digits, '-' or '_', starting with a letter or digit, got %q", truncate(strings.Join(v, ",")))}
		}
		f.correlation = v[0]
	}
	for _, t := range types {
		if _, _, err := events.SplitType(t); err != nil {
			return nil, &badInput{"type", fmt.Sprintf("must be <context>.<name>, got %q", t)}
		}
		if h.opt.KnownType != nil && !h.opt.KnownType(t) {
			return nil, &badInput{"type", fmt.Sprintf("unknown event type %q", t)}
		}
		if f.types == nil {
			f.types = map[string]bool{}
		}
		f.types[t] = true
	}
	return f, nil
}

func first(q map[string][]string, k string) string {
	if v := q[k]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// split flattens repeated and comma-separated values.
func split(vs []string) []string {
	var out []string
	for _, v := range vs {
		for p := range strings.SplitSeq(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

func parsePosition(field, v string) (uint64, error) {
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil || n == 0 {
		return 0, &badInput{field, fmt.Sprintf("must be a position (a whole number from 1), got %q", truncate(v))}
	}
	return n, nil
}

func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// ValidateSubject checks a subject filter: a NATS subject pattern in the
// ledger's subject space ("ledger.order.>", "ledger.*.o-1.*"), with a known
// shape: at most four tokens, '>' only last.
func ValidateSubject(s string) error {
	toks := strings.Split(s, ".")
	if toks[0] != strings.TrimSuffix(events.SubjectPrefix, ".") || len(toks) < 2 || len(toks) > 4 {
		return fmt.Errorf("must be a subject pattern ledger.<context>.<aggregate>.<event> (wildcards * and >), got %q", truncate(s))
	}
	for i, t := range toks {
		switch {
		case t == "":
			return fmt.Errorf("empty token in %q", truncate(s))
		case t == ">" && i != len(toks)-1:
			return fmt.Errorf("'>' must be the last token in %q", truncate(s))
		case strings.ContainsAny(t, " \t\r\n") || (len(t) > 1 && strings.ContainsAny(t, "*>")):
			return fmt.Errorf("bad token %q in %q", truncate(t), truncate(s))
		case i == 2 && strings.HasPrefix(t, "_"):
			return fmt.Errorf("%q names the store's control records, not events", truncate(s))
		}
	}
	return nil
}

// SubjectMatches reports whether subject matches the NATS pattern.
func SubjectMatches(pattern, subject string) bool {
	ps, ss := strings.Split(pattern, "."), strings.Split(subject, ".")
	for i, p := range ps {
		if p == ">" {
			return len(ss) > i
		}
		if i >= len(ss) || (p != "*" && p != ss[i]) {
			return false
		}
	}
	return len(ps) == len(ss)
}

// events serves one page of the log.
func (h *Handler) events(w http.ResponseWriter, r *http.Request) {
	f, err := h.parse(r.URL.Query(), false)
	if err != nil {
		writeProblem(w, http.StatusBadRequest, "bad event query", err)
		return
	}
	page, err := h.page(r.Context(), f)
	if err != nil {
		writeProblem(w, http.StatusServiceUnavailable, "the log could not be read", err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = encodeJSON(w, page)
}

func (h *Handler) page(ctx context.Context, f *filter) (*Page, error) {
	p := &Page{Events: []Event{}, Next: f.from}
	q := events.Query{From: f.from, To: f.to, Subjects: f.subjects}
	if len(q.Subjects) == 0 && len(f.types) > 0 {
		// Let the server filter: a type is a subject pattern.
		for t := range f.types {
			c, n, _ := strings.Cut(t, ".")
			q.Subjects = append(q.Subjects, events.SubjectPrefix+c+".*."+n)
		}
	}
	scanned := 0
	for e, err := range h.r.Read(ctx, q) {
		if err != nil {
			return nil, err
		}
		scanned++
		if f.match(&e) {
			p.Events = append(p.Events, ToJSON(e))
		}
		p.Next = e.Position + 1
		if len(p.Events) == f.limit || scanned == MaxScan {
			p.More = f.to == 0 || p.Next <= f.to
			break
		}
	}
	return p, nil
}

// subscribe streams events as server-sent events, each with its position as
// id, until the client goes away.
func (h *Handler) subscribe(w http.ResponseWriter, r *http.Request) {
	f, err := h.parse(r.URL.Query(), true)
	if err != nil {
		writeProblem(w, http.StatusBadRequest, "bad subscription", err)
		return
	}
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		last, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		if err != nil {
			writeProblem(w, http.StatusBadRequest, "bad subscription", &badInput{"Last-Event-ID", fmt.Sprintf("must be a position, got %q", truncate(v))})
			return
		}
		f.from = last + 1 // resume after the last event the client saw
	}
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc.SetWriteDeadline(time.Now().Add(writeTimeout))
	fmt.Fprintf(w, ": subscribed from position %d\n\n", f.from)
	if rc.Flush() != nil {
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	evs := make(chan events.Event, sseBuffer)
	errc := make(chan error, 1)
	go func() {
		defer close(evs)
		// The subjects filter on the server; match also checks the types.
		errc <- h.r.Subscribe(ctx, events.Query{From: f.from, Subjects: f.subjects}, func(e events.Event) error {
			if !f.match(&e) {
				return nil
			}
			select {
			case evs <- e:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
	}()
	h.stream(ctx, w, rc, evs, errc)
}

// stream writes events and heartbeats until the client goes away or the
// subscription fails.
func (h *Handler) stream(ctx context.Context, w http.ResponseWriter, rc *http.ResponseController, evs <-chan events.Event, errc <-chan error) {
	beat := time.NewTicker(h.opt.Heartbeat)
	defer beat.Stop()
	for {
		select {
		case e, ok := <-evs:
			if !ok {
				if err := <-errc; err != nil && ctx.Err() == nil {
					rc.SetWriteDeadline(time.Now().Add(writeTimeout))
					fmt.Fprintf(w, "event: error\ndata: %s\n\n", strings.ReplaceAll(err.Error(), "\n", " "))
					rc.Flush()
				}
				return
			}
			var b bytes.Buffer
			_ = encodeJSON(&b, ToJSON(e))
			rc.SetWriteDeadline(time.Now().Add(writeTimeout))
			if _, err := fmt.Fprintf(w, "id: %d\nevent: %s\ndata: %s\n\n", e.Position, e.Type, bytes.TrimSuffix(b.Bytes(), []byte("\n"))); err != nil {
				return
			}
			if len(evs) == 0 && rc.Flush() != nil {
				return
			}
		case <-beat.C:
			rc.SetWriteDeadline(time.Now().Add(writeTimeout))
			if _, err := fmt.Fprint(w, ": heartbeat\n\n"); err != nil || rc.Flush() != nil {
				return
			}
		case <-ctx.Done():
			return
		}
	}
}
