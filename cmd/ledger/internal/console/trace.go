package console

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/marketledger/ledger/events"
)

// TraceNode is one event of a flow with the events it caused.
type TraceNode struct {
	Position       uint64
	Recorded       string
	Business       string
	Type           string
	Service        string // the event's context: listing, order, payment, policy
	Aggregate      string
	PolicyPosition uint64
	TraceID        string
	BlockedBy      string // the rule that blocked the flow here, if any
	Reason         string
	Children       []*TraceNode
}

// Trace is one flow as a causation tree, in log order.
type Trace struct {
	ID       string
	Events   int
	Services []string
	First    uint64
	Last     uint64
	Roots    []*TraceNode
}

// FindTrace reads the whole log for the events correlated by id (as
// `ledger trace` does: correlation ids are not indexed) and returns them
// as a causation tree. An unknown id is KindNotFound.
func FindTrace(ctx context.Context, r Reader, id string, zone *time.Location) (*Trace, error) {
	if id == "" || len(id) > events.MaxIDLen || strings.ContainsAny(id, " \t\r\n*>") {
		return nil, &events.Error{Kind: events.KindInvalid, Field: "id",
			Rule: fmt.Sprintf("an order or correlation id is 1 to %d characters without spaces, '*' or '>'; got %q", events.MaxIDLen, id)}
	}
	head, err := r.LastPosition(ctx)
	if err != nil {
		return nil, err
	}
	var flow []events.Event
	for e, err := range r.Read(ctx, events.Query{To: head}) {
		if err != nil {
			return nil, err
		}
		if e.CorrelationID == id {
			flow = append(flow, e)
		}
	}
	if len(flow) == 0 {
		return nil, &events.Error{Kind: events.KindNotFound, Field: "id",
			Rule: fmt.Sprintf("no event has correlation id %q: the id is unknown, or the flow's first command was refused beyond the limits of the refusal records", id)}
	}
	return buildTrace(id, flow, zone), nil
}

func buildTrace(id string, flow []events.Event, zone *time.Location) *Trace {
	t := &Trace{ID: id, Events: len(flow), First: flow[0].Position, Last: flow[len(flow)-1].Position}
	nodes := map[string]*TraceNode{}
	services := map[string]bool{}
	for _, e := range flow {
		n := &TraceNode{Position: e.Position, Recorded: e.RecordedAt.In(zone).Format("15:04:05.000 MST"),
			Business: e.OccurredAt.In(zone).Format(time.RFC3339), Type: e.Type, Service: e.Context(), Aggregate: e.AggregateID,
			PolicyPosition: e.PolicyPosition, TraceID: events.TraceID(e.Traceparent)}
		if e.Context() != "policy" {
			var b struct {
				RuleID string `json:"rule_id"`
				Reason string `json:"reason"`
			}
			if json.Unmarshal(e.Data, &b) == nil {
				n.BlockedBy, n.Reason = b.RuleID, b.Reason
			}
		}
		services[e.Context()] = true
		if parent, ok := nodes[e.CausationID]; ok {
			parent.Children = append(parent.Children, n)
		} else {
			t.Roots = append(t.Roots, n)
		}
		nodes[e.ID] = n
	}
	t.Services = sortedKeys(services)
	return t
}

// traceData is the trace page.
type traceData struct {
	ID    string
	Trace *Trace
}

func (c *Console) tracePage(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimSpace(r.URL.Query().Get("id"))
	if id == "" {
		c.render(w, r, http.StatusOK, "trace", page{Title: "Trace", Nav: "trace", Data: traceData{}})
		return
	}
	t, err := FindTrace(r.Context(), c.cfg.Store, id, c.cfg.Zone)
	if err != nil {
		c.failErr(w, r, "id", err)
		return
	}
	c.render(w, r, http.StatusOK, "trace", page{Title: "Trace " + id, Nav: "trace", Data: traceData{ID: id, Trace: t}})
}
