package contracts

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/marketledger/ledger/events"
)

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestExamplesValid checks that every registered event and command has an
// example and that it passes its contract.
func TestExamplesValid(t *testing.T) {
	for _, s := range Events {
		ex, ok := eventExamples[eventKey{s.Type, s.Version}]
		if !ok {
			t.Errorf("%s v%d has no example", s.Type, s.Version)
			continue
		}
		if _, err := DecodeChecked(s.Type, s.Version, mustJSON(t, ex)); err != nil {
			t.Errorf("%s v%d example: %v", s.Type, s.Version, err)
		}
	}
	for _, c := range Commands {
		ex, ok := commandExamples[c.Name]
		if !ok {
			t.Errorf("command %s has no example", c.Name)
			continue
		}
		if err := ValidateCommand(c.Name, mustJSON(t, ex)); err != nil {
			t.Errorf("command %s example: %v", c.Name, err)
		}
	}
}

// edit returns the JSON of v with fn applied to its generic form.
func edit(t *testing.T, v any, fn func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(mustJSON(t, v), &m); err != nil {
		t.Fatal(err)
	}
	fn(m)
	return mustJSON(t, m)
}

func sub(m map[string]any, k string) map[string]any { return m[k].(map[string]any) }

func TestCheckEventErrors(t *testing.T) {
	listing := eventExamples[eventKey{"listing.created", 1}]
	placed := eventExamples[eventKey{"order.placed", 2}]
	captured := eventExamples[eventKey{"payment.captured", 1}]
	freeze := eventExamples[eventKey{"policy.freeze_imposed", 1}]
	tests := []struct {
		name    string
		typ     string
		version int
		data    []byte
		field   string
		rule    string
	}{
		{"zero price", "listing.created", 1, edit(t, listing, func(m map[string]any) { sub(m, "price")["amount_minor"] = 0 }),
			"/price/amount_minor", "minimum 1"},
		{"negative price", "listing.created", 1, edit(t, listing, func(m map[string]any) { sub(m, "price")["amount_minor"] = -5 }),
			"/price/amount_minor", "minimum 1"},
		{"float price", "listing.created", 1, edit(t, listing, func(m map[string]any) { sub(m, "price")["amount_minor"] = 1.5 }),
			"/price/amount_minor", "type integer"},
		{"unknown currency", "listing.created", 1, edit(t, listing, func(m map[string]any) { sub(m, "price")["currency"] = "XYZ" }),
			"/price/currency", "enum ISO 4217 currency code"},
		{"bad channel", "listing.created", 1, edit(t, listing, func(m map[string]any) { m["channel"] = "tv" }),
			"/channel", "enum [marketplace social_commerce]"},
		{"bad jurisdiction", "listing.created", 1, edit(t, listing, func(m map[string]any) { m["jurisdiction"] = "XX" }),
			"/jurisdiction", "enum ISO 3166-1 alpha-2 country code"},
		{"missing seller", "listing.created", 1, edit(t, listing, func(m map[string]any) { delete(m, "seller_id") }),
			"/seller_id", "required"},
		{"unknown field", "listing.created", 1, edit(t, listing, func(m map[string]any) { m["colour"] = "red" }),
			"/colour", "unknown field (additionalProperties false)"},
		{"case-folded field", "listing.created", 1, edit(t, listing, func(m map[string]any) { m["SELLER_ID"] = m["seller_id"]; delete(m, "seller_id") }),
			"/SELLER_ID", "unknown field (additionalProperties false)"},
		{"id with dot", "listing.created", 1, edit(t, listing, func(m map[string]any) { m["listing_id"] = "a.b" }),
			"/listing_id", "pattern " + IDPattern},
		{"v2 without channel", "order.placed", 2, edit(t, placed, func(m map[string]any) { delete(m, "channel") }),
			"/channel", "required"},
		{"v1 is read-only", "order.placed", 1, mustJSON(t, eventExamples[eventKey{"order.placed", 1}]),
			events.HeaderDataSchema, "order.placed v1 is read-only; new events are written as v2"},
		{"wrong total", "order.placed", 2, edit(t, placed, func(m map[string]any) { sub(m, "total")["amount_minor"] = 1 }),
			"/total/amount_minor", "equals /unit_price/amount_minor × /quantity"},
		{"postings do not balance", "payment.captured", 1, edit(t, captured, func(m map[string]any) {
			m["postings"].([]any)[0].(map[string]any)["amount_minor"] = -29999999
		}), "/postings", "postings in IDR sum to 1, not 0"},
		{"zero posting", "payment.captured", 1, edit(t, captured, func(m map[string]any) {
			m["postings"].([]any)[1].(map[string]any)["amount_minor"] = 0
		}), "/postings/1/amount_minor", "not 0"},
		{"unknown account", "payment.captured", 1, edit(t, captured, func(m map[string]any) {
			m["postings"].([]any)[1].(map[string]any)["account"] = "wallet:x"
		}), "/postings/1/account", "pattern " + AccountPattern},
		{"freeze without scope", "policy.freeze_imposed", 1, edit(t, freeze, func(m map[string]any) { m["scope"] = map[string]any{} }),
			"/scope", "a freeze names at least one of jurisdictions, channels, categories, sellers, or sets all: true"},
		{"unknown operation", "policy.freeze_imposed", 1, edit(t, freeze, func(m map[string]any) { m["blocked_operations"] = []string{"order.fly"} }),
			"/blocked_operations/0", "enum [listing.create listing.change_price order.place payment.authorize payment.capture]"},
		{"instant without offset", "policy.freeze_imposed", 1, edit(t, freeze, func(m map[string]any) { m["effective_at"] = "2023-10-04T17:00:00" }),
			"/effective_at", "format date-time"},
		{"not JSON", "order.completed", 1, []byte(`{"order_id":`), "", "valid JSON: unexpected EOF"},
		{"two values", "order.completed", 1, []byte(`{"order_id":"o-1"} {}`), "", "valid JSON: invalid character after top-level value"},
		{"array body", "order.completed", 1, []byte(`[]`), "", "type object"},
		{"unknown type", "order.teleported", 1, []byte(`{}`), events.HeaderType, `unknown event type "order.teleported"`},
		{"unknown version", "order.placed", 3, []byte(`{}`), events.HeaderDataSchema, "order.placed has no version 3 (current is 2)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckEvent(tt.typ, tt.version, tt.data)
			var e *events.Error
			if !errors.As(err, &e) {
				t.Fatalf("CheckEvent = %v, want *events.Error", err)
			}
			if e.Kind != events.KindInvalid {
				t.Errorf("kind = %v, want invalid", e.Kind)
			}
			got := [2]string{e.Field, e.Rule}
			want := [2]string{tt.field, tt.rule}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("field, rule (-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidateCommandErrors(t *testing.T) {
	tests := []struct {
		name, cmd   string
		body        []byte
		field, rule string
	}{
		{"ok", "order.place", []byte(`{"order_id":"o-1","buyer_id":"b-1","listing_id":"l-1","quantity":1}`), "", ""},
		{"zero quantity", "order.place", []byte(`{"order_id":"o-1","buyer_id":"b-1","listing_id":"l-1","quantity":0}`), "/quantity", "minimum 1"},
		{"integer with fraction", "order.place", []byte(`{"order_id":"o-1","buyer_id":"b-1","listing_id":"l-1","quantity":2.0}`),
			"/quantity", "type int64 (integers without fraction or exponent)"},
		{"nested integer with exponent", "listing.change_price", []byte(`{"listing_id":"l-1","price":{"amount_minor":1e3,"currency":"USD"}}`),
			"/price/amount_minor", "type int64 (integers without fraction or exponent)"},
		{"huge quantity", "order.place", []byte(`{"order_id":"o-1","buyer_id":"b-1","listing_id":"l-1","quantity":1e30}`), "/quantity", "maximum 10000"},
		{"price overflow", "listing.change_price", []byte(`{"listing_id":"l-1","price":{"amount_minor":9223372036854775808,"currency":"USD"}}`),
			"/price/amount_minor", "maximum 9007199254740991"},
		{"freeze all", "policy.impose_freeze", []byte(`{"rule_id":"r1","scope":{"all":true},"legal_basis":"x","issuer":"y"}`), "", ""},
		{"freeze all and list", "policy.impose_freeze", []byte(`{"rule_id":"r1","scope":{"all":true,"channels":["marketplace"]},"legal_basis":"x","issuer":"y"}`),
			"/scope/all", "all: true excludes jurisdictions, channels, categories and sellers"},
		{"empty issuer", "policy.lift_freeze", []byte(`{"rule_id":"r1","legal_basis":"x","issuer":""}`), "/issuer", "minLength 1"},
		{"unknown command", "order.teleport", []byte(`{}`), "", `unknown command "order.teleport"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateCommand(tt.cmd, tt.body)
			var got [2]string
			if err != nil {
				var e *events.Error
				if !errors.As(err, &e) {
					t.Fatalf("ValidateCommand = %v, want *events.Error", err)
				}
				got = [2]string{e.Field, e.Rule}
			}
			if diff := cmp.Diff([2]string{tt.field, tt.rule}, got); diff != "" {
				t.Errorf("field, rule (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	placed := eventExamples[eventKey{"order.placed", 2}]
	_, err := DecodeChecked("order.placed", 1, edit(t, placed, func(m map[string]any) {}))
	var e *events.Error
	if !errors.As(err, &e) || e.Field != "/channel" || e.Rule != "unknown field (additionalProperties false)" {
		t.Errorf("DecodeChecked(v2 body as v1) = %v, want /channel refused", err)
	}
	tests := []struct {
		name, typ string
		version   int
		data      string
		field     string
	}{
		{"unknown field", "order.completed", 1, `{"order_id":"o-1","x":1}`, ""},
		{"trailing value", "order.completed", 1, `{"order_id":"o-1"} {}`, ""},
		{"unknown type", "order.lost", 1, `{}`, events.HeaderType},
		{"unknown version", "order.completed", 9, `{}`, events.HeaderDataSchema},
	}
	for _, tt := range tests {
		_, err := Decode(tt.typ, tt.version, []byte(tt.data))
		if !errors.As(err, &e) || e.Kind != events.KindInvalid || e.Field != tt.field {
			t.Errorf("%s: Decode = %v, want invalid at %q", tt.name, err, tt.field)
		}
	}
}

func TestDecodeUpcastsOrderPlacedV1(t *testing.T) {
	v1 := eventExamples[eventKey{"order.placed", 1}].(OrderPlacedV1)
	got, err := DecodeAs[OrderPlaced]("order.placed", 1, mustJSON(t, v1))
	if err != nil {
		t.Fatal(err)
	}
	want := OrderPlaced{OrderID: v1.OrderID, BuyerID: v1.BuyerID, ListingID: v1.ListingID, SellerID: v1.SellerID,
		Quantity: v1.Quantity, UnitPrice: v1.UnitPrice, Total: v1.Total, Channel: ChannelMarketplace,
		Jurisdiction: v1.Jurisdiction, Category: v1.Category, Origin: v1.Origin}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("upcast (-want +got):\n%s", diff)
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	for _, s := range Events {
		if !s.Current() {
			continue
		}
		ex := eventExamples[eventKey{s.Type, s.Version}]
		typ, version, data, err := Encode(ex)
		if err != nil {
			t.Errorf("Encode(%s): %v", s.Type, err)
			continue
		}
		if typ != s.Type || version != s.Version {
			t.Errorf("Encode(%T) = %s v%d, want %s v%d", ex, typ, version, s.Type, s.Version)
		}
		got, err := Decode(typ, version, data)
		if err != nil {
			t.Errorf("Decode(%s): %v", s.Type, err)
			continue
		}
		if diff := cmp.Diff(ex, got); diff != "" {
			t.Errorf("%s round trip (-want +got):\n%s", s.Type, diff)
		}
	}
	if _, _, _, err := Encode(eventExamples[eventKey{"order.placed", 1}]); err == nil || !strings.Contains(err.Error(), "not the current version") {
		t.Errorf("Encode(v1) = %v, want refusal of an old version", err)
	}
}

func TestNewEvent(t *testing.T) {
	at := exFreezeAt
	e, err := NewEvent(eventExamples[eventKey{"policy.freeze_imposed", 1}], "permendag-31-2023-social", at)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Validate(); err != nil {
		t.Errorf("envelope invalid: %v", err)
	}
	got := [3]string{e.Type, e.Source, e.Subject()}
	want := [3]string{"policy.freeze_imposed", "/ledger/policy", "ledger.policy.permendag-31-2023-social.freeze_imposed"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("NewEvent (-want +got):\n%s", diff)
	}
	if _, err := NewEvent(struct{}{}, "x", at); !errors.Is(err, events.ErrInvalid) {
		t.Errorf("NewEvent(unregistered) = %v, want invalid", err)
	}
}
