package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/marketledger/ledger/projections"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/events/embedded"
	"github.com/marketledger/ledger/events/embedded/auth"
	"github.com/marketledger/ledger/events/eventhttp"
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
	if g.natsURL == "" {
		if _, err := os.Stat(filepath.Join(g.dataDir, "jetstream")); err != nil {
			return nil, usagef("no ledger in data directory %s (run 'ledger demo --data %s' first, or use --nats)", g.dataDir, g.dataDir)
		}
	}
	return openNode(ctx, g, nodeConfig{role: auth.RoleInvestigator, port: embedded.RandomPort})
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

type replayOpts struct {
	from, to string
	subjects []string
	types    []string
	model    string
	out      string
}

func newReplayCmd(g *globals) *cobra.Command {
	o := &replayOpts{}
	c := &cobra.Command{
		Use:   "replay",
		Short: "Print a range of the global log, in order, as a table or JSON lines",
		Long: `replay reads the global log from --from to --to (the whole log by default),
filtered by --subject and --type, and prints one event a line: a table, or
with --json one JSON object a line. A range of more than 10,000 positions
draws a progress bar on stderr.

` + boundSyntax,
		Example: `  ledger replay --data ./demo --from 1 --to 100
  ledger replay --data ./demo --from business:2023-10-04T16:55:00+07:00 --to business:2023-10-04T17:05:00+07:00
  ledger replay --data ./demo --type order.rejected --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.model != "" {
				return replayModel(cmd.Context(), g, o, cmd.OutOrStdout())
			}
			return runReplay(cmd.Context(), g, o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	c.Flags().StringVar(&o.model, "model", "", "rebuild this read model as of --to instead of printing events (with --out)")
	c.Flags().StringVar(&o.out, "out", "", "directory for --model's JSON and CSV")
	c.Flags().StringVar(&o.from, "from", "", "first event: a position, an RFC 3339 recorded instant, or business:<instant>")
	c.Flags().StringVar(&o.to, "to", "", "last event (inclusive), in the same syntax; default the head of the log")
	c.Flags().StringArrayVar(&o.subjects, "subject", nil, "subject pattern, e.g. ledger.order.> (repeatable)")
	c.Flags().StringArrayVar(&o.types, "type", nil, "event type, e.g. order.placed (repeatable)")
	return c
}

// replayModel rebuilds one read model as of --to (a position, a recorded
// instant, or business:<instant>) and writes it to --out.
func replayModel(ctx context.Context, g *globals, o *replayOpts, w io.Writer) error {
	if o.out == "" || o.to == "" {
		return usagef("--model needs --to (the instant to rebuild it as of) and --out (a directory)")
	}
	clock, value := "", o.to
	if v, ok := strings.CutPrefix(o.to, "business:"); ok {
		clock, value = string(projections.ClockBusiness), v
	} else if _, err := strconv.ParseUint(o.to, 10, 64); err != nil {
		clock = string(projections.ClockRecorded)
	}
	at, err := projections.ParseAsOf(clock, value)
	if err != nil {
		return err
	}
	return writeModelAsOf(ctx, g, w, o.model, at, o.out)
}

func runReplay(ctx context.Context, g *globals, o *replayOpts, stdout, stderr io.Writer) error {
	now := time.Now()
	from, err := parseBound("from", o.from, now)
	if err != nil {
		return err
	}
	to, err := parseBound("to", o.to, now)
	if err != nil {
		return err
	}
	types, err := checkFilters(o.subjects, o.types)
	if err != nil {
		return err
	}
	n, err := openLog(ctx, g)
	if err != nil {
		return err
	}
	defer n.Close()
	r, err := resolveRange(ctx, n.store, from, to)
	if err != nil {
		return err
	}
	r.subjects, r.types = o.subjects, types
	p := newPrinter(stdout, g.json)
	defer p.flush()
	if r.to < r.from {
		return nil // a recorded-time range with no event in it
	}
	bar := newBar(stderr, r.to-r.from+1, "replaying")
	defer bar.Finish()
	for e, err := range n.store.Read(ctx, events.Query{From: r.from, To: r.to, Subjects: r.subjects}) {
		if err != nil {
			return err
		}
		bar.Set64(int64(e.Position - r.from + 1))
		if r.match(&e) {
			if err := p.print(e); err != nil {
				return err
			}
		}
	}
	return nil
}

// newBar returns a progress bar on w for ranges over progressMin positions,
// and a silent one otherwise.
func newBar(w io.Writer, span uint64, what string) *progressbar.ProgressBar {
	if span <= progressMin {
		return progressbar.DefaultSilent(int64(span))
	}
	return progressbar.NewOptions64(int64(span), progressbar.OptionSetWriter(w), progressbar.OptionSetDescription(what),
		progressbar.OptionShowCount(), progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionClearOnFinish())
}

// printer writes events as a table or as JSON lines.
type printer struct {
	w      io.Writer
	tw     *tabwriter.Writer
	json   *json.Encoder
	header bool
	// stream prints fixed-width columns, line by line: a tabwriter aligns
	// only what it holds, and tail flushes every event.
	stream bool
}

func newPrinter(w io.Writer, asJSON bool) *printer {
	if asJSON {
		return &printer{w: w, json: json.NewEncoder(w)}
	}
	return &printer{w: w, tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
}

const recordedLayout = "2006-01-02T15:04:05.000Z07:00"

func (p *printer) print(e events.Event) error {
	if p.json != nil {
		return p.json.Encode(eventhttp.ToJSON(e))
	}
	if p.stream {
		_, err := fmt.Fprintf(p.w, "%-9d %-24s %-25s %-28s %-32s %-36s %d\n", e.Position, e.RecordedAt.UTC().Format(recordedLayout),
			e.OccurredAt.Format(time.RFC3339), e.Type, e.Context()+"/"+e.AggregateID, orDash(e.CorrelationID), e.PolicyPosition)
		return err
	}
	if !p.header {
		fmt.Fprintln(p.tw, "POSITION\tRECORDED (UTC)\tBUSINESS TIME\tTYPE\tAGGREGATE\tCORRELATION\tPOLICY")
		p.header = true
	}
	_, err := fmt.Fprintf(p.tw, "%d\t%s\t%s\t%s\t%s/%s\t%s\t%d\n", e.Position, e.RecordedAt.UTC().Format(recordedLayout),
		e.OccurredAt.Format(time.RFC3339), e.Type, e.Context(), e.AggregateID, orDash(e.CorrelationID), e.PolicyPosition)
	return err
}

// flushNow writes the table so far (tail prints as events arrive).
func (p *printer) flush() {
	if p.tw != nil {
		p.tw.Flush()
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

type traceOpts struct{ correlation string }

func newTraceCmd(g *globals) *cobra.Command {
	o := &traceOpts{}
	c := &cobra.Command{
		Use:   "trace [ORDER_ID]",
		Short: "Show every event of one business flow as a causation tree",
		Long: `trace finds every event whose correlation id is ORDER_ID (a checkout flow is
correlated by its order id) or --correlation ID, across listing, order,
payment and policy, and prints them in log order as a causation tree: an
event caused by another event of the flow is printed under it; an event
caused by a command is a root. Each line shows the position, the recorded
and business time, the type, the aggregate and the policy position the
decision was made under; an event carrying a rule_id says which rule blocked
the flow. A command a rule refused appends nothing, so a flow refused at
its first step has no event at all: trace says so.

trace scans the whole log (correlation ids are not indexed); a log of more
than 10,000 positions draws a progress bar on stderr.`,
		Example: `  ledger trace --data ./demo o-000042
  ledger trace --data ./demo --correlation o-000042 --json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := o.correlation
			switch {
			case len(args) == 1 && id != "":
				return usagef("give the order id or --correlation, not both")
			case len(args) == 1:
				id = args[0]
			case id == "":
				return usagef("trace needs an order id or --correlation ID")
			}
			return runTrace(cmd.Context(), g, id, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	c.Flags().StringVar(&o.correlation, "correlation", "", "correlation id of the flow")
	return c
}

// traceLine is one event of a trace in JSON form.
type traceLine struct {
	eventhttp.Event
	Depth     int    `json:"depth"`
	Parent    string `json:"parent,omitempty"`
	BlockedBy string `json:"blocked_by_rule,omitempty"`
}

func runTrace(ctx context.Context, g *globals, id string, stdout, stderr io.Writer) error {
	if len(id) > events.MaxIDLen || strings.ContainsAny(id, " \t\r\n*>") || id == "" {
		return usagef("%q is not a correlation id", id)
	}
	n, err := openLog(ctx, g)
	if err != nil {
		return err
	}
	defer n.Close()
	head, err := n.store.LastPosition(ctx)
	if err != nil {
		return err
	}
	bar := newBar(stderr, head, "tracing")
	var flow []events.Event
	for e, err := range n.store.Read(ctx, events.Query{To: head}) {
		if err != nil {
			return err
		}
		bar.Set64(int64(e.Position))
		if e.CorrelationID == id {
			flow = append(flow, e)
		}
	}
	bar.Finish()
	if len(flow) == 0 {
		return usagef("no event has correlation id %q: the id is unknown, or the flow's first command was refused (a refused command appends nothing)", id)
	}
	printTrace(stdout, id, flow, g.json)
	return nil
}

// printTrace prints the flow (in log order) as a causation tree.
func printTrace(w io.Writer, id string, flow []events.Event, asJSON bool) {
	byID := map[string]bool{}
	for _, e := range flow {
		byID[e.ID] = true
	}
	children := map[string][]events.Event{}
	var roots []events.Event
	for _, e := range flow {
		if byID[e.CausationID] {
			children[e.CausationID] = append(children[e.CausationID], e)
		} else {
			roots = append(roots, e)
		}
	}
	enc := json.NewEncoder(w)
	var blocked []string
	var refused []string
	var walk func(e events.Event, depth int, prefix string, last bool)
	walk = func(e events.Event, depth int, prefix string, last bool) {
		rule, basis, reason := ruleOf(e)
		if rule != "" {
			blocked = append(blocked, fmt.Sprintf("%s at position %d by rule %s (%s)", e.Type, e.Position, rule, basis))
		} else if strings.Contains(reason, "policy") {
			refused = append(refused, fmt.Sprintf("%s at position %d: %s", e.Type, e.Position, reason))
		}
		if asJSON {
			parent := ""
			if depth > 0 {
				parent = e.CausationID
			}
			enc.Encode(traceLine{Event: eventhttp.ToJSON(e), Depth: depth, Parent: parent, BlockedBy: rule})
		} else {
			branch := ""
			if depth > 0 {
				branch = prefix + map[bool]string{true: "└─ ", false: "├─ "}[last]
			}
			note := ""
			if rule != "" {
				note = "  BLOCKED by rule " + rule
			}
			fmt.Fprintf(w, "%s#%d %s  business %s  %s  %s/%s  policy@%d%s\n", branch, e.Position,
				e.RecordedAt.UTC().Format(recordedLayout), e.OccurredAt.Format(time.RFC3339), e.Type, e.Context(), e.AggregateID, e.PolicyPosition, note)
		}
		kids := children[e.ID]
		next := prefix
		if depth > 0 {
			next += map[bool]string{true: "   ", false: "│  "}[last]
		}
		for i, c := range kids {
			walk(c, depth+1, next, i == len(kids)-1)
		}
	}
	if !asJSON {
		contexts := map[string]bool{}
		for _, e := range flow {
			contexts[e.Context()] = true
		}
		fmt.Fprintf(w, "trace %s: %d events in %s, positions %d..%d\n", id, len(flow), strings.Join(sortedKeys(contexts), ", "),
			flow[0].Position, flow[len(flow)-1].Position)
	}
	for _, r := range roots {
		walk(r, 0, "", true)
	}
	if asJSON {
		return
	}
	switch {
	case len(blocked) > 0:
		fmt.Fprintf(w, "blocked: %s\n", strings.Join(blocked, "; "))
	case len(refused) > 0:
		fmt.Fprintf(w, "refused by policy (the refused command appended nothing; the compensation says so): %s\n", strings.Join(refused, "; "))
	default:
		fmt.Fprintln(w, "no rule blocked this flow")
	}
}

// ruleOf returns the rule, legal basis and reason an event's body names.
func ruleOf(e events.Event) (rule, basis, reason string) {
	var b struct {
		RuleID     string `json:"rule_id"`
		LegalBasis string `json:"legal_basis"`
		Reason     string `json:"reason"`
	}
	if e.Context() == "policy" || json.Unmarshal(e.Data, &b) != nil {
		return "", "", "" // a policy event names its own rule; it blocks nothing by itself
	}
	if b.LegalBasis == "" {
		b.LegalBasis = "no legal basis recorded"
	}
	if b.RuleID == "" {
		return "", "", b.Reason
	}
	return b.RuleID, b.LegalBasis, b.Reason
}

type tailOpts struct {
	from     string
	subjects []string
	types    []string
	count    int
}

func newTailCmd(g *globals) *cobra.Command {
	o := &tailOpts{}
	c := &cobra.Command{
		Use:   "tail",
		Short: "Follow the live log until interrupted",
		Long: `tail prints every new event as it is appended (or from --from), filtered by
--subject and --type, as a table or with --json one JSON object a line, until
interrupted (Ctrl-C) or, with --count, after that many events.`,
		Example: `  ledger tail --subject 'ledger.order.>'
  ledger tail --data ./demo --from 1 --count 10 --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runTail(ctx, g, o, cmd.OutOrStdout())
		},
	}
	c.Flags().StringVar(&o.from, "from", "", "first position to print (default: the next event appended)")
	c.Flags().StringArrayVar(&o.subjects, "subject", nil, "subject pattern, e.g. ledger.order.> (repeatable)")
	c.Flags().StringArrayVar(&o.types, "type", nil, "event type, e.g. order.placed (repeatable)")
	c.Flags().IntVar(&o.count, "count", 0, "stop after this many events (0: until interrupted)")
	return c
}

func runTail(ctx context.Context, g *globals, o *tailOpts, stdout io.Writer) error {
	if o.count < 0 {
		return usagef("--count must be 0 or more")
	}
	from, err := parseBound("from", o.from, time.Now())
	if err != nil {
		return err
	}
	if from.kind != boundNone && from.kind != boundPosition {
		return usagef("--from of tail is a position")
	}
	types, err := checkFilters(o.subjects, o.types)
	if err != nil {
		return err
	}
	n, err := openLog(ctx, g)
	if err != nil {
		return err
	}
	defer n.Close()
	start := from.pos
	if start == 0 {
		head, err := n.store.LastPosition(ctx)
		if err != nil {
			return err
		}
		start = head + 1
	}
	p := newPrinter(stdout, g.json)
	p.stream = true
	return tailEvents(ctx, n.store, start, &logRange{subjects: o.subjects, types: types}, o.count, p)
}

// errTailDone ends a subscription after --count events.
var errTailDone = fmt.Errorf("tail: count reached")

func tailEvents(ctx context.Context, st events.Store, from uint64, r *logRange, count int, p *printer) error {
	printed := 0
	err := st.Subscribe(ctx, from, func(e events.Event) error {
		if !r.match(&e) || !subjectIn(r.subjects, e.Subject()) {
			return nil
		}
		if err := p.print(e); err != nil {
			return err
		}
		p.flush()
		if printed++; count > 0 && printed == count {
			return errTailDone
		}
		return nil
	})
	if err == errTailDone || ctx.Err() != nil {
		return nil
	}
	return err
}

func subjectIn(patterns []string, subject string) bool {
	if len(patterns) == 0 {
		return true
	}
	return slices.ContainsFunc(patterns, func(p string) bool { return eventhttp.SubjectMatches(p, subject) })
}
