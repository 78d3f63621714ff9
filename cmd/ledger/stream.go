package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/node/auth"
)

func newStreamCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "stream",
		Short: "Show the LEDGER stream's settings and state, and check its guarantees",
		Long: `stream shows the LEDGER stream's settings and state and checks that it keeps
the ledger's guarantees: settings that never drop a message, positions from 1
with none deleted, and a last position at or past everything the ledger
recorded of its log (the read models' checkpoints, the notary's last signed
checkpoint and DATA/ledger-watermark.json). A stream that holds less is
reported with what is missing, and the exit status is 1.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 30*time.Second)
			defer cancel()
			n, err := openExisting(ctx, g, auth.RoleInvestigator)
			if err != nil {
				return err
			}
			defer n.Close()
			s, err := n.js.Stream(ctx, events.StreamName)
			if err != nil {
				return err
			}
			info := s.CachedInfo()
			problem := checkHistory(ctx, n.js, g.dataDir)
			if g.json {
				if err := json.NewEncoder(cmd.OutOrStdout()).Encode(info); err != nil {
					return err
				}
				return problem
			}
			c, st := info.Config, info.State
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "stream %s: %d messages, positions %d..%d, %d bytes\n", c.Name, st.Msgs, st.FirstSeq, st.LastSeq, st.Bytes)
			fmt.Fprintf(w, "subjects %v, storage %s, replicas %d\n", c.Subjects, c.Storage, c.Replicas)
			fmt.Fprintf(w, "deny_delete %t, deny_purge %t, allow_rollup %t, allow_atomic %t, allow_direct %t, dedupe window %s\n",
				c.DenyDelete, c.DenyPurge, c.AllowRollup, c.AllowAtomicPublish, c.AllowDirect, c.Duplicates)
			if problem != nil {
				fmt.Fprintf(w, "guarantees: FAILED: %s\n", describe(problem))
				return problem
			}
			fmt.Fprintln(w, "guarantees: ok")
			return nil
		},
	}
}
