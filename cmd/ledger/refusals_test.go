package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
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

// TestHTTPRefusalNamesThePrincipal: a placement refused by a freeze over
// HTTP is answered 423 and recorded naming the buyer and the token's
// subject that sent it, under the flow the client named; the metric counts
// it as recorded.
func TestHTTPRefusalNamesThePrincipal(t *testing.T) {
	g := &globals{dataDir: t.TempDir()}
	op, issuer := issueTestToken(t, g.dataDir, "operator"), issueTestToken(t, g.dataDir, "policy_issuer")
	s := startServed(t, g, &serveOpts{}, http.DefaultClient)
	idr := contracts.Money{AmountMinor: 150_000_00, Currency: "IDR"}
	if code, b := s.call(t, "POST", "/v1/commands/listing.create", op, contracts.CreateListing{ListingID: "rf-l1", SellerID: "seller-1",
		Title: "Batik shirt", Category: "fashion", Channel: contracts.ChannelSocialCommerce, Jurisdiction: "ID",
		Origin: contracts.OriginDomestic, Price: idr, Stock: 10}); code != http.StatusOK {
		t.Fatalf("listing.create: %d %s", code, b)
	}
	if code, b := s.call(t, "POST", "/v1/commands/policy.impose_freeze", issuer, contracts.ImposeFreeze{RuleID: "rf-freeze",
		Scope:      contracts.Scope{Jurisdictions: []string{"ID"}, Channels: []contracts.Channel{contracts.ChannelSocialCommerce}},
		LegalBasis: "Permendag 31/2023", Issuer: "kemendag"}); code != http.StatusOK {
		t.Fatalf("policy.impose_freeze: %d %s", code, b)
	}
	b, _ := json.Marshal(contracts.PlaceOrder{OrderID: "rf-o1", BuyerID: "buyer-1", ListingID: "rf-l1", Quantity: 1})
	req, _ := http.NewRequest("POST", s.base+"/v1/commands/order.place", bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+op)
	req.Header.Set("Ledger-Correlation-Id", "flow-rf")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusLocked {
		t.Fatalf("order.place during the freeze: %d, want 423", resp.StatusCode)
	}
	// The record is appended after the answer: poll the log and the
	// metric until both show it, bounded.
	const recorded = `ledger_refusal_records_total{outcome="recorded"} 1`
	var got, metrics string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		_, body := s.call(t, "GET", "/v1/events?from=1&type=enforcement.command_refused", op, nil)
		_, m := s.call(t, "GET", "/metrics", op, nil)
		if got, metrics = string(body), string(m); strings.Contains(got, `"refusal_id"`) && strings.Contains(metrics, recorded) {
			break
		}
	}
	for _, want := range []string{`"principal":"test-operator"`, `"actor":"buyer-1"`, `"rule_id":"rf-freeze"`,
		`"correlation_id":"flow-rf"`, `"command":"order.place"`} {
		if !strings.Contains(got, want) {
			t.Errorf("refusal record lacks %s: %s", want, got)
		}
	}
	if !strings.Contains(metrics, recorded) {
		t.Errorf("metrics do not count the record:\n%s", grepLines(metrics, "ledger_refusal_records_total"))
	}
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
