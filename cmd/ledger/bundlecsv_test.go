package main

import (
	"archive/zip"
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/node/auth"
	"github.com/marketledger/ledger/node/embedded"
	"github.com/marketledger/ledger/projections"
	"github.com/marketledger/ledger/projections/bundle"
	"github.com/marketledger/ledger/projections/notary"
)

// A seller's listing title that a spreadsheet would run reaches the
// regulator's CSV as text, the amounts read in major units too, and the
// times in the jurisdiction's zone with the offset; the bundle (which names
// its zone) still verifies.
func TestBundleCSVIsSafeInASpreadsheet(t *testing.T) {
	ctx := context.Background()
	dir := fixtureDir(t)
	n, err := openNode(ctx, &globals{dataDir: dir}, nodeConfig{role: auth.RoleOperator, port: embedded.RandomPort})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	l := contracts.ListingCreated{ListingID: "l-evil", SellerID: "s-9", Title: `=HYPERLINK("http://evil.example","refund")`, Category: "fashion",
		Channel: contracts.ChannelMarketplace, Jurisdiction: "ID", Origin: contracts.OriginDomestic, Price: idr(1500050), Stock: 1}
	e, err := contracts.NewEvent(l, "l-evil", time.Date(2023, 10, 4, 18, 0, 0, 0, wib))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := n.store.Append(ctx, events.Decision{Aggregate: events.AggregateRef{Context: "listing", ID: "l-evil"}, Events: []events.Event{e}}); err != nil {
		t.Fatal(err)
	}
	key, err := notary.LoadOrCreateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	jakarta, err := parseZone("ID")
	if err != nil {
		t.Fatal(err)
	}
	if err := bundle.Write(ctx, n.store, &buf, projections.AtBusiness(time.Date(2023, 10, 4, 18, 0, 0, 0, wib)), key, bundle.WithTimeZone(jakarta)); err != nil {
		t.Fatal(err)
	}
	zr, err := zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	f, err := zr.Open("models/catalogue.csv")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(f)
	csv := string(b)
	if !strings.Contains(csv, `"'=HYPERLINK(""http://evil.example"",""refund"")"`) {
		t.Errorf("the formula title is not neutralised:\n%s", csv)
	}
	if !strings.Contains(csv, ",price_minor,price,currency,") || !strings.Contains(csv, ",1500050,IDR 15000.50,IDR,") {
		t.Errorf("no price in major units:\n%s", csv)
	}
	if !strings.Contains(csv, ",2023-10-04T18:00:00+07:00,2023-10-04T18:00:00+07:00,") {
		t.Errorf("times are not in the jurisdiction's zone with the offset:\n%s", csv)
	}
	rep, err := bundle.Verify(bytes.NewReader(buf.Bytes()), int64(buf.Len()), nil)
	if err != nil || !rep.OK() {
		t.Errorf("the bundle does not verify: %v %+v", err, rep.Checks)
	}
}
