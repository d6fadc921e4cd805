// Package tlsfiles keeps TLS certificates, keys and CA bundles read from
// files current: a server or client configuration built here picks up new
// files without a restart (they are looked at again at most once a second
// when a handshake needs them, and at once on Reload, which cmd/ calls on
// SIGHUP).
package tlsfiles

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Files names the PEM files of one side of a TLS connection.
type Files struct {
	// Cert and Key are this side's certificate chain and private key;
	// both or neither.
	Cert, Key string
	// CA is a bundle of certificate authorities: for a server, those
	// that sign client certificates (set: mutual TLS, a client
	// certificate is required and verified); for a client, those that
	// sign the server's (empty: the system's).
	CA string
}

// state is what one load produced.
type state struct {
	cert  *tls.Certificate
	pool  *x509.CertPool
	stamp string // a hash of the files' contents
}

// Store holds the loaded files and reloads them when they change. Safe for
// concurrent use.
type Store struct {
	files   Files
	cur     atomic.Pointer[state]
	mu      sync.Mutex // one reload at a time
	checked atomic.Int64
	reloads atomic.Uint64
	errs    atomic.Uint64
}

// Load reads the files and returns a Store; errors name the file.
func Load(f Files) (*Store, error) {
	if (f.Cert == "") != (f.Key == "") {
		return nil, errors.New("tlsfiles: a certificate and its key go together")
	}
	s := &Store{files: f}
	st, err := load(f)
	if err != nil {
		return nil, err
	}
	s.cur.Store(st)
	s.checked.Store(time.Now().UnixNano())
	return s, nil
}

// stamp identifies the files' contents (a hash: modification times can
// repeat within the clock's granularity). The files are small and read at
// most once a second.
func stamp(f Files) string {
	h := sha256.New()
	for _, p := range []string{f.Cert, f.Key, f.CA} {
		if p == "" {
			continue
		}
		b, _ := os.ReadFile(p)
		h.Write(b)
		h.Write([]byte{0})
	}
	return string(h.Sum(nil))
}

func load(f Files) (*state, error) {
	st := &state{stamp: stamp(f)}
	if f.Cert != "" {
		c, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			return nil, fmt.Errorf("tlsfiles: %s, %s: %w", f.Cert, f.Key, err)
		}
		st.cert = &c
	}
	if f.CA != "" {
		pem, err := os.ReadFile(f.CA)
		if err != nil {
			return nil, fmt.Errorf("tlsfiles: %w", err)
		}
		st.pool = x509.NewCertPool()
		if !st.pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tlsfiles: %s: no PEM certificate", f.CA)
		}
	}
	return st, nil
}

// Reload reads the files again if they changed. On an error the loaded
// ones stay in use.
func (s *Store) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checked.Store(time.Now().UnixNano())
	if stamp(s.files) == s.cur.Load().stamp {
		return nil
	}
	st, err := load(s.files)
	if err != nil {
		s.errs.Add(1)
		return err
	}
	s.cur.Store(st)
	s.reloads.Add(1)
	return nil
}

// current returns the loaded state, first reloading changed files if the
// last look was over a second ago.
func (s *Store) current() *state {
	if time.Now().UnixNano()-s.checked.Load() > int64(time.Second) {
		_ = s.Reload() // a bad new file leaves the old one in use; Reloads shows it
	}
	return s.cur.Load()
}

// Reloads returns how many reloads changed the files in use, and how many
// failed.
func (s *Store) Reloads() (ok, failed uint64) { return s.reloads.Load(), s.errs.Load() }

// ServerConfig returns a server configuration (TLS 1.2 at least) with the
// current certificate; with a CA, client certificates are required and
// verified against it.
func (s *Store) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			st := s.current()
			c := &tls.Config{MinVersion: tls.VersionTLS12}
			if st.cert != nil {
				c.Certificates = []tls.Certificate{*st.cert}
			}
			if st.pool != nil {
				c.ClientCAs = st.pool
				c.ClientAuth = tls.RequireAndVerifyClientCert
			}
			return c, nil
		},
	}
}

// ClientConfig returns a client configuration for serverName: the
// server's certificate verified against the CA (the system's without
// one), and the current client certificate when there is one.
func (s *Store) ClientConfig(serverName string) *tls.Config {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: serverName}
	if st := s.cur.Load(); st.pool != nil {
		c.RootCAs = st.pool
	}
	if s.files.Cert != "" {
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return s.current().cert, nil
		}
	}
	return c
}
