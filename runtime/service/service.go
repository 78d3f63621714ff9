// Package service serves a service's commands over NATS request-reply with
// the nats.go micro package, the same way for every service: one endpoint
// per command on svc.ledger.<context>.<verb>, bounded concurrency, replies in
// JSON, and refusals as micro errors whose body is an RFC 9457 problem with
// the offending field and the rule it broke.
//
// The package never decides anything; it only carries commands to a
// service's handler and its answers back.
package service

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/runtime/tracing"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// SubjectPrefix is where every service answers: svc.ledger.<context>. It is
// outside ledger.>, which the LEDGER stream captures (ADR 0010).
const SubjectPrefix = "svc.ledger."

// CorrelationHeader carries the business flow a request belongs to.
const CorrelationHeader = "Ledger-Correlation-Id"

// Problem is an RFC 9457 problem body.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Field  string `json:"field,omitempty"`
	Rule   string `json:"rule,omitempty"`
	// Reason refines the type where a client must tell cases apart
	// (events.Reason: "no_stock", "contention", ...).
	Reason string `json:"reason,omitempty"`
}

// ProblemTypePrefix begins the type of every problem the ledger answers;
// the kind of error follows it ("urn:marketledger:problem:conflict").
const ProblemTypePrefix = "urn:marketledger:problem:"

// ProblemOf maps an error to its problem: a command that breaks its contract
// (ReasonMalformed) is 400; a broken business rule 422; a caller not
// allowed to do it 403; not found 404; a conflict or reused idempotency key
// 409; a freeze 423; an unreachable log 503; anything else 500.
func ProblemOf(err error) Problem {
	k := events.KindOf(err)
	p := Problem{Type: ProblemTypePrefix + k.String(), Title: k.String(), Detail: err.Error()}
	var e *events.Error
	if errors.As(err, &e) {
		p.Field, p.Rule, p.Reason = e.Field, e.Rule, string(e.Reason)
	}
	switch {
	case k == events.KindInvalid && p.Reason == string(events.ReasonMalformed):
		p.Status = 400
	case k == events.KindInvalid:
		p.Status = 422
	case k == events.KindPermission:
		p.Status = 403
	case k == events.KindNotFound:
		p.Status = 404
	case k == events.KindConflict || k == events.KindDuplicate:
		p.Status = 409
	case k == events.KindFrozen:
		p.Status = 423
	case k == events.KindUnavailable:
		p.Status = 503
	default:
		p.Status = 500
	}
	return p
}

// HTTPProblem is a refusal at an HTTP edge that is no command's error (no
// credentials, too many requests, a body too large). name completes the
// type ("unauthenticated"); title is the short human summary.
func HTTPProblem(status int, name, title, detail string) Problem {
	return Problem{Type: ProblemTypePrefix + name, Title: title, Status: status, Detail: detail}
}

// Write answers an HTTP request with p as application/problem+json.
func (p Problem) Write(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p)
}

// Err returns the problem as the ledger's error, of the kind and reason it
// names, so that a client of a service matches a refusal with
// events.KindOf and events.ReasonOf as it would a local one.
func (p Problem) Err(op string) error {
	kind := events.KindOther
	if name, ok := strings.CutPrefix(p.Type, ProblemTypePrefix); ok {
		for k := events.KindOther; k <= events.KindPermission; k++ {
			if k.String() == name {
				kind = k
			}
		}
	}
	return &events.Error{Op: op, Kind: kind, Reason: events.Reason(p.Reason), Field: p.Field, Rule: p.Rule}
}

// Handler answers one command: its name ("order.place"), its JSON body, and
// a context carrying the request's deadline.
type Handler func(ctx context.Context, command string, body []byte) (any, error)

// Config describes a service to serve.
type Config struct {
	// Name is the micro service name ("ledger-order").
	Name        string
	Description string
	// Context is the bounded context; endpoints are <context>_<verb> on
	// svc.ledger.<context>.<verb>.
	Context string
	// Commands are the command names served ("order.place", ...).
	Commands []string
	// Prefix overrides the subject prefix (default svc.ledger.<context>).
	Prefix string
	// MaxInFlight bounds the commands decided at once (default 256).
	MaxInFlight int
	// Timeout bounds one command (default 30 s).
	Timeout time.Duration
	// Handle decides a command.
	Handle Handler
	// Correlate returns ctx carrying a correlation id, when the request
	// has one.
	Correlate func(ctx context.Context, id string) context.Context
	// Observe, when set, hears every command answered: its name, when its
	// request was taken up, and its error (nil when it was carried out).
	Observe func(command string, start time.Time, err error)
}

// Serve registers the service and its endpoints on nc. Each request is
// decided on its own goroutine (at most MaxInFlight at once) and answered by
// publishing on its reply subject: micro's request object must not be used
// after its handler returns.
func Serve(nc *nats.Conn, cfg Config) (micro.Service, error) {
	if cfg.Prefix == "" {
		cfg.Prefix = SubjectPrefix + cfg.Context
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 256
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	svc, err := micro.AddService(nc, micro.Config{Name: cfg.Name, Version: "1.0.0", Description: cfg.Description})
	if err != nil {
		return nil, err
	}
	sem := make(chan struct{}, cfg.MaxInFlight)
	g := svc.AddGroup(cfg.Prefix)
	for _, name := range cfg.Commands {
		verb := strings.TrimPrefix(name, cfg.Context+".")
		spanName := "service " + name
		h := micro.HandlerFunc(func(req micro.Request) {
			sem <- struct{}{}
			out := Responder{nc: nc, reply: req.Reply()}
			hdr := nats.Header(req.Headers())
			data, corr := req.Data(), hdr.Get(CorrelationHeader)
			// The caller's trace context, when it sent one: a malformed
			// one is ignored and the request starts a trace of its own.
			tctx := tracing.Extract(context.Background(), hdr)
			go func() {
				defer func() { <-sem }()
				answer(tctx, cfg, name, spanName, data, corr, out)
			}()
		})
		if err := g.AddEndpoint(cfg.Context+"_"+verb, h, micro.WithEndpointSubject(verb),
			micro.WithEndpointMetadata(map[string]string{"command": name})); err != nil {
			svc.Stop()
			return nil, err
		}
	}
	return svc, nil
}

func answer(ctx context.Context, cfg Config, name, spanName string, data []byte, corr string, out Responder) {
	start := time.Now()
	ctx, span := tracing.StartServer(ctx, spanName)
	if span.Recording() {
		span.Set(tracing.String("ledger.command", name))
	}
	var err error
	defer func() {
		span.End(err)
		if cfg.Observe != nil {
			cfg.Observe(name, start, err)
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	if corr != "" && cfg.Correlate != nil {
		ctx = cfg.Correlate(ctx, corr)
	}
	if !json.Valid(data) {
		err = &events.Error{Kind: events.KindInvalid, Reason: events.ReasonMalformed, Rule: "the request body must be one JSON value"}
		out.Fail(ProblemOf(err))
		return
	}
	var r any
	r, err = cfg.Handle(ctx, name, data)
	if err != nil {
		out.Fail(ProblemOf(err))
		return
	}
	out.OK(r)
}

// Responder answers one request by publishing on its reply subject.
type Responder struct {
	nc    *nats.Conn
	reply string
}

// NewResponder answers on reply through nc.
func NewResponder(nc *nats.Conn, reply string) Responder { return Responder{nc: nc, reply: reply} }

// OK sends v as JSON.
func (r Responder) OK(v any) {
	body, err := json.Marshal(v)
	if err != nil {
		r.Fail(ProblemOf(err))
		return
	}
	_ = r.nc.Publish(r.reply, body)
}

// Fail sends a micro error: the HTTP status as the code, the detail as the
// description, the problem as the body.
func (r Responder) Fail(p Problem) {
	body, _ := json.Marshal(p)
	m := nats.NewMsg(r.reply)
	m.Header.Set(micro.ErrorHeader, p.Detail)
	m.Header.Set(micro.ErrorCodeHeader, strconv.Itoa(p.Status))
	m.Header.Set("Content-Type", "application/problem+json")
	m.Data = body
	_ = r.nc.PublishMsg(m)
}
