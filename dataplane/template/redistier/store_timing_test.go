package redistier_test

import (
	"slices"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/dataplane/template"
	"github.com/sluice-flow/sluice/dataplane/template/redistier"
)

// fetchedFromRedis returns a shared store holding a template for k that one
// store wrote to Redis and another fetched on a miss, as on a pod that
// never saw the exporter's template itself.
func fetchedFromRedis(t testing.TB, k template.Key) *template.Shared {
	t.Helper()
	r := sharedRedis(t)
	addrs := []string{r.Addr()}
	now := time.Now().UnixNano()
	writer, err := redistier.New(redistier.Config{Addrs: addrs}, template.NewShared(), nil, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer writer.Close()
	<-writer.Ready()
	writer.Learned(mkTemplate(t, k, flowFields, now, now+int64(time.Hour)))
	waitFor(t, 5*time.Second, "template written", func() bool {
		return storeMetric(t, writer, `sluice_template_shared_writes_total{result="written"}`)+
			storeMetric(t, writer, `sluice_template_shared_writes_total{result="unchanged"}`) == 1
	})
	shared := template.NewShared()
	arrived := make(chan template.Key, 1)
	reader, err := redistier.New(redistier.Config{Addrs: addrs}, shared, func(k template.Key) { arrived <- k }, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(reader.Close)
	<-reader.Ready()
	reader.Missing(k)
	select {
	case <-arrived:
	case <-time.After(5 * time.Second):
		t.Fatal("template not fetched")
	}
	return shared
}

// After its first use a template fetched from Redis sits in the shared
// store and the loop's cache like any other: the hot-path lookup costs the
// same as a local hit and allocates nothing.
func BenchmarkTemplateLookup(b *testing.B) {
	k := key(10, 90, 256)
	b.Run("local", func(b *testing.B) {
		shared := template.NewShared()
		now := time.Now().UnixNano()
		shared.Put(mkTemplate(b, k, flowFields, now, now+int64(time.Hour)))
		benchLookup(b, shared, k)
	})
	b.Run("from-redis", func(b *testing.B) {
		benchLookup(b, fetchedFromRedis(b, k), k)
	})
}

func benchLookup(b *testing.B, shared *template.Shared, k template.Key) {
	c := template.NewCache(shared)
	now := time.Now().UnixNano()
	if c.Get(k, now) == nil {
		b.Fatal("no template")
	}
	b.ReportAllocs()
	for b.Loop() {
		if c.Get(k, now) == nil {
			b.Fatal("lost the template")
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
}

func TestLookupFromRedisNoAllocs(t *testing.T) {
	k := key(10, 91, 256)
	c := template.NewCache(fetchedFromRedis(t, k))
	now := time.Now().UnixNano()
	if n := testing.AllocsPerRun(1000, func() {
		if c.Get(k, now) == nil {
			t.Fatal("no template")
		}
	}); n != 0 {
		t.Fatalf("%v allocations per lookup", n)
	}
}

// BenchmarkLearnToVisible changes a template at one collector and measures
// how long until another collector, which uses it, has the new definition:
// learn (one pod's loop) -> write-through -> Redis invalidation -> fetch ->
// shared store of the other pod. Both collectors run in this process but
// talk only through Redis, each with its own connections.
func BenchmarkLearnToVisible(b *testing.B) {
	r := sharedRedis(b)
	flushAll(b, r)
	addrs := []string{r.Addr()}
	a := startPod(b, podConfig{redis: addrs})
	c := startPod(b, podConfig{redis: addrs})
	seen := make(chan int64, 16)
	redistier.SetObserver(c.store, func(k template.Key, nanos int64) {
		if k.Domain == 95 && k.ID == 256 {
			seen <- nanos
		}
	})
	ex := newExporter(b)
	v1 := ipfixTraffic(95, 1, 2)
	v2 := changedTraffic(95, 0, 1)
	ex.send(b, a, v1.tpl)
	ex.send(b, c, v1.data[0])
	waitRecords(b, v1.count(0, 1), c)
	drain := func() {
		for {
			select {
			case <-seen:
			default:
				return
			}
		}
	}
	drain()
	var learnToUse, sendToUse []float64
	for i := 0; b.Loop(); i++ {
		msg := v2.tpl
		if i%2 == 1 {
			msg = v1.tpl
		}
		start := time.Now()
		ex.send(b, a, msg)
		select {
		case n := <-seen:
			learnToUse = append(learnToUse, float64(n)/1e6)
			sendToUse = append(sendToUse, float64(time.Since(start))/1e6)
		case <-time.After(5 * time.Second):
			b.Fatal("change not seen at the other collector")
		}
		drain()
	}
	q := func(s []float64, p float64) float64 {
		s = slices.Clone(s)
		slices.Sort(s)
		return s[int(float64(len(s)-1)*p)]
	}
	b.ReportMetric(q(learnToUse, 0.5), "p50-ms")
	b.ReportMetric(q(learnToUse, 0.99), "p99-ms")
	b.ReportMetric(q(sendToUse, 0.99), "send-p99-ms")
}
