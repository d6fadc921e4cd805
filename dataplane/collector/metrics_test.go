package collector_test

import (
	"net"
	"strconv"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/sluice-flow/sluice/dataplane/collector"
	"github.com/sluice-flow/sluice/dataplane/promtext/promtexttest"
)

// TestMetricsParse sends real traffic over UDP and TCP (and one malformed
// datagram), then reads the collector's metrics, and the collector's and the
// mediator's together as /metrics serves them, with the Prometheus parser.
func TestMetricsParse(t *testing.T) {
	h := start(t, collector.Config{}, true)
	udp, err := net.Dial("udp", "127.0.0.1:"+strconv.Itoa(h.port))
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	tcp, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(h.port))
	if err != nil {
		t.Fatal(err)
	}
	defer tcp.Close()
	udp.Write([]byte{0, 10, 0}) // shorter than a message header
	tpl, data, _ := exporterMsgs(1, 5, 4)
	udp.Write(tpl)
	for _, d := range data {
		udp.Write(d)
	}
	tpl, data, _ = exporterMsgs(2, 3, 4)
	tcp.Write(tpl)
	for _, d := range data {
		tcp.Write(d)
	}
	h.waitRecords(t, 5*4+3*4)

	var fams map[string]*dto.MetricFamily
	for deadline := time.Now().Add(5 * time.Second); ; {
		fams = promtexttest.Parse(t, h.c.AppendMetrics(nil))
		if value(fams, "sluice_malformed_total", "reason", "short_message") == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the malformed datagram was not counted:\n%s", h.c.AppendMetrics(nil))
		}
		time.Sleep(time.Millisecond)
	}
	f := func(want float64, name string, labels ...string) {
		t.Helper()
		if got := value(fams, name, labels...); got != want {
			t.Errorf("%s%q = %v, want %v", name, labels, got, want)
		}
	}
	f(7, "sluice_packets_total", "transport", "udp")
	f(4, "sluice_packets_total", "transport", "tcp")
	f(10, "sluice_messages_total", "version", "10")
	f(32, "sluice_collected_records_total")
	f(2, "sluice_templates_learned_total")
	f(20, "sluice_exporter_records_total", "exporter", "127.0.0.1", "domain", "1", "version", "10")
	f(4, "sluice_exporter_messages_total", "exporter", "127.0.0.1", "domain", "2", "version", "10")
	f(0, "sluice_dropped_sets_total", "reason", "ring_full")
	f(1, "sluice_tcp_sessions")
	if fams["sluice_ring_bytes"].GetType() != dto.MetricType_GAUGE {
		t.Errorf("sluice_ring_bytes is a %v", fams["sluice_ring_bytes"].GetType())
	}

	// As /metrics concatenates them; the strict checks catch a family
	// written twice.
	all := promtexttest.Parse(t, h.med.AppendMetrics(h.c.AppendMetrics(nil)))
	if got := value(all, "sluice_records_total"); got != 32 {
		t.Errorf("sluice_records_total = %v, want 32", got)
	}
}

// value returns the counter or gauge value of the series of family name
// with exactly labels (name, value pairs in the order written), or -1.
func value(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
next:
	for _, m := range fams[name].GetMetric() {
		if len(m.GetLabel()) != len(labels)/2 {
			continue
		}
		for i, lp := range m.GetLabel() {
			if lp.GetName() != labels[2*i] || lp.GetValue() != labels[2*i+1] {
				continue next
			}
		}
		if m.Gauge != nil {
			return m.GetGauge().GetValue()
		}
		return m.GetCounter().GetValue()
	}
	return -1
}
