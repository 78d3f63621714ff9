package judge

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// testTimeout bounds every server round trip of a test.
const testTimeout = 20 * time.Second

// startLog starts an embedded JetStream server on a random loopback port
// with a LEDGER stream that, unlike the ledger's, allows deleting a
// message (to make a gap), and returns a writer of raw events on it.
func startLog(t *testing.T) *logWriter {
	t.Helper()
	opts := &server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: t.TempDir(),
		NoLog: true, NoSigs: true}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("nats-server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(testTimeout) {
		t.Fatalf("nats-server not ready within %s", testTimeout)
	}
	t.Cleanup(s.Shutdown)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: StreamName, Subjects: []string{"ledger.>"},
		Storage: jetstream.FileStorage}); err != nil {
		t.Fatalf("create stream: %v", err)
	}
	return &logWriter{t: t, nc: nc, js: js, heads: map[string]head{}}
}

// logWriter appends hand-built events, sealed into their aggregate's chain
// the way the ledger seals them, and records.
type logWriter struct {
	t     *testing.T
	nc    *nats.Conn
	js    jetstream.JetStream
	heads map[string]head
	n     int
}

// ev is one event to write. Zero Decided means now.
type ev struct {
	Type, Agg string
	Decided   time.Time
	Policy    uint64
	Body      any
	// Edit, when set, changes the sealed message before it is published
	// (to tamper with it).
	Edit func(m *nats.Msg)
}

// put seals and publishes e, returning its position.
func (w *logWriter) put(e ev) uint64 {
	w.t.Helper()
	ctxName, name, _ := strings.Cut(e.Type, ".")
	data, err := json.Marshal(e.Body)
	if err != nil {
		w.t.Fatal(err)
	}
	if e.Decided.IsZero() {
		e.Decided = time.Now()
	}
	w.n++
	key := ctxName + "." + e.Agg
	h := w.heads[key]
	x := &event{ID: fmt.Sprintf("0190f0c2-0000-7000-8000-%012d", w.n), Type: e.Type, SchemaVersion: 1,
		Source: "/ledger/" + ctxName, AggregateID: e.Agg, TimeRaw: e.Decided.Format(time.RFC3339Nano),
		PolicyPosition: e.Policy, AggregateVersion: h.version + 1, PrevHash: genesisHash, PrevPosition: h.pos}
	if h.version > 0 {
		x.PrevHash = h.hash
	}
	x.Data = data
	x.Hash = canonicalHash(x)
	m := nats.NewMsg("ledger." + ctxName + "." + e.Agg + "." + name)
	for k, v := range map[string]string{"ce-specversion": "1.0", "ce-id": x.ID, "ce-type": x.Type, "ce-source": x.Source,
		"ce-subject": x.AggregateID, "ce-time": x.TimeRaw, "ce-dataschema": "urn:marketledger:schema:" + x.Type + ":v1",
		"content-type": contentTypeJSON, "ce-policyposition": strconv.FormatUint(x.PolicyPosition, 10),
		"ce-aggregateversion": strconv.FormatUint(x.AggregateVersion, 10), "ce-prevhash": x.PrevHash,
		"ce-prevposition": strconv.FormatUint(x.PrevPosition, 10), "ce-hash": x.Hash} {
		m.Header[k] = []string{v}
	}
	m.Data = data
	if e.Edit != nil {
		e.Edit(m)
	}
	pos := w.publish(m)
	w.heads[key] = head{version: x.AggregateVersion, pos: pos, hash: x.Hash}
	return pos
}

func (w *logWriter) publish(m *nats.Msg) uint64 {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	ack, err := w.js.PublishMsg(ctx, m)
	if err != nil {
		w.t.Fatalf("publish %s: %v", m.Subject, err)
	}
	return ack.Sequence
}

// record publishes one of the store's own records (a fence).
func (w *logWriter) record(subject string) uint64 {
	m := nats.NewMsg(subject)
	m.Data = []byte(`{"policy_position":0,"decisions":1}`)
	return w.publish(m)
}

// check judges the whole log.
func (w *logWriter) check() *Report {
	w.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	r, err := CheckConn(ctx, w.nc, StreamName)
	if err != nil {
		w.t.Fatalf("check: %v", err)
	}
	return r
}

// Bodies of the events the tests write.

type scopeJSON struct {
	All        bool     `json:"all,omitempty"`
	Categories []string `json:"categories,omitempty"`
	Sellers    []string `json:"sellers,omitempty"`
}

func freeze(rule, category string, effective time.Time, activation string, ops ...string) map[string]any {
	if len(ops) == 0 {
		ops = []string{"order.place", "payment.authorize", "payment.capture"}
	}
	b := map[string]any{"rule_id": rule, "scope": scopeJSON{Categories: []string{category}}, "blocked_operations": ops,
		"effective_at": effective, "legal_basis": "Permendag 31/2023", "issuer": "kemendag"}
	if activation != "" {
		b["activation"] = activation
	}
	return b
}

func lift(rule string, effective time.Time, activation string) map[string]any {
	b := map[string]any{"rule_id": rule, "effective_at": effective, "legal_basis": "Permendag 31/2023", "issuer": "kemendag"}
	if activation != "" {
		b["activation"] = activation
	}
	return b
}

func activated(rule, activates string, at time.Time) map[string]any {
	return map[string]any{"rule_id": rule, "activates": activates, "scheduled_at": at}
}

func m(amount int64) money { return money{AmountMinor: amount, Currency: "IDR"} }

func order(id, category string, unit int64) map[string]any {
	return map[string]any{"order_id": id, "buyer_id": "b-1", "listing_id": "l-" + id, "seller_id": "s-1", "quantity": 1,
		"unit_price": m(unit), "total": m(unit), "channel": "marketplace", "jurisdiction": "ID", "category": category, "origin": "domestic"}
}

func authorized(pid, oid, category string, amount int64) map[string]any {
	return map[string]any{"payment_id": pid, "order_id": oid, "buyer_id": "b-1", "seller_id": "s-1", "channel": "marketplace",
		"jurisdiction": "ID", "category": category, "amount": m(amount),
		"pending_postings": []posting{{"buyer:b-1", -amount, "IDR"}, {"escrow:" + oid, amount, "IDR"}}}
}

func captured(pid, oid string, ps ...posting) map[string]any {
	return map[string]any{"payment_id": pid, "order_id": oid, "amount": m(1), "postings": ps}
}

// kinds returns the findings' kinds, in order.
func kinds(r *Report) []FindingKind {
	var out []FindingKind
	for _, f := range r.Findings {
		out = append(out, f.Kind)
	}
	return out
}

// violationsOf returns "<type>@<position>:<rule>:<kinds>" for each violation.
func violationsOf(r *Report) []string {
	var out []string
	for _, v := range r.Violations {
		out = append(out, fmt.Sprintf("%s@%d:%s:%v", v.Type, v.Position, v.RuleID, v.Kinds))
	}
	return out
}
