package main

import (
	"context"
	"crypto/ed25519"
	"path/filepath"
	"time"

	"github.com/marketledger/ledger/cmd/ledger/internal/console"
	"github.com/marketledger/ledger/cmd/ledger/internal/eventhttp"
	"github.com/marketledger/ledger/cmd/ledger/internal/httpauth"
	"github.com/marketledger/ledger/contracts"
)

// mountConsole serves the web console at /console: the day, the policy
// timeline, traces, the read models as of an instant and the bundles in
// DATA/snapshots verified with the notary's key, for a token of a reading
// role. Instants are shown in zone, the zone every command prints in
// (--tz, else $LEDGER_TZ, else WIB).
func (a *api) mountConsole(ctx context.Context, tokens httpauth.TokenLookup, dataDir string, key ed25519.PrivateKey, zone *time.Location) error {
	live := eventhttp.New(a.node.store, eventhttp.Options{KnownType: func(t string) bool {
		_, ok := contracts.CurrentVersion(t)
		return ok
	}})
	c, err := console.New(ctx, console.Config{Store: a.node.store, Tokens: tokens, Live: live,
		EventTypes: contracts.EventTypes(), BundleDir: filepath.Join(dataDir, "snapshots"),
		TrustedKey: key.Public().(ed25519.PublicKey), Zone: zone, Log: a.log.Named("console")})
	if err != nil {
		return err
	}
	a.mux.Handle("/console", c)
	a.mux.Handle("/console/", c)
	return nil
}
