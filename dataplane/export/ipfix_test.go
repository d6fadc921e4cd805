package export

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/jsonl"
	"github.com/sluice-flow/sluice/dataplane/offline/decode"
	"github.com/sluice-flow/sluice/internal/tsharktest"
)

// rec is one record as fed or as received.
type rec struct {
	domain uint32
	raw    string
	specs  string
}

func recOf(domain uint32, r *ipfix.Record) rec {
	var b strings.Builder
	if r.Layout.Options {
		fmt.Fprintf(&b, "opt%d:", r.Layout.ScopeCount)
	}
	for _, f := range r.Layout.Fields {
		fmt.Fprintf(&b, "%d/%d/%d ", f.PEN, f.ID, f.Length)
	}
	return rec{domain, string(r.Raw()), b.String()}
}

var (
	tplFlow  = []ipfix.FieldSpec{{ID: 8, Length: 4}, {ID: 12, Length: 4}, {ID: 1, Length: 8}, {ID: 2, Length: 8}, {ID: 4, Length: 1}}
	tplFlow2 = []ipfix.FieldSpec{{ID: 27, Length: 16}, {ID: 28, Length: 16}, {ID: 7, Length: 2}, {ID: 11, Length: 2}}
	tplVar   = []ipfix.FieldSpec{{ID: 82, Length: ipfix.VarLen}, {ID: 7, Length: 2}, {ID: 12345, Length: 4, PEN: 6871}}
	tplVar9  = []ipfix.FieldSpec{{ID: 82, Length: ipfix.VarLen}, {ID: 7, Length: 2}, {ID: 3, Length: 4}}
	tplOpt   = []ipfix.FieldSpec{{ID: 149, Length: 4}, {ID: 34, Length: 4}}
)

// genIPFIX builds IPFIX (or v9) messages with several templates, domains,
// a variable-length template, an options template, and template 256
// redefined halfway through.
func genIPFIX(v9 bool, nMsgs, perMsg int) [][]byte {
	version := uint16(ipfix.VersionIPFIX)
	if v9 {
		version = ipfix.VersionNetFlow9
	}
	ws := map[uint32]*ipfix.MessageWriter{}
	var out [][]byte
	n := 0
	for i := range nMsgs {
		domain := uint32(1 + i%2)
		w := ws[domain]
		if w == nil {
			w = &ipfix.MessageWriter{Version: version, DomainID: domain}
			ws[domain] = w
		}
		redefined := i >= nMsgs/2
		b := w.Begin(nil, 1700000000+uint32(i))
		if i < 4 || i == nMsgs/2 || i == nMsgs/2+1 {
			b = w.BeginSet(b, ipfix.TemplateSetID)
			if redefined {
				b = ipfix.AppendTemplateRecord(b, 256, tplFlow2)
			} else {
				b = ipfix.AppendTemplateRecord(b, 256, tplFlow)
			}
			if v9 {
				b = ipfix.AppendTemplateRecord(b, 257, tplVar9) // v9 has no enterprise numbers
			} else {
				b = ipfix.AppendTemplateRecord(b, 257, tplVar)
			}
			w.AddTemplates(2)
			b = w.EndSet(b)
			b = w.BeginSet(b, ipfix.OptionsTemplateSetID)
			if v9 {
				b = ipfix.AppendV9OptionsTemplateRecord(b, 258, 1, []ipfix.FieldSpec{{ID: 1, Length: 4}, {ID: 34, Length: 4}})
			} else {
				b = ipfix.AppendOptionsTemplateRecord(b, 258, 1, tplOpt)
			}
			w.AddTemplates(1)
			b = w.EndSet(b)
		}
		for j := range perMsg {
			n++
			switch {
			case j%7 == 3:
				b = w.BeginSet(b, 257)
				b = ipfix.AppendVarlen(b, bytes.Repeat([]byte{'a' + byte(n%26)}, n%40))
				b = binary.BigEndian.AppendUint16(b, uint16(n))
				b = binary.BigEndian.AppendUint32(b, uint32(n*3))
			case j%11 == 5:
				b = w.BeginSet(b, 258)
				b = binary.BigEndian.AppendUint32(b, domain)
				b = binary.BigEndian.AppendUint32(b, uint32(n))
			default:
				b = w.BeginSet(b, 256)
				if redefined {
					b = append(b, bytes.Repeat([]byte{byte(n)}, 32)...)
					b = binary.BigEndian.AppendUint16(b, uint16(n))
					b = binary.BigEndian.AppendUint16(b, 443)
				} else {
					b = binary.BigEndian.AppendUint32(b, 0x0a000000+uint32(n))
					b = binary.BigEndian.AppendUint32(b, 0xc0a80000+uint32(n))
					b = binary.BigEndian.AppendUint64(b, uint64(n)*1500)
					b = binary.BigEndian.AppendUint64(b, uint64(n))
					b = append(b, 6)
				}
			}
			w.AddRecords(1)
			b = w.EndSet(b)
		}
		b, err := w.Finish(b)
		if err != nil {
			panic(err)
		}
		out = append(out, b)
	}
	return out
}

// genV5 builds NetFlow v5 messages.
func genV5(nMsgs, perMsg int) [][]byte {
	var out [][]byte
	n := 0
	for i := range nMsgs {
		b := binary.BigEndian.AppendUint16(nil, 5)
		b = binary.BigEndian.AppendUint16(b, uint16(perMsg))
		b = binary.BigEndian.AppendUint32(b, 1000)                 // uptime
		b = binary.BigEndian.AppendUint32(b, 1700000000+uint32(i)) // secs
		b = binary.BigEndian.AppendUint32(b, 0)                    // nsecs
		b = binary.BigEndian.AppendUint32(b, uint32(i*perMsg))     // sequence
		b = append(b, 1, 2)                                        // engine
		b = binary.BigEndian.AppendUint16(b, 0)                    // sampling
		for range perMsg {
			n++
			for k := range 48 {
				b = append(b, byte(n*7+k))
			}
			b[len(b)-48+36] = 0 // pad1
			b[len(b)-2], b[len(b)-1] = 0, 0
		}
		out = append(out, b)
	}
	return out
}

// feed decodes msgs and passes every record to o, returning what was fed.
func feed(t testing.TB, o Output, msgs [][]byte) []rec {
	t.Helper()
	d := decode.New()
	exp := netip.MustParseAddrPort("192.0.2.1:2055")
	var fed []rec
	for _, m := range msgs {
		if _, err := d.Decode(exp, m, func(r *decode.Record) {
			fed = append(fed, recOf(r.Msg.DomainID, r.Rec))
			o.Record(&jsonl.Meta{Exporter: r.Exporter, Msg: r.Msg}, r.Rec)
		}); err != nil {
			t.Fatal(err)
		}
	}
	return fed
}

// decodeStream decodes back-to-back IPFIX messages with a fresh decoder
// (templates must be in the stream), checking sequence numbers.
func decodeStream(t testing.TB, b []byte, checkSeq bool) []rec {
	t.Helper()
	d := decode.New()
	exp := netip.MustParseAddrPort("127.0.0.1:1")
	var got []rec
	next := map[uint32]uint32{}
	for len(b) > 0 {
		var m ipfix.Message
		if err := m.Decode(b); err != nil {
			t.Fatalf("message: %v", err)
		}
		if m.Version != ipfix.VersionIPFIX {
			t.Fatalf("version %d", m.Version)
		}
		if want, ok := next[m.DomainID]; checkSeq && ok && m.Sequence != want {
			t.Errorf("domain %d: sequence %d, want %d", m.DomainID, m.Sequence, want)
		}
		cnt := 0
		n, err := d.Decode(exp, b, func(r *decode.Record) {
			cnt++
			got = append(got, recOf(r.Msg.DomainID, r.Rec))
		})
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		next[m.DomainID] = m.Sequence + uint32(cnt)
		b = b[n:]
	}
	if s := d.Stats; len(s.Errors) > 0 {
		t.Errorf("decoder errors: %v", s.Errors)
	}
	return got
}

func equalRecs(t *testing.T, got, want []rec) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d records, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("record %d:\n got %d %x %s\nwant %d %x %s", i, got[i].domain, got[i].raw, got[i].specs, want[i].domain, want[i].raw, want[i].specs)
		}
	}
}

// tcpReceiver accepts connections and keeps each connection's bytes. With
// stallAt > 0 it stops reading a connection after that many octets.
type tcpReceiver struct {
	ln      net.Listener
	stallAt int
	mu      sync.Mutex
	conns   [][]byte
	open    []net.Conn
	wg      sync.WaitGroup
}

func newTCPReceiver(t testing.TB, addr string) *tcpReceiver { return newTCPReceiverStall(t, addr, 0) }

func newTCPReceiverStall(t testing.TB, addr string, stallAt int) *tcpReceiver {
	t.Helper()
	var ln net.Listener
	var err error
	for range 50 { // the port may still be held after a restart
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	r := &tcpReceiver{ln: ln, stallAt: stallAt}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.mu.Lock()
			i := len(r.conns)
			r.conns = append(r.conns, nil)
			r.open = append(r.open, c)
			r.mu.Unlock()
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				buf := make([]byte, 64<<10)
				for read := 0; r.stallAt == 0 || read < r.stallAt; {
					n, err := c.Read(buf)
					read += n
					r.mu.Lock()
					r.conns[i] = append(r.conns[i], buf[:n]...)
					r.mu.Unlock()
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return r
}

// kill closes the listener and every connection.
func (r *tcpReceiver) kill() { r.close(false) }

// reset closes the listener and resets (RST) every connection.
func (r *tcpReceiver) reset() { r.close(true) }

func (r *tcpReceiver) close(reset bool) {
	r.ln.Close()
	r.mu.Lock()
	for _, c := range r.open {
		if reset {
			c.(*net.TCPConn).SetLinger(0)
		}
		c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// received returns a copy of each connection's bytes.
func (r *tcpReceiver) received() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([][]byte, len(r.conns))
	for i, b := range r.conns {
		out[i] = bytes.Clone(b)
	}
	return out
}

func (r *tcpReceiver) total() int {
	n := 0
	for _, b := range r.received() {
		n += len(b)
	}
	return n
}

func (r *tcpReceiver) records(t testing.TB) []rec { return r.recordsSeq(t, true) }

func (r *tcpReceiver) recordsSeq(t testing.TB, checkSeq bool) []rec {
	r.mu.Lock()
	defer r.mu.Unlock()
	var all []rec
	for _, b := range r.conns {
		all = append(all, decodeStream(t, completeMessages(b), checkSeq)...)
	}
	return all
}

// completeMessages cuts b after its last whole IPFIX message.
func completeMessages(b []byte) []byte {
	off := 0
	for len(b)-off >= ipfix.HeaderLenIPFIX {
		n := int(binary.BigEndian.Uint16(b[off+2:]))
		if n < ipfix.HeaderLenIPFIX || off+n > len(b) {
			break
		}
		off += n
	}
	return b[:off]
}

func waitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestIPFIXTCPRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		msgs [][]byte
	}{
		{"ipfix", genIPFIX(false, 400, 60)},
		{"v9", genIPFIX(true, 200, 30)},
		{"v5", genV5(50, 30)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rcv := newTCPReceiver(t, "127.0.0.1:0")
			defer rcv.kill()
			o, err := Parse("ipfix+tcp://"+rcv.ln.Addr().String(), nil)
			if err != nil {
				t.Fatal(err)
			}
			fed := feed(t, o, tc.msgs)
			if err := o.Close(); err != nil {
				t.Fatal(err)
			}
			st := o.Stats()
			if st.Sent != uint64(len(fed)) || st.Dropped != 0 {
				t.Fatalf("stats %+v, fed %d", st, len(fed))
			}
			waitFor(t, "records", 5*time.Second, func() bool { return len(rcv.records(t)) == len(fed) })
			got := rcv.records(t)
			if tc.name == "v5" {
				for i := range fed {
					if !strings.HasPrefix(fed[i].specs, "0/8/4 ") {
						t.Fatalf("v5 specs %q", fed[i].specs)
					}
				}
			}
			equalRecs(t, got, fed)
		})
	}
}

func TestIPFIXTCPReconnect(t *testing.T) {
	rcv := newTCPReceiver(t, "127.0.0.1:0")
	addr := rcv.ln.Addr().String()
	o, err := Parse("ipfix+tcp://"+addr+"?queue=1MiB", nil)
	if err != nil {
		t.Fatal(err)
	}
	tcp := o.(*IPFIXTCP)
	var qs QueueStats = tcp
	msgs := genIPFIX(false, 4000, 60)
	fed := feed(t, o, msgs[:100])
	o.Flush()
	waitFor(t, "first records", 5*time.Second, func() bool { return len(rcv.records(t)) == len(fed) })
	first := rcv.records(t)
	rcv.kill()
	waitFor(t, "disconnect", 5*time.Second, func() bool { return !tcp.connected.Load() })

	// While down: fill the queue past its limit.
	fed = append(fed, feed(t, o, msgs[100:])...)
	o.Flush()
	if qs.Queued() == 0 || o.Stats().Dropped == 0 {
		t.Fatalf("queued %d, stats %+v: want both queued and dropped records", qs.Queued(), o.Stats())
	}
	rcv2 := newTCPReceiver(t, addr)
	defer rcv2.kill()
	waitFor(t, "drain", 15*time.Second, func() bool {
		o.Flush()
		st := o.Stats()
		return qs.Queued() == 0 && st.Sent+st.Dropped == uint64(len(fed))
	})
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	st := o.Stats()
	if st.Sent+st.Dropped != uint64(len(fed)) {
		t.Fatalf("sent %d + dropped %d != fed %d", st.Sent, st.Dropped, len(fed))
	}
	if qs.Reconnects() < 1 {
		t.Fatalf("reconnects %d", qs.Reconnects())
	}
	waitFor(t, "delivery", 5*time.Second, func() bool { return uint64(len(first)+len(rcv2.recordsSeq(t, false))) == st.Sent })
	got := append(first, rcv2.recordsSeq(t, false)...)
	// What arrived is what was fed minus the dropped records, in order.
	j := 0
	for i := range got {
		for j < len(fed) && fed[j] != got[i] {
			j++
		}
		if j == len(fed) {
			t.Fatalf("received record %d not in fed order", i)
		}
		j++
	}
	t.Logf("fed %d sent %d dropped %d reconnects %d", len(fed), st.Sent, st.Dropped, qs.Reconnects())
}

func TestIPFIXUDP(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	pc.(*net.UDPConn).SetReadBuffer(8 << 20)
	const mtu = 600
	o, err := Parse("ipfix+udp://"+pc.LocalAddr().String()+"?mtu=600&template_interval=100ms", nil)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu     sync.Mutex
		dgrams [][]byte
	)
	done := make(chan struct{})
	go func() { // until pc is closed
		defer close(done)
		buf := make([]byte, 65536)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			mu.Lock()
			dgrams = append(dgrams, append([]byte(nil), buf[:n]...))
			mu.Unlock()
		}
	}()
	msgs := genIPFIX(false, 100, 20)
	var fed []rec
	for i := 0; i < len(msgs); i += 20 {
		fed = append(fed, feed(t, o, msgs[i:i+20])...)
		o.Flush()
		// Templates go again once template_interval passed on the
		// output's clock, the wall clock: let it pass between batches.
		time.Sleep(60 * time.Millisecond)
	}
	o.Close()
	waitFor(t, "every record to arrive", 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(decodeStream(t, bytes.Join(dgrams, nil), false)) >= len(fed)
	})
	pc.Close()
	<-done
	var stream []byte
	tplSets := 0
	for i, d := range dgrams {
		if len(d)+28 > mtu {
			t.Fatalf("datagram %d: %d octets over MTU %d", i, len(d)+28, mtu)
		}
		if binary.BigEndian.Uint16(d[2:]) != uint16(len(d)) {
			t.Fatalf("datagram %d: message length mismatch", i)
		}
		if hasTemplateSet(d) {
			tplSets++
		}
		stream = append(stream, d...)
	}
	if len(dgrams) == 0 || !hasTemplateSet(dgrams[0]) {
		t.Fatal("first datagram carries no template")
	}
	if tplSets < 4 {
		t.Fatalf("templates in %d datagrams: want periodic retransmission", tplSets)
	}
	st := o.Stats()
	if st.Sent != uint64(len(fed)) {
		t.Fatalf("stats %+v, fed %d", st, len(fed))
	}
	equalRecs(t, decodeStream(t, stream, true), fed)
}

func hasTemplateSet(msg []byte) bool {
	b := msg[ipfix.HeaderLenIPFIX:]
	for len(b) >= 4 {
		id, n := binary.BigEndian.Uint16(b), int(binary.BigEndian.Uint16(b[2:]))
		if id == ipfix.TemplateSetID || id == ipfix.OptionsTemplateSetID {
			return true
		}
		if n < 4 || n > len(b) {
			return false
		}
		b = b[n:]
	}
	return false
}

func TestIPFIXFileRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "flows.ipfix")
	o, err := Parse("ipfix-file:"+path+"?rotate_size=64KiB&rotate_every=1h", nil)
	if err != nil {
		t.Fatal(err)
	}
	fed := feed(t, o, genIPFIX(false, 600, 40))
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if st := o.Stats(); st.Sent != uint64(len(fed)) || st.Dropped != 0 {
		t.Fatalf("stats %+v, fed %d", st, len(fed))
	}
	files, _ := filepath.Glob(path + ".*")
	sort.Strings(files) // timestamp, then -1, -2...: sort by modification order instead
	sort.SliceStable(files, func(i, j int) bool {
		a, _ := os.Stat(files[i])
		b, _ := os.Stat(files[j])
		return a.ModTime().Before(b.ModTime())
	})
	files = append(files, path)
	if len(files) < 3 {
		t.Fatalf("%d files, want several", len(files))
	}
	var got []rec
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(b)) > 64<<10 {
			t.Errorf("%s: %d octets over the rotation size", f, len(b))
		}
		if !hasTemplateSet(b) {
			t.Errorf("%s does not start with templates", f)
		}
		recs := decodeStream(t, b, true) // fresh decoder: each file decodes alone
		got = append(got, recs...)
		// make test installs libfixbuf-tools; in CI its absence fails.
		if _, err := os.Stat("/usr/bin/ipfixDump"); err == nil || os.Getenv("CI") != "" {
			checkIPFIXDump(t, f, len(recs))
		}
	}
	equalRecs(t, got, fed)
	// Template 256 is redefined once per domain: withdrawn first, as
	// RFC 7011 section 8.1 requires outside UDP.
	w := 0
	for _, f := range files {
		b, _ := os.ReadFile(f)
		w += countWithdrawals(b)
	}
	if w != 2 {
		t.Fatalf("%d withdrawals, want 2", w)
	}
}

// countWithdrawals counts template withdrawal records in a stream of
// messages.
func countWithdrawals(b []byte) int {
	n := 0
	for len(b) >= ipfix.HeaderLenIPFIX {
		l := int(binary.BigEndian.Uint16(b[2:]))
		s := b[ipfix.HeaderLenIPFIX:l]
		for len(s) >= 4 {
			id, sl := binary.BigEndian.Uint16(s), int(binary.BigEndian.Uint16(s[2:]))
			if (id == ipfix.TemplateSetID || id == ipfix.OptionsTemplateSetID) && sl == 8 && binary.BigEndian.Uint16(s[6:]) == 0 {
				n++
			}
			s = s[sl:]
		}
		b = b[l:]
	}
	return n
}

// checkIPFIXDump runs libfixbuf's ipfixDump on a file: it must succeed and
// count the same data records.
func checkIPFIXDump(t *testing.T, path string, want int) {
	t.Helper()
	out, err := runCmd("/usr/bin/ipfixDump", "-s", "-i", path)
	if err != nil {
		t.Fatalf("ipfixDump %s: %v\n%s", path, err, out)
	}
	if !strings.Contains(out, fmt.Sprintf("%d Data Records", want)) &&
		!strings.Contains(out, fmt.Sprintf("%d data records", want)) {
		t.Fatalf("ipfixDump %s: want %d data records:\n%s", path, want, out)
	}
}

func TestIPFIXParse(t *testing.T) {
	for _, bad := range []string{
		"ipfix+tcp://", "ipfix+tcp://host", "ipfix+tcp://:4739", "ipfix+tcp://h:0", "ipfix+tcp://h:99999",
		"ipfix+tcp://127.0.0.1:4739?bogus=1", "ipfix+tcp://127.0.0.1:4739?queue=lots", "ipfix+tcp://127.0.0.1:4739?queue=1KiB",
		"ipfix+udp://127.0.0.1:4739?mtu=100", "ipfix+udp://127.0.0.1:4739?template_interval=-1s",
		"ipfix-file:", "ipfix-file:/tmp/x?rotate_size=0", "ipfix-file:/tmp/x?rotate_every=soon",
	} {
		if err := CheckSpec(bad); err == nil {
			t.Errorf("CheckSpec(%q) accepted", bad)
		}
		if o, err := Parse(bad, nil); err == nil {
			o.Close()
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
	for _, good := range []string{"discard", "jsonl:-", "jsonl:/x", "ipfix+tcp://collector.example:4739?queue=64MiB",
		"ipfix+udp://[2001:db8::1]:4739?mtu=9000", "ipfix-file:/var/x.ipfix?rotate_every=10m"} {
		if err := CheckSpec(good); err != nil {
			t.Errorf("CheckSpec(%q): %v", good, err)
		}
	}
	o, err := Parse("ipfix+udp://127.0.0.1:4739?mtu=1500&template_interval=30s", nil)
	if err != nil {
		t.Fatal(err)
	}
	if u := o.(*IPFIXUDP); u.Payload() != 1472 || u.interval != 30*time.Second {
		t.Fatalf("payload %d interval %v", u.Payload(), u.interval)
	}
	o.Close()
	o, err = Parse("ipfix+udp://[::1]:4739", nil)
	if err != nil {
		t.Fatal(err)
	}
	if u := o.(*IPFIXUDP); u.Payload() != 1400 {
		t.Fatalf("default payload %d", u.Payload())
	}
	o.Close()
	dir := t.TempDir()
	o, err = Parse("ipfix-file:"+filepath.Join(dir, "f")+"?rotate_size=64MiB&rotate_every=10m", nil)
	if err != nil {
		t.Fatal(err)
	}
	if f := o.(*IPFIXFile); f.rotateSize != 64<<20 || f.rotateEvery != 10*time.Minute {
		t.Fatalf("%d %v", f.rotateSize, f.rotateEvery)
	}
	o.Close()
	o, err = Parse("ipfix+tcp://localhost:4739?queue=4MiB", nil)
	if err != nil {
		t.Fatal(err)
	}
	o.Close()
}

// TestIPFIXEncoderAllocs checks the steady state allocates nothing per
// record.
func TestIPFIXEncoderAllocs(t *testing.T) {
	msgs := genIPFIX(false, 8, 60)
	var recs []*ipfix.Record
	var metas []*jsonl.Meta
	d := decode.New()
	for _, m := range msgs {
		d.Decode(netip.AddrPort{}, m, func(r *decode.Record) {
			var rr ipfix.Record
			raw := append([]byte(nil), r.Rec.Raw()...)
			it := ipfix.NewDataIter(r.Rec.Layout, raw)
			it.Next(&rr)
			recs = append(recs, &rr)
			msg := *r.Msg
			metas = append(metas, &jsonl.Meta{Msg: &msg})
		})
	}
	var total int
	enc := newIPFIXEncoder(maxTCPMessage, func(msg []byte, n int) { total += n })
	run := func() {
		for i, r := range recs {
			enc.record(metas[i], r)
		}
		enc.finish()
	}
	run()
	if a := testing.AllocsPerRun(100, run); a != 0 {
		t.Fatalf("%v allocations per run of %d records", a, len(recs))
	}
	// Through a TCP output's queue too (chunks are recycled).
	if total == 0 {
		t.Fatal("nothing encoded")
	}
}

func BenchmarkIPFIXEncoder(b *testing.B) {
	msgs := genIPFIX(false, 1, 200)
	d := decode.New()
	var rs []ipfix.Record
	var domain uint32
	d.Decode(netip.AddrPort{}, msgs[0], func(r *decode.Record) {
		var rr ipfix.Record
		raw := append([]byte(nil), r.Rec.Raw()...)
		it := ipfix.NewDataIter(r.Rec.Layout, raw)
		it.Next(&rr)
		rs = append(rs, rr)
		domain = r.Msg.DomainID
	})
	enc := newIPFIXEncoder(maxTCPMessage, func([]byte, int) {})
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		enc.add(domain, netip.Addr{}, &rs[i%len(rs)])
	}
}

func runCmd(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// TestIPFIXUDPTshark captures re-exported UDP on loopback with dumpcap and
// has tshark decode it: no malformed packets, no expert warnings (sequence
// numbers included; notes on the transport aside, see tsharktest.Benign),
// and as many flows as records fed. tshark decodes data
// with the first template it saw for an ID (it does not follow
// redefinitions), so the input here defines each template once.
func TestIPFIXUDPTshark(t *testing.T) {
	for _, p := range []string{"/usr/bin/tshark", "/usr/bin/dumpcap"} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("%s not installed", p)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("capturing on lo needs root")
	}
	pc := tsharktest.ListenUDP(t, "udp4", "127.0.0.1")
	port := pc.LocalAddr().(*net.UDPAddr).Port
	probe := tsharktest.NewProbe(t)
	pcap := filepath.Join(t.TempDir(), "x.pcap")
	cmd := exec.Command("/usr/bin/dumpcap", "-i", "lo", "-f", fmt.Sprintf("udp port %d or %s", port, probe.Filter()), "-w", pcap)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	started := make(chan bool, 1)
	go func() {
		buf := make([]byte, 4096)
		var all []byte
		for {
			n, err := stderr.Read(buf)
			all = append(all, buf[:n]...)
			if bytes.Contains(all, []byte("Capturing on")) {
				started <- true
				io.Copy(io.Discard, stderr)
				return
			}
			if err != nil {
				started <- false
				return
			}
		}
	}()
	select {
	case ok := <-started:
		if !ok {
			cmd.Wait()
			t.Skip("dumpcap could not capture")
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		cmd.Wait()
		t.Skip("dumpcap did not start")
	}
	// "Capturing on" comes a little before the capture does.
	probe.WaitCaptured(t, pcap, 10*time.Second)
	spec := fmt.Sprintf("ipfix+udp://127.0.0.1:%d", port)
	var fed int
	for _, msgs := range [][][]byte{genIPFIX(false, 40, 25)[:20], genV5(4, 30)} {
		o, err := Parse(spec, nil)
		if err != nil {
			t.Fatal(err)
		}
		fed += len(feed(t, o, msgs))
		o.Close()
		if st := o.Stats(); st.Sent == 0 || st.Dropped != 0 {
			t.Fatalf("stats %+v", st)
		}
	}
	probe.WaitCaptured(t, pcap, 10*time.Second) // the capture has all sent before
	cmd.Process.Signal(os.Interrupt)
	cmd.Wait()
	out, err := runCmd("/usr/bin/tshark", "-r", pcap, "-d", fmt.Sprintf("udp.port==%d,cflow", port), "-V")
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, out)
	}
	flows := 0
	for _, line := range strings.Split(out, "\n") {
		l := strings.TrimSpace(line)
		if strings.HasPrefix(l, "Flow ") && !strings.Contains(l, ":") {
			flows++
		}
		if (strings.Contains(l, "Expert Info") && !tsharktest.Benign(l)) || strings.Contains(l, "Malformed") {
			t.Errorf("tshark: %s", l)
		}
	}
	if flows != fed {
		t.Fatalf("tshark decoded %d flows, fed %d:\n%.3000s", flows, fed, out)
	}
}

// steadyRecords decodes msgs into records and metas that outlive the
// decoder, for allocation tests and benchmarks.
func steadyRecords(msgs [][]byte) ([]*ipfix.Record, []*jsonl.Meta) {
	var recs []*ipfix.Record
	var metas []*jsonl.Meta
	d := decode.New()
	for _, m := range msgs {
		d.Decode(netip.AddrPort{}, m, func(r *decode.Record) {
			var rr ipfix.Record
			it := ipfix.NewDataIter(r.Rec.Layout, append([]byte(nil), r.Rec.Raw()...))
			it.Next(&rr)
			recs = append(recs, &rr)
			msg := *r.Msg
			metas = append(metas, &jsonl.Meta{Msg: &msg})
		})
	}
	return recs, metas
}

// discardReceiver accepts TCP connections and reads them to the end.
func discardReceiver(t testing.TB) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	return ln
}

// TestIPFIXOutputAllocs checks that the outputs allocate nothing per
// record once warm.
func TestIPFIXOutputAllocs(t *testing.T) {
	// No template redefinition (genIPFIX redefines halfway): those
	// allocate, once per change.
	recs, metas := steadyRecords(genIPFIX(false, 16, 60)[:8])
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 65536)
		for {
			// Read, not ReadFrom: this goroutine's allocations count too.
			if _, err := pc.(*net.UDPConn).Read(buf); err != nil {
				return
			}
		}
	}()
	ln := discardReceiver(t)
	defer ln.Close()
	for _, tc := range []struct {
		spec string
		max  float64
	}{
		{"ipfix+udp://" + pc.LocalAddr().String(), 0},
		{"ipfix-file:" + filepath.Join(t.TempDir(), "f") + "?rotate_size=1GiB", 0},
		// The writer goroutine's allocations count too; chunks are
		// allocated lazily until the pool is warm.
		{"ipfix+tcp://" + ln.Addr().String(), 1},
	} {
		o, err := Parse(tc.spec, nil)
		if err != nil {
			t.Fatal(err)
		}
		run := func() {
			for i, r := range recs {
				o.Record(metas[i], r)
			}
			o.Flush()
		}
		for range 100 {
			run()
		}
		if a := testing.AllocsPerRun(200, run); a > tc.max {
			t.Errorf("%s: %v allocations per %d records", tc.spec, a, len(recs))
		}
		o.Close()
		if st := o.Stats(); st.Dropped != 0 {
			t.Errorf("%s: %+v", tc.spec, st)
		}
	}
}

// BenchmarkIPFIXTCP re-exports records to a local TCP receiver.
func BenchmarkIPFIXTCP(b *testing.B) {
	benchTCPOutput(b, func(addr string) tcpOutput { return NewIPFIXTCP("bench", addr, 64<<20) })
}

func (s *tcpStream) isConnected() bool { return s.connected.Load() }

// tcpOutput is what benchTCPOutput needs of a TCP output.
type tcpOutput interface {
	Output
	isConnected() bool
}

// benchTCPOutput feeds records to a TCP output connected to a receiver that
// reads and discards, and reports records/s; every record must be counted
// as sent or dropped.
func benchTCPOutput(b *testing.B, open func(addr string) tcpOutput) {
	recs, metas := steadyRecords(genIPFIX(false, 8, 60))
	ln := discardReceiver(b)
	defer ln.Close()
	o := open(ln.Addr().String())
	waitFor(b, "connection", 5*time.Second, o.isConnected)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		j := i % len(recs)
		o.Record(metas[j], recs[j])
		if i%8192 == 8191 {
			o.Flush()
		}
	}
	o.Close()
	b.StopTimer()
	st := o.Stats()
	if st.Sent+st.Dropped != uint64(b.N) {
		b.Fatalf("sent %d + dropped %d != %d", st.Sent, st.Dropped, b.N)
	}
	b.ReportMetric(float64(st.Dropped), "dropped")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

func TestIPFIXFileRotateEvery(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f.ipfix")
	clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	x, err := NewIPFIXFile("f", path, 0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	x.now = func() time.Time { return clock }
	x.opened = clock
	msgs := genIPFIX(false, 40, 10)
	fed := feed(t, x, msgs[:10])
	x.Flush()
	clock = clock.Add(30 * time.Minute)
	fed = append(fed, feed(t, x, msgs[10:15])...)
	x.Flush()
	clock = clock.Add(31 * time.Minute)
	x.Flush() // idle: rotates
	fed = append(fed, feed(t, x, msgs[15:20])...)
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	old := path + ".20260102T030405.000Z"
	a, err := os.ReadFile(old)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got := append(decodeStream(t, a, true), decodeStream(t, b, true)...)
	equalRecs(t, got, fed)
	if !hasTemplateSet(b) {
		t.Fatal("new file does not start with templates")
	}
}

// TestTCPCloseWhileDown: Close of a TCP output whose peer is down returns
// within its grace, counting what was queued as dropped; a record after
// Close is dropped too; with nothing queued Close does not wait.
func TestTCPCloseWhileDown(t *testing.T) {
	for _, scheme := range []string{"ipfix+tcp://", "jsonl+tcp://"} {
		t.Run(scheme, func(t *testing.T) {
			t.Parallel()
			addr := freeAddr(t)
			o, err := Parse(scheme+addr, nil)
			if err != nil {
				t.Fatal(err)
			}
			// The backoff grows: 100, 200, 400 ms between dials.
			waitFor(t, "failed dials", 10*time.Second, func() bool { return o.Stats().Errors >= 4 })
			fed := len(feed(t, o, genIPFIX(false, 10, 10)))
			o.Flush()
			start := time.Now()
			o.Close()
			if d := time.Since(start); d > tcpCloseGrace+2*time.Second {
				t.Fatalf("Close took %v", d)
			}
			if st := o.Stats(); st.Dropped != uint64(fed) || st.Sent != 0 {
				t.Fatalf("stats %+v, fed %d", st, fed)
			}
			o.Record(&jsonl.Meta{}, nil) // after Close: dropped, not queued
			if st := o.Stats(); st.Dropped != uint64(fed)+1 {
				t.Fatalf("after Close: %+v", st)
			}
			o, _ = Parse(scheme+addr, nil)
			waitFor(t, "failed dials", 10*time.Second, func() bool { return o.Stats().Errors >= 4 })
			start = time.Now()
			o.Close()
			if d := time.Since(start); d > time.Second {
				t.Fatalf("idle Close took %v", d)
			}
		})
	}
}
