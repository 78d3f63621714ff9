package main

import (
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/marketledger/ledger/projections/notary"
)

func newNotaryCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "notary",
		Short: "The notary's signing key",
	}
	c.AddCommand(&cobra.Command{
		Use:   "key",
		Short: "Print the notary's public key in hex, the form 'ledger verify --key' takes",
		Long: `key prints the public half of the notary's Ed25519 key (DATA/notary/ed25519.pub)
in hex, the form 'ledger verify --key' takes. Hand it to regulators out of
band: a bundle verified against it was signed by this ledger. It reads the
file only; it starts no server and creates no key.`,
		Example: `  ledger verify s.zip --key "$(ledger notary key --data ./d)"`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pub, err := notaryPublicKey(g.dataDir)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			out := struct {
				PublicKey string `json:"public_key"`
				KeyID     string `json:"key_id"`
			}{hex.EncodeToString(pub), notary.KeyID(pub)}
			return printJSONOr(w, g.json, out, func() { fmt.Fprintln(w, out.PublicKey) })
		},
	})
	return c
}

// notaryPublicKey reads the notary's public key kept in dataDir.
func notaryPublicKey(dataDir string) (ed25519.PublicKey, error) {
	path := filepath.Join(dataDir, "notary", "ed25519.pub")
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, usagef("--data %s: no notary key in this directory (ledger serve, demo and snapshot create it on first use)", dataDir)
	}
	if err != nil {
		return nil, err
	}
	if len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%s: %d bytes, an Ed25519 public key has %d", path, len(b), ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(b), nil
}
