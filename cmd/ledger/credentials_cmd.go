package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/marketledger/ledger/events/embedded/auth"
)

func newCredentialsCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "credentials",
		Short: "Create the NATS users' credentials and print a cluster's matching configuration",
		Long: `The ledger's NATS users are one nkey user per role (listing, order, payment,
policy, projections, investigator, operator), each allowed only the subjects
its work needs. The embedded server creates their seeds in DATA/credentials on
first start; for an existing cluster, create them with 'credentials init',
include the output of 'credentials server-config' in every server's
configuration, and run 'ledger serve --nats URL --creds DATA/credentials'.
See docs/operations.md.`,
		Args: cobra.NoArgs,
	}
	init := &cobra.Command{
		Use:   "init",
		Short: "Create the users' seeds in DATA/credentials (kept if present) and list them",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			set, err := auth.Ensure(g.dataDir)
			if err != nil {
				return usagef("%v", err)
			}
			type row struct {
				Role string `json:"role"`
				Nkey string `json:"nkey"`
				Seed string `json:"seed_file"`
			}
			var rows []row
			for _, u := range set.Users() {
				rows = append(rows, row{u.Role, u.Nkey, set.SeedFile(u.Role)})
			}
			w := cmd.OutOrStdout()
			return printJSONOr(w, g.json, rows, func() {
				for _, r := range rows {
					fmt.Fprintf(w, "%-13s %s  %s\n", r.Role, r.Nkey, r.Seed)
				}
			})
		},
	}
	var account string
	conf := &cobra.Command{
		Use:   "server-config",
		Short: "Print the nats-server accounts block with the users' public keys and permissions",
		Example: `  ledger credentials server-config --data ./data --account LEDGER > ledger-accounts.conf
  # in nats-server.conf:  include ./ledger-accounts.conf`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			set, err := auth.Ensure(g.dataDir)
			if err != nil {
				return usagef("%v", err)
			}
			if err := set.WriteServerConfig(cmd.OutOrStdout(), account); err != nil {
				return usagef("%v", err)
			}
			return nil
		},
	}
	conf.Flags().StringVar(&account, "account", "LEDGER", "NATS account the users belong to")
	c.AddCommand(init, conf)
	return c
}
