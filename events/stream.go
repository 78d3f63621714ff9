package events

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// StreamName is the one stream that holds the whole ledger.
const StreamName = "LEDGER"

// Stream metadata that marks a stream as this ledger's. A stream named
// LEDGER without it belongs to someone else and is never written to.
const (
	MetaFormat      = "marketledger.format"
	MetaFormatValue = "1"
)

// DuplicateWindow is the stream's Nats-Msg-Id dedupe window. Idempotency keys
// of commands do not depend on it: they are kept in the log for good.
const DuplicateWindow = 2 * time.Minute

// StreamConfig returns the settings of the LEDGER stream for the given
// replica count (1 on the embedded node, 3 on a cluster).
func StreamConfig(replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:               StreamName,
		Description:        "marketplace transaction ledger: every event of every context, in one global order",
		Subjects:           []string{SubjectPrefix + ">"},
		Retention:          jetstream.LimitsPolicy,
		MaxConsumers:       -1,
		MaxMsgs:            -1,
		MaxBytes:           -1,
		MaxAge:             0,
		MaxMsgsPerSubject:  -1,
		MaxMsgSize:         -1,
		Discard:            jetstream.DiscardNew,
		Storage:            jetstream.FileStorage,
		Replicas:           replicas,
		Duplicates:         DuplicateWindow,
		DenyDelete:         true,
		DenyPurge:          true,
		AllowRollup:        false,
		AllowDirect:        true,
		AllowAtomicPublish: true,
		Compression:        jetstream.NoCompression,
		Metadata:           map[string]string{MetaFormat: MetaFormatValue},
	}
}

// EnsureStream creates the LEDGER stream if it does not exist, or checks an
// existing one and refuses to use it when its settings weaken the ledger's
// guarantees or it was not created by this ledger.
func EnsureStream(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.Stream, error) {
	const op = "events.EnsureStream"
	s, err := js.Stream(ctx, StreamName)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = js.CreateStream(ctx, StreamConfig(replicas))
		if err != nil {
			return nil, &Error{Op: op, Kind: KindUnavailable, Rule: "cannot create stream " + StreamName, Err: err}
		}
		return s, nil
	}
	if err != nil {
		return nil, &Error{Op: op, Kind: KindUnavailable, Rule: "cannot read stream " + StreamName, Err: err}
	}
	if err := CheckStreamConfig(s.CachedInfo().Config); err != nil {
		return nil, withOp(op, err)
	}
	return s, nil
}

// CheckStreamConfig reports every setting of cfg that weakens the ledger's
// guarantees, in one error.
func CheckStreamConfig(cfg jetstream.StreamConfig) error {
	var bad []string
	add := func(cond bool, msg string) {
		if cond {
			bad = append(bad, msg)
		}
	}
	add(cfg.Metadata[MetaFormat] != MetaFormatValue, fmt.Sprintf("metadata %s=%s missing: the stream was not created by this ledger", MetaFormat, MetaFormatValue))
	add(len(cfg.Subjects) != 1 || cfg.Subjects[0] != SubjectPrefix+">", fmt.Sprintf("subjects must be exactly [%s>], got %v", SubjectPrefix, cfg.Subjects))
	add(cfg.Storage != jetstream.FileStorage, "storage must be file")
	add(cfg.Retention != jetstream.LimitsPolicy, "retention must be limits (nothing is ever removed)")
	add(!cfg.DenyDelete, "deny_delete must be true")
	add(!cfg.DenyPurge, "deny_purge must be true")
	add(cfg.AllowRollup, "allow_rollup_hdrs must be false")
	add(!cfg.AllowAtomicPublish, "allow_atomic must be true")
	add(!cfg.AllowDirect, "allow_direct must be true")
	add(cfg.Discard != jetstream.DiscardNew, "discard must be new (with discard old, any limit drops the oldest events)")
	add(cfg.MaxMsgs > 0, "max_msgs must be unlimited")
	add(cfg.MaxBytes > 0, "max_bytes must be unlimited")
	add(cfg.MaxAge > 0, "max_age must be unlimited")
	add(cfg.MaxMsgsPerSubject > 0, "max_msgs_per_subject must be unlimited")
	add(cfg.AllowMsgTTL, "allow_msg_ttl must be false (messages would expire)")
	add(cfg.SubjectDeleteMarkerTTL > 0, "subject_delete_marker_ttl must be unset")
	add(cfg.PersistMode == jetstream.AsyncPersistMode, "persist_mode must be default (async persistence loses acknowledged writes)")
	add(cfg.Sealed, "the stream is sealed")
	add(cfg.Mirror != nil || len(cfg.Sources) > 0, "the stream must not be a mirror or have sources")
	add(cfg.SubjectTransform != nil, "subject_transform must be unset")
	add(cfg.NoAck, "no_ack must be false")
	if len(bad) == 0 {
		return nil
	}
	return &Error{Kind: KindInvalid, Field: "stream " + StreamName,
		Rule: "settings weaken the ledger's guarantees: " + strings.Join(bad, "; ")}
}
