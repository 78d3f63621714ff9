package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/marketledger/ledger/adapters/eventstoredb"
	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/node/auth"
)

func newMirrorCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "mirror",
		Short: "Copy the ledger's log into another event store",
	}
	c.AddCommand(newMirrorESDBCmd(g))
	return c
}

func newMirrorESDBCmd(g *globals) *cobra.Command {
	var url, checkpointStream string
	var to uint64
	var every int
	c := &cobra.Command{
		Use:   "esdb --url esdb://HOST:2113",
		Short: "Copy the LEDGER log into EventStoreDB / KurrentDB, in order, resumable and idempotent",
		Long: `mirror esdb copies the log into EventStoreDB, one stream per aggregate, with the
CloudEvents attributes and the ledger's extensions in the event metadata. It
checkpoints as it goes and resumes from its checkpoint; a restart never
writes an event twice. It refuses a destination stream that holds events the
ledger did not write. See docs/eventstoredb.md.`,
		Example: `  ledger mirror esdb --data ./d --url "esdb://127.0.0.1:2113?tls=false"`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if url == "" {
				return usagef("--url is required: the EventStoreDB connection string")
			}
			ctx := cmd.Context()
			n, err := openExisting(ctx, g, auth.RoleInvestigator)
			if err != nil {
				return err
			}
			defer n.Close()
			dst, err := eventstoredb.Open(ctx, url, eventstoredb.WithTypeChecker(contracts.Checker{}))
			if err != nil {
				return err
			}
			start := time.Now()
			p, err := eventstoredb.Mirror(ctx, n.store, dst, eventstoredb.MirrorOptions{To: to, CheckpointEvery: every, CheckpointStream: checkpointStream})
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			return printJSONOr(w, g.json, p, func() {
				fmt.Fprintf(w, "mirrored %d events up to position %d in %s\n", p.Copied, p.Position, time.Since(start).Round(time.Millisecond))
			})
		},
	}
	c.Flags().StringVar(&url, "url", "", "EventStoreDB connection string (esdb://...)")
	c.Flags().Uint64Var(&to, "to", 0, "last ledger position to copy (default: the head at start)")
	c.Flags().IntVar(&every, "checkpoint-every", 256, "events between checkpoints")
	c.Flags().StringVar(&checkpointStream, "checkpoint-stream", "ledger-mirror-checkpoint", "EventStoreDB stream holding the mirror's checkpoint")
	return c
}
