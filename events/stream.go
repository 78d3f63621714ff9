package events

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
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
	// On a cluster several processes may start at once: the stream one of
	// them just created answers nothing until it has a leader.
	wctx, cancel := context.WithTimeout(ctx, LeaderWaitMax)
	defer cancel()
	s, err := WaitStreamLeader(wctx, js, StreamName)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if _, err = js.CreateStream(ctx, StreamConfig(replicas)); err != nil {
			return nil, &Error{Op: op, Kind: KindUnavailable, Rule: "cannot create stream " + StreamName, Err: err}
		}
		// Created (by this process or, at the same moment, by another):
		// the server that answers may not know the stream yet, so "not
		// found" now means "not yet".
		s, err = waitStreamLeader(wctx, js, StreamName, false)
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

// LeaderWaitMax bounds how long start-up waits for a stream (or a bucket's
// stream) to have a leader: an election on a healthy cluster takes well
// under a second, a new stream's first one a few seconds at most.
const LeaderWaitMax = 30 * time.Second

// leaderPoll is the pause between two asks for a stream's leader, and
// leaderAsk bounds one ask: a stream without a leader leaves its info
// request unanswered, so an ask that is not answered soon is asked again.
const (
	leaderPoll = 50 * time.Millisecond
	leaderAsk  = 1 * time.Second
)

// WaitStreamLeader waits, at most until ctx ends, until stream name exists
// and has a leader (always, on a single server), and returns it. A stream
// that does not exist is reported at once (jetstream.ErrStreamNotFound). On
// a cluster a stream just created, or whose leader was lost, answers no
// request until it elects one: without this wait the first request fails
// with "no responders" or a time-out. The error names the stream.
func WaitStreamLeader(ctx context.Context, js jetstream.JetStream, name string) (jetstream.Stream, error) {
	return waitStreamLeader(ctx, js, name, true)
}

// waitStreamLeader is WaitStreamLeader; with notFoundIsFinal false it also
// waits for a stream the cluster does not know yet.
func waitStreamLeader(ctx context.Context, js jetstream.JetStream, name string, notFoundIsFinal bool) (jetstream.Stream, error) {
	var last error
	for {
		actx, cancel := context.WithTimeout(ctx, leaderAsk)
		s, err := js.Stream(actx, name)
		cancel()
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound) && notFoundIsFinal:
			return nil, err
		case err == nil && hasLeader(s.CachedInfo()):
			return s, nil
		case err == nil:
			last = errors.New("no leader elected yet")
		case refusedInfo(js, name):
			return nil, &Error{Op: "events.WaitStreamLeader", Kind: KindPermission, Field: name,
				Rule: "this NATS user may not read stream " + name + " (its credentials are another role's?)", Err: err}
		default:
			last = err
		}
		select {
		case <-ctx.Done():
			return nil, &Error{Op: "events.WaitStreamLeader", Kind: KindUnavailable, Field: name,
				Rule: "stream " + name + " has no leader: on a cluster, a majority of its replicas must be up and routed to each other", Err: last}
		case <-time.After(leaderPoll):
		}
	}
}

// refusedInfo reports whether the server refused this connection's request
// for stream name's info: it answers a publish the user may not make with
// an error on the connection and nothing else, so the request itself only
// times out, and waiting for a leader would wait for nothing.
func refusedInfo(js jetstream.JetStream, name string) bool {
	nc := js.Conn()
	if nc == nil {
		return false
	}
	err := nc.LastError()
	return errors.Is(err, nats.ErrPermissionViolation) &&
		strings.Contains(err.Error(), `"$JS.API.STREAM.INFO.`+name+`"`)
}

// hasLeader reports whether a stream answered with a leader (a stream on a
// single server has no cluster information and is its own leader).
func hasLeader(info *jetstream.StreamInfo) bool {
	return info != nil && (info.Cluster == nil || info.Cluster.Leader != "")
}
