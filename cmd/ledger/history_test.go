package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/node/auth"
	"github.com/marketledger/ledger/node/embedded"
	"github.com/marketledger/ledger/projections"
	"github.com/marketledger/ledger/projections/notary"
)

// shrinkable is a served ledger with some history, its read models
// checkpointed at the log's head and that head recorded in the watermark
// file, and a break-glass administrator (whose seed is outside the data
// directory) connected to its NATS server.
type shrinkable struct {
	g     *globals
	s     *servedLedger
	stop  func() error
	admin jetstream.JetStream
	seed  string // the administrator's seed file
	pub   string
	last  uint64 // the log's last position
}

func serveWithHistory(t *testing.T) *shrinkable {
	t.Helper()
	defer func(every time.Duration) { watermarkEvery = every }(watermarkEvery)
	watermarkEvery = 50 * time.Millisecond
	g := &globals{dataDir: t.TempDir()}
	token := issueTestToken(t, g.dataDir, "operator")
	seed := filepath.Join(t.TempDir(), "admin.nk")
	pub, err := auth.NewBreakGlassSeed(seed, g.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	s, stop := launchServed(t, g, &serveOpts{services: "listing", projections: true, breakGlass: pub}, http.DefaultClient)
	t.Cleanup(func() { stop() })
	for i := range 6 {
		l := contracts.CreateListing{ListingID: fmt.Sprintf("hist-%d", i), SellerID: "seller-1", Title: "Batik shirt", Category: "fashion",
			Channel: contracts.ChannelSocialCommerce, Jurisdiction: "ID", Origin: contracts.OriginDomestic,
			Price: contracts.Money{AmountMinor: 150_000_00, Currency: "IDR"}, Stock: 10}
		if code, b := s.call(t, "POST", "/v1/commands/listing.create", token, l); code != http.StatusOK {
			t.Fatalf("listing.create: %d %s", code, b)
		}
	}
	nc, err := nats.Connect(s.info.NATS, breakGlassAuth(t, s.info.BreakGlassJWT, seed))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	admin, _ := jetstream.New(nc)
	sh := &shrinkable{g: g, s: s, stop: stop, admin: admin, seed: seed, pub: pub}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := admin.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatal(err)
	}
	sh.last = st.CachedInfo().State.LastSeq
	// Await the evidence: a committed checkpoint and the watermark at the
	// head (each is written within about a second).
	for {
		ckpts, err := projections.CommittedCheckpoints(ctx, admin)
		if err != nil {
			t.Fatal(err)
		}
		w, err := readWatermark(g.dataDir)
		if err != nil {
			t.Fatal(err)
		}
		atHead := 0
		for _, c := range ckpts {
			if c.Position >= sh.last {
				atHead++
			}
		}
		if atHead > 0 && w.Position >= sh.last {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no checkpoint or watermark at position %d within 20 s (checkpoints %+v, watermark %+v)", sh.last, ckpts, w)
		case <-time.After(50 * time.Millisecond):
		}
	}
	return sh
}

// awaitNotReady polls /readyz until it answers 503 saying that history is
// missing, and returns the body. (The evidence /readyz compares with is
// gathered at most once per historyEvery, so for up to that long it may
// answer with a plainer reason.)
func (sh *shrinkable) awaitNotReady(t *testing.T) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, b := sh.s.call(t, "GET", "/readyz", "", nil)
		if code == http.StatusServiceUnavailable && strings.Contains(string(b), "history is missing") {
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d %s after the log lost history", code, b)
		}
		time.Sleep(50 * time.Millisecond) // the readiness check is cached for historyEvery
	}
}

// runStreamCmd runs `ledger stream` on the data directory.
func runStreamCmd(g *globals) (string, error) {
	var out bytes.Buffer
	cmd := newStreamCmd(g)
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(nil)
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

// serveAgain runs serve on the data directory and returns its error: it
// must refuse before it serves (a serve that starts is stopped and
// reported).
func serveAgain(t *testing.T, g *globals) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	o := &serveOpts{services: "listing", projections: true, http: freeAddr(t), host: "127.0.0.1", port: embedded.RandomPort, replicas: 1}
	err := runServe(ctx, g, o)
	if err == nil {
		t.Fatal("serve ran on a log that lost history")
	}
	t.Logf("serve: %v", err)
	return err
}

func wantAll(t *testing.T, what, got string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("%s does not say %q:\n%s", what, w, got)
		}
	}
}

// TestShortenedLogIsNotServed: limits that drop old events, set and put
// back by an administrator, leave a stream whose settings look right but
// whose first positions are gone. /readyz, `ledger stream` and a restarted
// serve each refuse it and name what is missing.
func TestShortenedLogIsNotServed(t *testing.T) {
	sh := serveWithHistory(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := events.StreamConfig(1)
	cfg.MaxMsgs, cfg.Discard = 1, jetstream.DiscardOld
	if _, err := sh.admin.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := sh.admin.UpdateStream(ctx, events.StreamConfig(1)); err != nil {
		t.Fatal(err)
	}
	gone := fmt.Sprintf("positions 1..%d are gone", sh.last-1)

	wantAll(t, "/readyz", sh.awaitNotReady(t), gone, "history is missing")
	out, err := runStreamCmd(sh.g)
	if err == nil {
		t.Errorf("ledger stream exited 0 on a shortened log:\n%s", out)
	}
	wantAll(t, "ledger stream", out, "guarantees: FAILED", gone, "history is missing")

	sh.stop()
	err = serveAgain(t, sh.g)
	wantAll(t, "serve's refusal", err.Error(), fmt.Sprintf("holds positions %d..%d", sh.last, sh.last), gone, "refusing to serve")
}

// TestRecreatedLogIsNotServed: the stream deleted (by an administrator)
// and created again empty (the operator's credential may create it) loses
// the notary's checkpoints with it; the read models' checkpoints and the
// watermark file still say how long the log was, and serve refuses. With
// the read models' bucket deleted too, the watermark file alone suffices.
func TestRecreatedLogIsNotServed(t *testing.T) {
	sh := serveWithHistory(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := sh.admin.DeleteStream(ctx, events.StreamName); err != nil {
		t.Fatal(err)
	}
	wantAll(t, "/readyz", sh.awaitNotReady(t), "stream LEDGER does not exist", "history is missing")
	sh.stop()

	// A serve finds no stream and refuses to create an empty one.
	err := serveAgain(t, sh.g)
	wantAll(t, "serve's refusal", err.Error(), "does not exist", "projection '", watermarkFile, "refusing to create an empty stream")

	// The operator's credential creates the stream anew, empty.
	set, err := auth.Ensure(sh.g.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	offline := func(do func(op jetstream.JetStream)) {
		srv, err := embedded.Start(embedded.Config{DataDir: sh.g.dataDir, Port: embedded.RandomPort,
			Configure: func(o *server.Options) { set.Configure(o) }})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Shutdown()
		nc, err := auth.Connect(srv.ClientURL(), set.CredsFile(auth.RoleOperator))
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		op, _ := jetstream.New(nc)
		do(op)
	}
	offline(func(op jetstream.JetStream) {
		if _, err := events.EnsureStream(ctx, op, 1); err != nil {
			t.Fatal(err)
		}
	})
	err = serveAgain(t, sh.g)
	wantAll(t, "serve's refusal", err.Error(), "stream LEDGER holds no events", "projection '",
		fmt.Sprintf("this ledger saw position %d (%s)", sh.last, watermarkFile), "refusing to serve")
	out, err := runStreamCmd(sh.g)
	if err == nil {
		t.Errorf("ledger stream exited 0 on a recreated log:\n%s", out)
	}
	wantAll(t, "ledger stream", out, "guarantees: FAILED", "holds no events")

	// Without the read models' checkpoints, the watermark file remains.
	offline(func(op jetstream.JetStream) {
		if err := op.DeleteKeyValue(ctx, projections.StateBucket); err != nil {
			t.Fatal(err)
		}
	})
	err = serveAgain(t, sh.g)
	wantAll(t, "serve's refusal", err.Error(), "holds no events", watermarkFile, "refusing to serve")
	if strings.Contains(err.Error(), "projection '") {
		t.Errorf("refusal names a projection checkpoint that was deleted: %v", err)
	}
}

// TestNotaryCheckpointMarksTheLog: the notary's checkpoint, recorded in
// the watermark file with the position and id of its event, tells a
// stream deleted and filled again past that position from the one the
// notary signed; and a recorded checkpoint whose claims were changed does
// not verify.
func TestNotaryCheckpointMarksTheLog(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dir := fixtureDir(t)
	seed := filepath.Join(t.TempDir(), "admin.nk")
	pub, err := auth.NewBreakGlassSeed(seed, dir)
	if err != nil {
		t.Fatal(err)
	}
	n, err := openNode(ctx, &globals{dataDir: dir}, nodeConfig{role: auth.RoleInvestigator, port: embedded.RandomPort, breakGlass: pub})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	key, err := notary.LoadOrCreateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := n.as(ctx, auth.RoleProjections)
	if err != nil {
		t.Fatal(err)
	}
	c, a, err := notary.New(pc.store, key).Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := recordCheckpoint(ctx, pc.js, dir, c, a); err != nil {
		t.Fatal(err)
	}
	if err := checkHistory(ctx, n.js, dir); err != nil {
		t.Fatalf("the log as signed: %v", err)
	}

	nc, err := nats.Connect(n.url, breakGlassAuth(t, n.breakGlassJWT, seed))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	admin, _ := jetstream.New(nc)
	if err := admin.DeleteStream(ctx, events.StreamName); err != nil {
		t.Fatal(err)
	}
	if _, err := events.EnsureStream(ctx, admin, 1); err != nil {
		t.Fatal(err)
	}
	for i := range a.LastPosition + 2 {
		if _, err := admin.Publish(ctx, fmt.Sprintf("ledger.listing.l-%d.listing.created", i), []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	err = checkHistory(ctx, n.js, dir)
	if err == nil {
		t.Fatal("a stream filled again past the notary's checkpoint passed")
	}
	wantAll(t, "the check", err.Error(), fmt.Sprintf("position %d holds event", a.LastPosition), "the stream was replaced")

	// Change the recorded checkpoint's claims without its key.
	w, err := readWatermark(dir)
	if err != nil {
		t.Fatal(err)
	}
	w.Notary.TreeSize++
	b, _ := json.Marshal(w)
	if err := os.WriteFile(filepath.Join(dir, watermarkFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
	err = checkHistory(ctx, n.js, dir)
	if err == nil || !strings.Contains(err.Error(), "does not verify") {
		t.Errorf("a watermark with a changed checkpoint: %v", err)
	}
}
