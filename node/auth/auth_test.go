package auth_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/node/auth"
	"github.com/marketledger/ledger/node/embedded"
)

// cluster is an embedded server with the ledger's users and the LEDGER
// stream, created by the operator.
type cluster struct {
	t   *testing.T
	set *auth.Set
	url string
	op  jetstream.JetStream
}

func start(t *testing.T) *cluster {
	t.Helper()
	dir := t.TempDir()
	set, err := auth.Ensure(dir)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := embedded.Start(embedded.Config{DataDir: dir, Port: embedded.RandomPort, Configure: set.Configure})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	c := &cluster{t: t, set: set, url: srv.ClientURL()}
	op, _ := c.connect(auth.RoleOperator)
	c.op, _ = jetstream.New(op)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := events.EnsureStream(ctx, c.op, 1); err != nil {
		t.Fatal(err)
	}
	return c
}

// violations collects a connection's permission errors, which the server
// reports asynchronously: a denied publish or subscribe is dropped, not
// answered.
type violations struct {
	mu   sync.Mutex
	errs []string
	ch   chan struct{}
}

func (v *violations) handler(_ *nats.Conn, _ *nats.Subscription, err error) {
	if !errors.Is(err, nats.ErrPermissionViolation) {
		return
	}
	v.mu.Lock()
	v.errs = append(v.errs, err.Error())
	v.mu.Unlock()
	select {
	case v.ch <- struct{}{}:
	default:
	}
}

// wait returns once a violation mentioning subject was reported.
func (v *violations) wait(t *testing.T, subject string) {
	t.Helper()
	deadline := time.After(3 * time.Second)
	for {
		v.mu.Lock()
		for _, e := range v.errs {
			if strings.Contains(e, subject) {
				v.mu.Unlock()
				return
			}
		}
		v.mu.Unlock()
		select {
		case <-v.ch:
		case <-deadline:
			t.Fatalf("no permissions violation for %q reported (saw %v)", subject, v.all())
		}
	}
}

func (v *violations) all() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]string(nil), v.errs...)
}

func (c *cluster) connect(role string) (*nats.Conn, *violations) {
	c.t.Helper()
	v := &violations{ch: make(chan struct{}, 1)}
	nc, err := auth.Connect(c.url, c.set.CredsFile(role), nats.Name("test-"+role), nats.ErrorHandler(v.handler))
	if err != nil {
		c.t.Fatalf("connect as %s: %v", role, err)
	}
	c.t.Cleanup(nc.Close)
	return nc, v
}

func (c *cluster) lastSeq() uint64 {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := c.op.Stream(ctx, events.StreamName)
	if err != nil {
		c.t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		c.t.Fatal(err)
	}
	return info.State.LastSeq
}

func store(t *testing.T, nc *nats.Conn) *events.JetStreamStore {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := events.NewJetStreamStore(ctx, nc, events.WithFence("policy"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// deniedStore opens a store whose appends the server will drop. A dropped
// batch is only reported when the store's batch timeout ends, so the
// connection is closed before the store: the pending batch then fails at
// once instead of holding Close for the whole timeout.
func deniedStore(t *testing.T, nc *nats.Conn) *events.JetStreamStore {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := events.NewJetStreamStore(ctx, nc, events.WithFence("policy"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close(); st.Close() })
	return st
}

func ev(id, typ string) events.Event {
	return events.Event{ID: events.NewID(), Type: typ, SchemaVersion: 1, Source: "/test",
		AggregateID: id, OccurredAt: time.Now(), Data: []byte(`{"a":1}`)}
}

func TestEnsureFiles(t *testing.T) {
	dir := t.TempDir()
	set, err := auth.Ensure(dir)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(set.Dir())
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("credentials directory: %v %v", fi.Mode(), err)
	}
	for _, role := range auth.Roles() {
		fi, err := os.Stat(set.SeedFile(role))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s seed: %v %v", role, err, fi.Mode())
		}
		b, _ := os.ReadFile(set.SeedFile(role))
		if !bytes.HasPrefix(b, []byte("SU")) {
			t.Fatalf("%s seed file does not hold a user seed", role)
		}
	}
	if _, err := os.Stat(filepath.Join(set.Dir(), auth.ConfigFile)); err != nil {
		t.Fatal(err)
	}

	// A second start loads the same users.
	again, err := auth.Ensure(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, role := range auth.Roles() {
		a, _ := set.User(role)
		b, _ := again.User(role)
		if a.Nkey != b.Nkey {
			t.Fatalf("%s: key changed across starts", role)
		}
	}

	// Deleting one seed rotates that role's key only.
	os.Remove(set.SeedFile(auth.RoleOrder))
	rotated, err := auth.Ensure(dir)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := mustUser(t, set, auth.RoleOrder), mustUser(t, rotated, auth.RoleOrder); a.Nkey == b.Nkey {
		t.Fatal("deleted seed was not replaced by a new key")
	}
	if a, b := mustUser(t, set, auth.RoleListing), mustUser(t, rotated, auth.RoleListing); a.Nkey != b.Nkey {
		t.Fatal("rotating order changed listing's key")
	}
}

func mustUser(t *testing.T, s *auth.Set, role string) auth.User {
	t.Helper()
	u, ok := s.User(role)
	if !ok {
		t.Fatalf("no user for %s", role)
	}
	return u
}

func TestEnsureRefusesBadCredentials(t *testing.T) {
	t.Run("readable seed", func(t *testing.T) {
		dir := t.TempDir()
		set, _ := auth.Ensure(dir)
		os.Chmod(set.SeedFile(auth.RoleInvestigator), 0o644)
		_, err := auth.Ensure(dir)
		if err == nil || !strings.Contains(err.Error(), "accessible to other users") {
			t.Fatalf("want a refusal of a readable seed file, got %v", err)
		}
	})
	t.Run("readable directory", func(t *testing.T) {
		dir := t.TempDir()
		set, _ := auth.Ensure(dir)
		os.Chmod(set.Dir(), 0o755)
		if _, err := auth.Ensure(dir); err == nil {
			t.Fatal("a readable credentials directory was accepted")
		}
	})
	t.Run("malformed seed", func(t *testing.T) {
		dir := t.TempDir()
		set, _ := auth.Ensure(dir)
		const secretish = "SUNOTAVALIDSEEDBUTPRIVATE"
		os.WriteFile(set.SeedFile(auth.RolePayment), []byte(secretish), 0o600)
		_, err := auth.Ensure(dir)
		if err == nil || !strings.Contains(err.Error(), "payment.nk") {
			t.Fatalf("want an error naming the file, got %v", err)
		}
		if strings.Contains(err.Error(), secretish) {
			t.Fatal("error message repeats the file's content")
		}
	})
	t.Run("account seed", func(t *testing.T) {
		dir := t.TempDir()
		set, _ := auth.Ensure(dir)
		// An account seed is a valid seed of the wrong kind.
		os.WriteFile(set.SeedFile(auth.RolePolicy), []byte("SAAJYDPFSYQPXNPQ2SPQO5YJ3KIVZVFMHFCTLGS5TTZXJ4R6TZGOFTOBDVQ\n"), 0o600)
		if _, err := auth.Ensure(dir); err == nil {
			t.Fatal("an account seed was accepted as a user's")
		}
	})
	t.Run("config for other keys", func(t *testing.T) {
		dir := t.TempDir()
		set, _ := auth.Ensure(dir)
		other, _ := auth.Ensure(t.TempDir())
		b, _ := os.ReadFile(filepath.Join(other.Dir(), auth.ConfigFile))
		os.WriteFile(filepath.Join(set.Dir(), auth.ConfigFile), b, 0o600)
		_, err := auth.Ensure(dir)
		if err == nil || !strings.Contains(err.Error(), "does not match") {
			t.Fatalf("want a key mismatch, got %v", err)
		}
	})
}

func TestConnectionsNeedCredentials(t *testing.T) {
	c := start(t)
	nc, err := nats.Connect(c.url, nats.MaxReconnects(0))
	if err == nil {
		nc.Close()
		t.Fatal("a connection without credentials was accepted")
	}
	if !errors.Is(err, nats.ErrAuthorization) && !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Fatalf("want an authorization error, got %v", err)
	}
}

// TestDenied has every role try what it must not do; each attempt is
// refused by the server and the log does not move.
func TestDenied(t *testing.T) {
	c := start(t)
	// One event so that reads and heads have something to see.
	op, _ := c.connect(auth.RoleOperator)
	if _, err := store(t, op).Append(context.Background(), events.Decision{Aggregate: events.AggregateRef{Context: "order", ID: "o1"},
		Events: []events.Event{ev("o1", "order.placed")}}); err != nil {
		t.Fatal(err)
	}
	before := c.lastSeq()
	short := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.Background(), 300*time.Millisecond)
	}

	t.Run("order publishes on payment's subjects", func(t *testing.T) {
		nc, v := c.connect(auth.RoleOrder)
		nc.Publish("ledger.payment.x.y", []byte(`{}`))
		v.wait(t, "ledger.payment.x.y")
		js, _ := jetstream.New(nc)
		ctx, cancel := short()
		defer cancel()
		if _, err := js.Publish(ctx, "ledger.payment.p1.payment.captured", []byte(`{}`)); err == nil {
			t.Fatal("order's JetStream publish to payment was acknowledged")
		}
		v.wait(t, "ledger.payment.p1.payment.captured")
	})
	t.Run("order appends a payment decision through the store", func(t *testing.T) {
		nc, v := c.connect(auth.RoleOrder)
		st := deniedStore(t, nc)
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		_, err := st.Append(ctx, events.Decision{Aggregate: events.AggregateRef{Context: "payment", ID: "p1"},
			Events: []events.Event{ev("p1", "payment.authorized")}})
		if err == nil {
			t.Fatal("order appended a payment event")
		}
		v.wait(t, "ledger.payment.p1")
	})
	t.Run("listing writes a foreign idempotency record and fence", func(t *testing.T) {
		nc, v := c.connect(auth.RoleListing)
		nc.Publish("ledger.order._idem.abc", []byte(`{}`))
		nc.Publish("ledger.payment._fence", []byte(`{}`))
		v.wait(t, "ledger.order._idem.abc")
		v.wait(t, "ledger.payment._fence")
	})
	t.Run("listing calls payment", func(t *testing.T) {
		nc, v := c.connect(auth.RoleListing)
		_, err := nc.Request("svc.ledger.payment.authorize", []byte(`{}`), 300*time.Millisecond)
		if err == nil {
			t.Fatal("listing's request to payment was answered")
		}
		v.wait(t, "svc.ledger.payment.authorize")
	})
	t.Run("payment serves order's endpoints", func(t *testing.T) {
		nc, v := c.connect(auth.RolePayment)
		nc.SubscribeSync("svc.ledger.order.place")
		v.wait(t, "svc.ledger.order.place")
	})
	t.Run("policy changes the stream", func(t *testing.T) {
		nc, v := c.connect(auth.RolePolicy)
		js, _ := jetstream.New(nc)
		ctx, cancel := short()
		defer cancel()
		if _, err := js.UpdateStream(ctx, events.StreamConfig(1)); err == nil {
			t.Fatal("policy updated the stream")
		}
		v.wait(t, "$JS.API.STREAM.UPDATE.LEDGER")
	})
	t.Run("projections publishes on a service's subjects", func(t *testing.T) {
		nc, v := c.connect(auth.RoleProjections)
		nc.Publish("ledger.order.o1.order.cancelled", []byte(`{}`))
		v.wait(t, "ledger.order.o1.order.cancelled")
	})
	t.Run("investigator", func(t *testing.T) {
		nc, v := c.connect(auth.RoleInvestigator)
		js, _ := jetstream.New(nc)
		nc.Publish("ledger.order.x.y", []byte(`{}`))
		v.wait(t, "ledger.order.x.y")
		try := func(subject string, f func(context.Context) error) {
			t.Helper()
			ctx, cancel := short()
			defer cancel()
			if err := f(ctx); err == nil {
				t.Fatalf("investigator: %s succeeded", subject)
			}
			v.wait(t, subject)
		}
		try("$JS.API.STREAM.DELETE.LEDGER", func(ctx context.Context) error { return js.DeleteStream(ctx, events.StreamName) })
		try("$JS.API.STREAM.PURGE.LEDGER", func(ctx context.Context) error {
			_, err := nc.RequestWithContext(ctx, "$JS.API.STREAM.PURGE.LEDGER", nil)
			return err
		})
		try("$JS.API.STREAM.UPDATE.LEDGER", func(ctx context.Context) error {
			_, err := js.UpdateStream(ctx, events.StreamConfig(1))
			return err
		})
		try("$JS.API.STREAM.MSG.DELETE.LEDGER", func(ctx context.Context) error {
			_, err := nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.DELETE.LEDGER", []byte(`{"seq":1}`))
			return err
		})
		try("$JS.API.STREAM.CREATE.LEDGER2", func(ctx context.Context) error {
			_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "LEDGER2", Subjects: []string{"audit.>"}})
			return err
		})
		try("$JS.API.CONSUMER.DURABLE.CREATE.LEDGER.mine", func(ctx context.Context) error {
			_, err := nc.RequestWithContext(ctx, "$JS.API.CONSUMER.DURABLE.CREATE.LEDGER.mine",
				[]byte(`{"stream_name":"LEDGER","config":{"durable_name":"mine","ack_policy":"explicit"}}`))
			return err
		})
		try("$JS.API.STREAM.CREATE.KV_"+auth.ProjectionsBucket, func(ctx context.Context) error {
			_, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: auth.ProjectionsBucket})
			return err
		})
		try("$KV."+auth.CheckoutBucket+".position", func(ctx context.Context) error {
			_, err := js.Publish(ctx, "$KV."+auth.CheckoutBucket+".position", []byte("1"))
			return err
		})
		// A read-only store refuses nothing locally: the server does.
		st := deniedStore(t, nc)
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		if _, err := st.Append(ctx, events.Decision{Aggregate: events.AggregateRef{Context: "order", ID: "o1"}, ExpectedVersion: 1,
			Events: []events.Event{ev("o1", "order.confirmed")}}); err == nil {
			t.Fatal("investigator appended through the store")
		}
		v.wait(t, "ledger.order.o1")
	})

	if after := c.lastSeq(); after != before {
		t.Fatalf("denied attempts moved the log from %d to %d", before, after)
	}
}

// TestAllowed has every role do its work; none of it raises a permissions
// violation.
func TestAllowed(t *testing.T) {
	c := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var all []*violations
	conn := func(role string) *nats.Conn {
		nc, v := c.connect(role)
		all = append(all, v)
		return nc
	}

	// Each service appends its own decisions: events, an idempotency record
	// and, for payment, a fenced decision with its fence record.
	policyNC := conn(auth.RolePolicy)
	if _, err := store(t, policyNC).Append(ctx, events.Decision{Aggregate: events.AggregateRef{Context: "policy", ID: "r1"},
		Events: []events.Event{ev("r1", "policy.freeze_imposed")}, IdempotencyKey: "pk", CommandDigest: "d"}); err != nil {
		t.Fatalf("policy: %v", err)
	}
	listingNC := conn(auth.RoleListing)
	if _, err := store(t, listingNC).Append(ctx, events.Decision{Aggregate: events.AggregateRef{Context: "listing", ID: "l1"},
		Events: []events.Event{ev("l1", "listing.created")}, IdempotencyKey: "lk", CommandDigest: "d"}); err != nil {
		t.Fatalf("listing: %v", err)
	}
	orderNC := conn(auth.RoleOrder)
	orderStore := store(t, orderNC)
	if _, err := orderStore.Append(ctx, events.Decision{Aggregate: events.AggregateRef{Context: "order", ID: "o1"},
		Events: []events.Event{ev("o1", "order.placed")}, IdempotencyKey: "ok", CommandDigest: "d"}); err != nil {
		t.Fatalf("order: %v", err)
	}
	// The same key again is answered from the idempotency record.
	if a, err := orderStore.Append(ctx, events.Decision{Aggregate: events.AggregateRef{Context: "order", ID: "o1"},
		Events: []events.Event{ev("o1", "order.placed")}, IdempotencyKey: "ok", CommandDigest: "d"}); err != nil || !a.Replayed {
		t.Fatalf("order replay: %+v %v", a, err)
	}
	paymentNC := conn(auth.RolePayment)
	pst := store(t, paymentNC)
	head, err := pst.PolicyHead(ctx)
	if err != nil || head == 0 {
		t.Fatalf("payment reads the policy head: %d %v", head, err)
	}
	pe := ev("p1", "payment.authorized")
	pe.PolicyPosition = head
	if _, err := pst.Append(ctx, events.Decision{Aggregate: events.AggregateRef{Context: "payment", ID: "p1"},
		Events: []events.Event{pe}, Fence: true}); err != nil {
		t.Fatalf("payment (fenced): %v", err)
	}
	projNC := conn(auth.RoleProjections)
	if _, err := store(t, projNC).Append(ctx, events.Decision{Aggregate: events.AggregateRef{Context: "notary", ID: "log"},
		Events: []events.Event{ev("log", "notary.checkpointed")}}); err != nil {
		t.Fatalf("projections (notary): %v", err)
	}

	// The investigator reads the whole log and loads an aggregate.
	invNC := conn(auth.RoleInvestigator)
	inv := store(t, invNC)
	var types []string
	for e, err := range inv.Read(ctx, events.Query{}) {
		if err != nil {
			t.Fatalf("investigator read: %v", err)
		}
		types = append(types, e.Type)
	}
	if len(types) != 5 {
		t.Fatalf("investigator read %d events (%v), want 5", len(types), types)
	}
	if evs, err := inv.Load(ctx, events.AggregateRef{Context: "order", ID: "o1"}, 0); err != nil || len(evs) != 1 {
		t.Fatalf("investigator load: %d %v", len(evs), err)
	}
	if _, err := inv.LastPosition(ctx); err != nil {
		t.Fatal(err)
	}
	// ... and the parking stream's size, which serve exports as a metric
	// (missing before anyone parked: not found, not refused).
	ijs, _ := jetstream.New(invNC)
	if _, err := ijs.Stream(ctx, "LEDGER_PARKED"); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Fatalf("investigator reads the parking stream's info: %v", err)
	}

	// The checkout's KV checkpoint, as the order role.
	ojs, _ := jetstream.New(orderNC)
	kv, err := ojs.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: auth.CheckoutBucket, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatalf("order KV: %v", err)
	}
	if _, err := kv.Put(ctx, "position", []byte("5")); err != nil {
		t.Fatal(err)
	}
	if e, err := kv.Get(ctx, "position"); err != nil || string(e.Value()) != "5" {
		t.Fatalf("order KV get: %v", err)
	}
	if _, err := ojs.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: auth.CheckoutBucket, Storage: jetstream.FileStorage}); err != nil {
		t.Fatalf("order KV reopen: %v", err)
	}

	// Projections: a durable consumer, its acknowledgements, and its buckets.
	pjs, _ := jetstream.New(projNC)
	cons, err := pjs.CreateConsumer(ctx, events.StreamName, jetstream.ConsumerConfig{Durable: "proj_test_v1",
		FilterSubject: "ledger.>", AckPolicy: jetstream.AckAllPolicy})
	if err != nil {
		t.Fatalf("projections durable: %v", err)
	}
	batch, err := cons.FetchNoWait(100)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	var last jetstream.Msg
	for m := range batch.Messages() {
		n, last = n+1, m
	}
	if n == 0 {
		t.Fatal("projections fetched nothing")
	}
	if err := last.DoubleAck(ctx); err != nil {
		t.Fatalf("projections ack: %v", err)
	}
	if err := pjs.DeleteConsumer(ctx, events.StreamName, "proj_test_v1"); err != nil {
		t.Fatal(err)
	}
	pkv, err := pjs.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: auth.ProjectionsBucket, History: 1, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatalf("projections KV: %v", err)
	}
	if _, err := pkv.Put(ctx, "checkpoint.balances", []byte("7")); err != nil {
		t.Fatal(err)
	}
	obj, err := pjs.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: auth.SnapshotsBucket, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatalf("projections object store: %v", err)
	}
	if _, err := obj.PutBytes(ctx, "balances/7", bytes.Repeat([]byte("x"), 300<<10)); err != nil {
		t.Fatal(err)
	}
	if b, err := obj.GetBytes(ctx, "balances/7"); err != nil || len(b) != 300<<10 {
		t.Fatalf("object get: %d %v", len(b), err)
	}
	if err := obj.Delete(ctx, "balances/7"); err != nil {
		t.Fatalf("object delete: %v", err)
	}

	// Services: listing serves, order calls it; discovery works.
	svc, err := micro.AddService(listingNC, micro.Config{Name: "ledger-listing", Version: "1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Stop()
	if err := svc.AddEndpoint("ping", micro.HandlerFunc(func(r micro.Request) { r.Respond([]byte("pong")) }),
		micro.WithEndpointSubject("svc.ledger.listing.ping")); err != nil {
		t.Fatal(err)
	}
	listingNC.Flush() // the endpoint's subscription reaches the server before order asks
	if m, err := orderNC.Request("svc.ledger.listing.ping", nil, 2*time.Second); err != nil || string(m.Data) != "pong" {
		t.Fatalf("order -> listing: %v", err)
	}
	opNC, _ := c.connect(auth.RoleOperator)
	if _, err := opNC.Request("$SRV.PING.ledger-listing", nil, 2*time.Second); err != nil {
		t.Fatalf("micro discovery: %v", err)
	}

	for _, nc := range []*nats.Conn{policyNC, listingNC, orderNC, paymentNC, projNC, invNC} {
		nc.Flush()
	}
	time.Sleep(100 * time.Millisecond) // let late -ERR lines arrive
	for _, v := range all {
		if errs := v.all(); len(errs) > 0 {
			t.Fatalf("permissions violations during allowed work: %v", errs)
		}
	}
}

// TestServerConfig: a stock nats-server started from the configuration
// `ledger credentials server-config` prints admits each role's .creds file
// (nats.UserCredentials) with that role's permissions: the investigator
// reads the log and is refused an append at once.
func TestServerConfig(t *testing.T) {
	set, err := auth.Ensure(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if err := set.WriteServerConfig(&b); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ledger.conf")
	conf := "listen: 127.0.0.1:-1\njetstream { store_dir: " + quoteConf(filepath.Join(t.TempDir(), "js")) + " }\n" + b.String()
	os.WriteFile(path, []byte(conf), 0o600)
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("%v\n%s", err, conf)
	}
	if len(opts.TrustedOperators) != 1 || opts.SystemAccount == "" || len(opts.Nkeys) != 0 || len(opts.Users) != 0 {
		t.Fatalf("operators %d, system account %q, nkey users %d, users %d: want one operator, a system account, no users in the configuration",
			len(opts.TrustedOperators), opts.SystemAccount, len(opts.Nkeys), len(opts.Users))
	}
	opts.NoSigs = true
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	c := &cluster{t: t, set: set, url: srv.ClientURL()}
	op, _ := c.connect(auth.RoleOperator)
	c.op, _ = jetstream.New(op)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := events.EnsureStream(ctx, c.op, 1); err != nil {
		t.Fatalf("the operator creates the stream: %v", err)
	}
	inv, v := c.connect(auth.RoleInvestigator)
	js, _ := jetstream.New(inv)
	if _, err := js.Stream(ctx, events.StreamName); err != nil {
		t.Errorf("the investigator reads the stream: %v", err)
	}
	inv.Publish("ledger.order.o-1.placed", []byte("{}"))
	v.wait(t, "ledger.order.o-1.placed")
}

// subjects joins a permission's allow (or deny) list; nil has none.
func subjects(p *server.SubjectPermission, allow bool) string {
	switch {
	case p == nil:
		return ""
	case allow:
		return strings.Join(p.Allow, " ")
	}
	return strings.Join(p.Deny, " ")
}

func quoteConf(s string) string { return `"` + s + `"` }
