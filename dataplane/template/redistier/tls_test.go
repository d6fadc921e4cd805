package redistier_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/dataplane/template"
	"github.com/sluice-flow/sluice/dataplane/template/redistier"
)

// writeCerts makes a CA and a server certificate for 127.0.0.1 in dir.
func writeCerts(t testing.TB, dir string) (caFile, certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sluice test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "redis"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, ca, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pool = x509.NewCertPool()
	pool.AddCert(ca)
	return write("ca.pem", "CERTIFICATE", caDER), write("server.pem", "CERTIFICATE", srvDER),
		write("server.key", "PRIVATE KEY", keyDER), pool
}

// TLS with a private CA and a password: one store writes, another fetches;
// a wrong password is an error that is counted, not a crash.
func TestTLSAndPassword(t *testing.T) {
	needRedis(t)
	dir := t.TempDir()
	caFile, certFile, keyFile, pool := writeCerts(t, dir)
	r := startRedis(t, &tls.Config{RootCAs: pool},
		"--tls-cert-file", certFile, "--tls-key-file", keyFile, "--tls-ca-cert-file", caFile,
		"--tls-auth-clients", "no", "--requirepass", "s3cret")
	cfg := redistier.Config{Addrs: []string{r.Addr()}, TLS: true, CAFile: caFile, Password: "s3cret", DB: 3}

	k := key(10, 100, 256)
	now := time.Now().UnixNano()
	tpl := mkTemplate(t, k, flowFields, now, now+int64(time.Hour))
	sharedA := template.NewShared()
	sharedA.Put(tpl)
	a, err := redistier.New(cfg, sharedA, nil, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	a.Learned(tpl)
	waitFor(t, 5*time.Second, "write over TLS", func() bool {
		return storeMetric(t, a, `sluice_template_shared_writes_total{result="written"}`) == 1
	})

	sharedB := template.NewShared()
	arrived := make(chan template.Key, 1)
	b, err := redistier.New(cfg, sharedB, func(k template.Key) { arrived <- k }, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	b.Missing(k)
	select {
	case got := <-arrived:
		if got != k || sharedB.Get(k) == nil || sharedB.Get(k).Layout.Fingerprint != tpl.Layout.Fingerprint {
			t.Fatalf("fetched %v: %v", got, sharedB.Get(k))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("template not fetched over TLS")
	}

	// Another database holds nothing for k.
	other := cfg
	other.DB = 4
	c, err := redistier.New(other, template.NewShared(), nil, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	<-c.Ready()
	c.Missing(k)
	waitFor(t, 5*time.Second, "miss in another database", func() bool {
		return storeMetric(t, c, "sluice_template_shared_misses_total") == 1
	})

	bad := cfg
	bad.Password = "wrong"
	d, err := redistier.New(bad, template.NewShared(), nil, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	d.Learned(tpl)
	waitFor(t, 5*time.Second, "errors counted", func() bool {
		return storeMetric(t, d, "sluice_template_shared_errors_total") > 0
	})

	noCA := cfg
	noCA.CAFile = filepath.Join(dir, "missing.pem")
	if _, err := redistier.New(noCA, template.NewShared(), nil, nil); err == nil {
		t.Error("missing CA file accepted")
	}
}
