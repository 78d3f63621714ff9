// Package tlsconf builds the TLS settings of the ledger's connections from
// PEM files: the embedded nats-server's client port (and, with the same
// tls.Config, an HTTP server) and the clients that connect to it. TLS is off
// unless a caller asks for it; on loopback the default, credentials already
// keep other users out, and TLS is for a node reachable from the network.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Files names the PEM files of one side of a connection.
type Files struct {
	// Cert and Key are this side's certificate chain and private key:
	// required for a server, optional for a client (needed when the server
	// verifies clients).
	Cert, Key string
	// CA is the bundle of authorities this side trusts for the other side:
	// a server verifies client certificates against it, a client the
	// server's. A client without CA trusts the system's roots.
	CA string
}

// handshakeTimeout bounds a TLS handshake on the NATS port, so that a client
// that opens a connection and stays silent does not hold it.
const handshakeTimeout = 2 * time.Second

// Server returns the TLS configuration of a server: its certificate, TLS 1.2
// at least, and, when verifyClients is set, a client certificate signed by
// f.CA required on every connection.
func Server(f Files, verifyClients bool) (*tls.Config, error) {
	if f.Cert == "" || f.Key == "" {
		return nil, errors.New("tlsconf: a server needs a certificate and a key file")
	}
	cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: certificate %s / key %s: %w", f.Cert, f.Key, err)
	}
	if err := checkValidity(f.Cert, cert); err != nil {
		return nil, err
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if verifyClients {
		if f.CA == "" {
			return nil, errors.New("tlsconf: verifying clients needs a CA file")
		}
		pool, err := loadPool(f.CA)
		if err != nil {
			return nil, err
		}
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

// Client returns the TLS configuration of a client: it trusts f.CA (or the
// system's roots) for the server's certificate and presents f.Cert when
// given.
func Client(f Files) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if f.CA != "" {
		pool, err := loadPool(f.CA)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = pool
	}
	if f.Cert != "" || f.Key != "" {
		cert, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return nil, fmt.Errorf("tlsconf: client certificate %s / key %s: %w", f.Cert, f.Key, err)
		}
		if err := checkValidity(f.Cert, cert); err != nil {
			return nil, err
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

// Configure returns a function for embedded.Config.Configure that turns on
// TLS on the client port with cfg (from Server). The server then refuses
// plain-text clients.
func Configure(cfg *tls.Config) func(*server.Options) {
	return func(o *server.Options) {
		o.TLSConfig = cfg
		o.TLS = true
		o.TLSVerify = cfg.ClientAuth == tls.RequireAndVerifyClientCert
		o.TLSTimeout = handshakeTimeout.Seconds()
	}
}

// Chain runs several option functions in order (credentials and TLS, for
// example) as one embedded.Config.Configure.
func Chain(fs ...func(*server.Options)) func(*server.Options) {
	return func(o *server.Options) {
		for _, f := range fs {
			if f != nil {
				f(o)
			}
		}
	}
}

// ClientOption returns the nats.Connect option for TLS with f.
func ClientOption(f Files) (nats.Option, error) {
	cfg, err := Client(f)
	if err != nil {
		return nil, err
	}
	return nats.Secure(cfg), nil
}

func loadPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tlsconf: CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("tlsconf: CA file %s holds no PEM certificate", path)
	}
	return pool, nil
}

// checkValidity refuses a certificate outside its validity period at load,
// with the dates, rather than at the first handshake with a vaguer error.
func checkValidity(path string, c tls.Certificate) error {
	leaf := c.Leaf
	if leaf == nil && len(c.Certificate) > 0 {
		var err error
		if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return fmt.Errorf("tlsconf: %s: %w", path, err)
		}
	}
	if leaf == nil {
		return fmt.Errorf("tlsconf: %s holds no certificate", path)
	}
	now := time.Now()
	if now.After(leaf.NotAfter) {
		return fmt.Errorf("tlsconf: %s expired at %s", path, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(leaf.NotBefore) {
		return fmt.Errorf("tlsconf: %s is not valid before %s", path, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}
