package tlsfiles

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func writeCert(t *testing.T, dir string, serial int64) (string, string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "t"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	c, k := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	if err := os.WriteFile(k, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return c, k
}

func serialOf(t *testing.T, s *Store) int64 {
	t.Helper()
	c, err := x509.ParseCertificate(s.cur.Load().cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber.Int64()
}

// A changed file is taken on Reload; a broken one leaves the loaded
// certificate in use and counts the failure; a missing key is refused at
// Load.
func TestReload(t *testing.T) {
	dir := t.TempDir()
	c, k := writeCert(t, dir, 1)
	s, err := Load(Files{Cert: c, Key: k})
	if err != nil {
		t.Fatal(err)
	}
	writeCert(t, dir, 2)
	if err := s.Reload(); err != nil || serialOf(t, s) != 2 {
		t.Fatalf("reload: %v, serial %d", err, serialOf(t, s))
	}
	if err := os.WriteFile(c, []byte("not a certificate, and a new size"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err == nil || serialOf(t, s) != 2 {
		t.Fatalf("broken file: %v, serial %d", err, serialOf(t, s))
	}
	if ok, failed := s.Reloads(); ok != 1 || failed != 1 {
		t.Fatalf("reloads %d failed %d", ok, failed)
	}
	if _, err := Load(Files{Cert: c}); err == nil {
		t.Fatal("a certificate without its key was accepted")
	}
	if _, err := Load(Files{CA: k}); err == nil {
		t.Fatal("a CA file without a certificate was accepted")
	}
}
