//go:build linux

package main

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
)

var testFields = []ipfix.FieldSpec{{ID: 8, Length: 4}, {ID: 12, Length: 4}, {ID: 1, Length: 8}} // 16 octets

// testStream builds an IPFIX stream of one domain: a template message,
// then data messages of the given record counts.
func testStream(t *testing.T, w *ipfix.MessageWriter, records ...int) []byte {
	t.Helper()
	b := w.Begin(nil, 1)
	b = w.BeginSet(b, ipfix.TemplateSetID)
	b = ipfix.AppendTemplateRecord(b, 256, testFields)
	b = w.EndSet(b)
	b, err := w.Finish(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range records {
		b = w.Begin(b, 1)
		b = w.BeginSet(b, 256)
		for i := range n {
			b = ipfix.AppendUint(b, uint64(i), 4)
			b = ipfix.AppendUint(b, uint64(i), 4)
			b = ipfix.AppendUint(b, uint64(i), 8)
		}
		b = w.EndSet(b)
		w.AddRecords(n)
		if b, err = w.Finish(b); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

// feedChunks feeds b to s in chunks of size n, as reads would, and
// returns the bytes left over.
func feedChunks(s *ipfixStream, b []byte, n int) int {
	var pend []byte
	for len(b) > 0 {
		k := min(n, len(b))
		pend = append(pend, b[:k]...)
		b = b[k:]
		used := s.feed(pend)
		pend = pend[:copy(pend, pend[used:])]
	}
	return len(pend)
}

func TestIPFIXStreamCounts(t *testing.T) {
	f := func(chunk int) {
		t.Helper()
		w := &ipfix.MessageWriter{DomainID: 7}
		b := testStream(t, w, 30, 1, 100)
		s := newIPFIXStream()
		if left := feedChunks(s, b, chunk); left != 0 {
			t.Errorf("chunk %d: %d octets left over", chunk, left)
		}
		if s.err != nil || s.messages != 4 || s.records != 131 || s.seqLost != 0 || s.unknownSets != 0 {
			t.Errorf("chunk %d: err %v, messages %d, records %d, seq lost %d, unknown sets %d; want 4, 131, 0, 0",
				chunk, s.err, s.messages, s.records, s.seqLost, s.unknownSets)
		}
	}
	f(1)
	f(7)
	f(16)
	f(1 << 20)
}

func TestIPFIXStreamSequenceGap(t *testing.T) {
	w := &ipfix.MessageWriter{DomainID: 1}
	b := testStream(t, w, 10)
	w.Sequence += 25 // 25 records the exporter counted but never sent
	b = append(b, testStream(t, w, 5)...)
	s := newIPFIXStream()
	s.feed(b)
	if s.records != 15 || s.seqLost != 25 {
		t.Errorf("records %d, seq lost %d; want 15, 25", s.records, s.seqLost)
	}
}

func TestIPFIXStreamUnknownAndWithdrawn(t *testing.T) {
	w := &ipfix.MessageWriter{DomainID: 1}
	b := testStream(t, w, 2)
	// Withdraw the template, then send data for it.
	b = w.Begin(b, 1)
	b = w.BeginSet(b, ipfix.TemplateSetID)
	b = ipfix.AppendWithdrawal(b, 256)
	b = w.EndSet(b)
	b, _ = w.Finish(b)
	b = w.Begin(b, 1)
	b = w.BeginSet(b, 256)
	b = append(b, make([]byte, 16)...)
	b = w.EndSet(b)
	w.AddRecords(1)
	b, _ = w.Finish(b)
	s := newIPFIXStream()
	s.feed(b)
	if s.records != 2 || s.unknownSets != 1 || s.err != nil {
		t.Errorf("records %d, unknown sets %d, err %v; want 2, 1, nil", s.records, s.unknownSets, s.err)
	}
	// Not IPFIX: the stream stops counting and consumes everything.
	s = newIPFIXStream()
	if n := s.feed([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); n != 27 || s.err == nil {
		t.Errorf("HTTP: consumed %d, err %v; want 27 and an error", n, s.err)
	}
}

func TestReceiver(t *testing.T) {
	r, err := startReceiver()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var want float64
	for d := range uint32(3) {
		c, err := net.Dial("tcp", r.Addr())
		if err != nil {
			t.Fatal(err)
		}
		b := testStream(t, &ipfix.MessageWriter{DomainID: d}, 30, 30, 7)
		want += 67
		for len(b) > 0 { // odd-sized writes
			k := min(333, len(b))
			if _, err := c.Write(b[:k]); err != nil {
				t.Fatal(err)
			}
			b = b[k:]
		}
		c.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for r.counts().Records < want && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if c := r.counts(); c.Records != want || c.Messages != 12 || c.Conns != 3 || c.SeqLost != 0 || c.StreamErrors != 0 {
		t.Errorf("counts %+v; want %v records, 12 messages, 3 connections", c, want)
	}
}

func TestBuiltinPipelines(t *testing.T) {
	for _, c := range []struct {
		name                string
		receiver, aggregate bool
	}{{"select-project-tcp", true, false}, {"aggregate-1m", false, true}} {
		ps, err := lookupPipeline(c.name)
		if err != nil {
			t.Fatal(err)
		}
		if ps.receiver != c.receiver || ps.aggregate != c.aggregate || len(ps.names) != 1 || ps.names[0] != c.name || ps.outputs[0] != 1 || ps.TargetRPS == 0 {
			t.Errorf("%s: %+v", c.name, ps)
		}
		if f := ps.file("127.0.0.1:9"); strings.Contains(f, receiverPlaceholder) || ps.receiver != strings.Contains(f, "127.0.0.1:9") {
			t.Errorf("%s: file with the receiver's address:\n%s", c.name, f)
		}
	}
	if _, err := lookupPipeline("no-such-pipeline"); err == nil {
		t.Error("unknown name accepted")
	}
}

func TestScrapePipeline(t *testing.T) {
	ps, err := lookupPipeline("select-project-tcp")
	if err != nil {
		t.Fatal(err)
	}
	m := parseMetrics(`sluice_pipeline_stage_records_total{pipeline="select-project-tcp",stage="select",direction="in"} 100
sluice_pipeline_stage_records_total{pipeline="select-project-tcp",stage="select",direction="out"} 90
sluice_pipeline_stage_records_total{pipeline="select-project-tcp",stage="outputs",direction="in"} 90
sluice_output_records_total{output="ipfix+tcp://127.0.0.1:5000",outcome="sent"} 80
sluice_output_records_total{output="ipfix+tcp://127.0.0.1:5000",outcome="dropped"} 4
sluice_output_records_total{output="discard",outcome="sent"} 3
sluice_output_queued_records{output="ipfix+tcp://127.0.0.1:5000"} 6
`)
	c := scrapePipeline(m, ps, "127.0.0.1:5000")
	if c.OutExpected != 90 || c.OutSent != 83 || c.OutDropped != 4 || c.OutQueued != 6 || c.OutSentRecv != 80 || c.Stages["select-project-tcp/select/out"] != 90 {
		t.Errorf("%+v", c)
	}
	c.Recv.Records = 80
	if c.outputsSettled(true) {
		t.Error("settled with 6 records queued")
	}
	c.OutQueued, c.OutSent = 0, 86
	if !c.outputsSettled(true) || c.outputsSettled(false) != true {
		t.Error("not settled with everything sent or dropped")
	}
	c.OutSentRecv = 83
	if c.outputsSettled(true) {
		t.Error("settled before the receiver counted all that was sent to it")
	}
}

func TestFinishPipeStep(t *testing.T) {
	base := pipeCounts{OutExpected: 10, OutSent: 10, OutSentRecv: 10, Recv: recvCounts{Records: 10}, AggEvicted: 1}
	atEnd := pipeCounts{OutExpected: 900, OutSent: 610, OutSentRecv: 610}
	last := pipeCounts{OutExpected: 1010, OutSent: 1010, OutSentRecv: 1010, Recv: recvCounts{Records: 1010}, AggKeys: 1000, AggBytes: 184000, AggEvicted: 1}
	ps := &PipeStep{Receiver: true, Aggregate: true, RSSBase: 50e6, RSSEnd: 50e6 + 150*1000}
	finishPipeStep(ps, base, atEnd, last, 2)
	if !ps.outputOK() || ps.OutSent != 1000 || ps.OutputRPS != 300 || ps.BytesPerKeyTable != 184 || ps.BytesPerKeyRSS != 150 || ps.Evicted != 0 {
		t.Errorf("clean step: %+v", ps)
	}
	// The receiver counted 3 fewer than sent; 5 dropped; 2 never sent.
	last.Recv.Records, last.OutSent, last.OutDropped = 1007, 1003, 5
	ps = &PipeStep{Receiver: true}
	finishPipeStep(ps, base, atEnd, last, 2)
	if ps.outputOK() || ps.RecvMissing != 3 || ps.OutUnaccounted != 2 || ps.OutLost != 5 {
		t.Errorf("lossy step: %+v", ps)
	}
}

func TestPrefillCount(t *testing.T) {
	// 4 exporters of 250,000 keys: 8,334 messages of 30 each, plus a round
	// of batches of 8.
	if got := prefillCount(1000000, 4, 30, 8); got != 4*8334+32 {
		t.Errorf("prefillCount = %d, want %d", got, 4*8334+32)
	}
}

func TestFmtCount(t *testing.T) {
	for in, want := range map[float64]string{0: "0", 999: "999", 1000: "1,000", 1048576: "1,048,576", -12345: "-12,345"} {
		if got := fmtCount(in); got != want {
			t.Errorf("fmtCount(%v) = %q, want %q", in, got, want)
		}
	}
}
