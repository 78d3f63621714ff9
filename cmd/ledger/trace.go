package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/marketledger/ledger/cmd/ledger/internal/eventhttp"
	"github.com/marketledger/ledger/events"
)

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
decision was made under, and the OpenTelemetry trace id of the decision when
it was traced (look the checkout up in the tracing backend by it); an event
carrying a rule_id says which rule blocked the flow. A command a rule refused appends nothing of its own, only
a record of the refusal (enforcement.command_refused, in the flow): a flow refused at its first step shows that record.

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
	// TraceID is the OpenTelemetry trace of the decision that stored the
	// event ("" when it was not traced): what to look up in the tracing
	// backend.
	TraceID   string `json:"trace_id,omitempty"`
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
		return usagef("no event has correlation id %q: the id is unknown, or the flow's first command was refused and its record kept off the log by the recording limits", id)
	}
	printTrace(stdout, id, flow, g.json, g.zone())
	return nil
}

// printTrace prints the flow (in log order) as a causation tree.
func printTrace(w io.Writer, id string, flow []events.Event, asJSON bool, loc *time.Location) {
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
	enc.SetEscapeHTML(false) // bodies as stored: the bytes their hashes cover
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
			enc.Encode(traceLine{Event: eventhttp.ToJSON(e), TraceID: events.TraceID(e.Traceparent), Depth: depth, Parent: parent, BlockedBy: rule})
		} else {
			branch := ""
			if depth > 0 {
				branch = prefix + map[bool]string{true: "└─ ", false: "├─ "}[last]
			}
			note := ""
			if tid := events.TraceID(e.Traceparent); tid != "" {
				note = "  trace " + tid
			}
			if rule != "" {
				note += "  BLOCKED by rule " + rule
			}
			fmt.Fprintf(w, "%s#%d %s  business %s  %s  %s/%s  policy@%d%s\n", branch, e.Position,
				inZone(e.RecordedAt, loc).Format(recordedLayout), inZone(e.OccurredAt, loc).Format(time.RFC3339), e.Type, e.Context(), e.AggregateID, e.PolicyPosition, note)
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
