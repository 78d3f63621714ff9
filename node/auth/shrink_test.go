package auth_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/marketledger/ledger/events"
	"github.com/marketledger/ledger/node/auth"
	"github.com/marketledger/ledger/node/embedded"
)

// stockJS connects with the stock client and nothing of the ledger's: the
// .creds file from the data directory, as `nats --creds` would use it.
func stockJS(t *testing.T, c *cluster, role string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(c.url, nats.UserCredentials(c.set.CredsFile(role)), nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}))
	if err != nil {
		t.Fatalf("connect as %s: %v", role, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// TestDataDirCredentialsCannotShrinkTheLog has every credential that
// lives in the data directory, the operator's first, try to shorten or
// remove the LEDGER stream through the stock JetStream API: limits that
// drop old messages, deleting the stream, purging it, deleting a message.
// Every attempt is refused and the stream keeps all its messages.
func TestDataDirCredentialsCannotShrinkTheLog(t *testing.T) {
	c := start(t)
	op, _ := c.connect(auth.RoleOperator)
	st := store(t, op)
	const appended = 11
	for i := range appended {
		id := "o" + string(rune('a'+i))
		if _, err := st.Append(context.Background(), events.Decision{Aggregate: events.AggregateRef{Context: "order", ID: id},
			Events: []events.Event{ev(id, "order.placed")}}); err != nil {
			t.Fatal(err)
		}
	}
	weakened := func(edit func(*jetstream.StreamConfig)) jetstream.StreamConfig {
		cfg := events.StreamConfig(1)
		edit(&cfg)
		return cfg
	}
	attempts := []struct {
		name string
		do   func(ctx context.Context, js jetstream.JetStream) error
	}{
		{"update max_msgs=1 discard=old", func(ctx context.Context, js jetstream.JetStream) error {
			_, err := js.UpdateStream(ctx, weakened(func(c *jetstream.StreamConfig) { c.MaxMsgs, c.Discard = 1, jetstream.DiscardOld }))
			return err
		}},
		{"update max_age=1s", func(ctx context.Context, js jetstream.JetStream) error {
			_, err := js.UpdateStream(ctx, weakened(func(c *jetstream.StreamConfig) { c.MaxAge = time.Second }))
			return err
		}},
		{"update deny_delete=false", func(ctx context.Context, js jetstream.JetStream) error {
			_, err := js.UpdateStream(ctx, weakened(func(c *jetstream.StreamConfig) { c.DenyDelete, c.DenyPurge = false, false }))
			return err
		}},
		{"delete stream", func(ctx context.Context, js jetstream.JetStream) error {
			return js.DeleteStream(ctx, events.StreamName)
		}},
		{"purge stream", func(ctx context.Context, js jetstream.JetStream) error {
			s, err := js.Stream(ctx, events.StreamName)
			if err != nil {
				return err
			}
			return s.Purge(ctx)
		}},
		{"delete message 1", func(ctx context.Context, js jetstream.JetStream) error {
			s, err := js.Stream(ctx, events.StreamName)
			if err != nil {
				return err
			}
			return s.DeleteMsg(ctx, 1)
		}},
	}
	roles := append([]string{auth.RoleOperator}, auth.Roles()[:len(auth.Roles())-1]...)
	for _, role := range roles {
		js := stockJS(t, c, role)
		for _, a := range attempts {
			// A refused API request is either answered with an error or
			// dropped by the server (no permission to publish it): bounded.
			ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
			err := a.do(ctx, js)
			cancel()
			if err == nil {
				t.Errorf("%s: %s was accepted", role, a.name)
			}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := c.op.Stream(ctx, events.StreamName)
	if err != nil {
		t.Fatalf("the stream is gone: %v", err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.State; got.Msgs != appended || got.FirstSeq != 1 || got.LastSeq != appended {
		t.Errorf("stream holds %d messages, positions %d..%d; want %d, 1..%d", got.Msgs, got.FirstSeq, got.LastSeq, appended, appended)
	}
	if err := events.CheckStreamConfig(info.Config); err != nil {
		t.Errorf("stream settings changed: %v", err)
	}
}

// TestBreakGlassAdministrator: a seed made outside the data directory and
// admitted for one server's life may change the stream (maintenance), a
// seed inside the data directory is refused, auth.json never lists it, and
// a server started again without it refuses its JWT.
func TestBreakGlassAdministrator(t *testing.T) {
	dir := t.TempDir()
	set, err := auth.Ensure(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := auth.NewBreakGlassSeed(filepath.Join(dir, auth.Dir, "admin.nk"), dir); err == nil {
		t.Fatal("a break-glass seed inside the data directory was written")
	}
	seed := filepath.Join(t.TempDir(), "admin.nk")
	pub, err := auth.NewBreakGlassSeed(seed, dir)
	if err != nil {
		t.Fatal(err)
	}
	configure, userJWT, err := set.BreakGlass(pub)
	if err != nil {
		t.Fatal(err)
	}
	creds := filepath.Join(t.TempDir(), "admin.creds")
	if err := auth.WriteBreakGlassCreds(filepath.Join(dir, "admin.creds"), dir, userJWT, seed); err == nil {
		t.Error("break-glass credentials inside the data directory were written")
	}
	if err := auth.WriteBreakGlassCreds(creds, dir, userJWT, seed); err != nil {
		t.Fatal(err)
	}
	srv, err := embedded.Start(embedded.Config{DataDir: dir, Port: embedded.RandomPort, Configure: configure})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := auth.Connect(srv.ClientURL(), creds)
	if err != nil {
		srv.Shutdown()
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := events.EnsureStream(ctx, js, 1); err != nil {
		t.Fatal(err)
	}
	cfg := events.StreamConfig(1)
	cfg.MaxAge = time.Hour
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatalf("break-glass update: %v", err)
	}
	nc.Close()
	srv.Shutdown()
	b, _ := os.ReadFile(filepath.Join(set.Dir(), auth.ConfigFile))
	if strings.Contains(string(b), pub) {
		t.Error("auth.json lists the break-glass administrator")
	}

	srv, err = embedded.Start(embedded.Config{DataDir: dir, Port: embedded.RandomPort, Configure: set.Configure})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	if nc, err := auth.Connect(srv.ClientURL(), creds, nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("a server started without --break-glass-admin admitted the break-glass JWT")
	}
}
