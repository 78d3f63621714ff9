package main

import (
	"context"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/marketledger/ledger/cmd/ledger/internal/eventhttp"
	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/node/auth"
	"github.com/marketledger/ledger/node/embedded"
)

// progressMin is the range size (in positions) from which replay and trace
// draw a progress bar on stderr.
const progressMin = 10_000

const boundSyntax = `A bound (--from, --to) is one of:
  N                          a position in the global log (1 is the first event)
  2023-10-04T17:00:00+07:00  an RFC 3339 instant of recorded time: when the server stored the event
  business:2023-10-04T17:00:00+07:00
                             an RFC 3339 instant of business time: when the fact happened
                             (the event's occurred-at; the demo's simulated day lives here)
Both ends are inclusive. Recorded-time bounds are found with the server's time index;
business-time bounds filter while reading, because business time is not indexed.
Instants in the future, and ranges whose end is before their start, are refused.`

// openLog opens the log for reading: the embedded server on --data (on a
// free port, so it never collides with a running `ledger serve`), the
// server of a `ledger serve` already running on that directory, or --nats.
func openLog(ctx context.Context, g *globals) (*node, error) {
	return openExisting(ctx, g, auth.RoleInvestigator)
}

// openExisting opens the ledger as role for a command that must find one
// there (every command but serve and demo): a missing or mistyped --data
// is refused, never started empty.
func openExisting(ctx context.Context, g *globals, role string) (*node, error) {
	if err := requireLedger(g); err != nil {
		return nil, err
	}
	return openNode(ctx, g, nodeConfig{role: role, port: embedded.RandomPort})
}

// boundKind says which clock a bound is on.
type boundKind int

const (
	boundNone boundKind = iota
	boundPosition
	boundRecorded
	boundBusiness
)

type bound struct {
	kind boundKind
	pos  uint64
	t    time.Time
}

func parseBound(flag, s string, now time.Time) (bound, error) {
	if s == "" {
		return bound{}, nil
	}
	if s[0] >= '0' && s[0] <= '9' && !strings.ContainsAny(s, "-:T") {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil || n == 0 {
			return bound{}, usagef("--%s %q: a position is a whole number from 1", flag, s)
		}
		return bound{kind: boundPosition, pos: n}, nil
	}
	kind, v := boundRecorded, s
	if rest, ok := strings.CutPrefix(s, "business:"); ok {
		kind, v = boundBusiness, rest
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return bound{}, usagef("--%s %q: not a position, an RFC 3339 instant with offset or business:<instant> (see 'ledger replay --help')", flag, s)
	}
	if t.After(now) {
		return bound{}, usagef("--%s %s is in the future: the log holds nothing after now", flag, v)
	}
	return bound{kind: kind, t: t}, nil
}

// logRange is a resolved replay range: positions from..to, optionally
// filtered by business time.
type logRange struct {
	from, to       uint64
	bizFrom, bizTo time.Time
	subjects       []string
	types          map[string]bool
}

func (r *logRange) match(e *events.Event) bool {
	if len(r.types) > 0 && !r.types[e.Type] {
		return false
	}
	if !r.bizFrom.IsZero() && e.OccurredAt.Before(r.bizFrom) {
		return false
	}
	if !r.bizTo.IsZero() && e.OccurredAt.After(r.bizTo) {
		return false
	}
	return true
}

func resolveRange(ctx context.Context, st *events.JetStreamStore, from, to bound) (*logRange, error) {
	if from.kind == to.kind && from.kind != boundNone {
		if (from.kind == boundPosition && to.pos < from.pos) || (from.kind != boundPosition && to.t.Before(from.t)) {
			return nil, usagef("the range ends (--to) before it starts (--from)")
		}
	}
	head, err := st.LastPosition(ctx)
	if err != nil {
		return nil, err
	}
	r := &logRange{from: 1, to: head}
	switch from.kind {
	case boundPosition:
		if from.pos > head {
			return nil, usagef("--from %d is past the head of the log (position %d)", from.pos, head)
		}
		r.from = from.pos
	case boundRecorded:
		p, err := st.PositionAt(ctx, from.t.Add(-time.Nanosecond))
		if err != nil {
			return nil, err
		}
		r.from = p + 1
	case boundBusiness:
		r.bizFrom = from.t
	}
	switch to.kind {
	case boundPosition:
		r.to = min(to.pos, head)
	case boundRecorded:
		if r.to, err = st.PositionAt(ctx, to.t); err != nil {
			return nil, err
		}
	case boundBusiness:
		r.bizTo = to.t
	}
	if from.kind != boundBusiness && to.kind != boundBusiness && from.kind != boundNone && to.kind != boundNone && r.to+1 < r.from {
		return nil, usagef("the range ends (--to, position %d) before it starts (--from, position %d)", r.to, r.from)
	}
	return r, nil
}

// checkFilters validates --subject and --type against the contracts.
func checkFilters(subjects, types []string) (map[string]bool, error) {
	contexts := map[string]bool{}
	known := contracts.EventTypes()
	for _, t := range known {
		c, _, _ := strings.Cut(t, ".")
		contexts[c] = true
	}
	for _, s := range subjects {
		if err := eventhttp.ValidateSubject(s); err != nil {
			return nil, usagef("--subject: %v", err)
		}
		if c := strings.Split(s, ".")[1]; c != "*" && c != ">" && !contexts[c] {
			return nil, usagef("--subject %q: unknown context %q (known: %s)", s, c, strings.Join(sortedKeys(contexts), ", "))
		}
	}
	var out map[string]bool
	for _, t := range types {
		if !slices.Contains(known, t) {
			return nil, usagef("--type: unknown event type %q (known: %s)", t, strings.Join(known, ", "))
		}
		if out == nil {
			out = map[string]bool{}
		}
		out[t] = true
	}
	return out, nil
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
