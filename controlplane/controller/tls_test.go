package controller

import (
	"crypto/tls"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/controlplane/dbus"
	"github.com/sluice-flow/sluice/internal/testcert"
)

// The controller's API over TLS: HTTPS answers (a view and a mutation
// through the bus with the token, 401 without), plain HTTP does not.
func TestAPIOverTLS(t *testing.T) {
	certFile, keyFile, pool := testcert.SelfSigned(t, t.TempDir(), "controller")
	c := startController(t, Config{TLSCertFile: certFile, TLSKeyFile: keyFile})
	startProcess(t, c.BusAddress(), "mediator", dbus.MediatorName, dbus.NewMediatorObject(newPipeMediator()))
	a := api{t: t, base: "https://" + c.APIAddr(), client: &http.Client{
		Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}}
	if code, body := a.do("GET", "/api/v1/status", "", ""); code != 200 || !strings.Contains(body, "mediator") {
		t.Fatalf("GET /api/v1/status over TLS: %d %s", code, body)
	}
	if code, _ := a.do("PUT", "/api/v1/pipeline", "", goodPipeline); code != 401 {
		t.Fatalf("PUT without the token over TLS: %d", code)
	}
	waitFor(t, "the mediator on the bus", func() bool {
		code, _ := a.do("PUT", "/api/v1/pipeline", "tok", goodPipeline)
		return code == 200
	})
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + c.APIAddr() + "/api/v1/status")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Fatal("plain HTTP answered 200")
		}
	}
}

// Certificate and key go together.
func TestAPITLSNeedsBothFiles(t *testing.T) {
	certFile, _, _ := testcert.SelfSigned(t, t.TempDir(), "controller")
	c, err := New(Config{BusAddress: "unix:path=/nonexistent", API: "127.0.0.1:0", StateDir: t.TempDir(), TLSCertFile: certFile}, quietLog())
	if err == nil {
		err = c.api.Listen()
	}
	if err == nil {
		t.Fatal("a certificate without its key was accepted")
	}
}
