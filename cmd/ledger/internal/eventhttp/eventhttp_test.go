package eventhttp_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/marketledger/ledger/contracts"
	"github.com/marketledger/ledger/runtime/service"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketledger/ledger/cmd/ledger/internal/eventhttp"
	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/node/embedded"
)

func startStore(t testing.TB) *events.JetStreamStore {
	t.Helper()
	srv, err := embedded.Start(embedded.Config{DataDir: t.TempDir(), Port: embedded.RandomPort})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	js, _ := jetstream.New(nc)
	if _, err := events.EnsureStream(ctx, js, 1); err != nil {
		t.Fatal(err)
	}
	st, err := events.NewJetStreamStore(ctx, nc, contracts.Fence())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

var seq struct {
	sync.Mutex
	n int
}

func appendOne(t testing.TB, st events.Store, typ string) uint64 {
	seq.Lock()
	seq.n++
	id := fmt.Sprintf("a%d", seq.n)
	seq.Unlock()
	ctx, _, _ := strings.Cut(typ, ".")
	e := events.Event{ID: events.NewID(), Type: typ, SchemaVersion: 1, Source: "/test", AggregateID: id, OccurredAt: time.Now(), Data: []byte(`{}`)}
	a, err := st.Append(context.Background(), events.Decision{Aggregate: events.AggregateRef{Context: ctx, ID: id}, Events: []events.Event{e},
		IdempotencyKey: "k-" + id, CommandDigest: "d"}) // leaves control records in the log, which must never be served
	if err != nil {
		t.Error(err)
	}
	return a.LastPosition
}

func known(t string) bool { return t == "order.placed" || t == "payment.captured" }

func TestBadInputGetsProblemJSON(t *testing.T) {
	h := eventhttp.New(startStore(t), eventhttp.Options{KnownType: known})
	for _, tc := range []struct{ path, field string }{
		{"/v1/events?from=abc", "from"},
		{"/v1/events?from=0", "from"},
		{"/v1/events?from=10&to=5", "to"},
		{"/v1/events?limit=0", "limit"},
		{"/v1/events?limit=1001", "limit"},
		{"/v1/events?type=order.exploded", "type"},
		{"/v1/events?type=Order", "type"},
		{"/v1/events?subject=orders.>", "subject"},
		{"/v1/events?subject=ledger.>.x", "subject"},
		{"/v1/events?subject=ledger.order._idem.*", "subject"},
		{"/v1/subscribe?from=-1", "from"},
		{"/v1/events?correlation_id=has%20spaces", "correlation_id"},
		{"/v1/events?correlation_id=a&correlation_id=b", "correlation_id"},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", tc.path, nil))
		var p service.Problem
		err := json.Unmarshal(rec.Body.Bytes(), &p)
		if rec.Code != 400 || err != nil || rec.Header().Get("Content-Type") != "application/problem+json" ||
			p.Status != 400 || p.Field != tc.field || p.Rule == "" || p.Title == "" || p.Type == "" {
			t.Errorf("GET %s = %d %s %s, want 400 problem+json on field %q", tc.path, rec.Code, rec.Header().Get("Content-Type"), rec.Body, tc.field)
		}
	}
	req := httptest.NewRequest("GET", "/v1/subscribe", nil)
	req.Header.Set("Last-Event-ID", "x")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 400 || !strings.Contains(rec.Body.String(), "Last-Event-ID") {
		t.Errorf("bad Last-Event-ID = %d %s", rec.Code, rec.Body)
	}
}

func getPage(t *testing.T, h http.Handler, q url.Values) eventhttp.Page {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/events?"+q.Encode(), nil))
	if rec.Code != 200 {
		t.Fatalf("GET /v1/events?%s = %d %s", q.Encode(), rec.Code, rec.Body)
	}
	var p eventhttp.Page
	if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCorrelationFilter: correlation_id keeps the events of one flow
// across aggregates and contexts, in a page and in a subscription.
func TestCorrelationFilter(t *testing.T) {
	st := startStore(t)
	flows := []struct{ typ, id, corr string }{
		{"order.placed", "o-1", "flow-a"}, {"order.placed", "o-2", "flow-b"},
		{"payment.captured", "p-1", "flow-a"}, {"payment.captured", "p-2", ""},
	}
	for _, f := range flows {
		ctx, _, _ := strings.Cut(f.typ, ".")
		e := events.Event{ID: events.NewID(), Type: f.typ, SchemaVersion: 1, Source: "/test", AggregateID: f.id,
			OccurredAt: time.Now(), CorrelationID: f.corr, Data: []byte(`{}`)}
		if _, err := st.Append(context.Background(), events.Decision{Aggregate: events.AggregateRef{Context: ctx, ID: f.id},
			Events: []events.Event{e}}); err != nil {
			t.Fatal(err)
		}
	}
	h := eventhttp.New(st, eventhttp.Options{KnownType: known})
	var got []string
	for _, e := range getPage(t, h, url.Values{"correlation_id": {"flow-a"}}).Events {
		got = append(got, e.AggregateID)
	}
	if strings.Join(got, ",") != "o-1,p-1" {
		t.Errorf("correlation_id=flow-a gave %v, want [o-1 p-1]", got)
	}
	if p := getPage(t, h, url.Values{"correlation_id": {"flow-a"}, "type": {"order.placed"}}); len(p.Events) != 1 || p.Events[0].AggregateID != "o-1" {
		t.Errorf("correlation_id=flow-a&type=order.placed gave %+v, want o-1 alone", p.Events)
	}
	srv := httptest.NewServer(h)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/v1/subscribe?correlation_id=flow-b", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			var e eventhttp.Event
			if err := json.Unmarshal([]byte(data), &e); err != nil || e.AggregateID != "o-2" {
				t.Errorf("subscribe correlation_id=flow-b: first event %s (%v), want o-2", data, err)
			}
			return
		}
	}
	t.Errorf("subscribe correlation_id=flow-b: no event (%v)", sc.Err())
}

func TestPagesCoverTheLogOnceAndFilter(t *testing.T) {
	st := startStore(t)
	for i := range 25 {
		typ := "order.placed"
		if i%5 == 0 {
			typ = "payment.captured"
		}
		appendOne(t, st, typ)
	}
	h := eventhttp.New(st, eventhttp.Options{KnownType: known})
	var got []uint64
	from := uint64(1)
	for pages := 0; ; pages++ {
		p := getPage(t, h, url.Values{"from": {strconv.FormatUint(from, 10)}, "limit": {"10"}})
		for _, e := range p.Events {
			got = append(got, e.Position)
			if strings.Contains(e.Subject, "._") {
				t.Errorf("served a control record: %s", e.Subject)
			}
		}
		from = p.Next
		if !p.More {
			break
		}
		if pages > 10 {
			t.Fatal("paging does not end")
		}
	}
	if len(got) != 25 {
		t.Errorf("pages gave %d events, want 25: %v", len(got), got)
	}
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			t.Errorf("positions not increasing: %v", got)
		}
	}
	p := getPage(t, h, url.Values{"type": {"payment.captured"}})
	if len(p.Events) != 5 || p.More {
		t.Errorf("type filter gave %d events (more %t), want 5", len(p.Events), p.More)
	}
	p = getPage(t, h, url.Values{"subject": {"ledger.payment.>"}, "limit": {"2"}})
	if len(p.Events) != 2 || !p.More || p.Events[0].Type != "payment.captured" {
		t.Errorf("subject filter page = %+v", p)
	}
	p = getPage(t, h, url.Values{"from": {"3"}, "to": {"4"}})
	if len(p.Events) != 1 || p.Events[0].Position != 3 || p.More {
		t.Errorf("from 3 to 4 = %+v, want the event at 3 (4 is its idempotency record)", p)
	}
}

// sseClient reads events from one connection until it has n, then hangs up.
func sseClient(t *testing.T, base string, lastID uint64, n int) []uint64 {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/v1/subscribe?from=1", nil)
	if lastID > 0 {
		req.Header.Set("Last-Event-ID", strconv.FormatUint(lastID, 10))
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close() // the disconnect, mid-stream
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("subscribe = %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var got []uint64
	var id uint64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for len(got) < n && sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "id: "):
			id, _ = strconv.ParseUint(line[4:], 10, 64)
		case strings.HasPrefix(line, "data: "):
			var e eventhttp.Event
			if err := json.Unmarshal([]byte(line[6:]), &e); err != nil || e.Position != id {
				t.Fatalf("data line %q for id %d: %v", line, id, err)
			}
		case line == "" && id != 0:
			got = append(got, id)
			id = 0
		}
	}
	if len(got) < n {
		t.Fatalf("stream ended after %d events: %v", len(got), sc.Err())
	}
	return got
}

func TestSSEResumeWithLastEventIDHasNoGapAndNoDuplicate(t *testing.T) {
	st := startStore(t)
	srv := httptest.NewServer(eventhttp.New(st, eventhttp.Options{}))
	defer srv.Close()
	for range 20 {
		appendOne(t, st, "order.placed")
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // appends keep happening while clients come and go
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
				appendOne(t, st, "order.placed")
			}
		}
	}()
	var got []uint64
	var last uint64
	for range 4 {
		part := sseClient(t, srv.URL, last, 25)
		got = append(got, part...)
		last = part[len(part)-1]
	}
	close(stop)
	wg.Wait()
	var want []uint64
	for e, err := range st.Read(context.Background(), events.Query{To: last}) {
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, e.Position)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("across 4 connections got\n%v\nwant every event up to %d once, in order:\n%v", got, last, want)
	}
}

func TestSSEHeartbeat(t *testing.T) {
	st := startStore(t)
	srv := httptest.NewServer(eventhttp.New(st, eventhttp.Options{Heartbeat: 20 * time.Millisecond}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/v1/subscribe", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if sc.Text() == ": heartbeat" {
			return
		}
	}
	t.Errorf("no heartbeat comment: %v", sc.Err())
}

// queryRecorder is a store that tells which query each subscription asked
// it for.
type queryRecorder struct {
	*events.JetStreamStore
	queries chan events.Query
}

func (r queryRecorder) Subscribe(ctx context.Context, q events.Query, fn func(events.Event) error) error {
	r.queries <- q
	return r.JetStreamStore.Subscribe(ctx, q, fn)
}

// TestSSESubjectFilterReachesTheStore: a subscription's subject filter is
// the store's, so the server sends only the matching events rather than
// the whole log for the handler to sift.
func TestSSESubjectFilterReachesTheStore(t *testing.T) {
	rec := queryRecorder{startStore(t), make(chan events.Query, 1)}
	srv := httptest.NewServer(eventhttp.New(rec, eventhttp.Options{}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/v1/subscribe?subject="+url.QueryEscape("ledger.order.>"), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	select {
	case q := <-rec.queries:
		if got := fmt.Sprint(q.Subjects); got != "[ledger.order.>]" {
			t.Errorf("the store was asked for subjects %s; want [ledger.order.>]", got)
		}
	case <-ctx.Done():
		t.Fatal("the handler never subscribed")
	}
}

// TestServedEventsCarryWhatTheHashCovers: from an event's JSON alone (its
// fields, prev_position, and data or data_raw) a client recomputes its
// hash, as docs/verifying.md says: a body with &, < and > is served
// unescaped, one stored with white space is also served as it was stored.
func TestServedEventsCarryWhatTheHashCovers(t *testing.T) {
	st := startStore(t)
	ctx := context.Background()
	ref := events.AggregateRef{Context: "order", ID: "hashed"}
	bodies := []string{`{"note":"A&B <x>"}`, `{"note": "spaced",  "n": 1}`}
	for i, body := range bodies {
		e := events.Event{ID: events.NewID(), Type: "order.placed", SchemaVersion: 1, Source: "/test", AggregateID: ref.ID,
			OccurredAt: time.Now().In(time.FixedZone("WIB", 7*3600)), CorrelationID: "c", CausationID: "k", Data: []byte(body)}
		if _, err := st.Append(ctx, events.Decision{Aggregate: ref, ExpectedVersion: uint64(i), Events: []events.Event{e}}); err != nil {
			t.Fatal(err)
		}
	}
	h := eventhttp.New(st, eventhttp.Options{KnownType: known})
	page := getPage(t, h, url.Values{"subject": {"ledger.order.hashed.>"}})
	if len(page.Events) != 2 {
		t.Fatalf("%d events served, want 2", len(page.Events))
	}
	for i, j := range page.Events {
		at, err := time.Parse(time.RFC3339Nano, j.OccurredAt)
		if err != nil {
			t.Fatal(err)
		}
		body := []byte(j.Data)
		if j.DataRaw != nil {
			body = j.DataRaw
		}
		e := events.Event{ID: j.ID, Type: j.Type, SchemaVersion: j.SchemaVersion, Source: j.Source, AggregateID: j.AggregateID,
			OccurredAt: at, CorrelationID: j.CorrelationID, CausationID: j.CausationID, PolicyPosition: j.PolicyPosition,
			AggregateVersion: j.AggregateVersion, PrevPosition: j.PrevPosition, PrevHash: j.PrevHash, Data: body}
		if got := e.ComputeHash(); got != j.Hash {
			t.Errorf("event %d (%s): hash from its JSON %s, served hash %s", i, bodies[i], got, j.Hash)
		}
	}
	if page.Events[1].PrevPosition != page.Events[0].Position || page.Events[1].DataRaw == nil || page.Events[0].DataRaw != nil {
		t.Errorf("prev_position %d (want %d), data_raw of the spaced body %q, of the compact one %q",
			page.Events[1].PrevPosition, page.Events[0].Position, page.Events[1].DataRaw, page.Events[0].DataRaw)
	}
}
