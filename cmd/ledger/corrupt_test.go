package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/node/auth"
	"github.com/marketledger/ledger/node/embedded"
	"github.com/marketledger/ledger/projections"
	"github.com/marketledger/ledger/projections/bundle"
	"github.com/marketledger/ledger/projections/notary"
)

// corruptMarker is a string that occurs in exactly one stored event body
// (the listing's title), so that the test can find that event's bytes in
// the stream's block files.
const corruptMarker = "Corruption-canary batik shirt"

// TestCorruptedBlockIsReportedByVerifyAndReplay writes a small log through
// the services, takes a signed bundle, stops the server, flips one byte of
// one event's body inside the LEDGER stream's block file, and restarts on
// the same directory. `ledger verify --against` must then fail and name the
// damaged position instead of passing, and `ledger replay` over that
// position must fail with an integrity error, while the positions before it
// still replay.
func TestCorruptedBlockIsReportedByVerifyAndReplay(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := t.TempDir()
	g := &globals{dataDir: dir}
	bundlePath := filepath.Join(t.TempDir(), "bundle.zip")
	damaged := writeCorruptibleLog(ctx, t, g, bundlePath)

	// With the server stopped, flip one byte of the marker in the body.
	blocks := streamBlocks(t, dir)
	flipped := 0
	for _, blk := range blocks {
		b, err := os.ReadFile(blk)
		if err != nil {
			t.Fatal(err)
		}
		i := bytes.Index(b, []byte(corruptMarker))
		if i < 0 {
			continue
		}
		if bytes.Count(b, []byte(corruptMarker)) != 1 {
			t.Fatalf("%s holds the marker more than once", blk)
		}
		b[i] ^= 0x01 // 'C' becomes 'B': still valid JSON, different content
		if err := os.WriteFile(blk, b, 0o600); err != nil {
			t.Fatal(err)
		}
		flipped++
		t.Logf("flipped byte %d of %s (event at position %d)", i, filepath.Base(blk), damaged)
	}
	if flipped != 1 {
		t.Fatalf("marker found in %d block files, want 1", flipped)
	}

	logStreamState(ctx, t, g, damaged)
	var out bytes.Buffer
	err := runVerify(ctx, &globals{dataDir: t.TempDir()}, &out, bundlePath, dir, notaryKeyHex(t, dir))
	report := out.String()
	if err == nil {
		t.Fatalf("verify --against passed over a corrupted log:\n%s", report)
	}
	pos := "position " + strconv.FormatUint(damaged, 10)
	if !strings.Contains(report, "FAIL") || !strings.Contains(report+err.Error(), pos) {
		t.Errorf("verify --against failed without naming %s: %v\n%s", pos, err, report)
	}
	t.Logf("verify --against: %v\n%s", err, report)

	var stdout, stderr bytes.Buffer
	p := strconv.FormatUint(damaged, 10)
	err = runReplay(ctx, g, &replayOpts{from: p, to: p}, &stdout, &stderr)
	if events.KindOf(err) != events.KindIntegrity || !strings.Contains(err.Error(), pos) {
		t.Errorf("replay --from %s --to %s: %v (kind %v); want an integrity error naming %s\n%s", p, p, err, events.KindOf(err), pos, stdout.String())
	}
	t.Logf("replay over the damaged position: %v", err)
	stdout.Reset()
	if err := runReplay(ctx, g, &replayOpts{to: strconv.FormatUint(damaged-1, 10)}, &stdout, &stderr); err != nil {
		t.Errorf("replay of the undamaged positions before %d: %v", damaged, err)
	}
}

// logStreamState logs what the server made of the damaged block on
// restart: the LEDGER stream denies deletes, so any deleted position in its
// state is a message the server dropped.
func logStreamState(ctx context.Context, t *testing.T, g *globals, damaged uint64) {
	t.Helper()
	n, err := openNode(ctx, g, nodeConfig{role: auth.RoleOperator, port: embedded.RandomPort})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	s, err := n.js.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx, jetstream.WithDeletedDetails(true))
	if err != nil {
		t.Fatal(err)
	}
	st := info.State
	t.Logf("after the restart the stream holds %d messages, positions %d..%d, %d deleted %v", st.Msgs, st.FirstSeq, st.LastSeq, st.NumDeleted, st.Deleted)
	_, err = s.GetMsg(ctx, damaged)
	t.Logf("get of position %d: %v", damaged, err)
	// Loading the damaged aggregate fails too: its chain starts at version 2.
	_, err = n.store.Load(ctx, events.AggregateRef{Context: contracts.ServiceListing, ID: "cl-1"}, 0)
	if events.KindOf(err) != events.KindIntegrity {
		t.Errorf("load of the damaged listing: %v; want an integrity error", err)
	}
	t.Logf("load of the damaged listing: %v", err)
}

// streamBlocks returns the message block files of the LEDGER stream under
// the data directory (.../streams/LEDGER/msgs/*.blk, wherever the server
// nests its store and account directories).
func streamBlocks(t *testing.T, dir string) []string {
	t.Helper()
	var blocks []string
	suffix := string(filepath.Separator) + filepath.Join("streams", events.StreamName, "msgs")
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".blk") && strings.HasSuffix(filepath.Dir(p), suffix) {
			blocks = append(blocks, p)
		}
		return err
	})
	if err != nil || len(blocks) == 0 {
		t.Fatalf("no block files of %s under %s: %v", events.StreamName, dir, err)
	}
	return blocks
}

// writeCorruptibleLog starts the embedded server on g's data directory,
// lists the marked listing and completes a checkout on it, writes a signed
// bundle of the log to bundle, and stops the server. It returns the position
// of the listing.created event, the one whose body carries the marker.
func writeCorruptibleLog(ctx context.Context, t *testing.T, g *globals, bundlePath string) uint64 {
	t.Helper()
	n, err := openNode(ctx, g, nodeConfig{role: auth.RoleOperator, port: embedded.RandomPort})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	st, err := newStack(ctx, n.storeOf(ctx), time.Now, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	idr := func(v int64) contracts.Money { return contracts.Money{AmountMinor: v, Currency: "IDR"} }
	for i, title := range []string{"Rice cooker", corruptMarker, "Teak stool"} {
		if _, err := st.listing.Create(ctx, contracts.CreateListing{ListingID: "cl-" + strconv.Itoa(i), SellerID: "seller-1", Title: title,
			Category: "home", Channel: contracts.ChannelMarketplace, Jurisdiction: "ID", Origin: contracts.OriginDomestic,
			Price: idr(150_000_00), Stock: 10}); err != nil {
			t.Fatal(err)
		}
	}
	var damaged uint64
	for e, err := range n.store.Read(ctx, events.Query{Subjects: []string{"ledger.listing.cl-1.>"}}) {
		if err != nil {
			t.Fatal(err)
		}
		damaged = e.Position
	}
	for i := range 3 {
		id := "co-" + strconv.Itoa(i)
		placed, err := st.order.Place(ctx, contracts.PlaceOrder{OrderID: id, BuyerID: "buyer-1", ListingID: "cl-" + strconv.Itoa(i), Quantity: 1})
		if err != nil {
			t.Fatal(err)
		}
		o := placed.State
		if _, err := st.listing.ReserveStock(ctx, contracts.ReserveStock{ListingID: o.ListingID, OrderID: id, Quantity: 1}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.payment.Authorize(ctx, contracts.AuthorizePayment{PaymentID: contracts.PaymentID(id), OrderID: id, BuyerID: o.BuyerID,
			SellerID: o.SellerID, Channel: o.Channel, Jurisdiction: o.Jurisdiction, Category: o.Category, Amount: o.Total}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.order.Confirm(ctx, contracts.ConfirmOrder{OrderID: id, PaymentID: contracts.PaymentID(id)}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.payment.Capture(ctx, contracts.CapturePayment{PaymentID: contracts.PaymentID(id)}); err != nil {
			t.Fatal(err)
		}
	}
	// The bundle is as of the last event: the stream's last message is the
	// capture's policy fence record, which is no event.
	var head uint64
	for e, err := range n.store.Read(ctx, events.Query{}) {
		if err != nil {
			t.Fatal(err)
		}
		head = e.Position
	}
	key, err := notary.LoadOrCreateKey(g.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := bundle.Write(ctx, n.store, &buf, projections.AtPosition(head), key); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bundlePath, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	// The bundle verifies against the intact log: the failure below is the
	// corruption's, not the bundle's.
	var out bytes.Buffer
	if err := runVerify(ctx, &globals{dataDir: t.TempDir(), credsDir: credentialsDir(g.dataDir)}, &out, bundlePath, "nats://"+strings.TrimPrefix(n.url, "nats://"), notaryKeyHex(t, g.dataDir)); err != nil {
		t.Fatalf("verify --against the intact log: %v\n%s", err, out.String())
	}
	return damaged
}
