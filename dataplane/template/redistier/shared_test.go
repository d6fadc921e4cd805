package redistier_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/rueidis"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
	"github.com/sluice-flow/sluice/dataplane/template"
	"github.com/sluice-flow/sluice/dataplane/template/redistier"
)

// Three collectors share one Redis: an exporter's templates reach only the
// first, its data is sprayed over the second and third. Every record must
// come out, exactly as a single collector given everything outputs it.
func TestSpraySingleRedis(t *testing.T) {
	r := sharedRedis(t)
	flushAll(t, r)
	testSpray(t, []string{r.Addr()})
}

// The same against a three-node Redis Cluster.
func TestSprayCluster(t *testing.T) {
	rc := sharedCluster(t)
	flushAll(t, rc.nodes...)
	testSpray(t, rc.Addrs())
}

func testSpray(t *testing.T, addrs []string) {
	a := startPod(t, podConfig{redis: addrs})
	b := startPod(t, podConfig{redis: addrs})
	c := startPod(t, podConfig{redis: addrs})
	ref := startPod(t, podConfig{}) // one collector that sees everything
	ex := newExporter(t)
	const msgs = 40
	streams := []traffic{ipfixTraffic(1, msgs, 10), ipfixTraffic(2, msgs, 10), v9Traffic(7, msgs, 10)}
	var want int64
	for i := range streams {
		ex.send(t, a, streams[i].tpl)
		ex.send(t, ref, streams[i].tpl)
		want += streams[i].count(0, msgs)
	}
	// No pause: the first data sets reach b and c before a has written
	// the templates, so the held-records path is exercised too.
	for i := range msgs {
		to := b
		if i%2 == 1 {
			to = c
		}
		for _, s := range streams {
			ex.send(t, to, s.data[i])
			ex.send(t, ref, s.data[i])
		}
		if i%8 == 7 {
			ex.waitRead(t, b, c, ref)
		}
	}
	waitRecords(t, want, ref)
	waitRecords(t, want, b, c)
	if n := a.out.n.Load(); n != 0 {
		t.Errorf("the template pod output %d records", n)
	}
	got := append(b.out.snapshot(), c.out.snapshot()...)
	exp := ref.out.snapshot()
	slices.Sort(got)
	slices.Sort(exp)
	if !slices.Equal(got, exp) {
		for i := range min(len(got), len(exp)) {
			if got[i] != exp[i] {
				t.Fatalf("outputs differ at sorted line %d:\n got %s\nwant %s", i, got[i], exp[i])
			}
		}
		t.Fatalf("outputs differ: %d lines, want %d", len(got), len(exp))
	}
	for _, p := range []*pod{b, c} {
		p.checkNoTemplateDrops(t)
		if h := p.metric(t, "sluice_template_shared_hits_total"); h != 7 {
			t.Errorf("pod :%d fetched %v templates, want 7", p.port, h)
		}
		t.Logf("pod :%d learn-to-use: %v samples, %.3f ms on average", p.port,
			p.metric(t, "sluice_template_shared_learn_to_use_seconds_count"),
			1e3*p.metric(t, "sluice_template_shared_learn_to_use_seconds_sum")/p.metric(t, "sluice_template_shared_learn_to_use_seconds_count"))
	}
	if n := a.metric(t, `sluice_template_shared_writes_total{result="written"}`); n != 7 {
		t.Errorf("template pod wrote %v templates, want 7", n)
	}
	for _, p := range []*pod{a, b, c} {
		if e := p.metric(t, "sluice_template_shared_errors_total"); e != 0 {
			t.Errorf("pod :%d counted %v redis errors", p.port, e)
		}
	}
}

// A collector restarted mid-stream decodes the next data message at once:
// from templates loaded at start (warm-up) or fetched on the first miss.
func TestRestartedCollectorDecodesAtOnce(t *testing.T) {
	r := sharedRedis(t)
	flushAll(t, r)
	addrs := []string{r.Addr()}
	for i, warm := range []bool{true, false} {
		name := "miss-fetch"
		if warm {
			name = "warm-up"
		}
		t.Run(name, func(t *testing.T) {
			domain := uint32(30 + i)
			a := startPod(t, podConfig{redis: addrs})
			ex := newExporter(t)
			s := ipfixTraffic(domain, 20, 5)
			ex.send(t, a, s.tpl)
			for j := range 10 {
				ex.send(t, a, s.data[j])
			}
			waitRecords(t, s.count(0, 10), a)
			waitFor(t, 5*time.Second, "templates written", func() bool {
				return a.metric(t, `sluice_template_shared_writes_total{result="written"}`) == 3
			})
			a.stop(t)

			pc := podConfig{redis: addrs, port: a.port}
			if warm {
				pc.warm = []string{"127.0.0.1"}
			}
			a2 := startPod(t, pc)
			if warm {
				if n := a2.c.Templates().Len(); n != 3 {
					t.Fatalf("warm-up loaded %d templates, want 3", n)
				}
				if n := a2.metric(t, "sluice_template_shared_warmed_total"); n != 3 {
					t.Fatalf("warmed_total %v, want 3", n)
				}
			}
			ex.send(t, a2, s.data[10])
			waitRecords(t, s.count(10, 11), a2)
			for j := 11; j < 20; j++ {
				ex.send(t, a2, s.data[j])
			}
			waitRecords(t, s.count(10, 20), a2)
			a2.checkNoTemplateDrops(t)
			if !warm {
				if h := a2.metric(t, "sluice_template_shared_hits_total"); h != 3 {
					t.Errorf("fetched %v templates, want 3", h)
				}
			}
		})
	}
}

// Redis dies mid-stream and comes back empty: decoding goes on from the
// local tiers, failures are counted, and what was learned meanwhile (and
// before) is written back, so other pods can fetch it again.
func TestRedisOutage(t *testing.T) {
	r := startRedis(t, nil)
	testOutage(t, []string{r.Addr()}, r.Kill, func() error { return r.Start() }, func(key string) bool {
		out, _ := r.cli("exists", key)
		return out == "1"
	})
}

// The same with the cluster node that holds the exporter's slot.
func TestClusterNodeOutage(t *testing.T) {
	needRedis(t)
	rc, err := newRedisCluster(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rc.Stop)
	// The node owning the slot of the hash tag {127.0.0.1}.
	var owner *redisServer
	for _, n := range rc.nodes {
		if out, _ := n.cli("get", "sluice:tpl:{127.0.0.1}:probe"); !strings.Contains(out, "MOVED") {
			owner = n
		}
	}
	if owner == nil {
		t.Fatal("no node owns the exporter's slot")
	}
	testOutage(t, rc.Addrs(), owner.Kill, func() error {
		if err := owner.Start(); err != nil {
			return err
		}
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) {
			info, _ := owner.cli("cluster", "info")
			if strings.Contains(info, "cluster_state:ok") {
				return nil
			}
			time.Sleep(50 * time.Millisecond)
		}
		return errors.New("cluster did not recover")
	}, func(key string) bool {
		out, _ := owner.cli("exists", key)
		return out == "1"
	})
}

func testOutage(t *testing.T, addrs []string, kill func(), restart func() error, exists func(key string) bool) {
	a := startPod(t, podConfig{redis: addrs})
	b := startPod(t, podConfig{redis: addrs})
	ex := newExporter(t)
	s1 := ipfixTraffic(40, 30, 5)
	s2 := v9Traffic(41, 30, 5)
	alternate := func(i int) *pod {
		if i%2 == 0 {
			return a
		}
		return b
	}

	ex.send(t, a, s1.tpl)
	for i := range 10 {
		ex.send(t, alternate(i), s1.data[i])
	}
	waitRecords(t, s1.count(0, 10), a, b)

	kill()
	// Learned while Redis is down; everything decodes locally.
	ex.send(t, a, s2.tpl)
	for i := 10; i < 20; i++ {
		ex.send(t, alternate(i), s1.data[i])
		ex.send(t, a, s2.data[i-10])
	}
	waitRecords(t, s1.count(0, 20)+s2.count(0, 10), a, b)
	waitFor(t, 5*time.Second, "failures counted", func() bool {
		return a.metric(t, "sluice_template_shared_errors_total") > 0 &&
			a.metric(t, "sluice_template_shared_pending") >= 1
	})
	if up := a.metric(t, "sluice_template_shared_up"); up != 0 {
		t.Errorf("up = %v while redis is down", up)
	}

	if err := restart(); err != nil {
		t.Fatal(err)
	}
	want := []template.Key{key(9, 41, 300), key(10, 40, 256), key(10, 40, 257), key(10, 40, 258)}
	waitFor(t, 15*time.Second, "templates written back", func() bool {
		for _, k := range want {
			name, _ := redistier.AppendKey(nil, k)
			if !exists(string(name)) {
				return false
			}
		}
		return true
	})
	waitFor(t, 5*time.Second, "pending writes flushed", func() bool {
		return a.metric(t, "sluice_template_shared_pending") == 0
	})
	// b never saw s2's template: it fetches it now.
	for i := 10; i < 30; i++ {
		ex.send(t, b, s2.data[i])
		if i >= 20 {
			ex.send(t, alternate(i), s1.data[i])
		}
	}
	waitRecords(t, s1.count(0, 30)+s2.count(0, 30), a, b)
	a.checkNoTemplateDrops(t)
	b.checkNoTemplateDrops(t)
	waitFor(t, 5*time.Second, "up again", func() bool {
		return a.metric(t, "sluice_template_shared_up") == 1
	})
	t.Logf("errors counted: a %v, b %v; resyncs: a %v", a.metric(t, "sluice_template_shared_errors_total"),
		b.metric(t, "sluice_template_shared_errors_total"), a.metric(t, "sluice_template_shared_resyncs_total"))
}

// Redis is not there when the collector starts: it works locally, then
// writes what it learned once Redis appears.
func TestStartsWithoutRedis(t *testing.T) {
	needRedis(t)
	r, err := newRedisServer(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Stop()
	t.Cleanup(r.Stop)
	a := startPod(t, podConfig{redis: []string{r.Addr()}, noWait: true})
	ex := newExporter(t)
	s := ipfixTraffic(50, 5, 5)
	ex.send(t, a, s.tpl)
	ex.send(t, a, s.data...)
	waitRecords(t, s.count(0, 5), a)
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	name, _ := redistier.AppendKey(nil, key(10, 50, 257))
	waitFor(t, 15*time.Second, "template written", func() bool {
		out, _ := r.cli("exists", string(name))
		return out == "1"
	})
}

// A template redefined at one pod replaces the old layout at the others
// for the data that follows.
func TestTemplateChangeReachesOtherPods(t *testing.T) {
	for _, backend := range []string{"single", "cluster"} {
		t.Run(backend, func(t *testing.T) {
			var addrs []string
			if backend == "single" {
				r := sharedRedis(t)
				flushAll(t, r)
				addrs = []string{r.Addr()}
			} else {
				rc := sharedCluster(t)
				flushAll(t, rc.nodes...)
				addrs = rc.Addrs()
			}
			a := startPod(t, podConfig{redis: addrs})
			b := startPod(t, podConfig{redis: addrs})
			ex := newExporter(t)
			v1 := ipfixTraffic(60, 5, 4)
			v2 := changedTraffic(60, 1000, 5)
			ex.send(t, a, v1.tpl)
			ex.send(t, b, v1.data...)
			waitRecords(t, v1.count(0, 5), b)

			k := key(10, 60, 256)
			old := b.c.Templates().Get(k)
			if old == nil {
				t.Fatal("b has no template 256")
			}
			start := time.Now()
			ex.send(t, a, v2.tpl)
			waitFor(t, 5*time.Second, "the new definition at b", func() bool {
				cur := b.c.Templates().Get(k)
				return cur != nil && cur.Layout.Fingerprint != old.Layout.Fingerprint
			})
			t.Logf("changed definition visible at the other pod after %v", time.Since(start))
			ex.send(t, b, v2.data...)
			waitRecords(t, v1.count(0, 5)+v2.count(0, 5), b)
			var n int
			for _, l := range b.out.snapshot() {
				if strings.Contains(l, `"template_id":256`) && strings.Contains(l, `"packetDeltaCount":`) {
					n++
				}
			}
			if int64(n) != v2.count(0, 5) {
				t.Fatalf("%d records decoded with the new layout, want %d", n, v2.count(0, 5))
			}
			b.checkNoTemplateDrops(t)
		})
	}
}

// Templates learned over TCP stay with their session (RFC 7011 section 8):
// never written to Redis, even when a UDP template of the same exporter,
// domain and ID is, and a TCP session withdrawing its own template leaves
// the UDP one (in Redis and locally) alone.
func TestTCPTemplatesStayLocal(t *testing.T) {
	r := sharedRedis(t)
	flushAll(t, r)
	a := startPod(t, podConfig{redis: []string{r.Addr()}})
	ex := newExporter(t)
	s := ipfixTraffic(70, 2, 1)
	ex.send(t, a, s.tpl)
	udpKey, _ := redistier.AppendKey(nil, key(10, 70, 256))
	waitFor(t, 5*time.Second, "udp template written", func() bool {
		out, _ := r.cli("exists", string(udpKey))
		return out == "1"
	})
	waitFor(t, 5*time.Second, "udp templates written", func() bool {
		return a.metric(t, `sluice_template_shared_writes_total{result="written"}`) == 3
	})
	keysBefore, _ := r.cli("keys", "sluice:tpl:*")

	conn, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(a.port))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	w := ipfix.MessageWriter{DomainID: 70}
	m := w.Begin(nil, 1700000000)
	m = w.BeginSet(m, ipfix.TemplateSetID)
	m = ipfix.AppendTemplateRecord(m, 256, flowFieldsV2) // the UDP template's ID, another layout
	m = ipfix.AppendTemplateRecord(m, 300, flowFields)
	m = w.EndSet(m)
	m, _ = w.Finish(m)
	conn.Write(m)
	m = w.Begin(nil, 1700000001)
	m = w.BeginSet(m, ipfix.TemplateSetID)
	m = ipfix.AppendWithdrawal(m, 256)
	m = ipfix.AppendWithdrawal(m, ipfix.WithdrawAllTemplates)
	m = w.EndSet(m)
	m, _ = w.Finish(m)
	conn.Write(m)
	conn.Close()

	// The UDP template still decodes data after all that (a positive
	// marker that the session's messages were handled before it).
	waitFor(t, 5*time.Second, "tcp session closed", func() bool {
		return a.metric(t, "sluice_template_withdrawals_total{action=\"honoured\"}") == 2 &&
			a.metric(t, "sluice_tcp_sessions") == 0
	})
	ex.send(t, a, s.data[0])
	waitRecords(t, s.count(0, 1), a)
	if out, _ := r.cli("exists", string(udpKey)); out != "1" {
		t.Errorf("a tcp withdrawal deleted the udp template from redis: exists = %s", out)
	}
	if out, _ := r.cli("keys", "sluice:tpl:*"); len(out) != len(keysBefore) || strings.Count(out, "sluice:tpl:") != 3 {
		t.Errorf("redis keys %q, want the udp templates' alone (%q)", out, keysBefore)
	}
	if n := a.metric(t, `sluice_template_shared_writes_total{result="written"}`); n != 3 {
		t.Errorf("%v writes after the tcp session's templates, want 3", n)
	}
	if n := a.metric(t, "sluice_template_shared_deletes_total"); n != 0 {
		t.Errorf("deletes_total %v, want 0", n)
	}
	if _, ok := redistier.AppendKey(nil, template.Key{Exporter: scope, Session: 1, Domain: 70, Version: 10, ID: 256}); ok {
		t.Error("a tcp session's key has a redis key")
	}
}

// mkTemplate compiles a template for k from field specifiers.
func mkTemplate(t testing.TB, k template.Key, fields []ipfix.FieldSpec, learned, expires int64) *template.Template {
	t.Helper()
	raw := ipfix.AppendTemplateRecord(nil, k.ID, fields)
	var tr ipfix.TemplateRecord
	if err := ipfix.ParseTemplateRecord(raw, false, k.Version == ipfix.VersionNetFlow9, &tr); err != nil {
		t.Fatal(err)
	}
	lay, err := ipfix.Compile(&tr)
	if err != nil {
		t.Fatal(err)
	}
	return template.New(k, lay, learned, expires)
}

func storeMetric(t testing.TB, s *redistier.Store, series string) float64 {
	t.Helper()
	for _, line := range strings.Split(string(s.AppendMetrics(nil)), "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	t.Fatalf("no series %s", series)
	return 0
}

func rawClient(t testing.TB, addrs ...string) rueidis.Client {
	t.Helper()
	c, err := rueidis.NewClient(rueidis.ClientOption{InitAddress: addrs, DisableCache: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// A retransmission refreshes the TTL without rewriting; a change is
// written; a late write of an older definition is refused.
func TestWriteOnlyWhenChanged(t *testing.T) {
	r := sharedRedis(t)
	flushAll(t, r)
	st, err := redistier.New(redistier.Config{Addrs: []string{r.Addr()}, Lifetime: time.Minute},
		template.NewShared(), nil, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	<-st.Ready()
	rc := rawClient(t, r.Addr())
	k := key(10, 80, 256)
	name, _ := redistier.AppendKey(nil, k)
	stored := func() redistier.Value {
		b, err := rc.Do(context.Background(), rc.B().Get().Key(string(name)).Build()).AsBytes()
		if err != nil {
			t.Fatal(err)
		}
		v, err := redistier.DecodeValue(b)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	now := time.Now().UnixNano()
	life := int64(time.Minute)
	t1 := mkTemplate(t, k, flowFields, now, now+life)
	st.Learned(t1)
	waitFor(t, 5*time.Second, "first write", func() bool {
		return storeMetric(t, st, `sluice_template_shared_writes_total{result="written"}`) == 1
	})
	// The same definition learned again (another loop, or a restart).
	st.Learned(mkTemplate(t, k, flowFields, now+int64(time.Second), now+life))
	waitFor(t, 5*time.Second, "unchanged write", func() bool {
		return storeMetric(t, st, `sluice_template_shared_writes_total{result="unchanged"}`) == 1
	})
	if v := stored(); v.Learned != now {
		t.Errorf("value rewritten: learned %d, want %d", v.Learned, now)
	}
	// A retransmission right after a write is not sent at all. The change
	// after it is the marker: one worker takes a key's jobs in order.
	st.Refreshed(t1)
	t2 := mkTemplate(t, k, flowFieldsV2, now+2*int64(time.Second), now+life)
	st.Learned(t2)
	waitFor(t, 5*time.Second, "changed write", func() bool {
		return storeMetric(t, st, `sluice_template_shared_writes_total{result="written"}`) == 2
	})
	if n := storeMetric(t, st, `sluice_template_shared_writes_total{result="unchanged"}`); n != 1 {
		t.Errorf("refresh not rate limited: %v unchanged writes", n)
	}
	// A pod cut off from Redis comes back with an older definition.
	st.Learned(mkTemplate(t, k, nameFields, now-int64(time.Hour), now+life))
	waitFor(t, 5*time.Second, "stale write refused", func() bool {
		return storeMetric(t, st, `sluice_template_shared_writes_total{result="stale"}`) == 1
	})
	if v := stored(); v.Learned != t2.Learned || string(v.Raw) != string(t2.Layout.Raw) {
		t.Errorf("stale write replaced the newer definition")
	}
	pttl, err := rc.Do(context.Background(), rc.B().Pttl().Key(string(name)).Build()).AsInt64()
	if err != nil || pttl < 50_000 || pttl > 60_000 {
		t.Errorf("pttl %d (%v), want about a minute", pttl, err)
	}
	st.Withdrawn(k)
	waitFor(t, 5*time.Second, "deleted", func() bool {
		n, _ := rc.Do(context.Background(), rc.B().Exists().Key(string(name)).Build()).AsInt64()
		return n == 0
	})
}

// WarmUp loads one exporter's templates (scanning only the node of its
// slot on a cluster), every port of an address when scoped by port, or
// everything.
func TestWarmUp(t *testing.T) {
	for _, backend := range []string{"single", "cluster"} {
		t.Run(backend, func(t *testing.T) {
			var addrs []string
			if backend == "single" {
				r := sharedRedis(t)
				flushAll(t, r)
				addrs = []string{r.Addr()}
			} else {
				rc := sharedCluster(t)
				flushAll(t, rc.nodes...)
				addrs = rc.Addrs()
			}
			now := time.Now().UnixNano()
			var all []template.Key
			for _, exp := range []string{"192.0.2.1:0", "192.0.2.2:0", "[2001:db8::1]:0", "192.0.2.3:2055", "192.0.2.3:2056", "[2001:db8::3]:9995"} {
				for _, id := range []uint16{256, 257} {
					k := template.Key{Exporter: netip.MustParseAddrPort(exp), Domain: 1, Version: 10, ID: id}
					all = append(all, k)
				}
			}
			shared := template.NewShared()
			w, err := redistier.New(redistier.Config{Addrs: addrs}, shared, nil, testLogger())
			if err != nil {
				t.Fatal(err)
			}
			<-w.Ready()
			for _, k := range all {
				tpl := mkTemplate(t, k, flowFields, now, now+int64(time.Hour))
				shared.Put(tpl)
				w.Learned(tpl)
			}
			waitFor(t, 5*time.Second, "templates written", func() bool {
				return storeMetric(t, w, `sluice_template_shared_writes_total{result="written"}`) == float64(len(all))
			})
			w.Close()

			f := func(scopeByPort bool, entries []string, want int) {
				t.Helper()
				shared := template.NewShared()
				r, err := redistier.New(redistier.Config{Addrs: addrs, ScopeByPort: scopeByPort}, shared, nil, testLogger())
				if err != nil {
					t.Fatal(err)
				}
				defer r.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				n, err := r.WarmUp(ctx, entries)
				if err != nil || n != want || shared.Len() != want {
					t.Fatalf("WarmUp(%v, scope by port %v) = %d, %v; %d templates; want %d", entries, scopeByPort, n, err, shared.Len(), want)
				}
			}
			f(false, []string{"192.0.2.1"}, 2)
			f(false, []string{"192.0.2.1", "2001:db8::1", "192.0.2.1"}, 4)
			f(false, []string{"192.0.2.9"}, 0)
			f(true, []string{"192.0.2.3"}, 4)
			f(true, []string{"192.0.2.3:2056"}, 2)
			f(true, []string{"[2001:db8::3]:9995"}, 2)
			f(true, []string{"2001:db8::3"}, 2)
			f(false, []string{"*"}, len(all))

			r, _ := redistier.New(redistier.Config{Addrs: addrs}, template.NewShared(), nil, nil)
			defer r.Close()
			if _, err := r.WarmUp(context.Background(), []string{"router-1"}); err == nil {
				t.Error("bad exporter accepted")
			}
		})
	}
}
