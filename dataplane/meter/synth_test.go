package meter

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/dataplane/offline/pcap"
)

// synth writes (once per test binary) a deterministic Ethernet capture of
// about n packets: 2000 conversations open at a time, each a TCP session
// (handshake, data both ways, FIN teardown), a UDP exchange or an ICMP
// echo exchange, over IPv4 (80 %) and IPv6, a packet every 20 µs.
func synth(t testing.TB, n int) string {
	t.Helper()
	trafficMu.Lock()
	defer trafficMu.Unlock()
	key := fmt.Sprintf("synth-%d.pcap", n)
	if p, ok := trafficFiles[key]; ok {
		return p
	}
	if trafficDir == "" {
		d, err := os.MkdirTemp("", "sluice-meter-test")
		if err != nil {
			t.Fatal(err)
		}
		trafficDir = d
	}
	p := filepath.Join(trafficDir, key)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	w, err := pcap.NewWriter(bw, pcap.LinkTypeEthernet)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	type conv struct{ pkts [][]byte }
	next := 0
	newConv := func() *conv {
		i := next
		next++
		v6 := i%5 == 4
		cli := fmt.Sprintf("10.%d.%d.%d", (i>>16)&0xff, (i>>8)&0xff, i&0xff)
		srv := fmt.Sprintf("192.0.2.%d", 1+i%200)
		if v6 {
			cli = fmt.Sprintf("2001:db8:1::%x:%x", i>>16, i&0xffff)
			srv = fmt.Sprintf("2001:db8:2::%x", 1+i%200)
		}
		ip := func(src, dst string, proto uint8, l4 []byte) []byte {
			if v6 {
				return eth(ip6(src, dst, proto, nil, nil, l4))
			}
			return eth(ip4(src, dst, proto, 64, uint16(i), 0x4000, l4))
		}
		c := &conv{}
		cp := uint16(1024 + i%60000)
		switch rng.IntN(10) {
		case 0, 1, 2, 3, 4, 5: // TCP
			sp := uint16([]int{80, 443, 22, 25}[rng.IntN(4)])
			c.pkts = append(c.pkts, ip(cli, srv, protoTCP, tcpHdr(cp, sp, tcpSYN, nil)), ip(srv, cli, protoTCP, tcpHdr(sp, cp, tcpSYN|tcpACK, nil)),
				ip(cli, srv, protoTCP, tcpHdr(cp, sp, tcpACK, nil)))
			for k := rng.IntN(8); k >= 0; k-- {
				c.pkts = append(c.pkts, ip(cli, srv, protoTCP, tcpHdr(cp, sp, tcpACK|0x08, make([]byte, rng.IntN(200)))),
					ip(srv, cli, protoTCP, tcpHdr(sp, cp, tcpACK|0x08, make([]byte, rng.IntN(1400)))))
			}
			c.pkts = append(c.pkts, ip(cli, srv, protoTCP, tcpHdr(cp, sp, tcpFIN|tcpACK, nil)), ip(srv, cli, protoTCP, tcpHdr(sp, cp, tcpFIN|tcpACK, nil)),
				ip(cli, srv, protoTCP, tcpHdr(cp, sp, tcpACK, nil)))
		case 6, 7, 8: // UDP
			sp := uint16([]int{53, 123, 4739}[rng.IntN(3)])
			for k := rng.IntN(4); k >= 0; k-- {
				c.pkts = append(c.pkts, ip(cli, srv, protoUDP, udpHdr(cp, sp, make([]byte, 20+rng.IntN(100)))),
					ip(srv, cli, protoUDP, udpHdr(sp, cp, make([]byte, 20+rng.IntN(400)))))
			}
		default: // echo
			req, rep := uint8(8), uint8(0)
			proto := uint8(protoICMP)
			if v6 {
				req, rep, proto = 128, 129, protoICMPv6
			}
			for k := rng.IntN(3); k >= 0; k-- {
				c.pkts = append(c.pkts, ip(cli, srv, proto, icmpHdr(req, 0)), ip(srv, cli, proto, icmpHdr(rep, 0)))
			}
		}
		return c
	}
	open := make([]*conv, 2000)
	for i := range open {
		open[i] = newConv()
	}
	ts := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)
	for k := 0; k < n; k++ {
		j := rng.IntN(len(open))
		c := open[j]
		if err := w.WritePacket(ts, c.pkts[0]); err != nil {
			t.Fatal(err)
		}
		c.pkts = c.pkts[1:]
		if len(c.pkts) == 0 {
			open[j] = newConv()
		}
		ts = ts.Add(20 * time.Microsecond)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	trafficFiles[key] = p
	return p
}
