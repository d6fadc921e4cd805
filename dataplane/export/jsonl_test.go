package export

import (
	"bytes"
	"encoding/json"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/dataplane/jsonl"
	"github.com/sluice-flow/sluice/dataplane/offline/decode"
)

// feedLines decodes msgs and passes every record to o, returning the JSON
// line each record must come out as.
func feedLines(t testing.TB, o Output, msgs [][]byte) [][]byte {
	t.Helper()
	return feedLinesWith(t, decode.New(), o, msgs)
}

// feedLinesWith is feedLines with a decoder that keeps templates from one
// call to the next.
func feedLinesWith(t testing.TB, d *decode.Decoder, o Output, msgs [][]byte) [][]byte {
	t.Helper()
	exp := netip.MustParseAddrPort("192.0.2.1:2055")
	var want [][]byte
	for _, m := range msgs {
		if _, err := d.Decode(exp, m, func(r *decode.Record) {
			ref := &jsonl.Meta{Exporter: r.Exporter, Msg: r.Msg}
			want = append(want, jsonl.AppendRecord(nil, ref, r.Rec))
			o.Record(&jsonl.Meta{Exporter: r.Exporter, Msg: r.Msg}, r.Rec)
		}); err != nil {
			t.Fatal(err)
		}
	}
	return want
}

// splitLines cuts b into newline-terminated lines, each of which must be
// valid JSON, and returns what follows the last newline.
func splitLines(t testing.TB, what string, b []byte) (lines [][]byte, tail []byte) {
	t.Helper()
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			return lines, b
		}
		if !json.Valid(b[:i]) {
			t.Fatalf("%s: line %d is not valid JSON: %.200q", what, len(lines), b[:i])
		}
		lines = append(lines, b[:i+1])
		b = b[i+1:]
	}
	return lines, nil
}

// rotatedFiles lists path's rotated files oldest first (by stamp, then by
// the -N counter), then path itself.
func rotatedFiles(t testing.TB, path string) []string {
	t.Helper()
	files, err := filepath.Glob(path + ".*")
	if err != nil {
		t.Fatal(err)
	}
	key := func(f string) (string, int) {
		s := strings.TrimPrefix(f, path+".")
		stamp, n, ok := strings.Cut(s, "-")
		if !ok {
			return stamp, 0
		}
		i, err := strconv.Atoi(n)
		if err != nil {
			t.Fatalf("rotated file %s: bad counter", f)
		}
		return stamp, i
	}
	sort.Slice(files, func(i, j int) bool {
		si, ni := key(files[i])
		sj, nj := key(files[j])
		if si != sj {
			return si < sj
		}
		return ni < nj
	})
	for _, f := range files {
		stamp, _ := key(f)
		if _, err := time.Parse(rotatedStamp, stamp); err != nil {
			t.Fatalf("rotated file %s: %v", f, err)
		}
	}
	return append(files, path)
}

func TestJSONLFileRotateSize(t *testing.T) {
	for _, tc := range []struct {
		name string
		size int64
		msgs [][]byte
	}{
		{"64KiB", 64 << 10, genIPFIX(false, 300, 40)},
		// Every line is over the size: one line per file.
		{"1B", 1, genIPFIX(false, 5, 10)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "flows.jsonl")
			o, err := Parse("jsonl:"+path+"?rotate_size="+strconv.FormatInt(tc.size, 10), nil)
			if err != nil {
				t.Fatal(err)
			}
			want := feedLines(t, o, tc.msgs)
			if err := o.Close(); err != nil {
				t.Fatal(err)
			}
			if st := o.Stats(); st.Sent != uint64(len(want)) || st.Dropped != 0 || st.Errors != 0 {
				t.Fatalf("stats %+v, fed %d", st, len(want))
			}
			files := rotatedFiles(t, path)
			if len(files) < 3 {
				t.Fatalf("%d files, want several", len(files))
			}
			var got [][]byte
			for i, f := range files {
				b, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				lines, tail := splitLines(t, f, b)
				if len(tail) != 0 || len(lines) == 0 {
					t.Fatalf("%s: %d lines, %d octets after the last newline", f, len(lines), len(tail))
				}
				// Rotation comes before the line that would pass the size:
				// only a file holding one line can be over it.
				if int64(len(b)) > tc.size && len(lines) > 1 {
					t.Errorf("%s: %d octets in %d lines, over the rotation size", f, len(b), len(lines))
				}
				// Under size plus one line: the next line did not fit.
				if i < len(files)-1 && int64(len(b))+int64(len(want[len(got)+len(lines)])) <= tc.size {
					t.Errorf("%s rotated at %d octets although the next line fitted", f, len(b))
				}
				got = append(got, lines...)
			}
			if len(got) != len(want) {
				t.Fatalf("%d lines in files, want %d", len(got), len(want))
			}
			for i := range got {
				if !bytes.Equal(got[i], want[i]) {
					t.Fatalf("line %d:\n got %s\nwant %s", i, got[i], want[i])
				}
			}
		})
	}
}

func TestJSONLFileRotateEvery(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f.jsonl")
	clock := time.Date(2026, 1, 2, 3, 4, 5, 6e6, time.UTC)
	j, err := NewJSONLFile("f", path, 0, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	j.rot.now = func() time.Time { return clock }
	msgs := genIPFIX(false, 40, 10)
	d := decode.New()
	var files [][][]byte // expected lines per file, in rotation order
	files = append(files, feedLinesWith(t, d, j, msgs[:10]))
	j.Flush()
	clock = clock.Add(30 * time.Minute)
	files[0] = append(files[0], feedLinesWith(t, d, j, msgs[10:15])...)
	j.Flush()
	clock = clock.Add(31 * time.Minute)
	j.Flush() // idle: rotates
	clock = clock.Add(2 * time.Hour)
	j.Flush()                                                  // the new file is empty: no rotation
	files = append(files, feedLinesWith(t, d, j, msgs[15:20])) // the file starts at 06:05:05
	clock = clock.Add(59 * time.Minute)
	files[1] = append(files[1], feedLinesWith(t, d, j, msgs[20:22])...)
	clock = clock.Add(time.Minute)
	files = append(files, feedLinesWith(t, d, j, msgs[22:25])) // the first record rotates
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	names := []string{path + ".20260102T030405.006Z", path + ".20260102T060505.006Z", path}
	got := rotatedFiles(t, path)
	if strings.Join(got, " ") != strings.Join(names, " ") {
		t.Fatalf("files %q, want %q", got, names)
	}
	total := 0
	for i, name := range names {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if want := bytes.Join(files[i], nil); !bytes.Equal(b, want) {
			t.Fatalf("%s: %d octets, want %d", name, len(b), len(want))
		}
		total += len(files[i])
	}
	if st := j.Stats(); st.Sent != uint64(total) || st.Dropped != 0 {
		t.Fatalf("stats %+v, fed %d", st, total)
	}
}

// TestJSONLFilePlain checks jsonl:PATH without options appends, as before.
func TestJSONLFilePlain(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f.jsonl")
	if err := os.WriteFile(path, []byte("{\"old\":1}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	o, err := Parse("jsonl:"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if o.(*JSONL).rot != nil {
		t.Fatal("rotation without options")
	}
	want := feedLines(t, o, genIPFIX(false, 20, 10))
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if w := append([]byte("{\"old\":1}\n"), bytes.Join(want, nil)...); !bytes.Equal(b, w) {
		t.Fatalf("file holds %d octets, want %d", len(b), len(w))
	}
	if files, _ := filepath.Glob(path + ".*"); len(files) != 0 {
		t.Fatalf("rotated files %q", files)
	}
}

// TestJSONLFileRotateError checks a failed rotation counts an error and
// drops, as a write error does.
func TestJSONLFileRotateError(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "gone")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	o, err := Parse("jsonl:"+filepath.Join(dir, "f.jsonl")+"?rotate_size=4KiB", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(dir); err != nil { // the rename will fail
		t.Fatal(err)
	}
	want := feedLines(t, o, genIPFIX(false, 20, 10))
	if err := o.Flush(); err == nil {
		t.Fatal("Flush after a failed rotation: no error")
	}
	if err := o.Close(); err == nil {
		t.Fatal("Close after a failed rotation: no error")
	}
	st := o.Stats()
	if st.Errors != 1 || st.Dropped == 0 || st.Sent+st.Dropped != uint64(len(want)) {
		t.Fatalf("stats %+v, fed %d", st, len(want))
	}
}

func TestJSONLRotatedName(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	at := time.Date(2026, 11, 25, 17, 30, 0, 0, time.FixedZone("CET", 3600))
	for i, want := range []string{".20261125T163000.000Z", ".20261125T163000.000Z-1", ".20261125T163000.000Z-2"} {
		got, err := rotatedName(path, at)
		if err != nil {
			t.Fatal(err)
		}
		if got != path+want {
			t.Fatalf("name %d: %s, want %s", i, got, path+want)
		}
		if err := os.WriteFile(got, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// freeAddr returns a local TCP address nobody listens on.
func freeAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestJSONLTCPDelivery(t *testing.T) {
	t.Parallel()
	rcv := newTCPReceiverStall(t, "127.0.0.1:0", 0)
	o, err := Parse("jsonl+tcp://"+rcv.ln.Addr().String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	var want [][]byte
	msgs := genIPFIX(false, 400, 50)
	for i := 0; i < len(msgs); i += 37 { // idle flushes now and then
		want = append(want, feedLines(t, o, msgs[i:min(i+37, len(msgs))])...)
		o.Flush()
	}
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	if st := o.Stats(); st.Sent != uint64(len(want)) || st.Dropped != 0 || st.Errors != 0 {
		t.Fatalf("stats %+v, fed %d", st, len(want))
	}
	all := bytes.Join(want, nil)
	waitFor(t, "delivery", 5*time.Second, func() bool { return rcv.total() >= len(all) })
	rcv.kill()
	got := rcv.received()
	if len(got) != 1 || !bytes.Equal(got[0], all) {
		t.Fatalf("%d connections; received %d octets, want %d byte for byte", len(got), rcv.total(), len(all))
	}
	if q := o.(QueueStats); q.Queued() != 0 || q.Reconnects() != 0 {
		t.Fatalf("queued %d reconnects %d", q.Queued(), q.Reconnects())
	}
}

// TestJSONLTCPReceiverLate starts the receiver after records were queued,
// then restarts it once.
func TestJSONLTCPReceiverLate(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t)
	o, err := Parse("jsonl+tcp://"+addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	q := o.(QueueStats)
	waitFor(t, "a failed dial", 5*time.Second, func() bool { return o.Stats().Errors > 0 })
	msgs := genIPFIX(false, 400, 40)
	want := feedLines(t, o, msgs[:200]) // several chunks
	o.Flush()
	if st := o.Stats(); q.Queued() == 0 || st.Sent != 0 || st.Dropped != 0 {
		t.Fatalf("queued %d, stats %+v", q.Queued(), st)
	}
	rcv := newTCPReceiverStall(t, addr, 0)
	all := bytes.Join(want, nil)
	waitFor(t, "delivery", 10*time.Second, func() bool { o.Flush(); return rcv.total() == len(all) })
	waitFor(t, "sent count", 5*time.Second, func() bool { return o.Stats().Sent == uint64(len(want)) })
	if st := o.Stats(); st.Sent != uint64(len(want)) || st.Dropped != 0 || q.Queued() != 0 {
		t.Fatalf("queued %d, stats %+v, fed %d", q.Queued(), st, len(want))
	}
	if got := rcv.received(); len(got) != 1 || !bytes.Equal(got[0], all) {
		t.Fatal("received bytes differ from the lines fed")
	}
	if q.Reconnects() != 0 {
		t.Fatalf("reconnects %d before any disconnection", q.Reconnects())
	}

	// Restart: the next connection counts as a reconnect.
	rcv.kill()
	tcp := o.(*JSONLTCP)
	waitFor(t, "disconnect", 5*time.Second, func() bool { return !tcp.connected.Load() })
	want2 := feedLines(t, o, msgs[200:])
	o.Flush()
	rcv2 := newTCPReceiverStall(t, addr, 0)
	defer rcv2.kill()
	all2 := bytes.Join(want2, nil)
	waitFor(t, "delivery", 10*time.Second, func() bool { o.Flush(); return rcv2.total() == len(all2) })
	if got := rcv2.received(); len(got) != 1 || !bytes.Equal(got[0], all2) {
		t.Fatal("received bytes differ from the lines fed after the restart")
	}
	// The writer counts a chunk as sent once its Write returned, which can
	// be after the receiver has read it.
	waitFor(t, "sent count", 5*time.Second, func() bool { return o.Stats().Sent == uint64(len(want)+len(want2)) })
	if st := o.Stats(); q.Reconnects() != 1 || st.Sent != uint64(len(want)+len(want2)) || st.Dropped != 0 {
		t.Fatalf("reconnects %d, stats %+v", q.Reconnects(), st)
	}
}

// TestJSONLTCPReceiverKilled stalls the receiver so the writer blocks in
// the middle of a chunk, resets it, feeds past a small queue while it is
// down, then restarts it: every record is either sent or dropped, and
// every line received is whole.
func TestJSONLTCPReceiverKilled(t *testing.T) {
	t.Parallel()
	rcv := newTCPReceiverStall(t, "127.0.0.1:0", 1<<20)
	addr := rcv.ln.Addr().String()
	o, err := Parse("jsonl+tcp://"+addr+"?queue=512KiB", nil)
	if err != nil {
		t.Fatal(err)
	}
	tcp := o.(*JSONLTCP)
	waitFor(t, "connection", 5*time.Second, func() bool { return tcp.connected.Load() })
	msgs := genIPFIX(false, 100, 50)
	var fed [][]byte
	// Feed until the writer is stuck in a write to the stalled connection:
	// records are dropped and none gets sent.
	deadline := time.Now().Add(20 * time.Second)
	for i, stuck := 0, false; !stuck; i++ {
		if i == 200 || time.Now().After(deadline) {
			t.Fatalf("writer not blocked after %d records: %+v", len(fed), o.Stats())
		}
		before := o.Stats()
		fed = append(fed, feedLines(t, o, msgs)...)
		o.Flush()
		time.Sleep(20 * time.Millisecond)
		after := o.Stats()
		stuck = after.Sent == before.Sent && after.Dropped > before.Dropped
	}
	rcv.reset() // the blocked write fails part way through a line
	waitFor(t, "disconnect", 5*time.Second, func() bool { return !tcp.connected.Load() })
	sentBefore := o.Stats().Sent

	// Down: past the queue.
	for range 3 {
		fed = append(fed, feedLines(t, o, msgs)...)
	}
	o.Flush()
	if q := tcp.Queued(); q == 0 {
		t.Fatal("nothing queued while down")
	}
	rcv2 := newTCPReceiverStall(t, addr, 0)
	waitFor(t, "drain", 15*time.Second, func() bool {
		o.Flush()
		st := o.Stats()
		return tcp.Queued() == 0 && st.Sent+st.Dropped == uint64(len(fed))
	})
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	st := o.Stats()
	if st.Sent+st.Dropped != uint64(len(fed)) {
		t.Fatalf("sent %d + dropped %d != fed %d", st.Sent, st.Dropped, len(fed))
	}
	if tcp.Reconnects() != 1 || st.Errors == 0 {
		t.Fatalf("reconnects %d, stats %+v", tcp.Reconnects(), st)
	}
	// Everything sent after the reset arrives: the last connection ended
	// with Close.
	sentAfter := int(st.Sent - sentBefore)
	var after [][]byte
	waitFor(t, "delivery", 5*time.Second, func() bool {
		after = nil
		for _, b := range rcv2.received() {
			lines, _ := splitLines(t, "restarted", b)
			after = append(after, lines...)
		}
		return len(after) >= sentAfter
	})
	rcv2.kill()
	var got [][]byte
	first := rcv.received()
	for i, b := range first {
		lines, tail := splitLines(t, "killed connection "+strconv.Itoa(i), b)
		got = append(got, lines...)
		t.Logf("killed connection %d: %d lines, %d octets of a cut line", i, len(lines), len(tail))
	}
	for i, b := range rcv2.received() {
		lines, tail := splitLines(t, "restarted connection "+strconv.Itoa(i), b)
		if len(tail) != 0 {
			t.Fatalf("restarted connection %d ends with %d octets of a cut line", i, len(tail))
		}
		got = append(got, lines...)
	}
	if len(after) != sentAfter {
		t.Fatalf("received %d lines after the restart, sent %d", len(after), sentAfter)
	}
	if uint64(len(got)) > st.Sent {
		t.Fatalf("received %d lines, sent %d", len(got), st.Sent)
	}
	// What arrived is what was fed minus what was dropped (or lost in the
	// reset connection), in order and byte for byte.
	j := 0
	for i := range got {
		for j < len(fed) && !bytes.Equal(fed[j], got[i]) {
			j++
		}
		if j == len(fed) {
			t.Fatalf("received line %d not in fed order: %.200s", i, got[i])
		}
		j++
	}
	t.Logf("fed %d sent %d dropped %d errors %d received %d", len(fed), st.Sent, st.Dropped, st.Errors, len(got))
}

func TestJSONLParse(t *testing.T) {
	for _, bad := range []string{
		"jsonl:", "jsonl:?rotate_size=1MiB", "jsonl:-?rotate_size=1MiB", "jsonl:/tmp/x?rotate_size=0",
		"jsonl:/tmp/x?rotate_size=big", "jsonl:/tmp/x?rotate_every=soon", "jsonl:/tmp/x?rotate_every=-1h",
		"jsonl:/tmp/x?queue=1MiB",
		"jsonl+tcp://", "jsonl+tcp://host", "jsonl+tcp://:5170", "jsonl+tcp://h:0", "jsonl+tcp://h:70000",
		"jsonl+tcp://127.0.0.1:5170?queue=1KiB", "jsonl+tcp://127.0.0.1:5170?rotate_size=1MiB", "jsonl+udp://127.0.0.1:5170",
	} {
		if err := CheckSpec(bad); err == nil {
			t.Errorf("CheckSpec(%q) accepted", bad)
		}
		if o, err := Parse(bad, nil); err == nil {
			o.Close()
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
	for _, good := range []string{"jsonl:/x?rotate_size=1MiB", "jsonl:/x?rotate_every=1h&rotate_size=256MiB",
		"jsonl+tcp://logstash.example:5170?queue=64MiB", "jsonl+tcp://[::1]:5170"} {
		if err := CheckSpec(good); err != nil {
			t.Errorf("CheckSpec(%q): %v", good, err)
		}
	}
	for _, spec := range []string{"nope", "jsonl+udp://x:1"} {
		if err := CheckSpec(spec); err == nil || !strings.Contains(err.Error(), "jsonl+tcp://HOST:PORT") {
			t.Errorf("CheckSpec(%q): %v", spec, err)
		}
		if _, err := Parse(spec, nil); err == nil || !strings.Contains(err.Error(), "jsonl+tcp://HOST:PORT") {
			t.Errorf("Parse(%q): %v", spec, err)
		}
	}
	path := filepath.Join(t.TempDir(), "f")
	o, err := Parse("jsonl:"+path+"?rotate_size=64MiB&rotate_every=10m", nil)
	if err != nil {
		t.Fatal(err)
	}
	if r := o.(*JSONL).rot; r == nil || r.maxSize != 64<<20 || r.every != 10*time.Minute {
		t.Fatalf("rotation %+v", r)
	}
	o.Close()
	o, err = Parse("jsonl:"+path+"?rotate_every=10m", nil)
	if err != nil {
		t.Fatal(err)
	}
	if r := o.(*JSONL).rot; r == nil || r.maxSize != 0 || r.every != 10*time.Minute {
		t.Fatalf("rotation %+v", r)
	}
	o.Close()
	for spec, want := range map[string]int64{
		"jsonl+tcp://localhost:5170":              DefaultTCPQueueBytes,
		"jsonl+tcp://localhost:5170?queue=4MiB":   4 << 20,
		"jsonl+tcp://localhost:5170?queue=512KiB": 512 << 10,
	} {
		o, err := Parse(spec, nil)
		if err != nil {
			t.Fatal(err)
		}
		if tcp := o.(*JSONLTCP); tcp.limit != want || tcp.Name() != spec {
			t.Errorf("%s: queue %d, name %q", spec, tcp.limit, tcp.Name())
		}
		o.Close()
	}
}

// TestJSONLOutputAllocs checks the file and TCP forms allocate nothing per
// record once warm.
func TestJSONLOutputAllocs(t *testing.T) {
	recs, metas := steadyRecords(genIPFIX(false, 16, 60)[:8])
	ln := discardReceiver(t)
	defer ln.Close()
	dir := t.TempDir()
	for _, spec := range []string{
		"jsonl:" + filepath.Join(dir, "plain"),
		"jsonl:" + filepath.Join(dir, "rotating") + "?rotate_size=1GiB&rotate_every=1h",
		"jsonl+tcp://" + ln.Addr().String(),
	} {
		o, err := Parse(spec, nil)
		if err != nil {
			t.Fatal(err)
		}
		tcp, _ := o.(*JSONLTCP)
		if tcp != nil {
			waitFor(t, "connection", 5*time.Second, func() bool { return tcp.connected.Load() })
		}
		run := func() {
			for i, r := range recs {
				o.Record(metas[i], r)
			}
			o.Flush()
			// AllocsPerRun runs with GOMAXPROCS 1: let the writer keep up
			// rather than measure the drop path.
			for i := 0; tcp != nil && tcp.Queued() > 0 && i < 1e6; i++ {
				runtime.Gosched()
			}
		}
		for range 100 {
			run()
		}
		if a := testing.AllocsPerRun(200, run); a != 0 {
			t.Errorf("%s: %v allocations per %d records", spec, a, len(recs))
		}
		o.Close()
		if st := o.Stats(); st.Dropped != 0 || st.Errors != 0 {
			t.Errorf("%s: %+v", spec, st)
		}
	}
}

// BenchmarkJSONLTCP sends JSON lines to a local TCP receiver.
func BenchmarkJSONLTCP(b *testing.B) {
	benchTCPOutput(b, func(addr string) tcpOutput { return NewJSONLTCP("bench", addr, 64<<20) })
}

// BenchmarkJSONLFile writes JSON lines to a rotating file.
func BenchmarkJSONLFile(b *testing.B) {
	recs, metas := steadyRecords(genIPFIX(false, 8, 60))
	o, err := Parse("jsonl:"+filepath.Join(b.TempDir(), "f")+"?rotate_size=64MiB&rotate_every=1h", nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		j := i % len(recs)
		o.Record(metas[j], recs[j])
		if i%8192 == 8191 {
			o.Flush()
		}
	}
	if err := o.Close(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if st := o.Stats(); st.Sent != uint64(b.N) {
		b.Fatalf("stats %+v, fed %d", st, b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// Lanes of a JSON lines file from several goroutines at once (run with
// -race): every line arrives whole and once, each lane's in its order; a
// lane's buffer stays at the size it started with, and a lane allocates
// nothing per record.
func TestJSONLLanes(t *testing.T) {
	recs, metas := steadyRecords(genIPFIX(false, 16, 60)[:8])
	path := filepath.Join(t.TempDir(), "lanes")
	o, err := Parse("jsonl:"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	j := o.(*JSONL)
	const lanes, rounds = 3, 200
	var wg sync.WaitGroup
	for i := range lanes {
		l := j.Lane().(*jsonlLane)
		c := cap(l.buf)
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each lane its own Metas (the encoder's caches are per
			// goroutine); the lane number rides in the domain.
			ms := make([]*jsonl.Meta, len(metas))
			for k, m := range metas {
				msg := *m.Msg
				msg.DomainID = uint32(100 + i)
				msg.Sequence = 0
				ms[k] = &jsonl.Meta{Msg: &msg}
			}
			for n := range rounds {
				for k, r := range recs {
					ms[k].Msg.ExportTime = uint32(n) // the line's place in the lane
					l.Record(ms[k], r)
				}
				if n%50 == 49 {
					l.Flush()
				}
			}
			l.Flush()
			if cap(l.buf) != c {
				t.Errorf("lane %d: buffer grew from %d to %d", i, c, cap(l.buf))
			}
		}()
	}
	wg.Wait()
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines, tail := splitLines(t, "file", b)
	if len(tail) != 0 || len(lines) != lanes*rounds*len(recs) {
		t.Fatalf("%d lines and %d octets of a cut one, want %d lines", len(lines), len(tail), lanes*rounds*len(recs))
	}
	last := map[float64]float64{}
	for _, line := range lines {
		var v struct {
			Domain float64 `json:"observation_domain"`
			Export string  `json:"export_time"`
		}
		json.Unmarshal(line, &v)
		ts, _ := time.Parse(time.RFC3339, v.Export)
		if n := float64(ts.Unix()); n < last[v.Domain] {
			t.Fatalf("lane %v: line of round %v after round %v", v.Domain, n, last[v.Domain])
		} else {
			last[v.Domain] = n
		}
	}
	if st := o.Stats(); st.Sent != uint64(len(lines)) || st.Dropped != 0 {
		t.Fatalf("stats %+v for %d lines", st, len(lines))
	}
	l := j.Lane()
	run := func() {
		for i, r := range recs {
			l.Record(metas[i], r)
		}
	}
	run()
	run() // each Meta makes its plan the second time it sees a template
	if n := testing.AllocsPerRun(100, run); n != 0 {
		t.Fatalf("%v allocations per %d records in a lane", n, len(recs))
	}
	if j.Lane() == nil {
		t.Fatal("no lane for a plain file")
	}
	rot, err := Parse("jsonl:"+path+".rot?rotate_size=1MiB", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer rot.Close()
	if rot.(Laned).Lane() != nil {
		t.Fatal("a rotating file has lanes")
	}
}
