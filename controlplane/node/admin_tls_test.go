package node

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// selfSigned writes a self-signed certificate for 127.0.0.1 and its key.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sluice admin"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "admin.pem"), filepath.Join(dir, "admin-key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// The admin API over TLS: HTTPS only; every mutating route the server
// lists refuses a request without the token and one with a wrong token
// (401), and nothing changes; with the token the route answers.
func TestAdminTLSAndEveryMutationNeedsTheToken(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	cfg := Config{
		Listen: []string{"udp://" + freeUDPTCP(t)}, Admin: "127.0.0.1:0", AdminToken: "right-token",
		Outputs: []string{"discard"}, AdminTLS: AdminTLSConfig{CertFile: certFile, KeyFile: keyFile},
	}
	cfg.Collector.Loops = 1
	n, err := New(cfg, io.Discard, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	select {
	case <-n.Booted():
	case <-time.After(10 * time.Second):
		t.Fatal("node did not start")
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	base := "https://" + n.AdminAddr()
	do := func(method, path, token, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := do("GET", "/healthz", "", ""); code != http.StatusOK {
		t.Fatalf("GET /healthz over TLS: %d", code)
	}
	if resp, err := http.Get("http://" + n.AdminAddr() + "/healthz"); err == nil {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatalf("plain HTTP answered: %d %s", resp.StatusCode, b)
		}
	}

	version := func() uint64 { return n.med.Current().Version }
	before := version()
	bodies := map[string]string{
		"/api/v1/pipeline":  "pipelines:\n  - outputs: [discard]\n",
		"/api/v1/listeners": `{"url":"udp://127.0.0.1:1"}`,
		"/api/v1/drain":     `{"timeout_ms":1}`,
	}
	mutations := 0
	for _, r := range n.adm.Routes() {
		if r.Method == "GET" || r.Method == "HEAD" {
			continue
		}
		mutations++
		for _, token := range []string{"", "wrong-token"} {
			if code, body := do(r.Method, r.Path, token, bodies[r.Path]); code != http.StatusUnauthorized {
				t.Errorf("%s %s with token %q: %d %s, want 401", r.Method, r.Path, token, code, body)
			}
		}
	}
	if mutations < 4 {
		t.Fatalf("%d mutating routes listed", mutations)
	}
	if v := version(); v != before {
		t.Fatalf("pipeline version %d after refused requests, was %d", v, before)
	}
	// The right token passes (the positive marker for the refusals).
	if code, body := do("PUT", "/api/v1/pipeline", "right-token", bodies["/api/v1/pipeline"]); code != http.StatusOK || version() == before {
		t.Fatalf("PUT with the token: %d %s", code, body)
	}
}
