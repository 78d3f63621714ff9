package tlsconf_test

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/marketledger/ledger/node/embedded"
	"github.com/marketledger/ledger/node/tlsconf"
	"github.com/marketledger/ledger/node/tlsconf/tlstest"
)

type pki = tlstest.CA

func newCA(t *testing.T, name string) *pki { return tlstest.NewCA(t, name) }

// unchecked loads a key pair without the package's validity check, to show
// that the server itself refuses what the helper would have refused early.
func unchecked(t *testing.T, f tlsconf.Files, ca string) *tls.Config {
	t.Helper()
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(ca)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b)
	return &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12}
}

func TestTLS(t *testing.T) {
	now := time.Now()
	ca := newCA(t, "ledger test CA")
	foreign := newCA(t, "someone else's CA")
	srvFiles := ca.Issue("server", true, now.Add(-time.Hour), now.Add(time.Hour))
	srvFiles.CA = ca.File()
	client := ca.Issue("client", false, now.Add(-time.Hour), now.Add(time.Hour))
	expired := ca.Issue("expired", false, now.Add(-48*time.Hour), now.Add(-24*time.Hour))
	stranger := foreign.Issue("stranger", false, now.Add(-time.Hour), now.Add(time.Hour))

	scfg, err := tlsconf.Server(srvFiles, true)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := embedded.Start(embedded.Config{DataDir: t.TempDir(), Host: "127.0.0.1", Port: embedded.RandomPort,
		Configure: tlsconf.Configure(scfg)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	url := srv.ClientURL()

	connect := func(opts ...nats.Option) error {
		nc, err := nats.Connect(url, append(opts, nats.MaxReconnects(0), nats.Timeout(2*time.Second))...)
		if err == nil {
			err = nc.Flush()
			nc.Close()
		}
		if err != nil {
			t.Logf("refused: %v", err)
		}
		return err
	}

	t.Run("with the CA", func(t *testing.T) {
		opt, err := tlsconf.ClientOption(tlsconf.Files{CA: ca.File(), Cert: client.Cert, Key: client.Key})
		if err != nil {
			t.Fatal(err)
		}
		if err := connect(opt); err != nil {
			t.Fatalf("a client with the CA and its certificate was refused: %v", err)
		}
	})
	t.Run("without the CA", func(t *testing.T) {
		opt, err := tlsconf.ClientOption(tlsconf.Files{Cert: client.Cert, Key: client.Key})
		if err != nil {
			t.Fatal(err)
		}
		err = connect(opt)
		var unknown x509.UnknownAuthorityError
		if !errors.As(err, &unknown) && (err == nil || !strings.Contains(err.Error(), "unknown authority")) {
			t.Fatalf("want unknown authority, got %v", err)
		}
	})
	t.Run("plain text", func(t *testing.T) {
		if err := connect(); err == nil {
			t.Fatal("a client without TLS settings connected")
		}
	})
	t.Run("trusting a foreign CA", func(t *testing.T) {
		opt, err := tlsconf.ClientOption(tlsconf.Files{CA: foreign.File(), Cert: client.Cert, Key: client.Key})
		if err != nil {
			t.Fatal(err)
		}
		if err := connect(opt); err == nil || !strings.Contains(err.Error(), "unknown authority") {
			t.Fatalf("want unknown authority, got %v", err)
		}
	})
	t.Run("expired client certificate", func(t *testing.T) {
		_, err := tlsconf.Client(tlsconf.Files{CA: ca.File(), Cert: expired.Cert, Key: expired.Key})
		if err == nil || !strings.Contains(err.Error(), "expired") {
			t.Fatalf("the helper loaded an expired certificate: %v", err)
		}
		// With TLS 1.3 the client may see the server's "expired certificate"
		// alert or only the closed connection, depending on timing.
		if err := connect(nats.Secure(unchecked(t, expired, ca.File()))); err == nil {
			t.Fatal("the server accepted an expired client certificate")
		}
	})
	t.Run("client certificate from a foreign CA", func(t *testing.T) {
		if err := connect(nats.Secure(unchecked(t, stranger, ca.File()))); err == nil {
			t.Fatal("the server accepted a certificate from a foreign CA")
		}
	})
	t.Run("no client certificate", func(t *testing.T) {
		opt, _ := tlsconf.ClientOption(tlsconf.Files{CA: ca.File()})
		if err := connect(opt); err == nil {
			t.Fatal("the server accepted a client without a certificate")
		}
	})
}

func TestExpiredServerCertificate(t *testing.T) {
	now := time.Now()
	ca := newCA(t, "ledger test CA")
	old := ca.Issue("server", true, now.Add(-48*time.Hour), now.Add(-24*time.Hour))
	if _, err := tlsconf.Server(old, false); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("want the expired server certificate refused at load, got %v", err)
	}
	// Served anyway, a client refuses it.
	cert, _ := tls.LoadX509KeyPair(old.Cert, old.Key)
	srv, err := embedded.Start(embedded.Config{DataDir: t.TempDir(), Port: embedded.RandomPort,
		Configure: tlsconf.Configure(&tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	opt, _ := tlsconf.ClientOption(tlsconf.Files{CA: ca.File()})
	nc, err := nats.Connect(srv.ClientURL(), opt, nats.MaxReconnects(0))
	if err == nil {
		nc.Close()
		t.Fatal("a client accepted an expired server certificate")
	}
	if !strings.Contains(err.Error(), "expired") {
		t.Fatalf("want an expiry error, got %v", err)
	}
}

func TestServerNeedsFiles(t *testing.T) {
	if _, err := tlsconf.Server(tlsconf.Files{}, false); err == nil {
		t.Fatal("a server without a certificate was configured")
	}
	ca := newCA(t, "ca")
	f := ca.Issue("server", true, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if _, err := tlsconf.Server(f, true); err == nil {
		t.Fatal("client verification without a CA was configured")
	}
	f.CA = f.Key // not a certificate
	if _, err := tlsconf.Server(f, true); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("want a CA file error, got %v", err)
	}
	if _, err := tlsconf.Client(tlsconf.Files{CA: filepath.Join(t.TempDir(), "missing.pem")}); err == nil {
		t.Fatal("a missing CA file was accepted")
	}
}
