package redistier_test

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
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
// shared store of the other pod. "two-processes" runs the second collector
// in a child process (this test binary, see TestHelperPod); "one-process"
// runs both here, still talking only through Redis on their own
// connections.
func BenchmarkLearnToVisible(b *testing.B) {
	b.Run("one-process", func(b *testing.B) {
		r := sharedRedis(b)
		flushAll(b, r)
		addrs := []string{r.Addr()}
		c := startPod(b, podConfig{redis: addrs})
		seen := make(chan int64, 16)
		redistier.SetObserver(c.store, func(k template.Key, nanos int64) {
			if k.Domain == 95 && k.ID == 256 {
				select {
				case seen <- nanos:
				default:
				}
			}
		})
		benchChanges(b, addrs, c.port, seen)
	})
	b.Run("two-processes", func(b *testing.B) {
		r := sharedRedis(b)
		flushAll(b, r)
		port, seen := startChildPod(b, r.Addr())
		benchChanges(b, []string{r.Addr()}, port, seen)
	})
}

// benchChanges teaches a local collector template 256 of domain 95 and
// sends its data to the other collector (port), then redefines the
// template at the local one b.N times; seen reports each learn-to-use
// sample of the other collector.
func benchChanges(b *testing.B, addrs []string, port int, seen <-chan int64) {
	a := startPod(b, podConfig{redis: addrs})
	other := &pod{port: port}
	ex := newExporter(b)
	v1 := ipfixTraffic(95, 1, 2)
	v2 := changedTraffic(95, 0, 1)
	ex.send(b, a, v1.tpl)
	ex.send(b, other, v1.data[0])
	select {
	case <-seen:
	case <-time.After(5 * time.Second):
		b.Fatal("the other collector did not fetch the template")
	}
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

// startChildPod runs a collector with a Redis tier in a child process and
// returns its port and its learn-to-use samples for template 256 of
// domain 95.
func startChildPod(b *testing.B, redisAddr string) (int, <-chan int64) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperPod$", "-test.count=1")
	cmd.Env = append(os.Environ(), "SLUICE_TEST_POD_REDIS="+redisAddr)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close() // the child stops when its stdin closes
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	ready := make(chan int, 1)
	seen := make(chan int64, 16)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) != 2 {
				continue
			}
			n, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				continue
			}
			switch f[0] {
			case "ready":
				ready <- int(n)
			case "seen":
				seen <- n
			}
		}
	}()
	select {
	case port := <-ready:
		return port, seen
	case <-time.After(10 * time.Second):
		b.Fatal("child collector did not start")
		return 0, nil
	}
}

// TestHelperPod is the child collector of BenchmarkLearnToVisible: it
// prints "ready <port>", then "seen <nanoseconds>" for each learn-to-use
// sample of template 256 of domain 95, until its stdin closes.
func TestHelperPod(t *testing.T) {
	addr := os.Getenv("SLUICE_TEST_POD_REDIS")
	if addr == "" {
		t.Skip("only run as BenchmarkLearnToVisible's child process")
	}
	p := startPod(t, podConfig{redis: []string{addr}})
	var mu sync.Mutex
	redistier.SetObserver(p.store, func(k template.Key, nanos int64) {
		if k.Domain == 95 && k.ID == 256 {
			mu.Lock()
			fmt.Printf("seen %d\n", nanos)
			mu.Unlock()
		}
	})
	fmt.Printf("ready %d\n", p.port)
	io.Copy(io.Discard, os.Stdin)
}
