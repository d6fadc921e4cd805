package collector_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/pem"
	"math/big"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/dataplane/collector"
	"github.com/sluice-flow/sluice/dataplane/export"
	"github.com/sluice-flow/sluice/dataplane/internal/testnet"
	"github.com/sluice-flow/sluice/dataplane/mediator"
	"github.com/sluice-flow/sluice/dataplane/offline/decode"
)

// testPKI is a CA with server and client certificates in PEM files.
type testPKI struct {
	dir                   string
	ca                    *x509.Certificate
	caKey                 *ecdsa.PrivateKey
	caFile                string
	serverCert, serverKey string
	clientCert, clientKey string
}

func newPKI(t *testing.T) *testPKI {
	t.Helper()
	p := &testPKI{dir: t.TempDir()}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sluice test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p.ca, _ = x509.ParseCertificate(der)
	p.caKey = key
	p.caFile = p.write(t, "ca.pem", "CERTIFICATE", der)
	p.serverCert, p.serverKey = p.issue(t, "server", 2, true)
	p.clientCert, p.clientKey = p.issue(t, "exporter", 3, false)
	return p
}

func (p *testPKI) write(t *testing.T, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.dir, name)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil { // atomic, as a certificate manager replaces files
		t.Fatal(err)
	}
	return path
}

// issue writes a certificate signed by the CA (for 127.0.0.1 when server)
// and its key, named after name; it returns the two paths.
func (p *testPKI) issue(t *testing.T, name string, serial int64, server bool) (string, string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	if server {
		tpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	} else {
		tpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	// The key first: a reader seeing the new certificate finds its key.
	k := p.write(t, name+"-key.pem", "EC PRIVATE KEY", kder)
	return p.write(t, name+".pem", "CERTIFICATE", der), k
}

// fileRecords counts the data records of an RFC 5655 file as the offline
// decoder reads them.
func fileRecords(t *testing.T, b []byte) int {
	t.Helper()
	d := decode.New()
	n := 0
	for len(b) >= 4 {
		l := int(binary.BigEndian.Uint16(b[2:]))
		if _, err := d.Decode(netip.MustParseAddrPort("192.0.2.1:1"), b[:l], func(*decode.Record) { n++ }); err != nil {
			t.Fatal(err)
		}
		b = b[l:]
	}
	return n
}

// startTLS starts a collector with a tls:// listener (mutual TLS when
// clientCA) and a mediator into a counting output.
func startTLS(t *testing.T, p *testPKI, clientCA bool) (*harness, string) {
	t.Helper()
	h := &harness{out: &countOut{}, port: testnet.FreePort(t, "127.0.0.1"), runErr: make(chan error, 1), medEnd: make(chan struct{})}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(h.port))
	cfg := collector.Config{Listen: []string{"tls://" + addr}, Loops: 2,
		TLS: collector.TLSConfig{CertFile: p.serverCert, KeyFile: p.serverKey}}
	if clientCA {
		cfg.TLS.ClientCAFile = p.caFile
	}
	c, err := collector.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	h.c = c
	h.med = mediator.New(c.Rings(), []export.Output{h.out}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.runErr <- c.Run(context.Background()) }()
	<-c.Booted()
	h.startMediator(ctx)
	t.Cleanup(func() { h.stop(t) })
	// The listener is open: a client's handshake waits in its backlog
	// until the accepting starts.
	return h, addr
}

// A real TLS client, openssl s_client, pipes softflowd's IPFIX file into a
// mutual-TLS listener with its client certificate: every record arrives.
func TestTLSInputOpenSSLClient(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatal("openssl is needed (Debian package openssl)")
	}
	p := newPKI(t)
	h, addr := startTLS(t, p, true)
	file := filepath.Join("..", "..", "testdata", "captures", "softflowd-ipfix-tcp.ipfix")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	want := fileRecords(t, data)
	in, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	cmd := exec.Command(openssl, "s_client", "-connect", addr, "-CAfile", p.caFile,
		"-cert", p.clientCert, "-key", p.clientKey, "-verify_return_error", "-quiet", "-no_ign_eof")
	cmd.Stdin = in
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("openssl s_client: %v\n%s", err, out)
	}
	h.waitRecords(t, uint64(want))
	if got := h.metricValue(`sluice_tls_sessions_failed_total`); got != 0 {
		t.Fatalf("tls failures %v", got)
	}
}

// Mutual TLS refuses a client without a certificate (and one whose
// certificate another CA signed): nothing of what it sent is decoded.
func TestTLSInputRefusesClientWithoutCertificate(t *testing.T) {
	p := newPKI(t)
	h, addr := startTLS(t, p, true)
	roots := x509.NewCertPool()
	roots.AddCert(p.ca)
	other := newPKI(t)
	otherCert, err := tls.LoadX509KeyPair(other.clientCert, other.clientKey)
	if err != nil {
		t.Fatal(err)
	}
	tpl, data, _ := exporterMsgs(1, 3, 10)
	for i, certs := range [][]tls.Certificate{nil, {otherCert}} {
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, Certificates: certs})
		if err == nil {
			// TLS 1.3: the server judges the client's certificate after
			// the client's side of the handshake; the refusal comes on
			// the next read.
			_, _ = conn.Write(tpl)
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err = conn.Read(make([]byte, 1))
			conn.Close()
		}
		if err == nil {
			t.Fatalf("client %d: session not refused", i)
		}
		if !h.waitMetric(`sluice_tls_sessions_failed_total{reason="handshake"}`, is(float64(i+1))) {
			t.Fatalf("client %d: handshake failure not counted", i)
		}
	}
	// A client with its certificate is served on the same listener: the
	// positive marker that the refused ones' data would have been seen.
	cert, err := tls.LoadX509KeyPair(p.clientCert, p.clientKey)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range append([][]byte{tpl}, data...) {
		if _, err := conn.Write(m); err != nil {
			t.Fatal(err)
		}
	}
	conn.Close()
	h.waitRecords(t, 30)
	if got := h.metricValue("sluice_templates_learned_total"); got != 1 {
		t.Fatalf("templates learned %v: a refused session's template was decoded", got)
	}
}

// The server's certificate is replaced on disk: the next session gets the
// new one, with no restart. Sessions keep their TLS session's template
// scope: a second session's data does not use the first one's template.
func TestTLSCertificateReloadedAndSessionScope(t *testing.T) {
	p := newPKI(t)
	h, addr := startTLS(t, p, false)
	roots := x509.NewCertPool()
	roots.AddCert(p.ca)
	serial := func() int64 {
		t.Helper()
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
	}
	if s := serial(); s != 2 {
		t.Fatalf("serial %d, want 2", s)
	}
	p.issue(t, "server", 9, true) // same paths, new certificate
	for deadline := time.Now().Add(10 * time.Second); serial() != 9; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the new certificate was not picked up")
		}
	}
	if err := h.c.ReloadTLS(); err != nil {
		t.Fatal(err)
	}

	tpl, data, _ := exporterMsgs(1, 2, 5)
	a, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := a.Write(append(append([]byte(nil), tpl...), data[0]...)); err != nil {
		t.Fatal(err)
	}
	h.waitRecords(t, 5)
	if _, err := b.Write(data[1]); err != nil { // no template in session b
		t.Fatal(err)
	}
	if !h.waitMetric("sluice_held_sets", is(1)) {
		t.Fatal("session b's data did not wait for its own template")
	}
	if _, err := b.Write(tpl); err != nil {
		t.Fatal(err)
	}
	h.waitRecords(t, 10)

	// The API names the sessions' transport, and their templates'.
	sessions := map[uint64]bool{}
	for _, e := range h.c.Exporters() {
		if e.Transport != "tls" || e.TCPSession == 0 {
			t.Errorf("exporter entry %s session %d: transport %q, want tls", e.Exporter, e.TCPSession, e.Transport)
		}
		sessions[e.TCPSession] = true
	}
	if len(sessions) != 2 {
		t.Errorf("%d TLS sessions listed, want 2", len(sessions))
	}
	for _, tm := range h.c.TemplateList() {
		if tm.Transport != "tls" {
			t.Errorf("template %d of session %d: transport %q, want tls", tm.TemplateID, tm.TCPSession, tm.Transport)
		}
	}
}

// Sluice to Sluice over ipfix+tls: collector A (UDP in) re-exports through
// its mediator's ipfix+tls output, with a client certificate, to collector
// B's mutual-TLS listener; B receives every record. The same output without
// a client certificate is refused by B.
func TestSluiceToSluiceOverTLS(t *testing.T) {
	p := newPKI(t)
	b, addrB := startTLS(t, p, true)

	spec := "ipfix+tls://" + addrB + "?ca_file=" + p.caFile + "&cert_file=" + p.clientCert + "&key_file=" + p.clientKey
	out, err := export.Parse(spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	portA := testnet.FreePort(t, "127.0.0.1")
	a, err := collector.New(collector.Config{Listen: []string{"udp://127.0.0.1:" + strconv.Itoa(portA)}, Loops: 1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	med := mediator.New(a.Rings(), []export.Output{out}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	medDone, runErr := make(chan struct{}), make(chan error, 1)
	go func() { runErr <- a.Run(context.Background()) }()
	<-a.Booted()
	go func() { med.Run(ctx); close(medDone) }()
	defer func() {
		sctx, scancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer scancel()
		_ = a.Stop(sctx)
		<-runErr
		cancel()
		<-medDone
	}()

	conn, err := net.Dial("udp", "127.0.0.1:"+strconv.Itoa(portA))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tpl, data, octets := exporterMsgs(5, 20, 10)
	for _, m := range append([][]byte{tpl}, data...) {
		if _, err := conn.Write(m); err != nil {
			t.Fatal(err)
		}
	}
	b.waitRecords(t, 200)
	if got := b.out.sum.Load(); got != octets {
		t.Fatalf("octets %d at B, %d sent", got, octets)
	}

	// Without a client certificate B refuses the output's sessions.
	bare, err := export.Parse("ipfix+tls://"+addrB+"?ca_file="+p.caFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bare.Close()
	if !b.waitMetric(`sluice_tls_sessions_failed_total{reason="handshake"}`, func(v float64) bool { return v >= 1 }) {
		t.Fatal("an output without a client certificate was not refused")
	}
}
