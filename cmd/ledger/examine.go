package main

import (
	"context"
	"io"

	"github.com/marketledger/ledger/events"
)

// examine reads the log the day left and fills the report's audit part.
func examine(ctx context.Context, n *node, rep *demoReport, stderr io.Writer) error {
	var count uint64
	for _, err := range n.store.Read(ctx, events.Query{}) {
		if err != nil {
			return err
		}
		count++
	}
	rep.Events = count
	return nil
}
