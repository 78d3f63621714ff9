package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/marketledger/ledger/node/auth"
	"github.com/marketledger/ledger/node/embedded"
	"github.com/marketledger/ledger/projections"
	"github.com/marketledger/ledger/projections/bundle"
	"github.com/marketledger/ledger/projections/notary"
)

func newStateCmd(g *globals) *cobra.Command {
	var q rowQuery
	c := &cobra.Command{
		Use:   "state MODEL [KEY]",
		Short: "One row of a read model (or a page of rows) as of a position or an instant, from the as-of index",
		Long: `state answers from the as-of index (DATA/asof.db, built from the log on first
use and brought up to the log's head each time): the row of MODEL under KEY as
it was at --as-of, and the log position the answer reflects. Without KEY it
lists rows (--prefix, --after, --limit).

--clock position|recorded|business reads --as-of as a log position, a server
(recorded) instant, or a business instant (RFC 3339 with an offset);
--known-at P asks "as of business time T, as known at position P".
--proof adds the events that wrote the row with their inclusion proofs against
the newest signed notary checkpoint; save it with --json and check it offline
with 'ledger verify FILE --key HEX'.

While 'ledger serve' runs on the same data directory it holds the index: ask
GET /v1/models/MODEL/KEY instead.`,
		Example: `  ledger state orders o-42 --as-of 2023-10-04T16:59:59+07:00
  ledger state balances account/seller_payable:s-3 --clock position --as-of 1200 --proof --json > answer.json
  ledger state catalogue --prefix l-1 --limit 20`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			q.model = args[0]
			if len(args) == 2 {
				q.key = args[1]
			}
			return runState(cmd.Context(), g, cmd.OutOrStdout(), q)
		},
	}
	c.Flags().StringVar(&q.asOf, "as-of", "", "position or instant (RFC 3339 with offset); default: the log's head")
	c.Flags().StringVar(&q.clock, "clock", "", "clock of --as-of: position, recorded or business (default: position for a number, business for an instant)")
	c.Flags().StringVar(&q.knownAt, "known-at", "", "business clock: the last log position considered")
	c.Flags().BoolVar(&q.proof, "proof", false, "add the events that wrote the row, with inclusion proofs")
	c.Flags().StringVar(&q.prefix, "prefix", "", "list: keys starting with this")
	c.Flags().StringVar(&q.after, "after", "", "list: keys after this (the previous page's next)")
	c.Flags().IntVar(&q.limit, "limit", 100, "list: rows per page, 1 to 1000")
	return c
}

func runState(ctx context.Context, g *globals, w io.Writer, q rowQuery) error {
	n, err := openNode(ctx, g, nodeConfig{role: auth.RoleInvestigator, port: embedded.RandomPort})
	if err != nil {
		return err
	}
	defer n.Close()
	ix, err := projections.OpenIndex(filepath.Join(g.dataDir, indexFile))
	if err != nil {
		return fmt.Errorf("%w (while 'ledger serve' runs it holds the index: ask its GET /v1/models/%s instead)", err, q.model)
	}
	defer ix.Close()
	if err := ix.Build(ctx, n.store, 0); err != nil {
		return err
	}
	s := &asOfService{store: n.store, ix: ix, rq: projections.NewRowQuerier(ctx, ix, n.store), nt: notary.New(n.store, nil)}
	ans, err := s.answer(ctx, q)
	if err != nil {
		return err
	}
	return printJSONOr(w, g.json, ans, func() {
		fmt.Fprintf(w, "%s as of %s %s: position %d (%s)\n", ans.Model, ans.Clock, ans.AsOf, ans.Position, ans.Method)
		for _, r := range ans.Rows {
			fmt.Fprintf(w, "%s\t%s\n", r.Key, r.State)
		}
		if ans.Next != "" {
			fmt.Fprintf(w, "next page: --after %s\n", ans.Next)
		}
		if ans.Proof != nil {
			fmt.Fprintf(w, "proof: %d events in the tree of %d leaves signed by key %s (checkpoint at position %d)\n",
				len(ans.Proof.Events), ans.Proof.Checkpoint.TreeSize, ans.Proof.Checkpoint.KeyID, ans.Proof.CheckpointPosition)
		}
	})
}

// verifyRowAnswer checks a saved point answer (ledger state --proof
// --json, or GET /v1/models/M/K?proof=true) offline.
func verifyRowAnswer(w io.Writer, asJSON bool, path string, data []byte, trusted ed25519.PublicKey) error {
	var a bundle.RowAnswer
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&a); err != nil {
		return usagef("%s: neither a bundle nor a saved point answer: %v", path, err)
	}
	stateChecked, err := bundle.VerifyRow(&a, trusted)
	type report struct {
		OK      bool `json:"ok"`
		Trusted bool `json:"trusted"`
		// StateChecked: the row's state was recomputed from the proven
		// events (models whose rows depend on no other row).
		StateChecked bool   `json:"state_checked"`
		Model        string `json:"model"`
		Key          string `json:"key,omitempty"`
		Position     uint64 `json:"position"`
		Events       int    `json:"events"`
		Error        string `json:"error,omitempty"`
	}
	rep := report{OK: err == nil, Trusted: err == nil && trusted != nil, StateChecked: stateChecked, Model: a.Model, Position: a.Position}
	if len(a.Rows) == 1 {
		rep.Key = a.Rows[0].Key
	}
	if a.Proof != nil {
		rep.Events = len(a.Proof.Events)
	}
	if err != nil {
		rep.Error = err.Error()
	}
	if perr := printJSONOr(w, asJSON, rep, func() {
		switch {
		case err != nil:
			fmt.Fprintf(w, "FAIL %s: %v\n", path, err)
		default:
			fmt.Fprintf(w, "ok   %s %s as of position %d: %d events proven in the tree signed by key %s\n",
				a.Model, rep.Key, a.Position, rep.Events, a.Proof.Checkpoint.KeyID)
			if stateChecked {
				fmt.Fprintf(w, "ok   the state is the fold of the proven events\n")
			} else {
				fmt.Fprintf(w, "not checked: the state (a %s row depends on other rows; only its events are proven)\n", a.Model)
			}
		}
	}); perr != nil {
		return perr
	}
	if err != nil {
		return fmt.Errorf("%s: verification failed", path)
	}
	if trusted == nil {
		return untrustedError{path}
	}
	return nil
}
