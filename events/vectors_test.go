package events_test

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/marketledger/ledger/events"
)

// verifyingVectors reads the test vectors of docs/verifying.md: the JSON
// block after its vectors marker.
func verifyingVectors(t *testing.T, v any) {
	t.Helper()
	doc, err := os.ReadFile("../docs/verifying.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := bytes.Cut(doc, []byte("<!-- vectors"))
	if !ok {
		t.Fatal("docs/verifying.md has no vectors marker")
	}
	_, rest, _ = bytes.Cut(rest, []byte("```json\n"))
	block, _, ok := bytes.Cut(rest, []byte("```"))
	if !ok {
		t.Fatal("docs/verifying.md: no JSON block after the vectors marker")
	}
	if err := json.Unmarshal(block, v); err != nil {
		t.Fatalf("docs/verifying.md vectors: %v", err)
	}
}

// TestVerifyingVectors: the event hashes docs/verifying.md gives, from the
// fields it lists, are the ones the store computes; the page is what a
// verifier in another language is written from.
func TestVerifyingVectors(t *testing.T) {
	var v struct {
		Events []struct {
			ID               string `json:"id"`
			Type             string `json:"type"`
			SchemaVersion    int    `json:"schema_version"`
			Source           string `json:"source"`
			AggregateID      string `json:"aggregate_id"`
			OccurredAt       string `json:"occurred_at"`
			CorrelationID    string `json:"correlation_id"`
			CausationID      string `json:"causation_id"`
			PolicyPosition   uint64 `json:"policy_position"`
			AggregateVersion uint64 `json:"aggregate_version"`
			PrevPosition     uint64 `json:"prev_position"`
			PrevHash         string `json:"prev_hash"`
			Body             string `json:"body"`
			Hash             string `json:"hash"`
		} `json:"events"`
	}
	verifyingVectors(t, &v)
	if len(v.Events) == 0 {
		t.Fatal("no event vectors")
	}
	var chain []events.Event
	for i, x := range v.Events {
		at, err := time.Parse(time.RFC3339Nano, x.OccurredAt)
		if err != nil {
			t.Fatal(err)
		}
		e := events.Event{ID: x.ID, Type: x.Type, SchemaVersion: x.SchemaVersion, Source: x.Source, AggregateID: x.AggregateID,
			OccurredAt: at, CorrelationID: x.CorrelationID, CausationID: x.CausationID, PolicyPosition: x.PolicyPosition,
			AggregateVersion: x.AggregateVersion, PrevPosition: x.PrevPosition, PrevHash: x.PrevHash, Data: []byte(x.Body)}
		if got := e.ComputeHash(); got != x.Hash {
			t.Errorf("vector %d: hash %s, the page says %s", i, got, x.Hash)
		}
		e.Hash = x.Hash
		chain = append(chain, e)
	}
	if err := events.VerifyChain(chain, 0, events.GenesisHash); err != nil {
		t.Errorf("the vectors are not one aggregate's chain: %v", err)
	}
}
