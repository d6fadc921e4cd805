package meter

import (
	"context"
	"net"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// BenchmarkMeter meters the 1M-packet synthetic capture from the file
// (pcap reading included), one goroutine, and reports packets/s. With
// softflowd installed it also times softflowd -r on the same file in the
// same run (exporting to a UDP port of the benchmark) and reports the
// ratio. Run it pinned to one core (perf/meter.sh) for per-core numbers.
func BenchmarkMeter(b *testing.B) {
	path := synth(b, 1<<20)
	var st Stats
	start := time.Now()
	for b.Loop() {
		m, err := New(Config{}, discardSink{})
		if err != nil {
			b.Fatal(err)
		}
		if err := m.ReadFile(context.Background(), path); err != nil {
			b.Fatal(err)
		}
		m.Close()
		st = m.Stats()
	}
	el := time.Since(start)
	pps := float64(st.Packets) * float64(b.N) / el.Seconds()
	b.SetBytes(int64(st.Bytes))
	b.ReportMetric(pps, "packets/s")
	if _, err := exec.LookPath("softflowd"); err != nil || b.N > 3 {
		return
	}
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	go func() {
		buf := make([]byte, 65536)
		for {
			if _, err := conn.Read(buf); err != nil {
				return
			}
		}
	}()
	dir := b.TempDir()
	t0 := time.Now()
	cmd := exec.Command("softflowd", "-d", "-c", "none", "-p", filepath.Join(dir, "pid"), "-r", path, "-v", "10",
		"-m", "1000000", "-n", "127.0.0.1:"+strconv.Itoa(conn.LocalAddr().(*net.UDPAddr).Port))
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("softflowd: %v\n%s", err, out)
	}
	sf := float64(st.Packets) / time.Since(t0).Seconds()
	b.ReportMetric(sf, "softflowd-packets/s")
	b.ReportMetric(pps/sf, "x-softflowd")
}

// BenchmarkMeterPacket is the hot path alone: parse and account a packet
// of a flow mix held in memory.
func BenchmarkMeterPacket(b *testing.B) {
	var pkts [][]byte
	for i := 0; i < 4096; i++ {
		pkts = append(pkts, eth(ip4("192.0.2.1", "198.51.100.2", protoTCP, 64, 0, 0, tcpHdr(uint16(1024+i), 443, tcpACK, make([]byte, 100)))))
	}
	m, _ := New(Config{}, discardSink{})
	ts := t0
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		ts += 1000
		m.Packet(ts, 1, pkts[i&4095])
		i++
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "packets/s")
}

// BenchmarkMeterFlowMemory reports the heap per open flow: a million flows
// kept open (no timeout passes), heap measured before and after.
func BenchmarkMeterFlowMemory(b *testing.B) {
	const n = 1 << 20
	pkt := eth(ip4("10.0.0.1", "192.0.2.1", protoUDP, 64, 0, 0, udpHdr(1, 53, nil)))
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		m, _ := New(Config{MaxFlows: n}, discardSink{})
		for i := 0; i < n; i++ {
			pkt[14+12+1], pkt[14+12+2], pkt[14+12+3] = byte(i>>16), byte(i>>8), byte(i)
			m.Packet(t0+int64(i), 1, pkt)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		if m.Stats().FlowsOpen != n {
			b.Fatalf("%d flows open", m.Stats().FlowsOpen)
		}
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "bytes/flow")
		runtime.KeepAlive(m)
	}
}
