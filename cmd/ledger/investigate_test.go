package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/node/auth"
	"github.com/marketledger/ledger/node/embedded"
)

func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){"ledger": main})
}

var wib = time.FixedZone("WIB", 7*3600)

// fixtureID is a deterministic UUIDv7, so that ids and hashes in golden
// files are stable.
func fixtureID(i int) string { return fmt.Sprintf("01890000-0000-7000-8000-%012d", i) }

// fixtureStep is one event of the fixture log.
type fixtureStep struct {
	body      any
	aggregate string
	at        string // business time of the day, WIB
	corr      string
	cause     string // a command id, or "#N" for the id of the N-th event
	policy    uint64
}

var (
	idr      = func(v int64) contracts.Money { return contracts.Money{AmountMinor: v, Currency: "IDR"} }
	postings = []contracts.Posting{{Account: "buyer:b-1", AmountMinor: -30000000, Currency: "IDR"}, {Account: "escrow:o-2001", AmountMinor: 30000000, Currency: "IDR"}}
	rule     = "permendag-31-2023-social"
)

// fixtureLog is a small 4 October 2023: a listing, the freeze, one order
// that went through before 17:00 and one refused after it.
func fixtureLog() []fixtureStep {
	social := contracts.ChannelSocialCommerce
	return []fixtureStep{
		{contracts.ListingCreated{ListingID: "l-1", SellerID: "s-1", Title: "Batik tulis shirt", Category: "fashion", Channel: social,
			Jurisdiction: "ID", Origin: contracts.OriginDomestic, Price: idr(15000000), Stock: 10}, "l-1", "08:00", "l-1", "cmd-1", 0},
		{contracts.FreezeImposed{RuleID: rule, Scope: contracts.Scope{Jurisdictions: []string{"ID"}, Channels: []contracts.Channel{social}},
			BlockedOperations: contracts.FreezeOperations, EffectiveAt: time.Date(2023, 10, 4, 17, 0, 0, 0, wib), LegalBasis: "Permendag 31/2023",
			Issuer: "Kementerian Perdagangan RI", Description: "social commerce may promote goods but not take orders or payments"}, rule, "09:00", rule, "cmd-2", 0},
		{contracts.OrderPlaced{OrderID: "o-2001", BuyerID: "b-1", ListingID: "l-1", SellerID: "s-1", Quantity: 2, UnitPrice: idr(15000000),
			Total: idr(30000000), Channel: social, Jurisdiction: "ID", Category: "fashion", Origin: contracts.OriginDomestic}, "o-2001", "10:00", "o-2001", "cmd-3", 2},
		{contracts.ListingStockReserved{ListingID: "l-1", OrderID: "o-2001", Quantity: 2, Stock: 8}, "l-1", "10:00", "o-2001", "#3", 2},
		{contracts.PaymentAuthorized{PaymentID: "pay-o-2001", OrderID: "o-2001", BuyerID: "b-1", SellerID: "s-1", Channel: social, Jurisdiction: "ID",
			Category: "fashion", Amount: idr(30000000), PendingPostings: postings}, "pay-o-2001", "10:01", "o-2001", "cmd-4", 2},
		{contracts.PaymentCaptured{PaymentID: "pay-o-2001", OrderID: "o-2001", Amount: idr(30000000), Postings: postings}, "pay-o-2001", "10:02", "o-2001", "cmd-5", 2},
		{contracts.OrderConfirmed{OrderID: "o-2001", PaymentID: "pay-o-2001"}, "o-2001", "10:02", "o-2001", "#6", 2},
		{contracts.OrderPlaced{OrderID: "o-2002", BuyerID: "b-2", ListingID: "l-1", SellerID: "s-1", Quantity: 2, UnitPrice: idr(15000000),
			Total: idr(30000000), Channel: social, Jurisdiction: "ID", Category: "fashion", Origin: contracts.OriginDomestic}, "o-2002", "16:59", "o-2002", "cmd-6", 2},
		{contracts.PaymentAuthorizationFailed{PaymentID: "pay-o-2002", OrderID: "o-2002", BuyerID: "b-2", Amount: idr(30000000),
			Reason: "frozen by Permendag 31/2023", RuleID: rule}, "pay-o-2002", "17:00", "o-2002", "cmd-7", 2},
		{contracts.OrderRejected{OrderID: "o-2002", Reason: "payment authorization refused by policy", RuleID: rule, LegalBasis: "Permendag 31/2023"},
			"o-2002", "17:00", "o-2002", "#9", 2},
	}
}

// writeFixture appends the fixture log to a new ledger in dir, through the
// store and the contracts' checks, and stops the server.
func writeFixture(dir string) error {
	ctx := context.Background()
	n, err := openNode(ctx, &globals{dataDir: dir}, nodeConfig{role: auth.RoleOperator, port: embedded.RandomPort})
	if err != nil {
		return err
	}
	defer n.Close()
	versions := map[string]uint64{}
	for i, s := range fixtureLog() {
		at, _ := time.ParseInLocation("2006-01-02 15:04", "2023-10-04 "+s.at, wib)
		e, err := contracts.NewEvent(s.body, s.aggregate, at)
		if err != nil {
			return fmt.Errorf("step %d: %w", i+1, err)
		}
		e.ID, e.CorrelationID, e.CausationID, e.PolicyPosition = fixtureID(i+1), s.corr, s.cause, s.policy
		if strings.HasPrefix(s.cause, "#") {
			var k int
			fmt.Sscanf(s.cause, "#%d", &k)
			e.CausationID = fixtureID(k)
		}
		ref := events.AggregateRef{Context: e.Context(), ID: s.aggregate}
		a, err := n.store.Append(ctx, events.Decision{Aggregate: ref, ExpectedVersion: versions[ref.String()], Events: []events.Event{e}})
		if err != nil {
			return fmt.Errorf("step %d: %w", i+1, err)
		}
		versions[ref.String()] = a.Version
	}
	return nil
}

// fixtureDir returns a new data directory holding the fixture log.
func fixtureDir(t testing.TB) string {
	dir := t.TempDir()
	if err := writeFixture(dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

func copyDir(src, dst string) error {
	return filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if info.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		if info.Name() == "ledger.lock" || info.Name() == "serve.json" {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o600)
	})
}

// recordedRe matches recorded times, which the server sets and which change
// from run to run; golden files say <recorded> instead.
// A recorded time is printed to the millisecond (in the --tz zone with its
// offset) or, in JSON, in UTC; business times in the fixture have neither.
var recordedRe = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+[+-]\d\d:\d\d`)

func TestScripts(t *testing.T) {
	src := fixtureDir(t)
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(env *testscript.Env) error {
			// NOW is an instant after every event of the fixture.
			env.Setenv("NOW", time.Now().UTC().Format(time.RFC3339Nano))
			return copyDir(src, filepath.Join(env.WorkDir, "d"))
		},
		// Run with -update to rewrite the golden files from what the
		// commands print now.
		UpdateScripts: *update,
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			// redact FILE OUT writes FILE to OUT with recorded times
			// replaced by <recorded>, for cmp against a golden file.
			"redact": func(ts *testscript.TestScript, neg bool, args []string) {
				if len(args) != 2 {
					ts.Fatalf("usage: redact file out")
				}
				got := recordedRe.ReplaceAllString(ts.ReadFile(args[0]), "<recorded>")
				if err := os.WriteFile(ts.MkAbs(args[1]), []byte(got), 0o644); err != nil {
					ts.Fatalf("%v", err)
				}
			},
		},
	})
}

// syncBuffer is a bytes.Buffer safe for one writer and one reader.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestTailFollowsNewEventsUntilCancelled(t *testing.T) {
	ctx := context.Background()
	n, err := openNode(ctx, &globals{dataDir: t.TempDir()}, nodeConfig{role: auth.RoleOperator, port: embedded.RandomPort})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	tctx, cancel := context.WithCancel(ctx)
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- tailEvents(tctx, n.store, 1, &logRange{subjects: []string{"ledger.order.>"}}, 0, newPrinter(out, true))
	}()
	for i := range 3 {
		id := fmt.Sprintf("tail-%d", i)
		e, err := contracts.NewEvent(contracts.OrderCompleted{OrderID: id}, id, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		l, _ := contracts.NewEvent(contracts.ListingDelisted{ListingID: id, Reason: "gone"}, id, time.Now())
		for _, ev := range []events.Event{l, e} {
			if _, err := n.store.Append(ctx, events.Decision{Aggregate: events.AggregateRef{Context: ev.Context(), ID: id}, Events: []events.Event{ev}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(out.String(), "\n") < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // the tail prints asynchronously: nothing to await but its output
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("tail returned %v after its context ended", err)
	}
	got := out.String()
	if c := strings.Count(got, "order.completed"); c != 3 || strings.Contains(got, "listing.") {
		t.Errorf("tail printed:\n%s\nwant the 3 order events and no listing event", got)
	}
}

func TestInvestigateBadInputExitsTwo(t *testing.T) {
	dir := fixtureDir(t)
	for _, args := range [][]string{
		{"replay", "--from", "5", "--to", "3"},
		{"replay", "--from", "2023-10-04T18:00:00+07:00", "--to", "2023-10-04T17:00:00+07:00"},
		{"replay", "--to", "2999-01-01T00:00:00Z"},
		{"replay", "--type", "order.exploded"},
		{"replay", "--subject", "ledger.shipping.>"},
		{"replay", "--from", "abc"},
		{"trace", "o-9999"},
		{"trace", "bad id"},
		{"tail", "--count", "-1"},
	} {
		root := newRoot()
		root.SetArgs(append(args, "--data", dir))
		root.SetOut(&bytes.Buffer{})
		root.SetErr(&bytes.Buffer{})
		err := root.Execute()
		if err == nil || exitCode(err) != exitUsage || strings.Contains(oneLine(err), "\n") {
			t.Errorf("ledger %v: %v (exit %d), want a one-line error and exit %d", args, err, exitCode(err), exitUsage)
		}
	}
}

// A progress bar is drawn on a terminal only: a pipe or a file gets none.
func TestProgressBarOnlyOnATerminal(t *testing.T) {
	var buf bytes.Buffer
	bar := newBar(&buf, progressMin*2, "replaying")
	bar.Add(progressMin)
	bar.Finish()
	if buf.Len() != 0 {
		t.Errorf("a progress bar went to a buffer: %q", buf.String())
	}
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if isTerminal(f) {
		t.Error("a regular file is taken for a terminal")
	}
}
