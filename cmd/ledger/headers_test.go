package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/marketledger/ledger/contracts"
)

// TestCommandHeaders: an HTTP client may name the flow a command joins
// (Ledger-Correlation-Id) and its idempotency key (Idempotency-Key) in
// headers; the answer names the flow, the events carry it, and a key sent
// twice answers the first result. A header that disagrees with the body,
// or a correlation id the log cannot store, is refused naming the header.
func TestCommandHeaders(t *testing.T) {
	g := &globals{dataDir: t.TempDir()}
	token := issueTestToken(t, g.dataDir, "operator")
	s := startServed(t, g, &serveOpts{}, http.DefaultClient)
	post := func(name string, body any, headers map[string]string) (int, http.Header, []byte) {
		t.Helper()
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest("POST", s.base+"/v1/commands/"+name, bytes.NewReader(b))
		req.Header.Set("Authorization", "Bearer "+token)
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, out
	}
	idr := contracts.Money{AmountMinor: 100_000_00, Currency: "IDR"}
	if code, _, b := post("listing.create", contracts.CreateListing{ListingID: "hdr-1", SellerID: "seller-h", Title: "Lamp",
		Category: "home", Channel: contracts.ChannelMarketplace, Jurisdiction: "ID", Origin: contracts.OriginDomestic,
		Price: idr, Stock: 5}, nil); code != http.StatusOK {
		t.Fatalf("listing.create: %d %s", code, b)
	}
	place := contracts.PlaceOrder{OrderID: "hdr-o1", BuyerID: "buyer-h", ListingID: "hdr-1", Quantity: 1}
	hdr := map[string]string{"Ledger-Correlation-Id": "flow-42", "Idempotency-Key": "place-hdr-o1"}
	code, h, first := post("order.place", place, hdr)
	if code != http.StatusOK || h.Get("Ledger-Correlation-Id") != "flow-42" {
		t.Fatalf("order.place with headers: %d, correlation %q, %s", code, h.Get("Ledger-Correlation-Id"), first)
	}
	if code, _, again := post("order.place", place, hdr); code != http.StatusOK || !strings.Contains(string(again), `"replayed":true`) {
		t.Errorf("the same key again: %d %s; want the first result, replayed", code, again)
	}
	// A retry answered "replayed" is the first result as it was, not the
	// listing as later commands left it.
	priceKey := map[string]string{"Idempotency-Key": "price-hdr-1"}
	cut := contracts.ChangePrice{ListingID: "hdr-1", Price: contracts.Money{AmountMinor: 90_000_00, Currency: "IDR"}}
	code, _, firstPrice := post("listing.change_price", cut, priceKey)
	if code != http.StatusOK {
		t.Fatalf("listing.change_price: %d %s", code, firstPrice)
	}
	if code, _, b := post("listing.change_stock", contracts.ChangeStock{ListingID: "hdr-1", Stock: 3}, nil); code != http.StatusOK {
		t.Fatalf("listing.change_stock: %d %s", code, b)
	}
	_, _, againPrice := post("listing.change_price", cut, priceKey)
	want := strings.Replace(string(firstPrice), `,"events":`, `,"replayed":true,"events":`, 1)
	if string(againPrice) != want {
		t.Errorf("the retry answered\n%s\nwant the first result, replayed:\n%s", againPrice, want)
	}
	_, b := s.call(t, "GET", "/v1/events?from=1&type=order.placed", token, nil)
	if !strings.Contains(string(b), `"correlation_id":"flow-42"`) {
		t.Errorf("order.placed does not carry the correlation id sent: %s", b)
	}
	if code, h, _ := post("order.place", contracts.PlaceOrder{OrderID: "hdr-o2", BuyerID: "buyer-h", ListingID: "hdr-1", Quantity: 1}, nil); code != http.StatusOK || h.Get("Ledger-Correlation-Id") == "" {
		t.Errorf("order.place without headers: %d, correlation %q; want a new flow named", code, h.Get("Ledger-Correlation-Id"))
	}
	// The order placed over HTTP can be followed over HTTP.
	if code, b := s.call(t, "GET", "/v1/orders/hdr-o1", token, nil); code != http.StatusOK ||
		!strings.Contains(string(b), `"order_id":"hdr-o1"`) || !strings.Contains(string(b), `"version":`) {
		t.Errorf("GET /v1/orders/hdr-o1: %d %s", code, b)
	}
	if code, b := s.call(t, "GET", "/v1/listings/hdr-1", token, nil); code != http.StatusOK || !strings.Contains(string(b), `"stock":`) {
		t.Errorf("GET /v1/listings/hdr-1: %d %s", code, b)
	}
	// A buyer reads its own orders only; another's answers as missing.
	buyer := issueTestToken(t, g.dataDir, "buyer")
	waitStatusFor(t, s, buyer, "/v1/orders/hdr-o1", http.StatusNotFound)
	for _, path := range []string{"/v1/orders/nope", "/v1/payments/nope"} {
		if code, b := s.call(t, "GET", path, token, nil); code != http.StatusNotFound {
			t.Errorf("GET %s: %d %s; want 404", path, code, b)
		}
	}
	for _, tc := range []struct {
		headers map[string]string
		body    any
		field   string
	}{
		{map[string]string{"Idempotency-Key": "a"}, contracts.PlaceOrder{OrderID: "hdr-o3", BuyerID: "b", ListingID: "hdr-1", Quantity: 1, IdempotencyKey: "b"}, "Idempotency-Key"},
		{map[string]string{"Ledger-Correlation-Id": "has spaces"}, contracts.PlaceOrder{OrderID: "hdr-o4", BuyerID: "b", ListingID: "hdr-1", Quantity: 1}, "Ledger-Correlation-Id"},
	} {
		code, _, b := post("order.place", tc.body, tc.headers)
		if code != http.StatusBadRequest || !strings.Contains(string(b), `"field":"`+tc.field+`"`) {
			t.Errorf("headers %v: %d %s; want 400 naming %s", tc.headers, code, b, tc.field)
		}
	}
}

// waitStatusFor waits until GET path answers want to token: a token issued
// while serve runs is in force within a second.
func waitStatusFor(t *testing.T, s *servedLedger, token, path string, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, b := s.call(t, "GET", path, token, nil)
		if code == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %d %s; want %d within 10 s", path, code, b, want)
		}
		time.Sleep(50 * time.Millisecond) // the tokens file is re-read at most once a second
	}
}
