package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/marketledger/ledger/cmd/ledger/internal/market"
	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/node/auth"
	"github.com/marketledger/ledger/node/embedded"
	"github.com/marketledger/ledger/projections/models"
)

type demoOpts struct {
	seed   uint64
	scale  string
	report string
}

func newDemoCmd(g *globals) *cobra.Command {
	o := &demoOpts{}
	c := &cobra.Command{
		Use:   "demo",
		Short: "Play 4 October 2023, the day TikTok Shop Indonesia closed checkout, and report",
		Long: `demo plays 4 October 2023 (WIB) on a simulated business clock with a seeded
marketplace: sellers list goods on the marketplace and on social commerce,
buyers place orders, cancel and get refunds, sellers cut prices before the
closure, and payments are settled. The orders are checked out by the
checkout 'ledger serve' runs (reserve, authorize, confirm, capture; a
cancelled order refunded and its stock released), on the simulated clock. At 09:00 the regulator's freeze is appended
(Permendag 31/2023: social commerce in Indonesia, effective 17:00 WIB). After
17:00 social-commerce checkouts are refused while marketplace trade and refunds
go on. It then takes regulator snapshots as of 16:59:59 and 17:00:00 WIB,
verifies them, and prints the report.

It runs on its own embedded NATS server (a free loopback port) in a fresh data
directory, which it keeps: 'ledger replay', 'trace' and 'snapshot' work on it
afterwards with --data.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sc, ok := market.Scales[o.scale]
			if !ok {
				return usagef("unknown scale %q: use small or day", o.scale)
			}
			dir, err := demoDataDir(g, cmd.Flags().Changed("data"))
			if err != nil {
				return err
			}
			if o.report != "" {
				return runDemoWithReport(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), dir, o.seed, sc, g.json, o.report)
			}
			return runDemo(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), dir, o.seed, sc, g.json)
		},
	}
	c.Flags().Uint64Var(&o.seed, "seed", 20231004, "seed of the simulated marketplace (the same seed gives the same day)")
	c.Flags().StringVar(&o.report, "report", "", "also write the report as a self-contained HTML page (the day's chart and the table) to this file")
	c.Flags().StringVar(&o.scale, "scale", "small", "size of the day: small (about a minute) or day (over a million events)")
	return c
}

// demoDataDir returns a fresh directory: the one given with --data, which
// must be empty or absent, or a new temporary one.
func demoDataDir(g *globals, given bool) (string, error) {
	if !given {
		return os.MkdirTemp("", "ledger-demo-")
	}
	entries, err := os.ReadDir(g.dataDir)
	if err == nil && len(entries) > 0 {
		return "", usagef("data directory %s is not empty (it may hold another ledger): the demo needs a fresh one", g.dataDir)
	}
	if err := os.MkdirAll(g.dataDir, 0o700); err != nil {
		return "", usagef("data directory %s: %v", g.dataDir, err)
	}
	return filepath.Abs(g.dataDir)
}

// demoReport is the demo's result; its JSON form is documented in
// docs/demo.md and kept stable.
type demoReport struct {
	Seed                uint64                    `json:"seed"`
	Scale               string                    `json:"scale"`
	Events              uint64                    `json:"events"`
	DataDir             string                    `json:"data_dir"`
	Violations          int                       `json:"violations"`
	Checkouts           map[string]*market.Counts `json:"checkouts"`
	PriceCuts           int                       `json:"price_cuts"`
	RefundsBeforeFreeze int                       `json:"refunds_before_freeze"`
	RefundsDuringFreeze int                       `json:"refunds_during_freeze"`
	Settlements         int                       `json:"settlements"`
	SettlementsDuring   int                       `json:"settlements_during_freeze"`
	FreezePosition      uint64                    `json:"freeze_position"`
	// FreezeActivationPosition is the freeze's policy.rule_activated,
	// appended by the policy service at 17:00 simulated.
	FreezeActivationPosition uint64           `json:"freeze_activation_position"`
	PostingsSumZero          bool             `json:"postings_sum_zero"`
	Balances                 []balanceRow     `json:"balances"`
	Snapshots                []snapshotReport `json:"snapshots"`
	ElapsedMS                int64            `json:"elapsed_ms"`
	// Summary says in one line what happened; Next what to run next.
	Summary string `json:"summary"`
	Next    string `json:"next"`
}

type balanceRow struct {
	Account     string `json:"account"`
	Currency    string `json:"currency"`
	AmountMinor int64  `json:"amount_minor"`
}

type snapshotReport struct {
	AsOf     string `json:"as_of"`
	Position uint64 `json:"position"`
	Root     string `json:"root"`
	Bundle   string `json:"bundle"`
	Verified bool   `json:"verified"`
	Detail   string `json:"detail,omitempty"`
}

func runDemo(ctx context.Context, stdout, stderr io.Writer, dir string, seed uint64, sc market.Scale, asJSON bool) error {
	start := time.Now()
	g := &globals{dataDir: dir}
	n, err := openNode(ctx, g, nodeConfig{role: auth.RoleInvestigator, port: embedded.RandomPort})
	if err != nil {
		return err
	}
	defer n.Close()
	// The service layer `ledger serve` runs, on the simulated clock: the
	// four services over NATS micro, each as its own user, and the one
	// checkout, which the market drains after every simulated step.
	clock := &market.Clock{}
	st, err := newStack(ctx, n.storeOf(ctx), clock.Now, nil, nil)
	if err != nil {
		return err
	}
	defer st.Close()
	stopMicro, err := serveMicro(ctx, n, st)
	if err != nil {
		return err
	}
	defer stopMicro()
	co, stopCheckout, err := startCheckout(ctx, n, clock.Now, demoLogger(stderr))
	if err != nil {
		return err
	}
	defer stopCheckout()
	bar := progressbar.DefaultSilent(0)
	if isTerminal(stderr) {
		bar = progressbar.NewOptions(0, progressbar.OptionSetWriter(stderr), progressbar.OptionSetDescription("playing 4 Oct 2023"),
			progressbar.OptionShowCount(), progressbar.OptionThrottle(200*time.Millisecond), progressbar.OptionClearOnFinish())
	}
	out, err := market.Play(ctx, market.Services{Listing: st.listing, Order: st.order, Payment: st.payment, Policy: st.policy, Checkout: co},
		clock, seed, sc, func(done, total int) { bar.ChangeMax(total); bar.Set(done) })
	bar.Finish()
	if err == nil {
		err = st.waitRefusals(ctx) // the refused checkouts' records, before the log is examined
	}
	if err != nil {
		return err
	}
	rep := &demoReport{Seed: seed, Scale: sc.Name, DataDir: dir, Checkouts: map[string]*market.Counts{},
		PriceCuts: out.PriceCuts, RefundsBeforeFreeze: out.RefundsBeforeFreeze, RefundsDuringFreeze: out.RefundsDuringFreeze,
		Settlements: out.Settlements, SettlementsDuring: out.SettlementsDuring, FreezePosition: out.FreezePosition,
		FreezeActivationPosition: out.FreezeActivationPosition}
	for ch, c := range out.Checkouts {
		rep.Checkouts[string(ch)] = c
	}
	if err := examine(ctx, n, rep, stderr); err != nil {
		return err
	}
	rep.ElapsedMS = time.Since(start).Milliseconds()
	rep.Summary, rep.Next = rep.summary(), rep.next()
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	printReport(stdout, rep)
	return nil
}

// demoLogger reports on stderr what the checkout warns of (a step that
// failed and is retried): the demo's output stays its report.
func demoLogger(stderr io.Writer) *zap.Logger {
	enc := zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig())
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(stderr), zap.WarnLevel))
}

// summary says in one line what happened on the day, from the report.
func (r *demoReport) summary() string {
	sc, mp := r.Checkouts[string(contracts.ChannelSocialCommerce)], r.Checkouts[string(contracts.ChannelMarketplace)]
	if sc == nil {
		sc = &market.Counts{}
	}
	if mp == nil {
		mp = &market.Counts{}
	}
	return fmt.Sprintf("On 4 October 2023 Indonesia closed checkout on social commerce from 17:00 WIB (%s): %d social-commerce checkouts "+
		"went through before it and %d after (%d refused), while marketplace trade went on (%d after 17:00); %d violations of the freeze.",
		market.LegalBasis, sc.AcceptedBefore, sc.AcceptedAfter, sc.RefusedBefore+sc.RefusedAfter, mp.AcceptedAfter, r.Violations)
}

// next is the one line of commands to run next on the day's data.
func (r *demoReport) next() string {
	bundle := "BUNDLE"
	if len(r.Snapshots) > 0 {
		bundle = r.Snapshots[len(r.Snapshots)-1].Bundle
	}
	return fmt.Sprintf("next: ledger diff --data %[1]s --at 2023-10-04T16:59:59+07:00 --at 2023-10-04T17:00:00+07:00 --model catalogue"+
		"  |  ledger replay --data %[1]s --from business:2023-10-04T16:59:00+07:00 --to business:2023-10-04T17:01:00+07:00"+
		"  |  ledger verify %[2]s --key $(ledger notary key --data %[1]s)", r.DataDir, bundle)
}

func printReport(w io.Writer, r *demoReport) {
	fmt.Fprintln(w, r.summary())
	fmt.Fprintf(w, "4 October 2023, WIB: seed %d, scale %s, %d events in %s\n", r.Seed, r.Scale, r.Events, r.DataDir)
	fmt.Fprintf(w, "freeze %q (%s) appended at 09:00 at position %d, scheduled for 17:00; in force from its activation at 17:00 at position %d\n\n",
		market.FreezeRuleID, market.LegalBasis, r.FreezePosition, r.FreezeActivationPosition)
	fmt.Fprintf(w, "%-16s %10s %10s %10s %10s %10s\n", "checkouts", "before", "after", "refused", "no stock", "cancelled")
	chans := make([]string, 0, len(r.Checkouts))
	for ch := range r.Checkouts {
		chans = append(chans, ch)
	}
	sort.Strings(chans)
	for _, ch := range chans {
		c := r.Checkouts[ch]
		fmt.Fprintf(w, "%-16s %10d %10d %10d %10d %10d\n", ch, c.AcceptedBefore, c.AcceptedAfter, c.RefusedBefore+c.RefusedAfter, c.OutOfStock, c.Cancelled)
	}
	fmt.Fprintf(w, "\nrefunds: %d before 17:00, %d during the freeze; settlements: %d (%d during); price cuts before the closure: %d\n",
		r.RefundsBeforeFreeze, r.RefundsDuringFreeze, r.Settlements, r.SettlementsDuring, r.PriceCuts)
	fmt.Fprintf(w, "postings sum to zero per currency: %t; violations of the freeze: %d\n", r.PostingsSumZero, r.Violations)
	for _, b := range r.Balances {
		fmt.Fprintf(w, "  %-28s %s %18d minor units  %s\n", b.Account, b.Currency, b.AmountMinor, models.MajorUnits(strconv.FormatInt(b.AmountMinor, 10), b.Currency))
	}
	for _, s := range r.Snapshots {
		fmt.Fprintf(w, "snapshot as of %s: position %d, root %s, verified %t  %s\n", s.AsOf, s.Position, s.Root, s.Verified, s.Bundle)
	}
	fmt.Fprintf(w, "done in %.1f s\n", float64(r.ElapsedMS)/1000)
	fmt.Fprintln(w, r.next())
}
