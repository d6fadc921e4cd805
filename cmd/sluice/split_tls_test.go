package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/internal/testcert"
)

// `sluice collector` reloads its tls:// files on SIGHUP: a broken file is
// refused and counted (the loaded certificate stays in use), a new good one
// is what the next exporter's handshake sees. No handshake happens between
// the writes and the signals, so only SIGHUP can have read the files.
func TestSplitCollectorReloadsTLSOnSIGHUP(t *testing.T) {
	env := chainEnv(t)
	r := env.newRun(t, "split-tls", false)
	p := &splitPod{r: r, ringDir: filepath.Join(r.dir, "rings")}
	p.flow, p.colAdmin = e2eFreePorts(t)
	certDir := t.TempDir()
	certFile, keyFile, _ := testcert.SelfSigned(t, certDir, "ipfix")
	addr := fmt.Sprintf("127.0.0.1:%d", p.flow)
	p.col = r.start("collector", env.sluice, "collector", "--ring-dir", p.ringDir, "--loops", "1",
		"--listen", "tls://"+addr, "--tls-cert", certFile, "--tls-key", keyFile,
		"--admin", fmt.Sprintf("127.0.0.1:%d", p.colAdmin))
	p.waitReady(p.colAdmin, p.col)

	serial := func() string {
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
			&tls.Config{InsecureSkipVerify: true}) // the serial is what is checked
		if err != nil {
			t.Fatalf("handshake: %v\n%s", err, p.col.tail())
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	first := serial()
	reloads := func(outcome string) float64 {
		return p.metric(p.colAdmin, `sluice_tls_reloads_total{outcome="`+outcome+`"}`)
	}
	if got := reloads("failed"); got != 0 {
		t.Fatalf("failed reloads before any: %v", got)
	}

	// A broken certificate: refused on SIGHUP, counted, logged.
	if err := os.WriteFile(certFile, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p.col.signal(syscall.SIGHUP)
	p.waitFor("the failed reload counted", 10*time.Second, func() bool { return reloads("failed") == 1 })
	if !strings.Contains(p.col.output(), "tls files reload failed") {
		t.Errorf("the failed reload is not logged:\n%s", p.col.tail())
	}

	// A good new certificate: in use after SIGHUP.
	newCert, newKey, _ := testcert.SelfSigned(t, t.TempDir(), "ipfix")
	for src, dst := range map[string]string{newCert: certFile, newKey: keyFile} {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p.col.signal(syscall.SIGHUP)
	p.waitFor("the reload counted", 10*time.Second, func() bool { return reloads("changed") == 1 })
	if second := serial(); second == first {
		t.Fatalf("the handshake after the reload shows the old certificate (serial %s)", first)
	}
	if p.col.exited() {
		t.Fatalf("collector exited:\n%s", p.col.tail())
	}
}
