package collector

import (
	"strconv"
	"testing"
)

// TestTCPMessageSpillsWholeAndFirst: a TCP message begun while the ring had
// room is handled whole even when the ring fills midway: what the ring
// cannot take waits in the spill, counted nowhere as lost, and enters the
// ring before anything the loop produces later.
func TestTCPMessageSpillsWholeAndFirst(t *testing.T) {
	c, l := testCollector(t, Config{RingSize: 64 << 10})
	s := &tcpSession{id: 1, remote: exporterB, loop: l}
	tcp := origin{src: exporterB, transport: transportTCP, session: s}
	gt, gu := newGen(1), newGen(2)
	l.handle(gt.templates(256, tuple), tcp)
	l.handle(gu.templates(256, tuple), udpFrom(exporterA))
	// Fill the ring with UDP data until it drops.
	udpSent := 0
	for metric(t, c, `sluice_dropped_records_total{reason="ring_full"}`) == "0" {
		l.handle(gu.data(256, udpSent, 60), udpFrom(exporterA))
		udpSent += 60
	}
	full := metric(t, c, `sluice_dropped_records_total{reason="ring_full"}`)

	// One TCP message of ten data sets of 40 records, numbered from
	// tcpFirst (the UDP ones stay below it).
	const tcpFirst, marker = 100000, 200000
	w := &gt.w
	msg := w.Begin(nil, 1700000000)
	for k := range 10 {
		msg = w.BeginSet(msg, 256)
		for i := range 40 {
			msg = appendTuple(msg, tcpFirst+k*40+i)
		}
		msg = w.EndSet(msg)
	}
	w.AddRecords(400)
	msg, _ = w.Finish(msg)
	l.handle(msg, tcp)
	if got := metric(t, c, "sluice_tcp_spill_bytes"); got == "0" {
		t.Fatal("the full ring took the whole TCP message: nothing spilled")
	}
	if got := metric(t, c, `sluice_dropped_records_total{reason="ring_full"}`); got != full {
		t.Fatalf("ring_full drops went from %s to %s: TCP records lost", full, got)
	}
	if l.tcpRoom() {
		t.Fatal("a session may begin a message while the spill holds entries")
	}

	before := drain(t, l) // the consumer makes room
	// The next entry, from UDP, goes after the spilled ones.
	l.handle(gu.data(256, marker, 1), udpFrom(exporterA))
	after := drain(t, l)
	if got := metric(t, c, "sluice_tcp_spill_bytes"); got != "0" {
		t.Fatalf("spill holds %s bytes after the ring had room", got)
	}
	// appendTuple puts record i's octets at i*100.
	var tcpSets []uint64
	all := append(before.firstOctets, after.firstOctets...)
	for _, o := range all {
		if o >= tcpFirst*100 && o < marker*100 {
			tcpSets = append(tcpSets, o/100)
		}
	}
	for k, first := range tcpSets {
		if first != uint64(tcpFirst+k*40) {
			t.Fatalf("TCP data entries start at records %v, want the ten sets in order", tcpSets)
		}
	}
	if len(tcpSets) != 10 {
		t.Fatalf("%d TCP data entries reached the ring, want 10", len(tcpSets))
	}
	if all[len(all)-1] != marker*100 {
		t.Fatalf("the UDP entry handled after the spill is not last: %v", after.firstOctets)
	}
	if before.records+after.records != udpSent-mustInt(t, full)+400+1 {
		t.Fatalf("%d records reached the ring, want %d UDP + 400 TCP + 1", before.records+after.records, udpSent-mustInt(t, full))
	}
}

func mustInt(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestTCPNoAllocs: a TCP data message costs no allocation, whether the ring
// takes it or it waits in the spill (once the spill has grown to it).
func TestTCPNoAllocs(t *testing.T) {
	_, l := testCollector(t, Config{RingSize: 64 << 10})
	s := &tcpSession{id: 1, remote: exporterB, loop: l}
	tcp := origin{src: exporterB, transport: transportTCP, session: s}
	g := newGen(1)
	l.handle(g.templates(256, tuple), tcp)
	msg := g.data(256, 0, 30)
	cons := l.ring.Consumer()
	l.handle(msg, tcp) // announce the template first
	if a := testing.AllocsPerRun(200, func() {
		l.handle(msg, tcp)
		for cons.Next() != nil {
			cons.Release()
		}
	}); a != 0 {
		t.Fatalf("handling a TCP data message allocates %v times", a)
	}
	// Fill the ring, then spill and flush over and over.
	for l.spillHead == len(l.spill) {
		l.handle(msg, tcp)
	}
	spill := func() {
		for range 4 {
			l.handle(msg, tcp)
		}
		for cons.Next() != nil {
			cons.Release()
		}
		if !l.flushSpill() {
			t.Fatal("the spill did not enter an empty ring")
		}
		for l.spillHead == len(l.spill) {
			l.handle(msg, tcp)
		}
	}
	spill()
	if a := testing.AllocsPerRun(50, spill); a != 0 {
		t.Fatalf("spilling a TCP data message allocates %v times", a)
	}
}
