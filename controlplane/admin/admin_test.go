package admin

import (
	"context"
	"encoding/json"
	"github.com/sluice-flow/sluice/dataplane/collector"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

type fakeSource struct{ ready atomic.Bool }

func (f *fakeSource) Ready() bool { return f.ready.Load() }
func (f *fakeSource) AppendMetrics(b []byte) []byte {
	return append(b, "# TYPE sluice_records_total counter\nsluice_records_total 42\n"...)
}
func (f *fakeSource) Exporters() []collector.ExporterStatus {
	return []collector.ExporterStatus{{Exporter: "192.0.2.1", Records: 7}}
}
func (f *fakeSource) Templates() []collector.TemplateStatus {
	return []collector.TemplateStatus{{TemplateID: 256}}
}

// The data plane is replaced by a fake Source here: this test is about the
// HTTP surface; the collector's own tests cover the numbers behind it.
func TestEndpoints(t *testing.T) {
	src := &fakeSource{}
	_, base := startServer(t, src, "")
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("/healthz: %d", code)
	}
	if code, _ := get("/readyz"); code != 503 {
		t.Fatalf("/readyz before ready: %d", code)
	}
	src.ready.Store(true)
	if code, _ := get("/readyz"); code != 200 {
		t.Fatalf("/readyz when ready: %d", code)
	}
	code, body := get("/metrics")
	if code != 200 || !strings.Contains(body, "sluice_records_total 42") || !strings.Contains(body, "process_resident_memory_bytes") {
		t.Fatalf("/metrics: %d\n%s", code, body)
	}
	code, body = get("/api/v1/exporters")
	var ex []map[string]any
	if code != 200 || json.Unmarshal([]byte(body), &ex) != nil || len(ex) != 1 || ex[0]["records"] != 7.0 {
		t.Fatalf("/api/v1/exporters: %d %s", code, body)
	}
	if code, _ := get("/api/v1/templates"); code != 200 {
		t.Fatalf("/api/v1/templates: %d", code)
	}
	if code, _ := get("/nope"); code != 404 {
		t.Fatalf("/nope: %d", code)
	}
	resp, err := http.Post(base+"/metrics", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 {
		t.Fatalf("POST /metrics: %d", resp.StatusCode)
	}
	code, body = get("/api/v1/status")
	var st Status
	if code != 200 || json.Unmarshal([]byte(body), &st) != nil || !st.Ready || st.Exporters != 1 || st.Templates != 1 || st.Version == "" {
		t.Fatalf("/api/v1/status: %d %s", code, body)
	}
	// Operations the source lacks answer 501; without a token, 403.
	for _, path := range []string{"/api/v1/drain", "/api/v1/listeners"} {
		resp, err := http.Post(base+path, "application/json", strings.NewReader(`{"url":"udp://:2055"}`))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 403 || !strings.Contains(string(b), `"error":"forbidden"`) {
			t.Errorf("POST %s without a token: %d %s", path, resp.StatusCode, b)
		}
	}
}

// startServer serves src on a free port until the test ends.
func startServer(t *testing.T, src Source, token string) (*Server, string) {
	t.Helper()
	s := New(Config{Addr: "127.0.0.1:0", Token: token}, src, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	go s.Serve()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return s, "http://" + s.Addr()
}
