package tlsconf_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/marketledger/ledger/events/embedded"
	"github.com/marketledger/ledger/events/embedded/tlsconf"
	"github.com/nats-io/nats.go"
)

// pki is a CA and certificates made for one test, written as PEM files.
type pki struct {
	t    *testing.T
	dir  string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	n    int64
}

func newCA(t *testing.T, name string) *pki {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	p := &pki{t: t, dir: t.TempDir(), cert: cert, key: key, n: 1}
	writePEM(t, filepath.Join(p.dir, "ca.pem"), "CERTIFICATE", der)
	return p
}

func (p *pki) caFile() string { return filepath.Join(p.dir, "ca.pem") }

// issue signs a leaf certificate valid from notBefore to notAfter and
// returns its certificate and key files.
func (p *pki) issue(name string, server bool, notBefore, notAfter time.Time) tlsconf.Files {
	p.t.Helper()
	p.n++
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(p.n), Subject: pkix.Name{CommonName: name},
		NotBefore: notBefore, NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.DNSNames = []string{"localhost"}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.cert, &key.PublicKey, p.key)
	if err != nil {
		p.t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	f := tlsconf.Files{Cert: filepath.Join(p.dir, name+".pem"), Key: filepath.Join(p.dir, name+"-key.pem")}
	writePEM(p.t, f.Cert, "CERTIFICATE", der)
	writePEM(p.t, f.Key, "EC PRIVATE KEY", kder)
	return f
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

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
	srvFiles := ca.issue("server", true, now.Add(-time.Hour), now.Add(time.Hour))
	srvFiles.CA = ca.caFile()
	client := ca.issue("client", false, now.Add(-time.Hour), now.Add(time.Hour))
	expired := ca.issue("expired", false, now.Add(-48*time.Hour), now.Add(-24*time.Hour))
	stranger := foreign.issue("stranger", false, now.Add(-time.Hour), now.Add(time.Hour))

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
		opt, err := tlsconf.ClientOption(tlsconf.Files{CA: ca.caFile(), Cert: client.Cert, Key: client.Key})
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
		opt, err := tlsconf.ClientOption(tlsconf.Files{CA: foreign.caFile(), Cert: client.Cert, Key: client.Key})
		if err != nil {
			t.Fatal(err)
		}
		if err := connect(opt); err == nil || !strings.Contains(err.Error(), "unknown authority") {
			t.Fatalf("want unknown authority, got %v", err)
		}
	})
	t.Run("expired client certificate", func(t *testing.T) {
		_, err := tlsconf.Client(tlsconf.Files{CA: ca.caFile(), Cert: expired.Cert, Key: expired.Key})
		if err == nil || !strings.Contains(err.Error(), "expired") {
			t.Fatalf("the helper loaded an expired certificate: %v", err)
		}
		// With TLS 1.3 the client may see the server's "expired certificate"
		// alert or only the closed connection, depending on timing.
		if err := connect(nats.Secure(unchecked(t, expired, ca.caFile()))); err == nil {
			t.Fatal("the server accepted an expired client certificate")
		}
	})
	t.Run("client certificate from a foreign CA", func(t *testing.T) {
		if err := connect(nats.Secure(unchecked(t, stranger, ca.caFile()))); err == nil {
			t.Fatal("the server accepted a certificate from a foreign CA")
		}
	})
	t.Run("no client certificate", func(t *testing.T) {
		opt, _ := tlsconf.ClientOption(tlsconf.Files{CA: ca.caFile()})
		if err := connect(opt); err == nil {
			t.Fatal("the server accepted a client without a certificate")
		}
	})
}

func TestExpiredServerCertificate(t *testing.T) {
	now := time.Now()
	ca := newCA(t, "ledger test CA")
	old := ca.issue("server", true, now.Add(-48*time.Hour), now.Add(-24*time.Hour))
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
	opt, _ := tlsconf.ClientOption(tlsconf.Files{CA: ca.caFile()})
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
	f := ca.issue("server", true, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
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
