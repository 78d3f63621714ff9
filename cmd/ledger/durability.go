package main

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/marketledger/ledger/events"
)

// durabilityAsk bounds the stream-info request of the durability report.
const durabilityAsk = 5 * time.Second

// durability is what `ledger serve` can say about how durable the log is,
// and what it cannot see. The servers' fsync setting (sync_interval) is
// part of their configuration, which a client of the ledger's account
// cannot read: it shows only in a server's varz, answered to the system
// account. So on an embedded server the setting is known (this process
// chose it), and with --nats it is reported as unverified, never assumed.
type durability struct {
	// Fsync is "always" or "lazy" when this process configured the server,
	// "unverified" when it did not.
	Fsync string
	// Storage and Replicas are the LEDGER stream's settings.
	Storage  string
	Replicas int
	// Current counts the replicas the stream's leader reports current,
	// itself included (0 on a stream without cluster information).
	Current int
	// Leader is the server leading the stream ("" on one node).
	Leader string
	// Problems lists what falls short of the ledger's durability rules.
	Problems []string
}

// checkDurability reads the LEDGER stream's settings and cluster state.
// embedded says whether this process started the server; lazy whether it
// turned fsync off.
func checkDurability(ctx context.Context, js jetstream.JetStream, embedded, lazy bool, wantReplicas int) (durability, error) {
	d := durability{Fsync: "unverified"}
	if embedded {
		d.Fsync = "always"
		if lazy {
			d.Fsync = "lazy"
			d.Problems = append(d.Problems, "fsync is lazy (--unsafe-lazy-fsync): acknowledged events can be lost on a crash")
		}
	}
	ctx, cancel := context.WithTimeout(ctx, durabilityAsk)
	defer cancel()
	s, err := js.Stream(ctx, events.StreamName)
	if err != nil {
		return d, fmt.Errorf("stream %s: %w", events.StreamName, err)
	}
	info := s.CachedInfo()
	d.Storage, d.Replicas = info.Config.Storage.String(), info.Config.Replicas
	if info.Config.Storage != jetstream.FileStorage {
		d.Problems = append(d.Problems, "stream "+events.StreamName+" is kept in memory, not in files")
	}
	if wantReplicas > 0 && d.Replicas < wantReplicas {
		d.Problems = append(d.Problems, fmt.Sprintf("stream %s has %d replicas, --replicas asks for %d (an existing stream keeps its settings)",
			events.StreamName, d.Replicas, wantReplicas))
	}
	if c := info.Cluster; c != nil {
		d.Leader = c.Leader
		if c.Leader != "" {
			d.Current = 1
		}
		for _, p := range c.Replicas {
			if p.Current && !p.Offline {
				d.Current++
			}
		}
	}
	if d.Replicas > 1 && d.Current < d.Replicas {
		d.Problems = append(d.Problems, fmt.Sprintf("%d of %d replicas of stream %s are current", d.Current, d.Replicas, events.StreamName))
	}
	return d, nil
}

// fields returns d as log fields.
func (d durability) fields() []zap.Field {
	return []zap.Field{zap.String("fsync", d.Fsync), zap.String("storage", d.Storage), zap.Int("replicas", d.Replicas),
		zap.Int("replicas_current", d.Current), zap.String("stream_leader", d.Leader)}
}

// logDurability logs what is known of the log's durability, and warns of
// each shortfall and of what cannot be checked from here.
func logDurability(log *zap.Logger, d durability) {
	log.Info("log durability", d.fields()...)
	for _, p := range d.Problems {
		log.Warn("log durability: " + p)
	}
	if d.Fsync == "unverified" {
		log.Warn("log durability: the NATS servers' fsync setting cannot be read by the ledger's users; " +
			"check that every server's jetstream block says sync_interval: always (nats server req varz with a system-account user, docs/operations.md)")
	}
}
