package subscriber

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketledger/ledger/events"
)

// permissionPoll is how often a guarded call looks at the connection's last
// error. The server answers a publish the user may not make with an -ERR
// line and nothing else; nats.go records it as the connection's last error
// and reports it to the asynchronous error handler, which belongs to the
// application, and the request itself waits for its timeout (5 s for the
// JetStream API by default). Looking every few milliseconds turns that wait
// into an answer within a round trip.
const permissionPoll = 5 * time.Millisecond

// guard runs call and ends it at once with a KindPermission error when,
// while it runs, the server refuses a publish on the connection to one of
// the subjects starting with one of prefixes (for example
// "$JS.API.CONSUMER.CREATE.LEDGER."). Other errors of call are returned as
// they are.
func guard(ctx context.Context, js jetstream.JetStream, op string, prefixes []string, call func(ctx context.Context) error) error {
	nc := js.Conn()
	if nc == nil {
		return call(ctx)
	}
	before := nc.LastError()
	cctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	done := make(chan error, 1)
	go func() { done <- call(cctx) }()
	tick := time.NewTicker(permissionPoll)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if perr, ok := refusal(nc, before, op, prefixes); ok {
				return perr
			}
			return err
		case <-tick.C:
			if perr, ok := refusal(nc, before, op, prefixes); ok {
				cancel(perr)
				<-done
				return perr
			}
		}
	}
}

// refusal reports a permission violation recorded on nc since before, on a
// publish to a subject under one of prefixes.
func refusal(nc *nats.Conn, before error, op string, prefixes []string) (error, bool) {
	err := nc.LastError()
	if err == nil || err == before || !errors.Is(err, nats.ErrPermissionViolation) {
		return nil, false
	}
	msg := err.Error()
	_, subject, ok := strings.Cut(msg, `Publish to "`)
	if !ok {
		return nil, false
	}
	subject, _, _ = strings.Cut(subject, `"`)
	for _, p := range prefixes {
		if strings.HasPrefix(subject, p) {
			return &events.Error{Op: op, Kind: events.KindPermission, Field: subject,
				Rule: "this NATS user may not publish there (see the subscriber role, docs/subscriber.md)", Err: err}, true
		}
	}
	return nil, false
}
