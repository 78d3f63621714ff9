package command

import (
	"context"
	"sync"

	"github.com/marketledger/ledger/events"
)

// turns serializes the commands of one aggregate within one runner, and
// lets the command whose turn it is decide those queued behind it too.
//
// Commands that race on a hot aggregate (a flash sale on one listing) would
// otherwise all load the same version, all but one lose at the append, and
// reload: each round costs every contender a round trip to the log, and
// with enough contenders a command loses every one of its MaxAttempts.
// Taking turns, a command decides on the state its predecessor left and
// wins its first append; only writers in other processes can still race it.
// Taking turns alone still leaves one append per aggregate per round trip
// to the log (a few milliseconds with fsync always), so the command whose
// turn it is takes the commands queued behind it as a group: it decides
// each in turn on the state the previous one left and appends all their
// events as one decision with one part per command (events.Decision.Parts),
// when the store takes parts.
//
// Commands of different aggregates never wait for each other: the group
// commit still puts their decisions in one batch.
type turns struct {
	mu sync.Mutex
	m  map[events.AggregateRef]*lane
}

// lane is one aggregate's queue of commands not yet decided, and whether a
// group of them is being decided.
type lane struct {
	queue []queued
	busy  bool
}

// queued is what the lane needs of a waiting command: a job of Run's
// types, asserted back by the leader.
type queued interface {
	base() *jobBase
}

// Job states, guarded by turns.mu.
const (
	jobQueued  = iota // in the lane's queue
	jobTaken          // in a group being decided
	jobLeading        // handed the lead: it decides the next group
)

// jobBase is the part of a job the lane handles.
type jobBase struct {
	ctx   context.Context
	fence bool
	state int
	lead  chan struct{} // closed when the job is handed the lead
	done  chan struct{} // closed when the job's result is set
}

func (j *jobBase) base() *jobBase { return j }

// join queues j on ref's lane and reports whether j leads at once (no group
// is being decided).
func (ts *turns) join(ref events.AggregateRef, j queued) bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.m == nil {
		ts.m = make(map[events.AggregateRef]*lane)
	}
	l := ts.m[ref]
	if l == nil {
		l = &lane{}
		ts.m[ref] = l
	}
	l.queue = append(l.queue, j)
	if l.busy {
		return false
	}
	l.busy = true
	j.base().state = jobLeading
	return true
}

// wait blocks until j is handed the lead (true) or its result is set
// (false). When ctx ends first, a job still queued leaves the queue: nothing
// of it is stored; a job taken into a group returns at once, its outcome
// unknown (the group's append may store it); a job handed the lead leads,
// whatever its context: the others of its group wait on it.
func (ts *turns) wait(ctx context.Context, ref events.AggregateRef, j *jobBase) (bool, error) {
	select {
	case <-j.lead:
		return true, nil
	case <-j.done:
		return false, nil
	case <-ctx.Done():
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	switch j.state {
	case jobQueued:
		l := ts.m[ref]
		for i, q := range l.queue {
			if q.base() == j {
				l.queue = append(l.queue[:i], l.queue[i+1:]...)
				break
			}
		}
		return false, &events.Error{Op: "command.Run", Kind: events.KindUnavailable, Field: ref.String(),
			Rule: "gave up waiting for the aggregate's earlier commands; nothing stored", Err: ctx.Err()}
	case jobTaken:
		return false, &events.Error{Op: "command.Run", Kind: events.KindUnavailable, Field: ref.String(),
			Rule: "outcome unknown: the decision may still be stored", Err: ctx.Err()}
	}
	return true, nil
}

// group takes from the front of ref's lane the jobs the leader decides
// together: up to max, all fenced or all not, as the first is.
func (ts *turns) group(ref events.AggregateRef, max int) []queued {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	l := ts.m[ref]
	n := 0
	for n < len(l.queue) && n < max && l.queue[n].base().fence == l.queue[0].base().fence {
		n++
	}
	g := make([]queued, n)
	copy(g, l.queue[:n])
	l.queue = l.queue[n:]
	for _, q := range g {
		q.base().state = jobTaken
	}
	return g
}

// giveBack puts jobs the leader did not decide back at the front of the
// lane, in order.
func (ts *turns) giveBack(ref events.AggregateRef, jobs []queued) {
	if len(jobs) == 0 {
		return
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	l := ts.m[ref]
	back := make([]queued, 0, len(jobs)+len(l.queue))
	for _, q := range jobs {
		if q.base().ctx.Err() != nil {
			continue // its caller has gone: nothing of it was stored
		}
		q.base().state = jobQueued
		back = append(back, q)
	}
	l.queue = append(back, l.queue...)
}

// pass ends a leader's group: the first job still queued leads next, or
// the lane is forgotten when none is.
func (ts *turns) pass(ref events.AggregateRef) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	l := ts.m[ref]
	if len(l.queue) == 0 {
		delete(ts.m, ref)
		return
	}
	next := l.queue[0].base()
	next.state = jobLeading
	close(next.lead)
}
