package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/marketledger/ledger/node/auth"
)

func newCredentialsCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "credentials",
		Short: "Create the NATS users' credentials and print a cluster's matching configuration",
		Long: `The ledger's NATS users are one user per role (listing, order, payment,
policy, projections, investigator, operator), each allowed only the subjects
its work needs, and one per team that follows the log (subscriber). Each has
a standard .creds file in DATA/credentials: its user JWT, signed by the
ledger's account key and carrying its permissions, and its seed. The NATS
server runs in operator mode: it trusts the operator key that signs the
ledger's account and admits every user JWT the account signed.

The embedded server creates the keys and files on first start; for an
existing cluster, create them with 'credentials init', include the output
of 'credentials server-config' in every server's configuration, and run
'ledger serve --nats URL --creds DATA/credentials'. See docs/operations.md.`,
		Args: cobra.NoArgs,
	}
	var url string
	init := &cobra.Command{
		Use:   "init",
		Short: "Create the users' keys and .creds files in DATA/credentials (kept if present) and their NATS contexts, and list them",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			set, err := auth.Ensure(g.dataDir)
			if err != nil {
				return usagef("%v", err)
			}
			if err := set.WriteCredentials(url); err != nil {
				return err
			}
			type row struct {
				Role    string `json:"role"`
				Nkey    string `json:"nkey"`
				Seed    string `json:"seed_file"`
				Creds   string `json:"creds_file"`
				Context string `json:"context_file"`
			}
			var rows []row
			for _, role := range auth.Roles() {
				u, _ := set.User(role)
				rows = append(rows, row{role, u.Nkey, set.SeedFile(role), set.CredsFile(role), set.ContextFile(role)})
			}
			w := cmd.OutOrStdout()
			return printJSONOr(w, g.json, rows, func() {
				for _, r := range rows {
					fmt.Fprintf(w, "%-13s %s  %s\n", r.Role, r.Nkey, r.Creds)
				}
			})
		},
	}
	init.Flags().StringVar(&url, "url", "nats://127.0.0.1:4222", "NATS server URL the NATS contexts name")
	var team string
	var subs []string
	var subURL string
	sub := &cobra.Command{
		Use:   "subscriber",
		Short: "Create (or update) the least-privileged NATS user of a team that follows the log with the subscriber SDK",
		Long: `A subscriber user may read the log and run only its own subscriptions: the
durable consumers sub-<name> on LEDGER, its parked events parked.<name>.> in
LEDGER_PARKED and its dedupe buckets sub-dedupe-<name>; nothing else (no
append, no other team's consumers). Each --subscription must be the team's
name or start with "<team>-" (NATS permissions match whole subject tokens,
so every name is granted exactly); without one the team's name is its one
subscription. Running the command again with other names keeps the key and
replaces the names.

It writes DATA/credentials/subscribers/<team>.nk (the seed),
<team>.creds (the standard .creds file: a user JWT signed by the ledger's
account key, and the seed) and <team>.context.json (a NATS context: --url
and the .creds file), and adds the user to auth.json. A running server
admits it at once: it checks the JWT against the account. Re-minting with
fewer names revokes the team's older JWT from the next start of
'ledger serve' (on a cluster: print 'credentials server-config' again and
reload the servers). Hand the .creds file to the team: see
docs/subscriber.md.`,
		Example: `  ledger credentials subscriber --data ./data --team emails --subscription emails-orders
  NATS_URL=nats://127.0.0.1:4222 nats --creds ./data/credentials/subscribers/emails.creds stream info LEDGER`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if team == "" {
				return usagef("--team: required (letters, digits, '-' or '_')")
			}
			s, err := auth.MintSubscriber(g.dataDir, team, subs, subURL)
			if err != nil {
				return usagef("--team, --subscription: %v", err)
			}
			w := cmd.OutOrStdout()
			return printJSONOr(w, g.json, s, func() {
				fmt.Fprintf(w, "team          %s\nsubscriptions %s\nnkey          %s\ncreds         %s\ncontext       %s\n",
					s.Team, strings.Join(s.Subscriptions, ", "), s.Nkey, s.CredsFile, s.ContextFile)
			})
		},
	}
	sub.Flags().StringVar(&team, "team", "", "the team the user is for (letters, digits, '-' or '_')")
	sub.Flags().StringSliceVar(&subs, "subscription", nil, "a subscription name the team may run (repeatable; default: the team's name)")
	sub.Flags().StringVar(&subURL, "url", "nats://127.0.0.1:4222", "NATS server URL the NATS context names")
	conf := &cobra.Command{
		Use:   "server-config",
		Short: "Print the nats-server operator, system account and resolver configuration that admits the users",
		Long: `Prints what every server of a cluster includes so that it admits the
ledger's .creds files: the operator JWT, the system account, and a memory
resolver preloaded with the ledger's account (JetStream on) and the system
account. Only JWTs and public keys: the keys stay in DATA/credentials.
Print it again and reload the servers after re-minting a subscriber with
fewer subscriptions (the account JWT revokes the older JWT).`,
		Example: `  ledger credentials server-config --data ./data > ledger-accounts.conf
  # in nats-server.conf:  include ./ledger-accounts.conf`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			set, err := auth.Ensure(g.dataDir)
			if err != nil {
				return usagef("%v", err)
			}
			return set.WriteServerConfig(cmd.OutOrStdout())
		},
	}
	var out, seed string
	glass := &cobra.Command{
		Use:   "break-glass",
		Short: "Create a break-glass administrator's seed outside the data directory, or its .creds file for a running serve",
		Long: `No credential in DATA/credentials may change or delete the LEDGER stream.
Maintenance that must (a restore, a change of settings) uses a break-glass
administrator: create its seed with this command in a file outside the data
directory (kept offline, with whoever may do maintenance), then start
'ledger serve --break-glass-admin <public key>' for the maintenance only.
That serve signs the administrator's user JWT with a key that lives in its
memory only (so the JWT is worth nothing once it stops) and records the JWT
in DATA/serve.json; with --seed, this command joins that JWT and the seed
into a .creds file at --out, outside the data directory. Nothing secret of
it is written to the data directory. See docs/operations.md.`,
		Example: `  ledger credentials break-glass --data ./data --out /secure/ledger-admin.nk
  ledger serve --data ./data --break-glass-admin UD...   # for the maintenance only
  ledger credentials break-glass --data ./data --seed /secure/ledger-admin.nk --out /secure/ledger-admin.creds
  nats --creds /secure/ledger-admin.creds stream info LEDGER`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usagef("--out: required (a file outside the data directory)")
			}
			w := cmd.OutOrStdout()
			if seed != "" {
				info, err := readServeInfo(g.dataDir)
				if err != nil || info.BreakGlassJWT == "" {
					return usagef("--seed: no 'ledger serve --break-glass-admin' runs on %s", g.dataDir)
				}
				if err := auth.WriteBreakGlassCreds(out, g.dataDir, info.BreakGlassJWT, seed); err != nil {
					return usagef("--seed, --out: %v", err)
				}
				return printJSONOr(w, g.json, map[string]string{"creds_file": out}, func() { fmt.Fprintln(w, out) })
			}
			pub, err := auth.NewBreakGlassSeed(out, g.dataDir)
			if err != nil {
				return usagef("--out: %v", err)
			}
			return printJSONOr(w, g.json, map[string]string{"nkey": pub, "seed_file": out}, func() {
				fmt.Fprintf(w, "%s  %s\n", pub, out)
			})
		},
	}
	glass.Flags().StringVar(&out, "out", "", "file to write the new seed (or, with --seed, the .creds file) to (mode 0600; must not exist and must be outside the data directory)")
	glass.Flags().StringVar(&seed, "seed", "", "the administrator's seed file: write a .creds file for the 'ledger serve --break-glass-admin' running on --data")
	c.AddCommand(init, sub, conf, glass)
	return c
}
