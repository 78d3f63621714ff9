package service

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/runtime/command"
)

// Run runs one validated command on aggregate id under idempotency key key,
// decided under the policy and fenced when fenced is true: each service's
// load-decide-append around its decider.
type Run[S any] func(ctx context.Context, id, key string, cmd any, fenced bool) (command.Result[S], error)

// Dispatch runs a command contracts.DecodeCommand decoded and validated on
// the aggregate and under the key its contract names, fenced as its
// contract says (contracts.CommandSpec.Fenced), and returns the aggregate's
// id with the result. A command of another service is refused.
func Dispatch[S any](ctx context.Context, svc string, run Run[S], cmd any) (string, command.Result[S], error) {
	tg, ok := contracts.TargetOf(cmd)
	if !ok || tg.Spec.Service != svc {
		return "", command.Result[S]{}, &events.Error{Op: svc + ".dispatch", Kind: events.KindInvalid,
			Rule: fmt.Sprintf("%T is not a %s command", cmd, svc)}
	}
	res, err := run(ctx, tg.AggregateID, tg.IdempotencyKey, cmd, tg.Spec.Fenced)
	return tg.AggregateID, res, err
}

// Exec validates a command given as a Go value against its contract, as
// the service's JSON endpoint does, and dispatches it: a caller in Go gets
// the same refusals as one over NATS or HTTP.
func Exec[S any](ctx context.Context, svc string, run Run[S], cmd any) (command.Result[S], error) {
	name, ok := contracts.CommandName(cmd)
	if !ok {
		return command.Result[S]{}, &events.Error{Op: svc + ".dispatch", Kind: events.KindInvalid,
			Rule: fmt.Sprintf("%T is not a command", cmd)}
	}
	body, err := json.Marshal(cmd)
	if err != nil {
		return command.Result[S]{}, err
	}
	if err := contracts.ValidateCommand(name, body); err != nil {
		return command.Result[S]{}, err
	}
	_, res, err := Dispatch(ctx, svc, run, cmd)
	return res, err
}

// Option configures a service's Serve.
type Option func(*Config)

// WithPrefix serves on prefix instead of the service's default subject
// prefix (tests serve outside the LEDGER stream's subjects).
func WithPrefix(prefix string) Option { return func(c *Config) { c.Prefix = prefix } }

// WithObserver makes Serve tell observe of every command it answers (its
// name, when it was taken up, its error), for metrics.
func WithObserver(observe func(command string, start time.Time, err error)) Option {
	return func(c *Config) { c.Observe = observe }
}
