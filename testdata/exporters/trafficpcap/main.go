// Command trafficpcap writes a deterministic classic pcap file (Ethernet link
// type) of synthetic traffic, used as input for real flow exporters when the
// test captures under testdata/captures are regenerated.
//
// Usage:
//
//	go run ./testdata/exporters/trafficpcap -out traffic.pcap -seed 1
//
// The traffic has complete TCP conversations (handshake, data, FIN teardown),
// DNS queries and answers, other UDP exchanges, and ICMP / ICMPv6 echo, over
// IPv4 and IPv6, using documentation prefixes only. The same seed always gives
// the same bytes. A summary is printed to stderr; -summary writes it as JSON.
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"sort"
	"time"
)

const (
	linkTypeEthernet = 1
	snapLen          = 65535

	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86dd

	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58

	tcpFIN = 0x01
	tcpSYN = 0x02
	tcpPSH = 0x08
	tcpACK = 0x10
)

// startTime is the timestamp of the first possible packet.
var startTime = time.Date(2024, time.March, 1, 12, 0, 0, 0, time.UTC)

// packet is one frame with its capture time.
type packet struct {
	ts    time.Duration // offset from startTime
	order int           // creation order, keeps sorting stable and deterministic
	frame []byte
}

// endpoint is an address with the MAC address of its side of the link.
type endpoint struct {
	addr netip.Addr
	mac  [6]byte
	ttl  uint8
}

// flowKind names the kinds of conversations generated.
type flowKind string

const (
	kindTCP    flowKind = "tcp"
	kindDNS    flowKind = "udp-dns"
	kindUDP    flowKind = "udp-other"
	kindICMP   flowKind = "icmp-echo"
	kindICMPv6 flowKind = "icmpv6-echo"
)

type generator struct {
	rng     *rand.Rand
	packets []packet
	ipID    map[netip.Addr]uint16
	used    map[string]bool // 5-tuples already used, so every conversation is distinct
	summary summary
}

type summary struct {
	Seed          uint64         `json:"seed"`
	Start         time.Time      `json:"start"`
	Packets       int            `json:"packets"`
	Bytes         int            `json:"bytes"`    // sum of frame lengths
	IPBytes       int            `json:"ip_bytes"` // sum of IP total lengths
	IPv4Packets   int            `json:"ipv4_packets"`
	IPv4Bytes     int            `json:"ipv4_ip_bytes"`
	IPv6Packets   int            `json:"ipv6_packets"`
	IPv6Bytes     int            `json:"ipv6_ip_bytes"`
	Conversations int            `json:"conversations"` // bidirectional conversations
	UniFlows      int            `json:"unidirectional_flows"`
	ByKind        map[string]int `json:"conversations_by_kind"`
	IPv4          int            `json:"ipv4_conversations"`
	IPv6          int            `json:"ipv6_conversations"`
	DurationSec   float64        `json:"duration_seconds"`
}

func main() {
	out := flag.String("out", "", "output pcap file (required)")
	seed := flag.Uint64("seed", 1, "random seed; the same seed gives the same file")
	scale := flag.Int("flows", 300, "approximate number of conversations")
	sumOut := flag.String("summary", "", "optional file to write a JSON summary to")
	filler := flag.String("filler", "", "optional file to write a pcap of ARP filler packets to (see writeFiller)")
	flag.Parse()
	if *out == "" || *scale < 10 {
		flag.Usage()
		os.Exit(2)
	}

	g := &generator{
		rng:  rand.New(rand.NewPCG(*seed, *seed^0x5eed5eed5eed5eed)),
		ipID: map[netip.Addr]uint16{},
		used: map[string]bool{},
		summary: summary{
			Seed:   *seed,
			Start:  startTime,
			ByKind: map[string]int{},
		},
	}
	g.generate(*scale)

	if err := g.write(*out); err != nil {
		fmt.Fprintln(os.Stderr, "trafficpcap:", err)
		os.Exit(1)
	}
	if *filler != "" {
		if err := writeFiller(*filler, 40); err != nil {
			fmt.Fprintln(os.Stderr, "trafficpcap:", err)
			os.Exit(1)
		}
	}
	s := g.summary
	fmt.Fprintf(os.Stderr, "trafficpcap: wrote %s: %d packets, %d conversations (%d IPv4, %d IPv6), %.1f s\n",
		*out, s.Packets, s.Conversations, s.IPv4, s.IPv6, s.DurationSec)
	if *sumOut != "" {
		b, err := json.MarshalIndent(s, "", "  ")
		if err == nil {
			err = os.WriteFile(*sumOut, append(b, '\n'), 0o644)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "trafficpcap:", err)
			os.Exit(1)
		}
	}
}

// generate creates about n conversations with the mix described in the
// package comment.
func (g *generator) generate(n int) {
	type mix struct {
		kind flowKind
		v6   bool
		frac float64
	}
	mixes := []mix{
		{kindTCP, false, 0.45},
		{kindDNS, false, 0.17},
		{kindUDP, false, 0.10},
		{kindICMP, false, 0.06},
		{kindTCP, true, 0.10},
		{kindDNS, true, 0.05},
		{kindUDP, true, 0.03},
		{kindICMPv6, true, 0.04},
	}
	var plan []mix
	for _, m := range mixes {
		k := int(float64(n)*m.frac + 0.5)
		if k < 1 {
			k = 1
		}
		for range k {
			plan = append(plan, m)
		}
	}
	g.rng.Shuffle(len(plan), func(i, j int) { plan[i], plan[j] = plan[j], plan[i] })

	for _, m := range plan {
		// Conversations start within the first 56 s; the longest last a few
		// seconds, so the whole file spans about a minute.
		start := time.Duration(g.rng.Int64N(int64(56 * time.Second)))
		cli, srv := g.hosts(m.v6)
		switch m.kind {
		case kindTCP:
			g.tcpConversation(start, cli, srv)
		case kindDNS:
			g.dnsConversation(start, cli, srv)
		case kindUDP:
			g.udpConversation(start, cli, srv)
		case kindICMP, kindICMPv6:
			// Exporters key ICMP flows on addresses and type/code only, so
			// each host pair gets at most one echo conversation.
			for g.used["echo|"+cli.addr.String()+"|"+srv.addr.String()] {
				cli, srv = g.hosts(m.v6)
			}
			g.used["echo|"+cli.addr.String()+"|"+srv.addr.String()] = true
			g.echoConversation(start, cli, srv)
		}
		g.summary.Conversations++
		g.summary.UniFlows += 2
		g.summary.ByKind[string(m.kind)]++
		if m.v6 {
			g.summary.IPv6++
		} else {
			g.summary.IPv4++
		}
	}
}

// hosts picks a client and a server. Clients live in 192.0.2.0/24 and
// 198.51.100.0/24 (or 2001:db8:1::/64), servers in 203.0.113.0/24 (or
// 2001:db8:2::/64). MAC addresses are locally administered: the client side
// of the link is 02:00:5e:10:xx:xx, the router side 02:00:5e:20:00:01.
func (g *generator) hosts(v6 bool) (cli, srv endpoint) {
	router := [6]byte{0x02, 0x00, 0x5e, 0x20, 0x00, 0x01}
	h := byte(10 + g.rng.IntN(40))
	s := byte(1 + g.rng.IntN(30))
	if v6 {
		c := netip.MustParseAddr("2001:db8:1::").As16()
		c[15] = h
		sv := netip.MustParseAddr("2001:db8:2::").As16()
		sv[14], sv[15] = 0x00, s
		cli.addr = netip.AddrFrom16(c)
		srv.addr = netip.AddrFrom16(sv)
	} else {
		pre := [3]byte{192, 0, 2}
		if g.rng.IntN(3) == 0 {
			pre = [3]byte{198, 51, 100}
		}
		cli.addr = netip.AddrFrom4([4]byte{pre[0], pre[1], pre[2], h})
		srv.addr = netip.AddrFrom4([4]byte{203, 0, 113, s})
	}
	cli.mac = [6]byte{0x02, 0x00, 0x5e, 0x10, 0x00, h}
	if cli.addr.Is4() && cli.addr.As4()[0] == 198 {
		cli.mac[4] = 0x01
	}
	srv.mac = router
	cli.ttl = 64
	srv.ttl = uint8(44 + g.rng.IntN(14))
	if !v6 && g.rng.IntN(4) == 0 {
		srv.ttl = uint8(110 + g.rng.IntN(15))
	}
	return cli, srv
}

// ephemeralPort returns a client port not yet used with this tuple.
func (g *generator) ephemeralPort(proto uint8, cli, srv endpoint, sport uint16) uint16 {
	for {
		p := uint16(32768 + g.rng.IntN(28232))
		key := fmt.Sprintf("%d|%s|%d|%s|%d", proto, cli.addr, p, srv.addr, sport)
		if !g.used[key] {
			g.used[key] = true
			return p
		}
	}
}

// rtt returns a round-trip time for one conversation.
func (g *generator) rtt() time.Duration {
	return time.Duration(2+g.rng.IntN(90)) * time.Millisecond
}

// jitter returns a small delay used between back-to-back segments.
func (g *generator) jitter() time.Duration {
	return time.Duration(20+g.rng.IntN(400)) * time.Microsecond
}

func (g *generator) add(ts time.Duration, frame []byte) {
	g.packets = append(g.packets, packet{ts: ts, order: len(g.packets), frame: frame})
}

// payload returns n deterministic bytes that look a little like text.
func (g *generator) payload(n int) []byte {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 \r\n/=:.-"
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[g.rng.IntN(len(alphabet))]
	}
	return b
}

// tcpState tracks one direction of a TCP connection.
type tcpState struct {
	ep   endpoint
	port uint16
	seq  uint32
	win  uint16
}

func (g *generator) tcpConversation(t time.Duration, cli, srv endpoint) {
	services := []uint16{80, 443, 443, 443, 22, 25, 8080, 993, 3306, 5432}
	sport := services[g.rng.IntN(len(services))]
	cport := g.ephemeralPort(protoTCP, cli, srv, sport)
	rtt := g.rtt()
	mss := 1460
	if cli.addr.Is6() {
		mss = 1440
	}
	c := &tcpState{ep: cli, port: cport, seq: g.rng.Uint32(), win: uint16(29200 + g.rng.IntN(36000))}
	s := &tcpState{ep: srv, port: sport, seq: g.rng.Uint32(), win: uint16(28960 + g.rng.IntN(36000))}

	send := func(from, to *tcpState, flags uint8, data []byte, opts []byte) {
		g.add(t, g.tcpFrame(from, to, flags, data, opts))
		from.seq += uint32(len(data))
		if flags&(tcpSYN|tcpFIN) != 0 {
			from.seq++
		}
	}
	synOpts := func() []byte {
		// MSS, NOP, window scale 7, NOP, NOP, SACK permitted.
		return []byte{2, 4, byte(mss >> 8), byte(mss), 1, 3, 3, 7, 1, 1, 4, 2}
	}

	// Three-way handshake.
	send(c, s, tcpSYN, nil, synOpts())
	t += rtt / 2
	send(s, c, tcpSYN|tcpACK, nil, synOpts())
	t += rtt / 2
	send(c, s, tcpACK, nil, nil)

	// Request/response exchanges.
	exchanges := 1 + g.rng.IntN(4)
	for range exchanges {
		t += g.jitter()
		// Response sizes vary from a few bytes to ~24 KB.
		size := 1 + g.rng.IntN(600)
		if g.rng.IntN(3) == 0 {
			size = 1000 + g.rng.IntN(23000)
		}
		var req, rsp []byte
		if sport == 80 || sport == 8080 {
			req, rsp = g.httpExchange(size)
		} else {
			req, rsp = g.payload(40+g.rng.IntN(560)), g.payload(size)
		}
		send(c, s, tcpPSH|tcpACK, req, nil)
		t += rtt / 2
		segs := 0
		for len(rsp) > 0 {
			n := min(len(rsp), mss)
			flags := uint8(tcpACK)
			if n == len(rsp) {
				flags |= tcpPSH
			}
			send(s, c, flags, rsp[:n], nil)
			rsp = rsp[n:]
			segs++
			t += g.jitter()
			if segs%2 == 0 || len(rsp) == 0 {
				// Delayed ACK every second segment.
				send(c, s, tcpACK, nil, nil)
				t += g.jitter()
			}
		}
		t += time.Duration(g.rng.IntN(300)) * time.Millisecond
	}

	// Teardown, closed by the client or the server.
	a, b := c, s
	if g.rng.IntN(3) == 0 {
		a, b = s, c
	}
	t += g.jitter()
	send(a, b, tcpFIN|tcpACK, nil, nil)
	t += rtt / 2
	send(b, a, tcpFIN|tcpACK, nil, nil)
	t += rtt / 2
	send(a, b, tcpACK, nil, nil)
}

func (g *generator) dnsConversation(t time.Duration, cli, srv endpoint) {
	cport := g.ephemeralPort(protoUDP, cli, srv, 53)
	rtt := g.rtt()
	queries := 1 + g.rng.IntN(2)
	for range queries {
		id := uint16(g.rng.Uint32())
		name := fmt.Sprintf("h%03d.svc%d.example.com", g.rng.IntN(1000), g.rng.IntN(20))
		qtype := uint16(1) // A
		if cli.addr.Is6() || g.rng.IntN(4) == 0 {
			qtype = 28 // AAAA
		}
		q := dnsMessage(id, false, name, qtype, 0, g)
		g.add(t, g.udpFrame(cli, srv, cport, 53, q))
		t += rtt
		answers := 1 + g.rng.IntN(4)
		r := dnsMessage(id, true, name, qtype, answers, g)
		g.add(t, g.udpFrame(srv, cli, 53, cport, r))
		t += time.Duration(1+g.rng.IntN(500)) * time.Millisecond
	}
}

// httpExchange returns an HTTP/1.1 request and a response of about size
// bytes whose Content-Length matches its body.
func (g *generator) httpExchange(size int) (req, rsp []byte) {
	req = fmt.Appendf(nil, "GET /res/%d/%d HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: trafficpcap/1\r\nAccept: */*\r\n\r\n",
		g.rng.IntN(100), g.rng.IntN(100000))
	body := max(size-90, 1)
	rsp = fmt.Appendf(nil, "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n", body)
	return req, append(rsp, g.payload(body)...)
}

// ntpMessage returns a 48-byte NTPv4 client request or server reply.
func (g *generator) ntpMessage(reply bool) []byte {
	b := make([]byte, 48)
	b[0] = 0x23 // LI 0, version 4, mode 3 (client)
	if reply {
		b[0] = 0x24 // mode 4 (server)
		b[1] = 2    // stratum
		b[2] = 6    // poll
		b[3] = 0xec // precision -20
		binary.BigEndian.PutUint32(b[4:], uint32(g.rng.IntN(1<<12)))
		binary.BigEndian.PutUint32(b[8:], uint32(g.rng.IntN(1<<12)))
		copy(b[12:], []byte{203, 0, 113, 123}) // reference ID
	}
	// Transmit timestamp: seconds since 1900 around the start time.
	ntpSec := uint32(startTime.Unix() + 2208988800 + int64(g.rng.IntN(60)))
	binary.BigEndian.PutUint32(b[40:], ntpSec)
	binary.BigEndian.PutUint32(b[44:], g.rng.Uint32())
	if reply {
		copy(b[16:], b[40:48]) // reference timestamp
		binary.BigEndian.PutUint32(b[32:], ntpSec)
		binary.BigEndian.PutUint32(b[36:], g.rng.Uint32())
	}
	return b
}

// dnsMessage builds a DNS query or response with one question.
func dnsMessage(id uint16, response bool, name string, qtype uint16, answers int, g *generator) []byte {
	b := binary.BigEndian.AppendUint16(nil, id)
	flags := uint16(0x0100) // RD
	if response {
		flags = 0x8180 // QR, RD, RA
	}
	b = binary.BigEndian.AppendUint16(b, flags)
	b = binary.BigEndian.AppendUint16(b, 1)
	b = binary.BigEndian.AppendUint16(b, uint16(answers))
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint16(b, 0)
	start := 0
	for i := 0; i <= len(name); i++ {
		if i == len(name) || name[i] == '.' {
			b = append(b, byte(i-start))
			b = append(b, name[start:i]...)
			start = i + 1
		}
	}
	b = append(b, 0)
	b = binary.BigEndian.AppendUint16(b, qtype)
	b = binary.BigEndian.AppendUint16(b, 1) // IN
	for range answers {
		b = append(b, 0xc0, 0x0c) // pointer to the question name
		b = binary.BigEndian.AppendUint16(b, qtype)
		b = binary.BigEndian.AppendUint16(b, 1)
		b = binary.BigEndian.AppendUint32(b, uint32(30+g.rng.IntN(3600)))
		if qtype == 28 {
			a := netip.MustParseAddr("2001:db8:2::").As16()
			a[15] = byte(1 + g.rng.IntN(250))
			b = binary.BigEndian.AppendUint16(b, 16)
			b = append(b, a[:]...)
		} else {
			b = binary.BigEndian.AppendUint16(b, 4)
			b = append(b, 203, 0, 113, byte(1+g.rng.IntN(250)))
		}
	}
	return b
}

func (g *generator) udpConversation(t time.Duration, cli, srv endpoint) {
	type svc struct {
		port     uint16
		req, rsp int // typical sizes
	}
	services := []svc{{123, 48, 48}, {514, 120, 0}, {4500, 200, 200}, {5060, 500, 400}, {10001, 100, 900}, {19302, 80, 100}}
	sv := services[g.rng.IntN(len(services))]
	cport := g.ephemeralPort(protoUDP, cli, srv, sv.port)
	if sv.port == 123 || sv.port == 4500 {
		cport = sv.port // NTP and IKE NAT-T often use the same port on both sides
		key := fmt.Sprintf("%d|%s|%d|%s|%d", protoUDP, cli.addr, cport, srv.addr, sv.port)
		if g.used[key] {
			cport = g.ephemeralPort(protoUDP, cli, srv, sv.port)
		}
		g.used[key] = true
	}
	rtt := g.rtt()
	n := 1 + g.rng.IntN(12)
	for range n {
		req := g.payload(sv.req/2 + g.rng.IntN(sv.req))
		if sv.port == 123 {
			req = g.ntpMessage(false)
		}
		g.add(t, g.udpFrame(cli, srv, cport, sv.port, req))
		t += rtt
		if sv.rsp > 0 {
			rsp := g.payload(sv.rsp/2 + g.rng.IntN(sv.rsp))
			if sv.port == 123 {
				rsp = g.ntpMessage(true)
			}
			g.add(t, g.udpFrame(srv, cli, sv.port, cport, rsp))
		}
		t += time.Duration(5+g.rng.IntN(400)) * time.Millisecond
	}
	if sv.rsp == 0 {
		// Syslog is one-way; add one packet back so every conversation has
		// two directions (a TCP-less "acknowledgement" from a relay).
		g.add(t, g.udpFrame(srv, cli, sv.port, cport, g.payload(8)))
	}
}

func (g *generator) echoConversation(t time.Duration, cli, srv endpoint) {
	id := uint16(g.rng.Uint32())
	rtt := g.rtt()
	n := 1 + g.rng.IntN(6)
	size := []int{56, 56, 56, 32, 64, 120, 1000, 1400}[g.rng.IntN(8)]
	if cli.addr.Is6() && size > 1392 {
		size = 1392
	}
	data := g.payload(size)
	for seq := 1; seq <= n; seq++ {
		g.add(t, g.echoFrame(cli, srv, true, id, uint16(seq), data))
		g.add(t+rtt, g.echoFrame(srv, cli, false, id, uint16(seq), data))
		t += time.Second + time.Duration(g.rng.IntN(2000))*time.Microsecond
	}
}

// Frame builders.

func ethernet(src, dst endpoint, etherType uint16, l3 []byte) []byte {
	f := make([]byte, 0, 14+len(l3))
	f = append(f, dst.mac[:]...)
	f = append(f, src.mac[:]...)
	f = binary.BigEndian.AppendUint16(f, etherType)
	return append(f, l3...)
}

// ipPacket wraps an L4 segment (whose checksum field is at csumOff, or -1 for
// ICMPv4, which has no pseudo header) into IPv4 or IPv6 and fills in the
// checksums.
func (g *generator) ipPacket(src, dst endpoint, proto uint8, l4 []byte, csumOff int, dontFrag bool) []byte {
	if src.addr.Is4() {
		h := make([]byte, 20)
		h[0] = 0x45
		binary.BigEndian.PutUint16(h[2:], uint16(20+len(l4)))
		id := g.ipID[src.addr]
		if id == 0 {
			id = uint16(g.rng.Uint32())
		}
		g.ipID[src.addr] = id + 1
		binary.BigEndian.PutUint16(h[4:], id)
		if dontFrag {
			h[6] = 0x40
		}
		h[8] = src.ttl
		h[9] = proto
		s, d := src.addr.As4(), dst.addr.As4()
		copy(h[12:], s[:])
		copy(h[16:], d[:])
		binary.BigEndian.PutUint16(h[10:], checksum(0, h))
		if proto == protoICMP {
			binary.BigEndian.PutUint16(l4[csumOff:], checksum(0, l4))
		} else {
			var ph [12]byte
			copy(ph[0:], s[:])
			copy(ph[4:], d[:])
			ph[9] = proto
			binary.BigEndian.PutUint16(ph[10:], uint16(len(l4)))
			c := checksum(sum(0, ph[:]), l4)
			if c == 0 && proto == protoUDP {
				c = 0xffff
			}
			binary.BigEndian.PutUint16(l4[csumOff:], c)
		}
		return append(h, l4...)
	}
	h := make([]byte, 40)
	h[0] = 0x60 // version 6, traffic class 0, flow label 0
	binary.BigEndian.PutUint16(h[4:], uint16(len(l4)))
	h[6] = proto
	h[7] = src.ttl
	s, d := src.addr.As16(), dst.addr.As16()
	copy(h[8:], s[:])
	copy(h[24:], d[:])
	var ph [40]byte
	copy(ph[0:], s[:])
	copy(ph[16:], d[:])
	binary.BigEndian.PutUint32(ph[32:], uint32(len(l4)))
	ph[39] = proto
	c := checksum(sum(0, ph[:]), l4)
	if c == 0 && proto == protoUDP {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(l4[csumOff:], c)
	return append(h, l4...)
}

func etherTypeOf(a netip.Addr) uint16 {
	if a.Is4() {
		return etherTypeIPv4
	}
	return etherTypeIPv6
}

func (g *generator) tcpFrame(from, to *tcpState, flags uint8, data, opts []byte) []byte {
	hl := 20 + len(opts)
	seg := make([]byte, hl, hl+len(data))
	binary.BigEndian.PutUint16(seg[0:], from.port)
	binary.BigEndian.PutUint16(seg[2:], to.port)
	binary.BigEndian.PutUint32(seg[4:], from.seq)
	if flags&tcpACK != 0 {
		binary.BigEndian.PutUint32(seg[8:], to.seq)
	}
	seg[12] = byte(hl/4) << 4
	seg[13] = flags
	binary.BigEndian.PutUint16(seg[14:], from.win)
	copy(seg[20:], opts)
	seg = append(seg, data...)
	l3 := g.ipPacket(from.ep, to.ep, protoTCP, seg, 16, true)
	return ethernet(from.ep, to.ep, etherTypeOf(from.ep.addr), l3)
}

func (g *generator) udpFrame(src, dst endpoint, sport, dport uint16, data []byte) []byte {
	seg := make([]byte, 8, 8+len(data))
	binary.BigEndian.PutUint16(seg[0:], sport)
	binary.BigEndian.PutUint16(seg[2:], dport)
	binary.BigEndian.PutUint16(seg[4:], uint16(8+len(data)))
	seg = append(seg, data...)
	l3 := g.ipPacket(src, dst, protoUDP, seg, 6, false)
	return ethernet(src, dst, etherTypeOf(src.addr), l3)
}

func (g *generator) echoFrame(src, dst endpoint, request bool, id, seq uint16, data []byte) []byte {
	msg := make([]byte, 8, 8+len(data))
	proto := uint8(protoICMP)
	if src.addr.Is4() {
		if request {
			msg[0] = 8
		}
	} else {
		proto = protoICMPv6
		msg[0] = 129
		if request {
			msg[0] = 128
		}
	}
	binary.BigEndian.PutUint16(msg[4:], id)
	binary.BigEndian.PutUint16(msg[6:], seq)
	msg = append(msg, data...)
	l3 := g.ipPacket(src, dst, proto, msg, 2, src.addr.Is4())
	return ethernet(src, dst, etherTypeOf(src.addr), l3)
}

// sum adds b to the running ones'-complement sum s.
func sum(s uint32, b []byte) uint32 {
	for len(b) >= 2 {
		s += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}

// checksum returns the Internet checksum of b, continuing from s.
func checksum(s uint32, b []byte) uint16 {
	s = sum(s, b)
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

// write sorts the packets by time, fills in the summary and writes the pcap
// file.
func (g *generator) write(name string) error {
	sort.Slice(g.packets, func(i, j int) bool {
		a, b := g.packets[i], g.packets[j]
		if a.ts != b.ts {
			return a.ts < b.ts
		}
		return a.order < b.order
	})
	for _, p := range g.packets {
		g.summary.Packets++
		g.summary.Bytes += len(p.frame)
		g.summary.IPBytes += len(p.frame) - 14
		if binary.BigEndian.Uint16(p.frame[12:]) == etherTypeIPv4 {
			g.summary.IPv4Packets++
			g.summary.IPv4Bytes += len(p.frame) - 14
		} else {
			g.summary.IPv6Packets++
			g.summary.IPv6Bytes += len(p.frame) - 14
		}
	}
	if n := len(g.packets); n > 0 {
		g.summary.DurationSec = (g.packets[n-1].ts - g.packets[0].ts).Seconds()
	}
	return writePcap(name, startTime, g.packets)
}

// writeFiller writes a pcap of n gratuitous ARP announcements, one every
// 250 ms. make-captures.sh replays it after the traffic so that a live
// exporter whose capture filter admits ARP keeps receiving packets (and so
// processes the last packets of the traffic promptly) without any new IP flow.
func writeFiller(name string, n int) error {
	mac := [6]byte{0x02, 0x00, 0x5e, 0x30, 0x00, 0x01}
	ip := [4]byte{192, 0, 2, 254}
	var pkts []packet
	for i := range n {
		f := make([]byte, 0, 60)
		f = append(f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)
		f = append(f, mac[:]...)
		f = binary.BigEndian.AppendUint16(f, 0x0806)
		f = binary.BigEndian.AppendUint16(f, 1)      // Ethernet
		f = binary.BigEndian.AppendUint16(f, 0x0800) // IPv4
		f = append(f, 6, 4)
		f = binary.BigEndian.AppendUint16(f, 1) // request
		f = append(f, mac[:]...)
		f = append(f, ip[:]...)
		f = append(f, 0, 0, 0, 0, 0, 0)
		f = append(f, ip[:]...)
		f = append(f, make([]byte, 60-len(f))...) // pad to the Ethernet minimum
		pkts = append(pkts, packet{ts: time.Duration(i) * 250 * time.Millisecond, order: i, frame: f})
	}
	return writePcap(name, startTime.Add(2*time.Minute), pkts)
}

// writePcap writes packets, already in time order, as a classic pcap file
// with microsecond timestamps.
func writePcap(name string, start time.Time, pkts []packet) error {
	f, err := os.Create(name)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	var hdr [24]byte
	binary.LittleEndian.PutUint32(hdr[0:], 0xa1b2c3d4) // microsecond timestamps
	binary.LittleEndian.PutUint16(hdr[4:], 2)
	binary.LittleEndian.PutUint16(hdr[6:], 4)
	binary.LittleEndian.PutUint32(hdr[16:], snapLen)
	binary.LittleEndian.PutUint32(hdr[20:], linkTypeEthernet)
	w.Write(hdr[:])
	for _, p := range pkts {
		ts := start.Add(p.ts)
		var rec [16]byte
		binary.LittleEndian.PutUint32(rec[0:], uint32(ts.Unix()))
		binary.LittleEndian.PutUint32(rec[4:], uint32(ts.Nanosecond()/1000))
		binary.LittleEndian.PutUint32(rec[8:], uint32(len(p.frame)))
		binary.LittleEndian.PutUint32(rec[12:], uint32(len(p.frame)))
		w.Write(rec[:])
		w.Write(p.frame)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
