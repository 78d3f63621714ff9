package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/marketledger/ledger/cmd/ledger/internal/console"
	"github.com/marketledger/ledger/cmd/ledger/internal/market"
)

// runDemoWithReport plays the day as runDemo does, prints the same report,
// and writes it as a self-contained HTML page to path: the day's chart
// (checkouts per minute by channel, refunds, the policy events) read back
// from the log, and the report's table.
func runDemoWithReport(ctx context.Context, stdout, stderr io.Writer, dir string, seed uint64, sc market.Scale, asJSON bool, path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return usagef("--report %s: %v", path, err)
	}
	// Fail before the day is played, not after.
	if err := os.WriteFile(abs, nil, 0o644); err != nil {
		return usagef("--report %s: %v", path, err)
	}
	var out bytes.Buffer
	if err := runDemo(ctx, &out, stderr, dir, seed, sc, true); err != nil {
		return err
	}
	var rep demoReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		return fmt.Errorf("demo report: %w", err)
	}
	if asJSON {
		stdout.Write(out.Bytes())
	} else {
		printReport(stdout, &rep)
	}
	if err := writeHTMLReport(ctx, dir, &rep, abs); err != nil {
		return fmt.Errorf("--report %s: %w", path, err)
	}
	fmt.Fprintf(stderr, "report written to %s\n", abs)
	return nil
}

// writeHTMLReport reads the day back from the log in dir and writes the
// page to path.
func writeHTMLReport(ctx context.Context, dir string, rep *demoReport, path string) error {
	n, err := openLog(ctx, &globals{dataDir: dir})
	if err != nil {
		return err
	}
	defer n.Close()
	day := console.NewDay(n.store)
	if err := day.Refresh(ctx); err != nil {
		return err
	}
	s, err := day.Bin(console.Business, market.DayStart, market.TradingUntil.Add(time.Hour), time.Minute)
	if err != nil {
		return err
	}
	r := console.Report{
		Title: "4 October 2023 (WIB): the day social commerce closed",
		Lead: []string{
			fmt.Sprintf("Seed %d, scale %s: %d events in %s.", rep.Seed, rep.Scale, rep.Events, rep.DataDir),
			fmt.Sprintf("The freeze %q (%s) was appended at 09:00 WIB at position %d and took effect at 17:00 WIB at position %d: from then on social-commerce checkouts are refused while marketplace trade and refunds go on.",
				market.FreezeRuleID, market.LegalBasis, rep.FreezePosition, rep.FreezeActivationPosition),
		},
		Chart:  console.NewChart("day", s, market.WIB, nil),
		Footer: fmt.Sprintf("Written by ledger demo in %.1f s. The chart is read back from the log; the checkout counts come from the buyers' answers, since a refused placement appends nothing.", float64(rep.ElapsedMS)/1000),
	}
	r.Tables = append(r.Tables, checkoutTable(rep), bookTable(rep), snapshotTable(rep))
	var buf bytes.Buffer
	if err := console.WriteReport(&buf, r); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

func checkoutTable(rep *demoReport) console.ReportTable {
	t := console.ReportTable{ID: "checkouts", Caption: "Checkouts by channel, before and from 17:00 WIB",
		Columns: []string{"channel", "before", "after", "refused", "no stock", "cancelled"}}
	chans := make([]string, 0, len(rep.Checkouts))
	for ch := range rep.Checkouts {
		chans = append(chans, ch)
	}
	sort.Strings(chans)
	for _, ch := range chans {
		c := rep.Checkouts[ch]
		t.Rows = append(t.Rows, []string{ch, strconv.Itoa(c.AcceptedBefore), strconv.Itoa(c.AcceptedAfter),
			strconv.Itoa(c.RefusedBefore + c.RefusedAfter), strconv.Itoa(c.OutOfStock), strconv.Itoa(c.Cancelled)})
	}
	return t
}

func bookTable(rep *demoReport) console.ReportTable {
	t := console.ReportTable{ID: "books", Caption: "Refunds, settlements and the books",
		Columns: []string{"what", "value"}}
	add := func(k, v string) { t.Rows = append(t.Rows, []string{k, v}) }
	add("refunds before 17:00", strconv.Itoa(rep.RefundsBeforeFreeze))
	add("refunds during the freeze", strconv.Itoa(rep.RefundsDuringFreeze))
	add("settlements (during the freeze)", fmt.Sprintf("%d (%d)", rep.Settlements, rep.SettlementsDuring))
	add("price cuts before the closure", strconv.Itoa(rep.PriceCuts))
	add("postings sum to zero per currency", strconv.FormatBool(rep.PostingsSumZero))
	add("violations of the freeze", strconv.Itoa(rep.Violations))
	for _, b := range rep.Balances {
		add(b.Account+" ("+b.Currency+", minor units)", strconv.FormatInt(b.AmountMinor, 10))
	}
	return t
}

func snapshotTable(rep *demoReport) console.ReportTable {
	t := console.ReportTable{ID: "snapshots", Caption: "Regulator bundles",
		Columns: []string{"as of", "position", "Merkle root", "verified", "bundle"}}
	for _, s := range rep.Snapshots {
		t.Rows = append(t.Rows, []string{s.AsOf, strconv.FormatUint(s.Position, 10), s.Root, strconv.FormatBool(s.Verified), s.Bundle})
	}
	return t
}
