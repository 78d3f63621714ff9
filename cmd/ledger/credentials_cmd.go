package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/marketledger/ledger/node/auth"
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
	var out string
	glass := &cobra.Command{
		Use:   "break-glass",
		Short: "Create a break-glass administrator's seed outside the data directory and print its public key",
		Long: `No credential in DATA/credentials may change or delete the LEDGER stream.
Maintenance that must (a restore, a change of settings) uses a break-glass
administrator: create its seed with this command in a file outside the data
directory (kept offline, with whoever may do maintenance), then start
'ledger serve --break-glass-admin <public key>' for the maintenance only.
Nothing of it is written to the data directory. See docs/operations.md.`,
		Example: `  ledger credentials break-glass --data ./data --out /secure/ledger-admin.nk
  ledger serve --data ./data --break-glass-admin UD...   # for the maintenance only
  nats --nkey /secure/ledger-admin.nk stream info LEDGER`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usagef("--out: required (a file outside the data directory)")
			}
			pub, err := auth.NewBreakGlassSeed(out, g.dataDir)
			if err != nil {
				return usagef("--out: %v", err)
			}
			w := cmd.OutOrStdout()
			return printJSONOr(w, g.json, map[string]string{"nkey": pub, "seed_file": out}, func() {
				fmt.Fprintf(w, "%s  %s\n", pub, out)
			})
		},
	}
	glass.Flags().StringVar(&out, "out", "", "file to write the new seed to (mode 0600; must not exist and must be outside the data directory)")
	c.AddCommand(init, conf, glass)
	return c
}
