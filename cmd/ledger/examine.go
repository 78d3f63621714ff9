package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/marketledger/ledger/cmd/ledger/internal/market"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/node/auth"
	"github.com/marketledger/ledger/projections"
	"github.com/marketledger/ledger/projections/bundle"
	"github.com/marketledger/ledger/projections/models"
	"github.com/marketledger/ledger/projections/notary"
)

// examine reads the log the day left, as an auditor would: the balances
// and the violations audit as of the end of the day, a notary checkpoint,
// and regulator bundles as of 16:59:59 and 17:00:00 WIB on the business
// clock, each verified offline and against the live log.
func examine(ctx context.Context, n *node, rep *demoReport, stderr io.Writer) error {
	last, err := n.store.LastPosition(ctx)
	if err != nil {
		return err
	}
	if err := countEvents(ctx, n, rep); err != nil {
		return err
	}
	st, err := projections.QueryAsOf(ctx, n.store, projections.AtPosition(last), models.ModelBalances, models.ModelViolations)
	if err != nil {
		return fmt.Errorf("audit as of position %d: %w", last, err)
	}
	rep.PostingsSumZero = true
	sums := map[string]int64{}
	for _, m := range st.Models {
		switch m := m.(type) {
		case *models.Violations:
			rep.Violations = m.Count()
		case *models.Balances:
			for _, r := range m.Rows().Rows {
				amt, err := strconv.ParseInt(r[2], 10, 64)
				if err != nil {
					return fmt.Errorf("balances row %v: %w", r, err)
				}
				rep.Balances = append(rep.Balances, balanceRow{Account: r[0], Currency: r[1], AmountMinor: amt})
				sums[r[1]] += amt
			}
		}
	}
	for _, s := range sums {
		rep.PostingsSumZero = rep.PostingsSumZero && s == 0
	}
	rep.Balances = summarize(rep.Balances)
	key, err := notary.LoadOrCreateKey(rep.DataDir)
	if err != nil {
		return err
	}
	notaryConn, err := n.as(ctx, auth.RoleProjections)
	if err != nil {
		return err
	}
	if _, _, err := notary.New(notaryConn.store, key).Checkpoint(ctx); err != nil {
		return fmt.Errorf("notary checkpoint: %w", err)
	}
	for _, t := range []time.Time{market.FreezeStarts.Add(-time.Second), market.FreezeStarts} {
		s, err := snapshotAndVerify(ctx, n, rep.DataDir, t, key)
		if err != nil {
			return err
		}
		rep.Snapshots = append(rep.Snapshots, s)
	}
	return nil
}

func countEvents(ctx context.Context, n *node, rep *demoReport) error {
	for _, err := range n.store.Read(ctx, events.Query{}) {
		if err != nil {
			return err
		}
		rep.Events++
	}
	return nil
}

// summarize folds per-party accounts into one row per account kind and
// currency, so the report stays short; the bundles hold every account.
func summarize(rows []balanceRow) []balanceRow {
	type k struct{ kind, cur string }
	sum := map[k]int64{}
	var order []k
	for _, r := range rows {
		kind := r.Account
		for i := 0; i < len(kind); i++ {
			if kind[i] == ':' {
				kind = kind[:i] + ":*"
				break
			}
		}
		key := k{kind, r.Currency}
		if _, ok := sum[key]; !ok {
			order = append(order, key)
		}
		sum[key] += r.AmountMinor
	}
	out := make([]balanceRow, 0, len(order))
	for _, key := range order {
		out = append(out, balanceRow{Account: key.kind, Currency: key.cur, AmountMinor: sum[key]})
	}
	return out
}

func snapshotAndVerify(ctx context.Context, n *node, dir string, t time.Time, key ed25519.PrivateKey) (snapshotReport, error) {
	s := snapshotReport{AsOf: t.Format(time.RFC3339)}
	if err := os.MkdirAll(filepath.Join(dir, "snapshots"), 0o700); err != nil {
		return s, err
	}
	s.Bundle = filepath.Join(dir, "snapshots", "snapshot-"+t.Format("20060102T150405Z0700")+".zip")
	f, err := os.Create(s.Bundle)
	if err != nil {
		return s, err
	}
	defer f.Close()
	if err := bundle.Write(ctx, n.store, f, projections.AtBusiness(t), key, bundle.WithTimeZone(defaultZone())); err != nil {
		return s, fmt.Errorf("snapshot as of %s: %w", s.AsOf, err)
	}
	info, err := f.Stat()
	if err != nil {
		return s, err
	}
	pub := key.Public().(ed25519.PublicKey)
	rep, err := bundle.VerifyAgainst(ctx, n.store, f, info.Size(), pub)
	s.Position, s.Root = rep.Manifest.Position, rep.Manifest.MerkleRoot
	s.Verified = err == nil && rep.OK()
	if err != nil {
		s.Detail = err.Error()
	}
	return s, nil
}
