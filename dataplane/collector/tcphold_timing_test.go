package collector_test

import (
	"context"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/dataplane/collector"
)

// BenchmarkUDPWhileTCPHeld measures UDP decoding on one event loop whose
// ring nobody consumes, with a TCP exporter held for ring room (tcp_held)
// and without one (no_tcp). Real sockets: the sender waits for the loop to
// have read each window of datagrams, so the kernel drops none and the rate
// is the loop's (a loop that waited for the TCP session would read none).
// Records decoded count both those the ring took and those it had no room
// for (ring_full).
func BenchmarkUDPWhileTCPHeld(b *testing.B) {
	for _, held := range []bool{true, false} {
		name := "no_tcp"
		if held {
			name = "tcp_held"
		}
		b.Run(name, func(b *testing.B) { benchUDPWhileTCPHeld(b, held) })
	}
}

func benchUDPWhileTCPHeld(b *testing.B, held bool) {
	h := start(b, collector.Config{RingSize: 1 << 20, Loops: 1}, false)
	if held {
		tpl, data, _ := exporterMsgs(1, 3000, 40) // about 2 MB, two rings' worth
		tc, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(h.port))
		if err != nil {
			b.Fatal(err)
		}
		defer tc.Close()
		go func() {
			_, err := tc.Write(tpl)
			for _, d := range data {
				if err != nil {
					return
				}
				_, err = tc.Write(d)
			}
		}()
		if !h.waitMetric("sluice_tcp_paused_sessions", func(v float64) bool { return v == 1 }) {
			b.Fatal("the TCP session did not pause")
		}
	}
	const perMsg, window = 20, 256
	tpl, data, _ := exporterMsgs(2, 1000, perMsg)
	uc, err := net.Dial("udp", "127.0.0.1:"+strconv.Itoa(h.port))
	if err != nil {
		b.Fatal(err)
	}
	defer uc.Close()
	if _, err := uc.Write(tpl); err != nil {
		b.Fatal(err)
	}
	decoded := func() float64 {
		return h.metricValue("sluice_collected_records_total") + h.metricValue(`sluice_dropped_records_total{reason="ring_full"}`)
	}
	start := decoded()
	b.ReportAllocs()
	b.ResetTimer()
	t0 := time.Now()
	for i := range b.N {
		if _, err := uc.Write(data[i%len(data)]); err != nil {
			b.Fatal(err)
		}
		if i%window == window-1 || i == b.N-1 {
			want := start + float64((i+1)*perMsg)
			if !h.waitMetric("sluice_collected_records_total", func(float64) bool { return decoded() >= want }) {
				b.Fatalf("the loop decoded %v of %v records", decoded()-start, want-start)
			}
		}
	}
	elapsed := time.Since(t0)
	b.StopTimer()
	if held && h.metricValue("sluice_tcp_paused_sessions") != 1 {
		b.Fatal("the TCP session resumed during the run")
	}
	if d := h.metricValue("sluice_udp_socket_drops_total"); d != 0 {
		b.Fatalf("the kernel dropped %v datagrams", d)
	}
	b.ReportMetric(float64(b.N*perMsg)/elapsed.Seconds(), "records/s")
	// The consumer runs at last, so the collector can stop.
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.startMediator(ctx)
}
