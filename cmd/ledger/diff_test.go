package main

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/marketledger/ledger/projections/models"
)

func TestDiffTablesFindsAddedRemovedAndChangedRows(t *testing.T) {
	before := models.Table{Columns: []string{"id", "stock"}, Rows: [][]string{{"a", "1"}, {"b", "2"}, {"c", "3"}}}
	after := models.Table{Columns: []string{"id", "stock"}, Rows: [][]string{{"a", "1"}, {"b", "5"}, {"d", "4"}}}
	got := diffTables("catalogue", before, after)
	cols := []string{"id", "stock"}
	want := []rowChange{
		{Model: "catalogue", Change: "changed", Key: "b", Columns: cols, Changed: []string{"stock"}, Before: []string{"b", "2"}, After: []string{"b", "5"}},
		{Model: "catalogue", Change: "added", Key: "d", Columns: cols, After: []string{"d", "4"}},
		{Model: "catalogue", Change: "removed", Key: "c", Columns: cols, Before: []string{"c", "3"}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("diffTables (-want +got):\n%s", diff)
	}
}
