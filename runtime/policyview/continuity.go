package policyview

import (
	"fmt"
	"sort"

	"github.com/marketledger/ledger/events"
)

// Discontinuity is the cause of the error a view reports while it has failed
// closed: a policy batch's record (events.PolicyFence) says which policy
// position preceded the batch and how many policy messages the batch holds
// before the record, and the messages the view applied disagree, so at least
// one policy message stored in the log never reached the view. A freeze
// among them would be invisible to the view while the fence, which checks the
// stored head, let decisions made under it pass.
type Discontinuity struct {
	// Record is the position of the record that showed the gap.
	Record uint64
	// Previous is the policy position the record says preceded its batch.
	Previous uint64
	// LastApplied is the newest position the view applied at or before
	// Previous; it differs from Previous when the message at Previous (or
	// one before it) is missing.
	LastApplied uint64
	// Unplaced is set when the view no longer remembers positions as old as
	// Previous (it verified a later record), so LastApplied is unknown.
	Unplaced bool
	// Messages is the record's count of its batch's policy messages.
	Messages int
	// Seen is how many messages the view applied after Previous and before
	// Record.
	Seen int
}

func (d *Discontinuity) Error() string {
	const refuse = "; refusing fenced decisions"
	switch {
	case d.Unplaced:
		return fmt.Sprintf("policy log not continuous: record at %d follows policy position %d, older than the view's last verified record%s",
			d.Record, d.Previous, refuse)
	case d.LastApplied != d.Previous:
		return fmt.Sprintf("policy log not continuous: record at %d follows policy position %d but the view last applied %d (missing: policy message at %d)%s",
			d.Record, d.Previous, d.LastApplied, d.Previous, refuse)
	case d.Seen > d.Messages:
		return fmt.Sprintf("policy log not continuous: record at %d closes a batch of %d policy messages after position %d but the view applied %d there%s",
			d.Record, d.Messages, d.Previous, d.Seen, refuse)
	default:
		return fmt.Sprintf("policy log not continuous: record at %d closes a batch of %d policy messages after position %d but the view applied %d (missing: %d between %d and %d)%s",
			d.Record, d.Messages, d.Previous, d.Seen, d.Messages-d.Seen, d.Previous+1, d.Record-1, refuse)
	}
}

// trailMax bounds the positions a trail remembers: a record's batch holds
// fewer than events.MaxBatchMsgs messages, so its previous position is among
// the last trailMax positions applied.
const trailMax = events.MaxBatchMsgs + 1

// trail is the positions of the policy messages a view applied since its last
// verified record (that record first), bounded by trailMax: what a record's
// previous position and count are checked against. It is owned by the
// view's follower goroutine.
type trail struct {
	recent []uint64 // ascending
	// forgot is set when positions older than recent[0] were applied but
	// are no longer remembered.
	forgot bool
}

// add remembers the position of an applied message.
func (t *trail) add(pos uint64) {
	t.recent = append(t.recent, pos)
	if len(t.recent) > 2*trailMax {
		t.recent = append(t.recent[:0:0], t.recent[len(t.recent)-trailMax:]...)
		t.forgot = true
	}
}

// check judges the record at pos with body f against the trail; it returns
// nil when the view applied the message at f's previous position and exactly
// f's count of messages between it and the record. The record itself is not
// yet in the trail.
func (t *trail) check(pos uint64, f events.PolicyFence) *Discontinuity {
	prev := *f.PreviousPolicyPosition
	i := sort.Search(len(t.recent), func(i int) bool { return t.recent[i] > prev })
	d := &Discontinuity{Record: pos, Previous: prev, Messages: f.PolicyMessages, Seen: len(t.recent) - i}
	switch {
	case i > 0:
		d.LastApplied = t.recent[i-1]
	case t.forgot:
		d.Unplaced = true
		return d
	}
	if d.LastApplied != prev || d.Seen != d.Messages {
		return d
	}
	return nil
}

// restart makes the trail begin at a verified record (0: the start of the
// log, before any message).
func (t *trail) restart(record uint64) {
	t.recent, t.forgot = t.recent[:0], record > 0
	if record > 0 {
		t.recent = append(t.recent, record)
	}
}
