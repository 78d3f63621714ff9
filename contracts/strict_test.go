package contracts_test

import (
	"testing"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
)

// A command is taken exactly as sent or refused, naming where: nothing a
// JSON parser would quietly rewrite gets through.
func TestCommandsAreTakenAsSentOrRefused(t *testing.T) {
	ok := `{"order_id":"o1","buyer_id":"b1","listing_id":"l1","quantity":1}`
	if _, err := contracts.DecodeCommand("order.place", []byte(ok)); err != nil {
		t.Fatalf("a plain command: %v", err)
	}
	// A whole surrogate pair is one character, not a lone half.
	pair := `{"listing_id":"l1","seller_id":"s1","title":"Batik \ud83d\ude00","category":"fashion","channel":"marketplace",` +
		`"jurisdiction":"ID","origin":"domestic","price":{"amount_minor":100,"currency":"IDR"},"stock":1}`
	if _, err := contracts.DecodeCommand("listing.create", []byte(pair)); err != nil {
		t.Errorf("a surrogate pair: %v", err)
	}
	for _, tc := range []struct {
		name, body, field string
	}{
		{"duplicate key", `{"order_id":"o1","buyer_id":"b1","buyer_id":"b2","listing_id":"l1","quantity":1}`, "/buyer_id"},
		{"NUL in a string", `{"order_id":"o1","buyer_id":"b\u00001","listing_id":"l1","quantity":1}`, "/buyer_id"},
		{"lone high surrogate", `{"order_id":"o1","buyer_id":"b\ud800","listing_id":"l1","quantity":1}`, ""},
		{"lone low surrogate", `{"order_id":"o1","buyer_id":"b\udc00x","listing_id":"l1","quantity":1}`, ""},
		{"not UTF-8", "{\"order_id\":\"o1\",\"buyer_id\":\"b\xff\",\"listing_id\":\"l1\",\"quantity\":1}", ""},
	} {
		_, err := contracts.DecodeCommand("order.place", []byte(tc.body))
		e, isErr := err.(*events.Error)
		if !isErr || e.Kind != events.KindInvalid || e.Reason != events.ReasonMalformed || e.Field != tc.field || e.Rule == "" {
			t.Errorf("%s: %v; want a malformed refusal at %q", tc.name, err, tc.field)
		}
	}
}
