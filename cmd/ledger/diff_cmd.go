package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/marketledger/ledger/node/auth"
	"github.com/marketledger/ledger/projections"
	"github.com/marketledger/ledger/projections/models"
)

func newDiffCmd(g *globals) *cobra.Command {
	var at []string
	var clock string
	var picked []string
	c := &cobra.Command{
		Use:   "diff --at T1 --at T2",
		Short: "What changed in the read models between two instants: added, removed and changed rows",
		Long: `diff rebuilds the read models as of two instants (or positions) and prints
the rows added (+), removed (-) and changed (~, with the row it was), keyed
by each model's first column.

` + clockHelp,
		Example: `  ledger diff --data ./d --at 2023-10-04T16:59:59+07:00 --at 2023-10-04T17:30:00+07:00 --model catalogue`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(at) != 2 {
				return usagef("give exactly two --at instants (or positions), got %d", len(at))
			}
			a1, err := parseAsOfFlag("--at", clock, at[0])
			if err != nil {
				return err
			}
			a2, err := parseAsOfFlag("--at", clock, at[1])
			if err != nil {
				return err
			}
			names, err := modelNames(picked)
			if err != nil {
				return err
			}
			return runDiff(cmd.Context(), g, cmd.OutOrStdout(), a1, a2, names)
		},
	}
	c.Flags().StringArrayVar(&at, "at", nil, "an instant (RFC 3339 with offset) or a position; give it twice")
	addClockFlag(c, &clock)
	c.Flags().StringSliceVar(&picked, "model", nil, "read model to compare (default all): "+strings.Join(models.ModelNames(), ", "))
	return c
}

func modelNames(given []string) ([]string, error) {
	if len(given) == 0 {
		return models.ModelNames(), nil
	}
	for _, n := range given {
		if _, err := models.NewModel(n); err != nil {
			return nil, asOfError("--model", err)
		}
	}
	return given, nil
}

// rowChange is one row added, removed or changed between two states of a
// model; rows are keyed by their first column.
type rowChange struct {
	Model  string `json:"model"`
	Change string `json:"change"` // added, removed, changed
	Key    string `json:"key"`
	// Columns names the cells of Before and After, in order.
	Columns []string `json:"columns"`
	// Changed names the columns whose cells differ (a changed row only).
	Changed []string `json:"changed,omitempty"`
	Before  []string `json:"before,omitempty"`
	After   []string `json:"after,omitempty"`
}

func runDiff(ctx context.Context, g *globals, w io.Writer, a1, a2 projections.AsOf, names []string) error {
	n, err := openExisting(ctx, g, auth.RoleInvestigator)
	if err != nil {
		return err
	}
	defer n.Close()
	q := projections.NewQuerier(ctx, n.store)
	s1, err := q.State(ctx, a1, names...)
	if err != nil {
		return asOfError("--at", err)
	}
	s2, err := q.State(ctx, a2, names...)
	if err != nil {
		return asOfError("--at", err)
	}
	var changes []rowChange
	for _, name := range names {
		t1, t2 := models.InZone(s1.Model(name).Rows(), g.zone()), models.InZone(s2.Model(name).Rows(), g.zone())
		changes = append(changes, diffTables(name, t1, t2)...)
	}
	if g.json {
		enc := json.NewEncoder(w)
		for _, c := range changes {
			if err := enc.Encode(c); err != nil {
				return err
			}
		}
		return nil
	}
	fmt.Fprintf(w, "from %s (position %d) to %s (position %d): %d rows changed\n", a1, s1.Point.Position, a2, s2.Point.Position, len(changes))
	header := ""
	for _, c := range changes {
		if c.Model != header {
			// Each model's rows are named once, before its first change.
			fmt.Fprintf(w, "  %-18s %s\n", c.Model, strings.Join(c.Columns, " | "))
			header = c.Model
		}
		switch c.Change {
		case "added":
			fmt.Fprintf(w, "+ %-18s %s\n", c.Model, strings.Join(c.After, " | "))
		case "removed":
			fmt.Fprintf(w, "- %-18s %s\n", c.Model, strings.Join(c.Before, " | "))
		default:
			fmt.Fprintf(w, "~ %-18s %s\n    was %s\n    changed: %s\n", c.Model, strings.Join(c.After, " | "), strings.Join(c.Before, " | "),
				strings.Join(c.Changed, ", "))
		}
	}
	return nil
}

// diffTables compares two renderings of a model, row by row, keyed by the
// first column, in the order of the second table then the removed rows.
func diffTables(model string, before, after models.Table) []rowChange {
	old := map[string][]string{}
	for _, r := range before.Rows {
		old[rowKey(r)] = r
	}
	var out []rowChange
	seen := map[string]bool{}
	for _, r := range after.Rows {
		k := rowKey(r)
		seen[k] = true
		prev, ok := old[k]
		switch {
		case !ok:
			out = append(out, rowChange{Model: model, Change: "added", Key: k, Columns: after.Columns, After: r})
		case strings.Join(prev, "\x00") != strings.Join(r, "\x00"):
			out = append(out, rowChange{Model: model, Change: "changed", Key: k, Columns: after.Columns,
				Changed: changedColumns(after.Columns, prev, r), Before: prev, After: r})
		}
	}
	for _, r := range before.Rows {
		if k := rowKey(r); !seen[k] {
			out = append(out, rowChange{Model: model, Change: "removed", Key: k, Columns: before.Columns, Before: r})
		}
	}
	return out
}

// changedColumns names the columns whose cells differ between two
// renderings of one row.
func changedColumns(columns, before, after []string) []string {
	var out []string
	for i, c := range columns {
		var b, a string
		if i < len(before) {
			b = before[i]
		}
		if i < len(after) {
			a = after[i]
		}
		if a != b {
			out = append(out, c)
		}
	}
	return out
}

func rowKey(r []string) string {
	if len(r) == 0 {
		return ""
	}
	return r[0]
}

// writeModelAsOf writes one model as of an instant into dir as JSON and CSV
// (`ledger replay --model NAME --to T --out DIR`).
func writeModelAsOf(ctx context.Context, g *globals, w io.Writer, name string, at projections.AsOf, dir string) error {
	if _, err := models.NewModel(name); err != nil {
		return err
	}
	n, err := openExisting(ctx, g, auth.RoleInvestigator)
	if err != nil {
		return err
	}
	defer n.Close()
	st, err := projections.QueryAsOf(ctx, n.store, at, name)
	if err != nil {
		return err
	}
	m := st.Model(name)
	snap, err := m.Snapshot()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, name+".json"), snap, 0o644); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, name+".csv"))
	if err != nil {
		return err
	}
	defer f.Close()
	t := m.Rows()
	if err := models.WriteCSV(f, t, g.zone()); err != nil {
		return err
	}
	fmt.Fprintf(w, "wrote %s.json and %s.csv to %s: %s as of %s (position %d, %d rows)\n", name, name, dir, name, at, st.Point.Position, len(t.Rows))
	return nil
}
