package node

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/internal/testcert"
)

// The admin API over TLS: HTTPS only; every mutating route the server
// lists refuses a request without the token and one with a wrong token
// (401), and nothing changes; with the token the route answers.
func TestAdminTLSAndEveryMutationNeedsTheToken(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := testcert.SelfSigned(t, dir, "admin")
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
