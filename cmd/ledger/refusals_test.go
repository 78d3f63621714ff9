package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/marketledger/ledger/cmd/ledger/internal/market"
	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
)

// TestDemoRefusalsAreOnRecord plays the day and finds in its log one
// enforcement.command_refused record per checkout the freeze refused,
// each naming the freeze, its legal basis, the buyer and a policy position
// at or after the freeze's activation; `ledger trace` of a refused order
// shows its record as blocked by the rule.
func TestDemoRefusalsAreOnRecord(t *testing.T) {
	rep := playDemo(t, 7)
	refused := 0
	for _, c := range rep.Checkouts {
		refused += c.RefusedBefore + c.RefusedAfter
	}
	if refused == 0 {
		t.Fatal("the day refused no checkout")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	g := &globals{dataDir: rep.DataDir}
	n, err := openLog(ctx, g)
	if err != nil {
		t.Fatal(err)
	}
	var records []contracts.CommandRefused
	var flows []string
	for e, err := range n.store.Read(ctx, events.Query{}) {
		if err != nil {
			t.Fatal(err)
		}
		if e.Type != "enforcement.command_refused" {
			continue
		}
		p, err := contracts.Decode(e.Type, e.SchemaVersion, e.Data)
		if err != nil {
			t.Fatal(err)
		}
		r := p.(contracts.CommandRefused)
		records = append(records, r)
		flows = append(flows, e.CorrelationID)
		if r.RuleID != market.FreezeRuleID || r.LegalBasis != market.LegalBasis || r.Actor == "" ||
			r.PolicyPosition < rep.FreezeActivationPosition || e.PolicyPosition != r.PolicyPosition || e.CausationID == "" {
			t.Errorf("record at %d: %+v (envelope policy position %d, causation %q); want the freeze %s at or after its activation at %d, a buyer",
				e.Position, r, e.PolicyPosition, e.CausationID, market.FreezeRuleID, rep.FreezeActivationPosition)
		}
	}
	n.Close()
	if len(records) != refused {
		t.Fatalf("%d refusal records, want one per refused checkout (%d)", len(records), refused)
	}
	var out, errOut bytes.Buffer
	if err := runTrace(ctx, g, flows[0], &out, &errOut); err != nil {
		t.Fatalf("trace %s: %v\n%s", flows[0], err, errOut.String())
	}
	if s := out.String(); !strings.Contains(s, "enforcement.command_refused") || !strings.Contains(s, "BLOCKED by rule "+market.FreezeRuleID) {
		t.Errorf("trace of refused flow %s shows no record of the refusal:\n%s", flows[0], s)
	}
}
