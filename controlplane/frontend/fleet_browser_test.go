package frontend

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/sluice-flow/sluice/controlplane/fleet"
	"github.com/sluice-flow/sluice/dataplane/loadgen"
)

// chromiumPath finds Debian's chromium; without it the test skips, except
// under CI, where it fails (`make test-deps` installs it).
func chromiumPath(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium not found; `make test-deps` installs it")
	}
	t.Skip("chromium not found: skipping (`make test-deps` installs it)")
	return ""
}

// TestFleetStatusPageBrowser loads the status page in headless Chromium:
// two real pods (one fed IPFIX records) and one that never answers; the
// DOM shows each pod, the fed pod's records/s and sparkline, the
// unreachable one as such and the pipeline version; the page logs no
// console error. The screenshot goes to $SLUICE_TEST_ARTIFACTS (or the
// test's temporary directory).
func TestFleetStatusPageBrowser(t *testing.T) {
	chrome := chromiumPath(t)
	r := startRedis(t)
	a, b := startCollector(t, ""), startCollector(t, "")
	hang := hangServer(t)
	disc, err := fleet.ParseStatic(a.url() + "," + b.url() + "," + hang)
	if err != nil {
		t.Fatal(err)
	}
	ts := fleetServer(t, r, disc, func(c *Config) { c.PublicStatus = true })
	code, body := ts.putPipeline(t, "default", pipelineFile("discard"))
	want(t, 200, code, body, nil)

	// Feed pod a about 3000 records/s until the test ends.
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { stop(); wg.Wait() })
	rate, err := loadgen.ParseRate("3000")
	if err != nil {
		t.Fatal(err)
	}
	g, err := loadgen.New(loadgen.Config{Addr: netip.MustParseAddrPort("127.0.0.1:" + strconv.Itoa(a.flow)), Rate: rate, Duration: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() { defer wg.Done(); g.Run(ctx); g.Close() }()

	// The API first: pod a has records/s and a few samples.
	var pa fleet.PodView
	waitFor(t, "records/s of the fed pod", func() bool {
		code, _, body := call(t, "GET", ts.url+"/api/v1/collectors", "", nil) // public
		var fv fleet.FleetView
		want(t, 200, code, body, &fv)
		for _, p := range fv.Collectors {
			if p.Name == a.name() {
				pa = p
			}
		}
		return pa.RecordsPerSec > 0 && pa.Exporters == 1 && len(ts.Fleet().Rates(a.name())) >= 3
	})

	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chrome),
		chromedp.Flag("headless", true), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true), chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1200, 600),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	bctx, cancelB := chromedp.NewContext(actx)
	defer cancelB()
	bctx, cancelT := context.WithTimeout(bctx, 60*time.Second)
	defer cancelT()

	var mu sync.Mutex
	var consoleErrors []string
	if err := chromedp.Listen(bctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch ev := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
				consoleErrors = append(consoleErrors, fmt.Sprintf("console.%s %v", ev.Type, ev.Args))
			}
		case *runtime.EventExceptionThrown:
			consoleErrors = append(consoleErrors, "exception: "+ev.ExceptionDetails.Text)
		case *log.EventEntryAdded:
			if ev.Entry.Level == log.EntryLevelError {
				consoleErrors = append(consoleErrors, "log: "+ev.Entry.Text+" "+ev.Entry.URL)
			}
		}
	}); err != nil {
		t.Fatal(err)
	}

	type row struct {
		Name, State, Pipeline, Exporters string
		RPS                              float64
		Points                           int
		Line                             bool
	}
	// chromedp enables the Runtime and Log domains itself, so console
	// calls, exceptions and failed loads all arrive above.
	if err := chromedp.Do(bctx, chromedp.Navigate(ts.url+"/"), chromedp.WaitVisible(chromedp.CSS("#pods"))); err != nil {
		t.Fatal(err)
	}
	version, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS("#pipeline-version")))
	if err != nil {
		t.Fatal(err)
	}
	rowsJSON, err := chromedp.Run(bctx, chromedp.Evaluate[string](`JSON.stringify(Array.from(document.querySelectorAll("tr.pod")).map(function (tr) {
		var svg = tr.querySelector("svg.spark");
		return {Name: tr.dataset.pod, State: tr.querySelector(".state").textContent.trim(),
			Pipeline: tr.querySelector(".pipeline").textContent.trim(),
			Exporters: tr.querySelector(".exporters").textContent.trim(),
			RPS: parseFloat(tr.querySelector(".rps").dataset.value),
			Points: svg ? parseInt(svg.dataset.points, 10) : -1,
			Line: !!(svg && svg.querySelector("polyline"))};
	}))`))
	if err != nil {
		t.Fatal(err)
	}
	shot, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	dir := os.Getenv("SLUICE_TEST_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "fleet-status-page.png")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s (%d bytes)", path, len(shot))
	if len(shot) < 1000 || string(shot[1:4]) != "PNG" {
		t.Fatalf("screenshot is not a PNG (%d bytes)", len(shot))
	}

	var rows []row
	if err := json.Unmarshal([]byte(rowsJSON), &rows); err != nil {
		t.Fatal(err)
	}
	byName := map[string]row{}
	for _, r := range rows {
		byName[r.Name] = r
	}
	if len(rows) != 3 {
		t.Fatalf("rows %+v", rows)
	}
	if version != "1" {
		t.Fatalf("pipeline version on the page %q", version)
	}
	ra, rb, rh := byName[a.name()], byName[b.name()], byName[strings.TrimPrefix(hang, "http://")]
	if ra.State != "ready" || ra.RPS <= 0 || ra.Exporters != "1" || ra.Points < 3 || !ra.Line || ra.Pipeline != "applied v1" {
		t.Fatalf("fed pod on the page: %+v", ra)
	}
	if rb.State != "ready" || rb.RPS != 0 || rb.Pipeline != "applied v1" {
		t.Fatalf("idle pod on the page: %+v", rb)
	}
	if rh.State != "unreachable" || rh.Pipeline != "unreachable v0" {
		t.Fatalf("hanging pod on the page: %+v", rh)
	}
	// Roughly the rate sent (3000/s; the sampler's window is 200 ms, so
	// a wide band).
	if ra.RPS < 300 || ra.RPS > 30000 {
		t.Fatalf("fed pod's records/s %v, sent about 3000/s", ra.RPS)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(consoleErrors) > 0 {
		t.Fatalf("console errors: %q", consoleErrors)
	}
}
