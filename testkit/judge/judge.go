package judge

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Judge folds the messages of one log, in stream order, and reports what
// it found. Feed it every message with Add, then call Report. A Judge is
// not safe for concurrent use.
type Judge struct {
	r Report
	// next is the stream sequence the next message must have.
	next     uint64
	ids      map[string]uint64
	heads    map[string]head
	rules    map[string]*rule
	order    []*rule
	listings map[string]trade
	orders   map[string]trade
	payments map[string]string // payment id -> order id
	refused  map[string]int
	balances balances
	txs      []tx
	// policyHead is the position of the newest policy event read.
	policyHead uint64
}

// head is the last event of an aggregate.
type head struct {
	version, pos uint64
	hash         string
}

// trade is what a transaction is judged on: its scope and unit price.
type trade struct {
	target target
	price  *money
}

// tx is one accepted transaction of a blockable operation.
type tx struct {
	Pos, PolicyPos    uint64
	ID, Type, AggID   string
	Op                string
	Decided, Recorded time.Time
	trade
}

// New returns a Judge for a log that starts at sequence 1.
func New() *Judge {
	return &Judge{next: 1, ids: map[string]uint64{}, heads: map[string]head{}, rules: map[string]*rule{},
		listings: map[string]trade{}, orders: map[string]trade{}, payments: map[string]string{},
		refused: map[string]int{}, balances: balances{}}
}

func (j *Judge) find(kind FindingKind, pos uint64, id, format string, args ...any) {
	j.r.Findings = append(j.r.Findings, Finding{Kind: kind, Position: pos, EventID: id, Detail: fmt.Sprintf(format, args...)})
}

// Add judges the next message of the log.
func (j *Judge) Add(m Msg) {
	j.r.Messages++
	j.r.LastSeq = m.Seq
	j.gapTo(m.Seq)
	if isRecord(m.Subject) {
		j.r.Records++
		return
	}
	e, err := parseEvent(m)
	if err != nil {
		j.find(FindingMalformed, m.Seq, "", "%s: %v", m.Subject, err)
		return
	}
	j.r.Events++
	if first, dup := j.ids[e.ID]; dup {
		j.find(FindingDuplicateID, e.Seq, e.ID, "event id already stored at %d", first)
	} else {
		j.ids[e.ID] = e.Seq
	}
	if got := canonicalHash(e); got != e.Hash {
		j.find(FindingHash, e.Seq, e.ID, "ce-hash %s, content hashes to %s", e.Hash, got)
	}
	j.chain(e)
	if err := j.apply(e); err != nil {
		j.find(FindingMalformed, e.Seq, e.ID, "%s body: %v", e.Type, err)
	}
}

// gapTo records a gap if seq is not the next sequence.
func (j *Judge) gapTo(seq uint64) {
	switch {
	case seq > j.next:
		j.find(FindingGap, seq, "", "sequences %d..%d are missing", j.next, seq-1)
	case seq < j.next:
		j.find(FindingGap, seq, "", "sequence %d read after %d", seq, j.next-1)
	}
	j.next = seq + 1
}

// chain checks e against its aggregate's previous event.
func (j *Judge) chain(e *event) {
	agg := e.aggregate()
	h, seen := j.heads[agg]
	prev := genesisHash
	if seen {
		prev = h.hash
	}
	if e.AggregateVersion != h.version+1 {
		j.find(FindingChain, e.Seq, e.ID, "%s: aggregate version %d where %d was expected", agg, e.AggregateVersion, h.version+1)
	}
	if e.PrevHash != prev {
		j.find(FindingChain, e.Seq, e.ID, "%s: ce-prevhash %s is not the previous event's hash %s", agg, e.PrevHash, prev)
	}
	// The first event of a decision names its aggregate's previous
	// position; the others follow the previous event of their decision.
	switch {
	case e.PrevPosition != 0 && e.PrevPosition != h.pos:
		j.find(FindingChain, e.Seq, e.ID, "%s: ce-prevposition %d, the previous event is at %d", agg, e.PrevPosition, h.pos)
	case e.PrevPosition == 0 && seen && h.pos != e.Seq-1:
		j.find(FindingChain, e.Seq, e.ID, "%s: no ce-prevposition, but the previous event is at %d, not %d", agg, h.pos, e.Seq-1)
	}
	j.heads[agg] = head{version: e.AggregateVersion, pos: e.Seq, hash: e.Hash}
}

// apply reads the body of the events the judge needs.
func (j *Judge) apply(e *event) error {
	if e.Context == "policy" {
		j.policyHead = e.Seq // every policy event moves the fence
	}
	switch e.Type {
	case "policy.freeze_imposed", "policy.floor_price_set":
		return j.impose(e)
	case "policy.freeze_lifted", "policy.floor_price_lifted":
		return j.lift(e)
	case "policy.rule_activated":
		return j.activate(e)
	case "order.placed", "payment.authorized", "payment.captured", "listing.created", "listing.price_changed":
		return j.transaction(e)
	case "enforcement.command_refused":
		return j.refusal(e)
	case "order.rejected", "payment.authorization_failed":
		var b struct {
			RuleID string `json:"rule_id"`
		}
		if err := json.Unmarshal(e.Data, &b); err != nil {
			return err
		}
		if b.RuleID != "" {
			j.refused[b.RuleID]++
		}
	case "payment.refunded", "payment.settled":
		var b struct {
			Postings []posting `json:"postings"`
		}
		if err := json.Unmarshal(e.Data, &b); err != nil {
			return err
		}
		j.postings(e, b.Postings, true)
	}
	return nil
}

// postings checks a movement and, when it is booked (not pending), adds
// it to the balances.
func (j *Judge) postings(e *event, ps []posting, booked bool) {
	fs := checkPostings(ps)
	if booked && len(fs) == 0 {
		fs = j.balances.post(ps)
	}
	for _, f := range fs {
		j.find(f.Kind, e.Seq, e.ID, "%s: %s", e.Type, f.Detail)
	}
}

// refusal reads the record of a command a rule refused: it moves no money
// or stock, and it must name a rule the log holds before it and that the
// policy position it was decided under already included.
func (j *Judge) refusal(e *event) error {
	var b struct {
		RuleID         string `json:"rule_id"`
		PolicyPosition uint64 `json:"policy_position"`
	}
	if err := json.Unmarshal(e.Data, &b); err != nil {
		return err
	}
	if b.RuleID == "" {
		return fmt.Errorf("rule_id: required")
	}
	r := j.rules[b.RuleID]
	switch {
	case r == nil:
		j.find(FindingReference, e.Seq, e.ID, "refusal by rule %s, which the log does not hold before it", b.RuleID)
	case e.PolicyPosition < r.Set.Pos || b.PolicyPosition != e.PolicyPosition:
		j.find(FindingReference, e.Seq, e.ID, "refusal by rule %s decided under policy position %d (body %d), before the rule's change at %d",
			b.RuleID, e.PolicyPosition, b.PolicyPosition, r.Set.Pos)
	}
	j.refused[b.RuleID]++
	return nil
}

func (j *Judge) impose(e *event) error {
	var b changeBody
	if err := json.Unmarshal(e.Data, &b); err != nil {
		return err
	}
	if b.RuleID != e.AggregateID {
		return fmt.Errorf("rule_id %q is not the aggregate %q", b.RuleID, e.AggregateID)
	}
	if j.rules[b.RuleID] != nil {
		j.find(FindingReference, e.Seq, e.ID, "rule %s imposed a second time", b.RuleID)
		return nil
	}
	r := &rule{ID: b.RuleID, Kind: "freeze", Scope: b.Scope, Ops: b.BlockedOperations, Set: newChange(e, b)}
	if e.Type == "policy.floor_price_set" {
		if b.Amount == nil {
			return fmt.Errorf("amount: required for a floor price")
		}
		r.Kind, r.Floor, r.Origin = "floor_price", b.Amount, b.Origin
	}
	j.rules[r.ID] = r
	j.order = append(j.order, r)
	return nil
}

func (j *Judge) lift(e *event) error {
	var b changeBody
	if err := json.Unmarshal(e.Data, &b); err != nil {
		return err
	}
	r := j.rules[b.RuleID]
	want := map[string]string{"policy.freeze_lifted": "freeze", "policy.floor_price_lifted": "floor_price"}[e.Type]
	switch {
	case r == nil:
		j.find(FindingReference, e.Seq, e.ID, "lift of rule %s, which the log does not hold before it", b.RuleID)
	case r.Kind != want:
		j.find(FindingReference, e.Seq, e.ID, "%s of rule %s, a %s", e.Type, b.RuleID, r.Kind)
	case r.Lift != nil:
		j.find(FindingReference, e.Seq, e.ID, "rule %s lifted a second time (first at %d)", b.RuleID, r.Lift.Pos)
	default:
		r.Lift = newChange(e, b)
	}
	return nil
}

func (j *Judge) activate(e *event) error {
	var b activationBody
	if err := json.Unmarshal(e.Data, &b); err != nil {
		return err
	}
	r := j.rules[b.RuleID]
	if r == nil {
		j.find(FindingActivation, e.Seq, e.ID, "activates rule %s, which the log does not hold before it", b.RuleID)
		return nil
	}
	var c *change
	switch strings.TrimPrefix(b.Activates, "policy.") {
	case "freeze_imposed", "floor_price_set":
		c = r.Set
	case "freeze_lifted", "floor_price_lifted":
		c = r.Lift
	default:
		return fmt.Errorf("activates: unknown change %q", b.Activates)
	}
	switch {
	case c == nil:
		j.find(FindingActivation, e.Seq, e.ID, "activates %s of rule %s, which the log does not hold before it", b.Activates, b.RuleID)
	case c.Mode == modeOnRecording:
		j.find(FindingActivation, e.Seq, e.ID, "activates %s of rule %s, in force on its recording", b.Activates, b.RuleID)
	case c.ActivationPos != 0:
		j.find(FindingActivation, e.Seq, e.ID, "activates %s of rule %s again (first at %d)", b.Activates, b.RuleID, c.ActivationPos)
	default:
		if !b.ScheduledAt.Equal(c.Effective) {
			j.find(FindingActivation, e.Seq, e.ID, "scheduled_at %s, the change states %s", b.ScheduledAt.Format(time.RFC3339Nano), c.Effective.Format(time.RFC3339Nano))
		}
		if e.Decided.Before(c.Effective) {
			j.find(FindingActivation, e.Seq, e.ID, "decided at %s, before the instant %s it activates", e.TimeRaw, c.Effective.Format(time.RFC3339Nano))
		}
		c.ActivationPos = e.Seq
	}
	return nil
}

// Report judges the transactions against the rules and returns the report.
// Call it once, after the last Add.
func (j *Judge) Report() *Report {
	r := j.r
	for i := range j.txs {
		x := &j.txs[i]
		for _, ru := range j.order {
			if !ru.matches(x.Op, x.target, x.price) {
				continue
			}
			if ru.relevant(x) {
				ru.count.Accepted++
			}
			kinds, inFlight := ru.judge(x)
			if len(kinds) > 0 {
				ru.count.Violations++
				r.Violations = append(r.Violations, Violation{Position: x.Pos, EventID: x.ID, Type: x.Type, Operation: x.Op,
					AggregateID: x.AggID, RuleID: ru.ID, Kinds: kinds, Decided: x.Decided, Recorded: x.Recorded, PolicyPosition: x.PolicyPos})
			}
			if inFlight {
				ru.count.InFlight++
				r.InFlight = append(r.InFlight, InFlight{Position: x.Pos, EventID: x.ID, Type: x.Type, RuleID: ru.ID,
					Decided: x.Decided, Recorded: x.Recorded, ScheduledAt: ru.Set.Effective, ActivationPosition: ru.Set.activation()})
			}
		}
	}
	for _, ru := range j.order {
		c := ru.count
		c.RuleID, c.Kind, c.Activation, c.ChangePosition = ru.ID, ru.Kind, ru.Set.Mode, ru.Set.Pos
		c.ActivationPosition = ru.Set.activation()
		if ru.Set.scheduled() {
			c.ScheduledAt = ru.Set.Effective
		}
		if ru.Lift != nil {
			c.LiftPosition, c.LiftActivationPosition = ru.Lift.Pos, ru.Lift.activation()
		}
		c.Refused = j.refused[ru.ID]
		r.Rules = append(r.Rules, c)
	}
	r.Checked = len(j.txs)
	return &r
}
