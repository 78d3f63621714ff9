package console

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"sort"
	"sync"
	"time"

	"github.com/marketledger/ledger/events"
)

// Clock names the time axis of the day: when a fact happened (business)
// or when the server stored it (recorded).
type Clock string

// The day's clocks.
const (
	Business Clock = "business"
	Recorded Clock = "recorded"
)

// Reader is the part of the log the day and the trace read.
type Reader interface {
	Read(ctx context.Context, q events.Query) iter.Seq2[events.Event, error]
	LastPosition(ctx context.Context) (uint64, error)
}

// Counts are what one bucket of the day holds.
type Counts struct {
	// Checkouts are the orders placed, by sales channel.
	Checkouts map[string]int
	// Refusals are the refusals the log records, by reason: an order
	// rejected, an authorization failed, and a command a policy rule
	// refused outright (its enforcement.command_refused record, ADR 0020;
	// one the recorders' limits kept off the log is not here).
	Refusals map[string]int
	// Refunds are the payments refunded.
	Refunds int
}

func (c *Counts) add(o *Counts) {
	for k, v := range o.Checkouts {
		c.Checkouts[k] += v
	}
	for k, v := range o.Refusals {
		c.Refusals[k] += v
	}
	c.Refunds += o.Refunds
}

func newCounts() *Counts { return &Counts{Checkouts: map[string]int{}, Refusals: map[string]int{}} }

// Marker is one policy event of the log.
type Marker struct {
	Position   uint64
	Type       string
	RuleID     string
	LegalBasis string
	Business   time.Time
	Recorded   time.Time
}

// At returns the marker's instant on clock.
func (m Marker) At(c Clock) time.Time {
	if c == Recorded {
		return m.Recorded
	}
	return m.Business
}

// Effective reports whether the marker puts a rule in force: the
// activation of a scheduled rule, or a rule imposed with immediate effect.
func (m Marker) Effective() bool { return m.Type == "policy.rule_activated" }

// Day folds the log into per-second counts on both clocks and the policy
// markers. It reads each event once: every call to Refresh reads only what
// was appended since the last. It is safe for concurrent use.
type Day struct {
	r Reader

	mu      sync.Mutex
	next    uint64 // first position not yet folded
	seconds map[Clock]map[int64]*Counts
	markers []Marker
}

// NewDay returns a day over r; nothing is read until Refresh.
func NewDay(r Reader) *Day {
	return &Day{r: r, next: 1, seconds: map[Clock]map[int64]*Counts{Business: {}, Recorded: {}}}
}

// Refresh folds every event appended since the last call.
func (d *Day) Refresh(ctx context.Context) error {
	head, err := d.r.LastPosition(ctx)
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if head < d.next {
		return nil
	}
	for e, err := range d.r.Read(ctx, events.Query{From: d.next, To: head}) {
		if err != nil {
			return err
		}
		d.fold(&e)
		d.next = e.Position + 1
	}
	d.next = max(d.next, head+1)
	return nil
}

// body is the part of an event's body the day reads.
type body struct {
	Channel    string `json:"channel"`
	Reason     string `json:"reason"`
	RuleID     string `json:"rule_id"`
	LegalBasis string `json:"legal_basis"`
}

func (d *Day) fold(e *events.Event) {
	var b body
	switch e.Context() {
	case "order", "payment", "policy", "enforcement":
	default:
		return
	}
	if json.Unmarshal(e.Data, &b) != nil {
		return
	}
	if e.Context() == "policy" {
		d.markers = append(d.markers, Marker{Position: e.Position, Type: e.Type, RuleID: b.RuleID, LegalBasis: b.LegalBasis,
			Business: e.OccurredAt, Recorded: e.RecordedAt})
		return
	}
	bump := func(f func(c *Counts)) {
		for clock, t := range map[Clock]time.Time{Business: e.OccurredAt, Recorded: e.RecordedAt} {
			s := t.Unix()
			c := d.seconds[clock][s]
			if c == nil {
				c = newCounts()
				d.seconds[clock][s] = c
			}
			f(c)
		}
	}
	switch e.Type {
	case "order.placed":
		bump(func(c *Counts) { c.Checkouts[b.Channel]++ })
	case "order.rejected", "payment.authorization_failed", "enforcement.command_refused":
		reason := b.Reason
		if b.RuleID != "" {
			reason = "rule " + b.RuleID
		}
		if reason == "" {
			reason = "no reason recorded"
		}
		bump(func(c *Counts) { c.Refusals[reason]++ })
	case "payment.refunded":
		bump(func(c *Counts) { c.Refunds++ })
	}
}

// Bucket is the counts of [Start, Start+step).
type Bucket struct {
	Start time.Time
	Counts
}

// Series is the day binned on one clock.
type Series struct {
	Clock    Clock
	From, To time.Time
	Step     time.Duration
	Buckets  []Bucket
	Markers  []Marker // those within [From, To), in time order
	Channels []string // every channel seen, sorted
	Reasons  []string // every refusal reason seen, sorted
	// Total is the sum of every bucket.
	Total Counts
}

// MaxBuckets bounds the buckets of one series (a whole day by minute fits;
// a day by second does not).
const MaxBuckets = 2000

// Span returns the instants of the first and last counted second on clock
// (zero when nothing is counted yet).
func (d *Day) Span(clock Clock) (first, last time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var lo, hi int64
	for s := range d.seconds[clock] {
		if lo == 0 || s < lo {
			lo = s
		}
		if s > hi {
			hi = s
		}
	}
	if lo == 0 {
		return time.Time{}, time.Time{}
	}
	return time.Unix(lo, 0), time.Unix(hi, 0)
}

// Markers returns every policy marker, in log order.
func (d *Day) Markers() []Marker {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Marker(nil), d.markers...)
}

// Bin returns the counts of [from, to) on clock in buckets of step.
func (d *Day) Bin(clock Clock, from, to time.Time, step time.Duration) (*Series, error) {
	if step < time.Second || step%time.Second != 0 {
		return nil, fmt.Errorf("step must be a whole number of seconds, got %s", step)
	}
	if !to.After(from) {
		return nil, fmt.Errorf("to (%s) must be after from (%s)", to.Format(time.RFC3339), from.Format(time.RFC3339))
	}
	n := int((to.Sub(from) + step - 1) / step)
	if n > MaxBuckets {
		return nil, fmt.Errorf("%d buckets of %s from %s to %s: at most %d; narrow the range or use a longer step",
			n, step, from.Format(time.RFC3339), to.Format(time.RFC3339), MaxBuckets)
	}
	s := &Series{Clock: clock, From: from, To: to, Step: step, Buckets: make([]Bucket, n), Total: *newCounts()}
	for i := range s.Buckets {
		s.Buckets[i] = Bucket{Start: from.Add(time.Duration(i) * step), Counts: *newCounts()}
	}
	chans, reasons := map[string]bool{}, map[string]bool{}
	d.mu.Lock()
	for sec, c := range d.seconds[clock] {
		for k := range c.Checkouts {
			chans[k] = true
		}
		for k := range c.Refusals {
			reasons[k] = true
		}
		t := time.Unix(sec, 0)
		if t.Before(from) || !t.Before(to) {
			continue
		}
		b := &s.Buckets[int(t.Sub(from)/step)]
		b.add(c)
		s.Total.add(c)
	}
	for _, m := range d.markers {
		if at := m.At(clock); !at.Before(from) && at.Before(to) {
			s.Markers = append(s.Markers, m)
		}
	}
	d.mu.Unlock()
	sort.SliceStable(s.Markers, func(i, j int) bool { return s.Markers[i].At(clock).Before(s.Markers[j].At(clock)) })
	s.Channels, s.Reasons = sortedKeys(chans), sortedKeys(reasons)
	return s, nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
