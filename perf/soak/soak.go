package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/sluice-flow/sluice/internal/chaos"
)

type config struct {
	sluice                     string
	duration, interval, reload time.Duration
	churn                      time.Duration
	rate, maxRate              int
	warmup                     float64
	csv, png, results, note    string
}

// sample is one row of the CSV.
type sample struct {
	Seconds    float64
	RSS        float64 // bytes
	Goroutines float64
	OpenFiles  float64
	Records    float64 // sluice_records_total
	Dropped    float64 // sluice_dropped_records_total
	SeqLost    float64 // sluice_sequence_lost_total
}

// pipelines alternate at each reload: every record to a discard output,
// and a second pipeline that selects and projects, or aggregates.
var pipelines = []string{`outputs:
  sink: discard
pipelines:
  - name: all
    outputs: [sink]
  - name: tcp
    stages:
      - select: protocolIdentifier == 6
      - project: {keep: [sourceIPv4Address, destinationIPv4Address, octetDeltaCount, packetDeltaCount]}
    outputs: [sink]
`, `outputs:
  sink: discard
pipelines:
  - name: all
    outputs: [sink]
  - name: byproto
    stages:
      - aggregate: {keys: [protocolIdentifier, destinationTransportPort], interval: 10s}
    outputs: [sink]
`}

// churnTemplates are the template sets of the short-lived exporters, in
// turn; over TCP options records are left out.
var churnTemplates = []string{"ipv6", "5tuple,varlen", "5tuple,options", "ipv6,varlen,5tuple"}

type soak struct {
	c       config
	dir     string
	flow    int
	admin   string
	token   string
	sluice  *chaos.Proc
	gens    []*chaos.Proc
	samples []sample
	reloads int
	churns  int
	// rateNote says where the rate came from.
	rateNote string
	log      func(format string, args ...any)
}

func run(c config) (bool, error) {
	var err error
	if c.sluice, err = filepath.Abs(c.sluice); err != nil {
		return false, err
	}
	dir, err := os.MkdirTemp("", "sluice-soak-")
	if err != nil {
		return false, err
	}
	defer os.RemoveAll(dir)
	s := &soak{c: c, dir: dir, token: "soak-token-0123456789",
		log: func(format string, args ...any) {
			fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().UTC().Format("15:04:05")}, args...)...)
		}}
	defer s.stopAll()
	if err := s.start(); err != nil {
		return false, err
	}
	rate := c.rate
	s.rateNote = "given with --rate"
	if rate == 0 {
		zero, err := s.zeroLossRate()
		if err != nil {
			return false, err
		}
		rate = zero / 2
		s.rateNote = fmt.Sprintf("half of %d records/s, the highest step of the ladder without loss (3 s steps doubling from 25k, capped by --max-rate %d)", zero, c.maxRate)
		s.log("zero-loss rate %d records/s (capped at %d): running at %d", zero, c.maxRate, rate)
	}
	if err := s.soak(rate); err != nil {
		return false, err
	}
	s.sluice.Stop(30 * time.Second)
	verdicts := judge(s.samples, c.warmup)
	if err := writeCSV(c.csv, s.samples); err != nil {
		return false, err
	}
	if err := plotSamples(c.png, s.samples, c.warmup); err != nil {
		return false, err
	}
	text := s.report(rate, verdicts)
	fmt.Print(text)
	if c.results != "" {
		if err := replaceSection(c.results, "## Soak", text); err != nil {
			return false, err
		}
	}
	ok := true
	for _, v := range verdicts {
		ok = ok && v.pass
	}
	return ok, nil
}

func (s *soak) start() error {
	port, err := chaos.FreePort(false)
	if err != nil {
		return err
	}
	aport, err := chaos.FreePort(false)
	if err != nil {
		return err
	}
	s.flow, s.admin = port, fmt.Sprintf("127.0.0.1:%d", aport)
	tok := filepath.Join(s.dir, "token")
	if err := os.WriteFile(tok, []byte(s.token+"\n"), 0o600); err != nil {
		return err
	}
	for i, p := range pipelines {
		f := filepath.Join(s.dir, fmt.Sprintf("pipeline%d.yaml", i))
		if err := os.WriteFile(f, []byte(p), 0o644); err != nil {
			return err
		}
		if out, err := exec.Command(s.c.sluice, "check", f).CombinedOutput(); err != nil {
			return fmt.Errorf("sluice check %s: %v\n%s", f, err, out)
		}
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	s.sluice, err = chaos.Start(s.dir, "sluice", s.c.sluice, "run", "--listen", "udp://"+addr, "--listen", "tcp://"+addr,
		"--admin", s.admin, "--admin-token-file", tok, "--template-lifetime", "2m", "--log-level", "warn",
		"--pipeline", filepath.Join(s.dir, "pipeline0.yaml"))
	if err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for !chaos.Ready(s.admin) {
		if s.sluice.Exited() || time.Now().After(deadline) {
			return fmt.Errorf("sluice run not ready:\n%s", s.sluice.Tail(20))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// loss is what the collector counts as lost: sequence loss, socket drops,
// dropped records.
func (s *soak) loss() (float64, error) {
	m, err := chaos.Scrape(s.admin)
	if err != nil {
		return 0, err
	}
	return m.Sum("sluice_sequence_lost_total") + m.Sum("sluice_udp_socket_drops_total") + m.Sum("sluice_dropped_records_total"), nil
}

// gen runs sluice gen with args in the background.
func (s *soak) gen(name string, args ...string) (*chaos.Proc, error) {
	all := append([]string{"gen", "--addr", fmt.Sprintf("127.0.0.1:%d", s.flow)}, args...)
	p, err := chaos.Start(s.dir, name, s.c.sluice, all...)
	if err == nil {
		s.gens = append(s.gens, p)
	}
	return p, err
}

// zeroLossRate climbs a ladder of 3 s steps (doubling from 25k records/s)
// until the collector counts loss or the generator falls short of the rate.
func (s *soak) zeroLossRate() (int, error) {
	best := 0
	for r := 25000; s.c.maxRate == 0 || r <= 2*s.c.maxRate; r *= 2 {
		before, err := s.loss()
		if err != nil {
			return 0, err
		}
		p, err := s.gen(fmt.Sprintf("ladder-%d", r), "--rate", fmt.Sprint(r), "--duration", "3s", "--exporters", "4")
		if err != nil {
			return 0, err
		}
		if !p.Wait(30 * time.Second) {
			return 0, fmt.Errorf("gen at %d did not finish", r)
		}
		var sum struct {
			RecordsPerSecond float64 `json:"records_per_second"`
		}
		out := strings.TrimSpace(p.Output())
		if err := json.Unmarshal([]byte(out[strings.LastIndexByte(out, '\n')+1:]), &sum); err != nil {
			return 0, fmt.Errorf("gen output %q: %w", out, err)
		}
		// Let the collector take what it was sent.
		time.Sleep(time.Second)
		after, err := s.loss()
		if err != nil {
			return 0, err
		}
		s.log("ladder: %d records/s asked, %.0f sent, %.0f lost", r, sum.RecordsPerSecond, after-before)
		if after > before || sum.RecordsPerSecond < 0.9*float64(r) {
			break
		}
		best = r
	}
	if best == 0 {
		best = 12500
	}
	if s.c.maxRate > 0 && best > s.c.maxRate {
		best = s.c.maxRate
	}
	return best, nil
}

func (s *soak) soak(rate int) error {
	c := s.c
	base, err := s.gen("gen-base", "--rate", fmt.Sprint(rate*7/10), "--duration", (c.duration + time.Minute).String(),
		"--exporters", "4", "--templates", "5tuple,ipv6")
	if err != nil {
		return err
	}
	start := time.Now()
	sampleT := time.NewTicker(c.interval)
	churnT := time.NewTicker(c.churn)
	reloadT := time.NewTicker(c.reload)
	defer sampleT.Stop()
	defer churnT.Stop()
	defer reloadT.Stop()
	if err := s.sample(start); err != nil {
		return err
	}
	for time.Since(start) < c.duration {
		select {
		case <-sampleT.C:
			if err := s.sample(start); err != nil {
				return err
			}
		case <-churnT.C:
			if err := s.churn(rate * 3 / 10); err != nil {
				return err
			}
		case <-reloadT.C:
			if err := s.reloadPipeline(); err != nil {
				return err
			}
		}
		if s.sluice.Exited() {
			return fmt.Errorf("sluice run exited:\n%s", s.sluice.Tail(30))
		}
		if base.Exited() {
			return fmt.Errorf("the base gen exited:\n%s", base.Tail(10))
		}
	}
	s.log("done: %d samples, %d churn runs, %d reloads", len(s.samples), s.churns, s.reloads)
	return nil
}

// churn starts a short-lived exporter group; its domains and templates
// recur every six runs, with the template set shifted.
func (s *soak) churn(rate int) error {
	i := s.churns
	s.churns++
	// Reap the finished ones.
	live := s.gens[:0]
	for _, g := range s.gens {
		if !g.Exited() {
			live = append(live, g)
		}
	}
	s.gens = live
	tpl := churnTemplates[i%len(churnTemplates)]
	args := []string{"--rate", fmt.Sprint(rate), "--duration", (s.c.churn * 3 / 4).String(), "--exporters", "4",
		"--distinct-addrs", "--first-domain", fmt.Sprint(10 + (i%6)*4)}
	if i%2 == 1 {
		args = append(args, "--tcp")
		tpl = strings.ReplaceAll(tpl, ",options", "")
	}
	args = append(args, "--templates", tpl)
	_, err := s.gen(fmt.Sprintf("gen-churn-%d", i%6), args...)
	return err
}

func (s *soak) reloadPipeline() error {
	s.reloads++
	body := pipelines[s.reloads%len(pipelines)]
	req, err := http.NewRequest("PUT", "http://"+s.admin+"/api/v1/pipeline", strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+s.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("pipeline reload %d: %w", s.reloads, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return fmt.Errorf("pipeline reload %d: HTTP %d: %s", s.reloads, resp.StatusCode, b.String())
	}
	return nil
}

func (s *soak) sample(start time.Time) error {
	st, err := chaos.Stats(s.sluice.PID())
	if err != nil {
		return err
	}
	m, err := chaos.Scrape(s.admin)
	if err != nil {
		return err
	}
	x := sample{Seconds: time.Since(start).Seconds(), RSS: float64(st.RSSBytes), Goroutines: m.Sum("go_goroutines"),
		OpenFiles: float64(st.OpenFiles), Records: m.Sum("sluice_records_total"),
		Dropped: m.Sum("sluice_dropped_records_total"), SeqLost: m.Sum("sluice_sequence_lost_total")}
	s.samples = append(s.samples, x)
	s.log("t=%4.0fs rss %.1f MiB goroutines %.0f fds %.0f records %.0f dropped %.0f seq lost %.0f",
		x.Seconds, x.RSS/(1<<20), x.Goroutines, x.OpenFiles, x.Records, x.Dropped, x.SeqLost)
	return nil
}

func (s *soak) stopAll() {
	for _, g := range s.gens {
		g.Stop(2 * time.Second)
	}
	if s.sluice != nil {
		s.sluice.Stop(30 * time.Second)
	}
}

// verdict is the judgement of one series.
type verdict struct {
	name, unit   string
	scale        float64
	mean, change float64 // change: the fitted line's rise over the judged window
	bound        float64
	pass         bool
}

func judge(samples []sample, warmup float64) []verdict {
	var from int
	if n := len(samples); n > 0 {
		from = int(math.Ceil(warmup * float64(n)))
		if from > n-3 {
			from = max(0, n-3)
		}
	}
	judged := samples[from:]
	series := []struct {
		name, unit string
		scale      float64
		floor      float64
		get        func(sample) float64
	}{
		{"resident memory", "MiB", 1 << 20, 8 << 20, func(x sample) float64 { return x.RSS }},
		{"goroutines", "", 1, 10, func(x sample) float64 { return x.Goroutines }},
		{"open files", "", 1, 5, func(x sample) float64 { return x.OpenFiles }},
	}
	var out []verdict
	for _, sr := range series {
		xs := make([]float64, len(judged))
		ys := make([]float64, len(judged))
		for i, x := range judged {
			xs[i], ys[i] = x.Seconds, sr.get(x)
		}
		slope, mean := fit(xs, ys)
		v := verdict{name: sr.name, unit: sr.unit, scale: sr.scale, mean: mean}
		if len(xs) > 1 {
			v.change = slope * (xs[len(xs)-1] - xs[0])
		}
		v.bound = max(0.1*mean, sr.floor)
		v.pass = len(xs) >= 3 && v.change < v.bound
		out = append(out, v)
	}
	return out
}

// fit returns the least-squares slope of ys over xs and the mean of ys.
func fit(xs, ys []float64) (slope, mean float64) {
	n := float64(len(xs))
	if n == 0 {
		return 0, 0
	}
	var sx, sy, sxx, sxy float64
	for i := range xs {
		sx += xs[i]
		sy += ys[i]
		sxx += xs[i] * xs[i]
		sxy += xs[i] * ys[i]
	}
	mean = sy / n
	d := n*sxx - sx*sx
	if d == 0 {
		return 0, mean
	}
	return (n*sxy - sx*sy) / d, mean
}

func writeCSV(path string, samples []sample) error {
	var b strings.Builder
	b.WriteString("seconds,rss_bytes,goroutines,open_files,records_total,dropped_records_total,sequence_lost_total\n")
	for _, x := range samples {
		fmt.Fprintf(&b, "%.1f,%.0f,%.0f,%.0f,%.0f,%.0f,%.0f\n", x.Seconds, x.RSS, x.Goroutines, x.OpenFiles, x.Records, x.Dropped, x.SeqLost)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func (s *soak) report(rate int, vs []verdict) string {
	var b strings.Builder
	c := s.c
	b.WriteString("## Soak\n\n")
	load, _ := os.ReadFile("/proc/loadavg")
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "`make soak DURATION=%v` (perf/soak): %s UTC on %s, %d CPUs, load average at the end %s.\n",
		c.duration, time.Now().UTC().Format("2006-01-02 15:04"), host, numCPU(), strings.TrimSpace(string(load)))
	if c.note != "" {
		fmt.Fprintf(&b, "%s\n", c.note)
	}
	last := sample{}
	if n := len(s.samples); n > 0 {
		last = s.samples[n-1]
	}
	fmt.Fprintf(&b, "\nRate: %s.\n", s.rateNote)
	fmt.Fprintf(&b, "\nLoad: %d records/s in all (a long-lived gen of four UDP exporters at 70 %%; every %v a short-lived group of four exporters, UDP and TCP in turn, at 30 %%, %d groups, domains and templates recurring every six); a pipeline put through the admin API every %v (%d reloads); template lifetime 2 min. Samples every %v: %d. Records decoded %.0f, dropped %.0f, sequence loss %.0f.\n\n",
		rate, c.churn, s.churns, c.reload, s.reloads, c.interval, len(s.samples), last.Records, last.Dropped, last.SeqLost)
	fmt.Fprintf(&b, "Criterion: after the warm-up (the first %.0f %% of the samples), the least-squares line through each series rises by less than 10 %% of its mean, or less than a floor (8 MiB, 10 goroutines, 5 open files), whichever is larger.\n\n", c.warmup*100)
	b.WriteString("| series | mean after warm-up | fitted rise after warm-up | bound | verdict |\n|---|---|---|---|---|\n")
	for _, v := range vs {
		verdict := "flat"
		if !v.pass {
			verdict = "GROWS"
		}
		fmt.Fprintf(&b, "| %s | %.1f %s | %+.2f %s | %.1f %s | %s |\n", v.name, v.mean/v.scale, v.unit, v.change/v.scale, v.unit, v.bound/v.scale, v.unit, verdict)
	}
	fmt.Fprintf(&b, "\n![soak](soak.png) Samples: `perf/results/soak.csv`.\n\n")
	return b.String()
}

// replaceSection replaces the section that starts with the heading line
// (up to the next "## " heading) in a Markdown file, or appends it.
func replaceSection(path, heading, text string) error {
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	doc := string(b)
	i := strings.Index(doc, "\n"+heading+"\n")
	if i < 0 {
		if doc != "" && !strings.HasSuffix(doc, "\n\n") {
			doc = strings.TrimRight(doc, "\n") + "\n\n"
		}
		return os.WriteFile(path, []byte(doc+text), 0o644)
	}
	rest := doc[i+1+len(heading):]
	end := strings.Index(rest, "\n## ")
	tail := ""
	if end >= 0 {
		tail = rest[end+1:]
	}
	return os.WriteFile(path, []byte(doc[:i+1]+text+tail), 0o644)
}
