// Command judge reads a live ledger's raw log and judges it with package
// judge, which shares no code with the ledger: it prints a summary and every
// problem, and exits 0 when the log passes every check, 1 when it does not
// and 2 when the log cannot be read.
//
//	go run ./judge/cmd/judge -url nats://127.0.0.1:4222 -creds DATA/credentials/investigator.creds
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/marketledger/ledger/testkit/judge"
	"github.com/nats-io/nats.go"
)

func main() {
	url := flag.String("url", nats.DefaultURL, "NATS server URL")
	creds := flag.String("creds", "", "a .creds file to connect with (the investigator's reads the log and nothing else)")
	stream := flag.String("stream", judge.StreamName, "stream that holds the ledger")
	asJSON := flag.Bool("json", false, "print the whole report as JSON")
	timeout := flag.Duration("timeout", 10*time.Minute, "bound on the whole read")
	flag.Parse()
	os.Exit(run(*url, *creds, *stream, *asJSON, *timeout))
}

func run(url, creds, stream string, asJSON bool, timeout time.Duration) int {
	var opts []nats.Option
	if creds != "" {
		opts = append(opts, nats.UserCredentials(creds))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		fmt.Fprintf(os.Stderr, "judge: connect to %s: %v\n", url, err)
		return 2
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	r, err := judge.CheckConn(ctx, nc, stream)
	if err != nil {
		fmt.Fprintf(os.Stderr, "judge: %v\n", err)
		return 2
	}
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(r); err != nil {
			fmt.Fprintf(os.Stderr, "judge: %v\n", err)
			return 2
		}
	} else {
		fmt.Print(r.Summary())
		for _, p := range r.Problems() {
			fmt.Println(p)
		}
	}
	if !r.OK() {
		return 1
	}
	return 0
}
