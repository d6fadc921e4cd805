package export

// There is no Kafka broker package on this machine: these tests run the
// Kafka output against franz-go's kfake, an in-process cluster that speaks
// the Kafka protocol (produce, fetch, metadata, idempotent producers, SASL),
// and read the topic back with a franz-go consumer.

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/encoding/protodelim"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/sluice-flow/sluice/dataplane/export/internal/goflow2pb"
	"github.com/sluice-flow/sluice/dataplane/jsonl"
	"github.com/sluice-flow/sluice/dataplane/offline/decode"
)

const kafkaTopic = "flows"

func newKfake(t testing.TB, opts ...kfake.Opt) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(4, kafkaTopic)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func openKafka(t testing.TB, spec string) *Kafka {
	t.Helper()
	o, err := Parse(spec, nil)
	if err != nil {
		t.Fatal(err)
	}
	k := o.(*Kafka)
	t.Cleanup(func() { k.Close() })
	return k
}

// consumeAll reads the topic from the start until a marker record (written
// after the output's records) arrived on every partition, and returns what
// came before the markers.
func consumeAll(t testing.TB, brokers []string, partitions int) []*kgo.Record {
	t.Helper()
	marker := []byte("end-of-test-marker")
	p, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range partitions {
		if err := p.ProduceSync(ctx, &kgo.Record{Topic: kafkaTopic, Partition: int32(i), Value: marker}).FirstErr(); err != nil {
			t.Fatalf("marker: %v", err)
		}
	}
	c, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(kafkaTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var got []*kgo.Record
	markers := 0
	for markers < partitions {
		fs := c.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed %d records and %d markers before the deadline", len(got), markers)
		}
		fs.EachError(func(topic string, part int32, err error) { t.Logf("fetch %s/%d: %v", topic, part, err) })
		fs.EachRecord(func(r *kgo.Record) {
			if bytes.Equal(r.Value, marker) {
				markers++
				return
			}
			got = append(got, r)
		})
	}
	return got
}

// fedRecord is what the test expects to read back for one record.
type fedRecord struct {
	exporter netip.AddrPort
	json     string                 // the sluice decode JSON, without newline
	pb       *goflow2pb.FlowMessage // the reference FlowMessage, or nil
	exportMs int64                  // the header's export time and uptime,
	uptime   uint32                 // which the JSON leaves out
}

// feedCaptures decodes captures and hands every record to o, each capture
// under its own exporter address (192.0.2.N), and returns the data records
// fed in order. Options records are fed too; with goflow2-pb they are not
// expected back.
func feedCaptures(t testing.TB, o Output, pb bool, files ...string) []fedRecord {
	t.Helper()
	if len(files) == 0 {
		files = []string{"softflowd-ipfix.pcap", "softflowd-v9.pcap", "fprobe-v5.pcap", "pmacct-nfprobe-ipfix.pcap", "nfdump-nfreplay-v9.pcap"}
	}
	var fed []fedRecord
	sampling := map[string]uint64{}
	var line []byte
	for i, f := range files {
		exp := netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i + 1)}), 2055)
		d := decode.New()
		eachCaptureRecord(t, d, filepath.Join("../../testdata/captures", f), func(r *decode.Record) {
			m := jsonl.Meta{Exporter: exp, Msg: r.Msg, Resolve: r.Resolver}
			line = jsonl.AppendRecord(line[:0], &m, r.Rec)
			fr := fedRecord{exporter: exp, json: strings.TrimSuffix(string(line), "\n"),
				exportMs: int64(r.Msg.ExportTime)*1000 + int64(r.Msg.ExportNanos/1e6), uptime: r.Msg.SysUptime}
			if pb {
				obj := orderedJSON(t, line)
				if r.Rec.Layout.Options {
					for _, name := range []string{"samplingInterval", "samplerRandomInterval", "samplingPacketInterval"} {
						for _, p := range obj {
							if p.key == name {
								sampling[exp.Addr().String()+"/"+strconv.Itoa(int(r.Msg.Version))+"/"+strconv.Itoa(int(r.Msg.DomainID))], _ = strconv.ParseUint(p.val.(interface{ String() string }).String(), 10, 64)
							}
						}
					}
				} else {
					fr.pb = goflowRef(t, obj, refHeader{r.Msg.Sequence, r.Msg.ExportNanos, r.Msg.SamplingInterval, 0}, sampling)
				}
			}
			o.Record(&m, r.Rec)
			if !pb || !r.Rec.Layout.Options {
				fed = append(fed, fr)
			}
		})
	}
	return fed
}

// checkConsumed checks that got holds exactly the fed records: keyed by
// the exporter address, one partition per exporter, in the order fed.
func checkConsumed(t *testing.T, got []*kgo.Record, fed []fedRecord, pb bool) {
	t.Helper()
	if len(got) != len(fed) {
		t.Fatalf("consumed %d records, fed %d", len(got), len(fed))
	}
	want := map[netip.Addr][]fedRecord{}
	for _, f := range fed {
		want[f.exporter.Addr()] = append(want[f.exporter.Addr()], f)
	}
	byKey := map[netip.Addr][]*kgo.Record{}
	parts := map[netip.Addr]int32{}
	for _, r := range got {
		a, ok := netip.AddrFromSlice(r.Key)
		if !ok {
			t.Fatalf("key %x is not an address", r.Key)
		}
		if p, seen := parts[a]; seen && p != r.Partition {
			t.Fatalf("exporter %s in partitions %d and %d", a, p, r.Partition)
		}
		parts[a] = r.Partition
		byKey[a] = append(byKey[a], r)
	}
	if len(byKey) != len(want) {
		t.Fatalf("%d keys, want %d", len(byKey), len(want))
	}
	for a, ws := range want {
		gs := byKey[a]
		if len(gs) != len(ws) {
			t.Fatalf("exporter %s: %d records, want %d", a, len(gs), len(ws))
		}
		for i, w := range ws {
			if !pb {
				if string(gs[i].Value) != w.json {
					t.Fatalf("exporter %s record %d:\n got %s\nwant %s", a, i, gs[i].Value, w.json)
				}
				continue
			}
			fm := &goflow2pb.FlowMessage{}
			br := bytes.NewReader(gs[i].Value)
			if err := protodelim.UnmarshalFrom(br, fm); err != nil || br.Len() != 0 {
				t.Fatalf("exporter %s record %d: %v, %d octets left", a, i, err, br.Len())
			}
			if !proto.Equal(fm, w.pb) {
				t.Fatalf("exporter %s record %d: %s\n got %s\nwant %s", a, i, w.json, prototext.Format(fm), prototext.Format(w.pb))
			}
		}
	}
	t.Logf("%d records from %d exporters in %d partitions", len(got), len(byKey), len(distinct(parts)))
}

func distinct(m map[netip.Addr]int32) map[int32]bool {
	s := map[int32]bool{}
	for _, p := range m {
		s[p] = true
	}
	return s
}

func TestKafkaDelivery(t *testing.T) {
	for _, tc := range []struct {
		format, compression string
	}{{"json", "zstd"}, {"goflow2-pb", "lz4"}, {"goflow2-pb", "snappy"}, {"json", "gzip"}} {
		t.Run(tc.format+"-"+tc.compression, func(t *testing.T) {
			t.Parallel()
			c := newKfake(t)
			brokers := strings.Join(c.ListenAddrs(), ",")
			k := openKafka(t, "kafka://"+brokers+"/"+kafkaTopic+"?format="+tc.format+"&compression="+tc.compression)
			pb := tc.format == "goflow2-pb"
			fed := feedCaptures(t, k, pb)
			waitFor(t, "every record acknowledged", 30*time.Second, func() bool { return k.Stats().Sent == uint64(len(fed)) })
			if s := k.Stats(); s.Dropped != 0 || k.Queued() != 0 {
				t.Fatalf("stats %+v, queued %d", s, k.Queued())
			}
			if pb && k.Skipped() == 0 {
				t.Error("no options record skipped")
			}
			checkConsumed(t, consumeAll(t, c.ListenAddrs(), 4), fed, pb)
			if err := k.Close(); err != nil {
				t.Fatal(err)
			}
			k.Record(&jsonl.Meta{}, nil) // after Close: dropped, not sent
			if s := k.Stats(); s.Dropped != 1 || s.Sent != uint64(len(fed)) {
				t.Fatalf("after close: %+v", s)
			}
		})
	}
}

// TestKafkaKeyElements: a key made of elements sends records with the same
// values to the same partition.
func TestKafkaKeyElements(t *testing.T) {
	t.Parallel()
	c := newKfake(t)
	k := openKafka(t, "kafka://"+c.ListenAddrs()[0]+"/"+kafkaTopic+"?key=observation_domain,destinationTransportPort")
	msgs := genIPFIX(false, 40, 20)
	fed := feed(t, k, msgs)
	waitFor(t, "every record acknowledged", 30*time.Second, func() bool { return k.Stats().Sent == uint64(len(fed)) })
	got := consumeAll(t, c.ListenAddrs(), 4)
	if len(got) != len(fed) {
		t.Fatalf("consumed %d, fed %d", len(got), len(fed))
	}
	parts := map[string]int32{}
	for _, r := range got {
		if p, ok := parts[string(r.Key)]; ok && p != r.Partition {
			t.Fatalf("key %x in partitions %d and %d", r.Key, p, r.Partition)
		}
		parts[string(r.Key)] = r.Partition
	}
	if len(parts) < 3 {
		t.Fatalf("only %d distinct keys", len(parts))
	}
	// Records without the element are keyed by the domain alone (4 octets).
	if _, ok := parts["\x00\x00\x00\x01"]; !ok {
		t.Errorf("no record keyed by domain 1 alone; keys: %d", len(parts))
	}
}

// TestKafkaBrokerDownAndBack stops the broker (kfake with its log on disk)
// and starts it again on the same port: records fed while it is away wait
// in the queue and arrive once it is back; records beyond the queue bound
// are dropped and counted, never half-sent.
func TestKafkaBrokerDownAndBack(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr := freeAddr(t)
	_, portS, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portS)
	start := func() *kfake.Cluster {
		t.Helper()
		var c *kfake.Cluster
		var err error
		for range 100 { // the port may take a moment to be free again
			if c, err = kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port), kfake.DataDir(dir), kfake.SeedTopics(2, kafkaTopic)); err == nil {
				return c
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Fatal(err)
		return nil
	}
	c := start()
	const queue = 256 << 10
	k := openKafka(t, "kafka://"+addr+"/"+kafkaTopic+"?queue=256KiB&linger=1ms")
	recs, metas := steadyRecords(genIPFIX(false, 200, 30))
	for i := range metas {
		metas[i].Exporter = netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(1 + i%3)}), 2055)
	}
	var line []byte
	var kept []string // JSON of the records not dropped at the queue
	next := 0
	feedOne := func() bool {
		i := next % len(recs)
		next++
		line = jsonl.AppendRecord(line[:0], &jsonl.Meta{Exporter: metas[i].Exporter, Msg: metas[i].Msg}, recs[i])
		d := k.Stats().Dropped
		k.Record(metas[i], recs[i])
		if k.Stats().Dropped != d {
			return false
		}
		kept = append(kept, strings.TrimSuffix(string(line), "\n"))
		return true
	}
	for range 500 {
		if !feedOne() {
			t.Fatal("dropped while the broker is up")
		}
	}
	waitFor(t, "records acknowledged", 30*time.Second, func() bool { return k.Stats().Sent == 500 })

	c.Close()
	// Within the bound (half the queue): nothing dropped.
	var bytesFed int
	for bytesFed < queue/2 {
		if !feedOne() {
			t.Fatalf("dropped at %d octets queued, bound %d", bytesFed, queue)
		}
		bytesFed += len(kept[len(kept)-1]) + 4
	}
	within := len(kept)
	// Beyond the bound: drops, counted.
	for range 3000 {
		feedOne()
	}
	dropped := k.Stats().Dropped
	if dropped == 0 {
		t.Fatal("nothing dropped beyond the queue bound")
	}
	if q := k.Queued(); q != len(kept)-500 { // nothing is acknowledged while away
		t.Fatalf("queued %d, want %d", q, len(kept)-500)
	}
	c = start()
	defer c.Close()
	total := uint64(next)
	waitFor(t, "the queue drained after the broker came back", 30*time.Second, func() bool {
		s := k.Stats()
		return s.Sent+s.Dropped == total
	})
	s := k.Stats()
	if s.Dropped != dropped {
		t.Fatalf("dropped %d after the broker came back, %d at the queue", s.Dropped-dropped, dropped)
	}
	if s.Sent != uint64(len(kept)) {
		t.Fatalf("sent %d, kept %d", s.Sent, len(kept))
	}
	if k.Reconnects() == 0 {
		t.Error("no reconnection counted")
	}
	got := consumeAll(t, []string{addr}, 2)
	if len(got) != len(kept) {
		t.Fatalf("consumed %d, kept %d (within the bound: %d)", len(got), len(kept), within)
	}
	seen := map[string]int{}
	for _, r := range got {
		seen[string(r.Value)]++
	}
	for i, w := range kept {
		if seen[w] == 0 {
			t.Fatalf("record %d (of %d, %d within the bound) lost: %s", i, len(kept), within, w)
		}
		seen[w]--
	}
	t.Logf("sent %d (%d while the broker was away), dropped %d at the queue, %d reconnections, %d errors",
		s.Sent, len(kept)-500, s.Dropped, k.Reconnects(), s.Errors)
}

func TestKafkaSASL(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("wrong\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, mech := range []string{"plain", "scram-sha-256", "scram-sha-512"} {
		t.Run(mech, func(t *testing.T) {
			t.Parallel()
			c := newKfake(t, kfake.EnableSASL(), kfake.Superuser(strings.ToUpper(mech), "sluice", "s3cret"))
			base := "kafka://" + c.ListenAddrs()[0] + "/" + kafkaTopic + "?sasl=" + mech + "&sasl_user=sluice&sasl_password_file="
			k := openKafka(t, base+pw)
			fed := feed(t, k, genIPFIX(false, 4, 10))
			waitFor(t, "records acknowledged", 20*time.Second, func() bool { return k.Stats().Sent == uint64(len(fed)) })

			w := openKafka(t, base+bad)
			feed(t, w, genIPFIX(false, 1, 5))
			waitFor(t, "failed authentication counted", 20*time.Second, func() bool { return w.Stats().Errors > 0 })
			if s := w.Stats(); s.Sent != 0 {
				t.Fatalf("sent %d with a wrong password", s.Sent)
			}
		})
	}
}

func TestKafkaParse(t *testing.T) {
	f := func(spec, wantErr string) {
		t.Helper()
		c, err := parseKafkaSpec(spec)
		if cerr := CheckSpec(spec); (cerr == nil) != (err == nil) {
			t.Errorf("%s: CheckSpec %v, parse %v", spec, cerr, err)
		}
		if wantErr == "" {
			if err != nil {
				t.Errorf("%s: %v", spec, err)
			}
			_ = c
			return
		}
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%s: error %v, want %q", spec, err, wantErr)
		}
	}
	f("kafka://k1:9092/flows", "")
	f("kafka://k1:9092,k2:9092,[::1]:9093/flows?format=goflow2-pb&compression=zstd&acks=all&idempotent=true", "")
	f("kafka://k1:9092/flows?key=exporter,observation_domain,sourceIPv4Address&queue=64MiB&linger=5ms&batch=1MiB", "")
	f("kafka://k1:9092/flows?key=none&acks=leader&linger=0", "")
	f("kafka://k1:9092/flows?tls=true&tls_ca_file=/ca.pem&tls_server_name=kafka", "")
	f("kafka://k1:9092/flows?sasl=scram-sha-512&sasl_user=u&sasl_password_file=/pw", "")
	f("kafka://k1:9092", "want kafka://")
	f("kafka://k1:9092/", "want kafka://")
	f("kafka://k1/flows", "missing port")
	f("kafka://k1:9092/flows?format=avro", "format")
	f("kafka://k1:9092/flows?compression=brotli", "compression")
	f("kafka://k1:9092/flows?acks=2", "acks")
	f("kafka://k1:9092/flows?acks=none&idempotent=true", "idempotent needs acks=all")
	f("kafka://k1:9092/flows?key=noSuchElement", "unknown element")
	f("kafka://k1:9092/flows?queue=lots", "queue")
	f("kafka://k1:9092/flows?sasl=plain", "sasl needs")
	f("kafka://k1:9092/flows?sasl_user=u", "need sasl")
	f("kafka://k1:9092/flows?tls_cert_file=/c.pem", "go together")
	f("kafka://k1:9092/flows?topic=x", "unknown option")

	c, err := parseKafkaSpec("kafka://k1:9092/flows?acks=none")
	if err != nil || !c.NoIdempotence {
		t.Errorf("acks=none: %+v %v", c, err)
	}
	c, _ = parseKafkaSpec("kafka://k1:9092/flows?key=observation_domain,destinationTransportPort")
	if len(c.Key) != 2 || !c.Key[0].Domain || c.Key[1].ID != 11 {
		t.Errorf("key parts %+v", c.Key)
	}
}

// BenchmarkKafka measures records/s through the output into kfake (its
// storage left out with BlackholeProduce), acknowledged.
func BenchmarkKafka(b *testing.B) {
	for _, format := range []string{"json", "goflow2-pb"} {
		b.Run(format, func(b *testing.B) {
			c := newKfake(b, kfake.BlackholeProduce())
			k := openKafka(b, "kafka://"+c.ListenAddrs()[0]+"/"+kafkaTopic+"?format="+format+"&compression=lz4&queue=64MiB")
			recs, metas := steadyRecords(genIPFIX(false, 50, 30))
			for i := range metas {
				metas[i].Exporter = netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(1 + i%4)}), 2055)
			}
			b.ReportAllocs()
			n := 0
			start := time.Now()
			for b.Loop() {
				k.Record(metas[n%len(recs)], recs[n%len(recs)])
				n++
			}
			waitFor(b, "records acknowledged", time.Minute, func() bool {
				s := k.Stats()
				return s.Sent+s.Dropped+k.Skipped() == uint64(n)
			})
			// Acknowledged records over the time until the last one was.
			b.ReportMetric(float64(k.Stats().Sent)/time.Since(start).Seconds(), "records/s")
			if d := k.Stats().Dropped; d > 0 {
				b.ReportMetric(float64(d), "dropped")
			}
		})
	}
}
