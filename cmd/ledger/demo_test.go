package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/marketledger/ledger/cmd/ledger/internal/market"
)

// testScale is a day small enough for a test: half-hour steps.
var testScale = market.Scale{Name: "test", Sellers: 8, Listings: 60, Buyers: 300, Step: 30 * time.Minute, CheckoutsPerStep: 12, Concurrency: 16}

func playDemo(t *testing.T, seed uint64) demoReport {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	if err := runDemo(ctx, &out, &errOut, t.TempDir(), seed, testScale, true); err != nil {
		t.Fatalf("demo: %v\n%s", err, errOut.String())
	}
	var rep demoReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("demo --json printed no report: %v\n%s", err, out.String())
	}
	return rep
}

func TestDemoKeepsTheFreezeAndItsBooks(t *testing.T) {
	rep := playDemo(t, 7)
	sc, mp := rep.Checkouts["social_commerce"], rep.Checkouts["marketplace"]
	if rep.Violations != 0 {
		t.Errorf("violations = %d, want 0", rep.Violations)
	}
	if sc.AcceptedAfter != 0 || sc.AcceptedBefore == 0 || sc.RefusedAfter == 0 {
		t.Errorf("social commerce: %+v; want trade before 17:00, none after, refusals after", *sc)
	}
	if mp.AcceptedAfter == 0 {
		t.Errorf("marketplace: %+v; want trade after 17:00", *mp)
	}
	if rep.FreezeActivationPosition <= rep.FreezePosition {
		t.Errorf("freeze at %d activated at %d: want its activation after it", rep.FreezePosition, rep.FreezeActivationPosition)
	}
	if rep.RefundsDuringFreeze == 0 {
		t.Error("no refund during the freeze")
	}
	if !rep.PostingsSumZero {
		t.Error("postings do not sum to zero")
	}
	if len(rep.Snapshots) != 2 {
		t.Fatalf("snapshots = %d, want 2", len(rep.Snapshots))
	}
	for _, s := range rep.Snapshots {
		if !s.Verified || s.Root == "" || s.Position == 0 {
			t.Errorf("snapshot %+v not verified", s)
		}
		if _, err := os.Stat(s.Bundle); err != nil {
			t.Errorf("bundle %s: %v", s.Bundle, err)
		}
	}
	if rep.Snapshots[0].Position > rep.Snapshots[1].Position {
		t.Errorf("the 16:59:59 snapshot is after the 17:00 one: %d > %d", rep.Snapshots[0].Position, rep.Snapshots[1].Position)
	}
}

func TestDemoSameSeedSameDay(t *testing.T) {
	a, b := playDemo(t, 11), playDemo(t, 11)
	// The business outcome is the same; where it lands (positions, roots,
	// directories, time taken) is not part of it.
	for _, r := range []*demoReport{&a, &b} {
		r.DataDir, r.ElapsedMS, r.FreezePosition, r.FreezeActivationPosition, r.Snapshots, r.Next = "", 0, 0, 0, nil, ""
	}
	if diff := cmp.Diff(a, b); diff != "" {
		t.Errorf("same seed, different day (-first +second):\n%s", diff)
	}
}

func TestDemoRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "something"), []byte("x"), 0o600)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"demo", "--scale", "huge"}, "unknown scale"},
		{[]string{"demo", "--data", dir}, "not empty"},
		{[]string{"demo", "--bogus"}, "unknown flag"},
	} {
		root := newRoot()
		root.SetArgs(tc.args)
		root.SetOut(&bytes.Buffer{})
		root.SetErr(&bytes.Buffer{})
		err := root.Execute()
		if err == nil || exitCode(err) != exitUsage || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ledger %v: err = %v (exit %d), want exit 2 mentioning %q", tc.args, err, exitCode(err), tc.want)
		}
	}
}

// The report opens with one line saying what happened on the day and ends
// with one line of commands to run next on its data; balances read in
// major units too.
func TestDemoReportSaysWhatHappenedAndWhatToRunNext(t *testing.T) {
	rep := &demoReport{Seed: 1, Scale: "small", DataDir: "/tmp/d", Checkouts: map[string]*market.Counts{
		"social_commerce": {AcceptedBefore: 825, RefusedAfter: 553}, "marketplace": {AcceptedBefore: 956, AcceptedAfter: 309}},
		Balances:  []balanceRow{{Account: "platform:fees", Currency: "IDR", AmountMinor: -1500050}},
		Snapshots: []snapshotReport{{AsOf: "a", Bundle: "/tmp/d/s1.zip"}, {AsOf: "b", Bundle: "/tmp/d/s2.zip"}}}
	var b bytes.Buffer
	printReport(&b, rep)
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	want := "On 4 October 2023 Indonesia closed checkout on social commerce from 17:00 WIB (Permendag 31/2023): 825 social-commerce checkouts " +
		"went through before it and 0 after (553 refused), while marketplace trade went on (309 after 17:00); 0 violations of the freeze."
	if lines[0] != want {
		t.Errorf("first line:\n%s\nwant\n%s", lines[0], want)
	}
	last := lines[len(lines)-1]
	for _, w := range []string{"next: ledger diff --data /tmp/d ", "ledger verify /tmp/d/s2.zip --key $(ledger notary key --data /tmp/d)"} {
		if !strings.Contains(last, w) {
			t.Errorf("last line %q does not say %q", last, w)
		}
	}
	if !strings.Contains(b.String(), "-1500050 minor units  IDR -15000.50") {
		t.Errorf("balances not in major units:\n%s", b.String())
	}
}
