//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

var modeTitles = map[string]string{
	"run":      "Sluice alone (`perf/run.sh`, `make perf`)",
	"ceiling":  "Loopback ceiling (`perf/ceiling.sh`, `make perf-ceiling`)",
	"compare":  "Sluice and goflow2 (`perf/compare.sh`, `make perf-compare`)",
	"pipeline": "Pipelines (`perf/pipeline.sh`, `make perf-pipeline`)",
	"split":    "The split pod against sluice run (`go run ./perf/runner split`)",
	"netns":    "Generator in its own network namespace (issue 19)",
}

// reportAll rewrites the sections of RESULTS.md and the plots of every
// mode that has a results file.
func (r *runner) reportAll() error {
	for _, mode := range []string{"run", "ceiling", "compare", "pipeline", "split", "netns"} {
		b, err := os.ReadFile(filepath.Join(r.cfg.resultsDir, mode+".json"))
		if err != nil {
			continue
		}
		var res Result
		if err := json.Unmarshal(b, &res); err != nil {
			return fmt.Errorf("%s.json: %v", mode, err)
		}
		plot := r.plot(&res)
		if plot != "" {
			plot = r.relPath(plot)
		}
		if err := r.writeSection(mode, r.renderSection(&res, plot)); err != nil {
			return err
		}
	}
	r.logf("updated %s", r.cfg.resultsMD)
	return nil
}

func (r *runner) writeSection(mode, body string) error {
	begin := "<!-- perf:" + mode + ":begin -->"
	end := "<!-- perf:" + mode + ":end -->"
	old, err := os.ReadFile(r.cfg.resultsMD)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	text := string(old)
	if text == "" {
		text = "# Sluice performance results\n"
	}
	block := begin + "\n" + body + end
	i, j := strings.Index(text, begin), strings.Index(text, end)
	if i >= 0 && j > i {
		text = text[:i] + block + text[j+len(end):]
	} else {
		text = strings.TrimRight(text, "\n") + "\n\n## " + modeTitles[mode] + "\n\n" + block + "\n"
	}
	return os.WriteFile(r.cfg.resultsMD, []byte(text), 0o644)
}

func summaryLines(res *Result) []string {
	var out []string
	for _, se := range res.Series {
		best := "none"
		if se.BestRPS > 0 {
			best = fmt.Sprintf("%s rec/s (%s pkt/s)", fmtRate(se.BestRPS), fmtRate(se.BestPPS))
			if se.BestGenLimited {
				best = "at least " + best + ", generator-limited"
			}
		}
		line := fmt.Sprintf("  %-28s highest zero-loss rate %s; most decoded %s rec/s", se.Target+":", best, fmtRate(se.MaxRPS))
		if se.Kind == kindSink {
			line = fmt.Sprintf("  %-28s highest zero-loss rate %s; most received %s pkt/s", se.Target+":", best, fmtRate(se.MaxPPS))
		}
		out = append(out, line)
	}
	switch res.Mode {
	case "ceiling":
		if len(res.Series) == 2 {
			sink, sl := res.Series[0], res.Series[1]
			if sink.MaxPPS > 0 {
				out = append(out, fmt.Sprintf("  sluice flat out: %.0f%% of the sink's packets/s", 100*maxDecodedPPS(sl)/sink.MaxPPS))
			}
			if sink.BestPPS > 0 {
				out = append(out, fmt.Sprintf("  sluice zero-loss: %.0f%% of the sink's zero-loss packets/s", 100*sl.BestPPS/sink.BestPPS))
			}
		}
	case "split":
		for i := 0; i+1 < len(res.Series); i += 2 {
			if run := res.Series[i]; run.BestRPS > 0 {
				out = append(out, fmt.Sprintf("  %s: split pod zero-loss rate %.0f%% of sluice run's", run.Output, 100*res.Series[i+1].BestRPS/run.BestRPS))
			}
		}
	case "compare":
		if len(res.Series) == 2 && res.Series[1].BestRPS > 0 {
			out = append(out, fmt.Sprintf("  zero-loss rate ratio sluice/goflow2: %.1f", res.Series[0].BestRPS/res.Series[1].BestRPS))
		}
	case "pipeline":
		for _, se := range res.Series {
			line := fmt.Sprintf("  %s: target %s rec/s: %s", se.Output, fmtRateOr(se.TargetRPS, "none"), targetVerdict(se))
			if b := bestStep(se); b != nil && b.Pipe != nil {
				line += fmt.Sprintf("; output %s rec/s at the best rate", fmtRate(b.Pipe.OutputRPS))
				if b.Pipe.Aggregate {
					line += fmt.Sprintf("; %.0f keys held, %.0f B/key (RSS growth), %.0f B/key (table)", b.Pipe.Keys, b.Pipe.BytesPerKeyRSS, b.Pipe.BytesPerKeyTable)
				}
			}
			out = append(out, line)
		}
	}
	return out
}

// targetVerdict says whether a series reached its target rate.
func targetVerdict(se *Series) string {
	switch {
	case se.TargetRPS == 0:
		return "-"
	case se.BestRPS >= se.TargetRPS:
		return "met"
	case se.BestGenLimited:
		return "not shown (the generator could not offer more)"
	case se.LowestLossRPS == 0:
		return "not reached (no step lost: raise --max)"
	}
	return "not met"
}

// maxDecodedPPS is the most data messages per second a series decoded.
func maxDecodedPPS(se *Series) float64 {
	var m float64
	for _, s := range se.Steps {
		if s.Error == "" && s.Records > 0 {
			m = math.Max(m, s.DecodedRPS/float64(s.Records))
		}
	}
	return m
}

func (r *runner) renderSection(res *Result, plot string) string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	// Judge by what other processes used during the steps: the load
	// average at the start lags a minute behind.
	if res.OtherCoresAvg > 0.2 {
		w("> **Preliminary: measured while the machine was busy with other work** (load average %.2f when the run started; other processes used %.2f cores on average during the steps, on a %d-CPU machine). Re-run on a quiet machine for numbers to quote.\n\n",
			res.LoadAvgStart, res.OtherCoresAvg, res.Machine.CPUs)
	} else {
		w("> Measured on a quiet machine: other processes used %.2f cores on average during the steps (the load average of %.2f at the start lags a minute behind earlier work).\n\n",
			res.OtherCoresAvg, res.LoadAvgStart)
	}
	m := res.Machine
	w("- Date: %s (%.0f s)\n", res.Date, res.Seconds)
	w("- Command: `%s`\n", res.Command)
	w("- Machine: %s, %d CPUs, kernel %s, %s; sluice %s", m.CPUModel, m.CPUs, m.Kernel, m.GoVersion, m.Sluice)
	if m.Goflow2 != "" {
		w("; goflow2 %s", m.Goflow2)
	}
	w("\n")
	cfg := res.Config
	w("- Load: `sluice gen`, %v records per message (5-tuple template, 46-byte records), %v exporters, %v s per step", cfg["records_per_message"], cfg["exporters"], cfg["step_seconds"])
	if res.Mode == "pipeline" {
		w(", `--keys %.0f` distinct 5-tuples for pipelines that aggregate (sent once at %s records/s before each step)", toFloat(cfg["keys"]), fmtRate(toFloat(cfg["prefill_rps"])))
	}
	if a, _ := cfg["gen_args"].(string); a != "" {
		w(", gen args `%s`", a)
	}
	if a, _ := cfg["sluice_args"].(string); a != "" {
		w(", sluice args `%s`", a)
	}
	if a, _ := cfg["goflow2_listen_query"].(string); a != "" && res.Mode == "compare" {
		w(", goflow2 `-listen ...?%s`", a)
	}
	gc, _ := cfg["gen_cpus"].(string)
	rc, _ := cfg["receiver_cpus"].(string)
	// Runs with the generator in its namespace get the step table with
	// the CPU split (other pinned runs keep their mode's table).
	netns, _ := cfg["netns"].(bool)
	switch {
	case res.Mode == "pipeline" && gc == "" && rc == "":
		w("; a fresh sluice process (and TCP receiver) per step; generator, sluice and receiver share the machine's CPUs.\n\n")
	case gc == "" && rc == "":
		w("; a fresh receiver process per step; generator and receiver share the machine's CPUs.\n\n")
	default:
		w("; a fresh receiver process per step; generator pinned to CPU %s, receiver to CPU %s (taskset; \"\" is unpinned)", orQuote(gc), orQuote(rc))
		if netns && res.Mode != "netns" {
			w("; the generator in a network namespace of its own, sending over a veth pair")
		}
		w(".\n\n")
	}

	switch res.Mode {
	case "run":
		w("| output | highest zero-loss records/s | packets/s | lowest lossy records/s | CPU s per M records at that rate | peak RSS at that rate |\n|---|---|---|---|---|---|\n")
		for _, se := range res.Series {
			best := bestStep(se)
			w("| %s | %s | %s | %s | %s | %s |\n", se.Output, bestText(se), fmtRateOr(se.BestPPS, "-"), fmtRateOr(se.LowestLossRPS, "none"),
				ifStep(best, func(s *Step) string { return fmt.Sprintf("%.3f", s.CPUPerMillion) }),
				ifStep(best, func(s *Step) string { return fmt.Sprintf("%.0f MB", s.PeakRSS/1e6) }))
		}
		w("\n")
	case "ceiling":
		w("Small messages (%v records each) make the per-datagram cost dominate. The sink is `perf/sink`: SO_REUSEPORT sockets, one goroutine each, blocking recvmmsg, counting only.\n\n", cfg["records_per_message"])
		if len(res.Series) == 2 {
			sink, sl := res.Series[0], res.Series[1]
			w("| receiver | most packets/s in any step | highest zero-loss packets/s |\n|---|---|---|\n")
			w("| recvmmsg sink | %s received | %s |\n", fmtRateOr(sink.MaxPPS, "-"), bestPPSText(sink))
			w("| sluice discard | %s decoded | %s |\n", fmtRateOr(maxDecodedPPS(sl), "-"), bestPPSText(sl))
			if sink.MaxPPS > 0 && sink.BestPPS > 0 {
				w("| **sluice / sink** | **%.0f%%** | **%.0f%%** |\n", 100*maxDecodedPPS(sl)/sink.MaxPPS, 100*sl.BestPPS/sink.BestPPS)
			}
			w("\nThe zero-loss column is the comparable one. When the generator and the receiver share the cores, the most a receiver gets in any step also depends on how the scheduler splits the CPU between them: a receiver that costs more CPU slows the generator down, and one that sleeps in recvmmsg lets it run ahead and overflow the socket.\n\n")
		}
	case "compare":
		if len(res.Series) == 2 {
			sl, gf := res.Series[0], res.Series[1]
			w("| collector | highest zero-loss records/s | lowest lossy records/s | most decoded records/s | peak RSS (any step) |\n|---|---|---|---|---|\n")
			for _, se := range res.Series {
				w("| %s | %s | %s | %s | %.0f MB |\n", se.Target, bestText(se), fmtRateOr(se.LowestLossRPS, "none"), fmtRateOr(se.MaxRPS, "-"), maxRSS(se)/1e6)
			}
			if gf.BestRPS > 0 && sl.BestRPS > 0 {
				w("\nZero-loss rate, sluice / goflow2: **%.1f×**", sl.BestRPS/gf.BestRPS)
				if sl.BestGenLimited {
					w(" (at least: sluice's figure is generator-limited)")
				}
				w(".\n")
			}
			w("\nDecoded records/s at the same ladder rates:\n\n| asked records/s | sluice decoded | goflow2 decoded | sluice / goflow2 |\n|---|---|---|---|\n")
			gfBy := map[float64]*Step{}
			for _, s := range gf.Steps {
				if s.Phase == "ladder" && s.Error == "" {
					gfBy[s.TargetRPS] = s
				}
			}
			for _, s := range sl.Steps {
				g := gfBy[s.TargetRPS]
				if s.Phase != "ladder" || s.Error != "" || g == nil {
					continue
				}
				ratio := "-"
				if g.DecodedRPS > 0 {
					ratio = fmt.Sprintf("%.1f", s.DecodedRPS/g.DecodedRPS)
				}
				w("| %s | %s | %s | %s |\n", fmtRate(s.TargetRPS), fmtRate(s.DecodedRPS), fmtRate(g.DecodedRPS), ratio)
			}
			w("\n")
		}
	case "pipeline":
		r.renderPipelineSummary(w, res)
	case "netns":
		r.renderNetnsSummary(w, res)
	case "split":
		w("| output | sluice run zero-loss records/s | split pod zero-loss records/s | split / run | split lowest lossy records/s |\n|---|---|---|---|---|\n")
		for i := 0; i+1 < len(res.Series); i += 2 {
			run, sp := res.Series[i], res.Series[i+1]
			ratio := "-"
			if run.BestRPS > 0 {
				ratio = fmt.Sprintf("**%.0f%%**", 100*sp.BestRPS/run.BestRPS)
			}
			w("| %s | %s | %s | %s | %s |\n", run.Output, bestText(run), bestText(sp), ratio, fmtRateOr(sp.LowestLossRPS, "none"))
		}
		w("\nThe split pod's CPU column is both processes' (the JSON has the mediator's share as mediator_cpu_seconds); its RSS column is the collector's alone.\n\n")
	}
	if plot != "" {
		w("![decoded vs offered](%s)\n\n", plot)
	}
	for _, se := range res.Series {
		if se.LowestLossRPS > 0 && se.LowestLossRPS < se.BestRPS {
			w("Note: %s lost records at %s rec/s but not at %s: the results are not monotonic, so the machine's load changed between steps (see *others*). Re-run on a quiet machine or with a longer `--step`.\n\n",
				se.Target, fmtRate(se.LowestLossRPS), fmtRate(se.BestRPS))
		}
	}
	for _, se := range res.Series {
		w("### %s\n\n", se.Target)
		if se.Aborted != "" {
			w("Stopped early: %s.\n\n", se.Aborted)
		}
		if res.Mode == "pipeline" {
			r.renderPipelineSteps(w, se)
			continue
		}
		if netns {
			renderPinnedSteps(w, se)
			continue
		}
		w("| phase | asked rec/s | offered rec/s | offered pkt/s | %s | lost (sent − decoded) | seq lost | socket drops (pkts) | app drops | CPU s / M rec | peak RSS MB | drain s | others (cores) | result |\n",
			map[bool]string{true: "received pkt/s", false: "decoded rec/s"}[se.Kind == kindSink])
		w("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
		steps := append([]*Step(nil), se.Steps...)
		for _, s := range steps {
			if s.Error != "" {
				w("| %s | %s | | | | | | | | | | | | error: %s |\n", s.Phase, askedText(s.TargetRPS), oneLine(s.Error))
				continue
			}
			got := fmtRate(s.DecodedRPS)
			if s.Kind == kindSink {
				got = fmtRate(s.ReceivedPPS)
			}
			seq := "n/a"
			if s.SeqLost >= 0 {
				seq = fmt.Sprintf("%.0f", s.SeqLost)
			}
			w("| %s | %s | %s | %s | %s | %.0f | %s | %.0f | %s | %.3f | %.0f | %.2f | %.2f | %s |\n",
				s.Phase, askedText(s.TargetRPS), fmtRate(s.OfferedRPS), fmtRate(s.OfferedPPS), got, s.LostRecords, seq,
				s.SocketDrops, appDrops(s), s.CPUPerMillion, s.PeakRSS/1e6, s.DrainSeconds, s.OtherCores, stepResult(s))
		}
		w("\n")
		for _, s := range se.Steps {
			if s.Phase == "overload" && s.Error == "" {
				w("Overload (twice the best rate): peak RSS %.0f MB", s.PeakRSS/1e6)
				if s.RingBytes > 0 {
					w(" (rings hold at most %.0f MB)", s.RingBytes/1e6)
				}
				counted := math.Max(s.SeqLost, 0) + s.DropRecs
				w("; %.0f records lost by the generator's count", s.LostRecords)
				if s.Kind == kindSluice || s.Kind == kindSplit {
					w("; sluice counted %.0f (sequence loss + drops after decoding) and %.0f datagrams (%.0f records) dropped on its sockets by the kernel", counted, s.SocketDrops, s.SocketDrops*float64(s.Records))
				} else {
					w(", %.0f datagrams counted as dropped by the kernel and %.0f by %s", s.SocketDrops, s.DropUnits, s.Kind)
				}
				w(".\n\n")
			}
			r.renderStepProfiles(w, s)
		}
	}
	if res.Mode == "pipeline" {
		w("%s", pipelineColumns)
		return b.String()
	}
	if netns {
		w("%s", pinnedColumns)
		if a, _ := cfg["irq_time_accounting"].(string); a != "" {
			w("\nThis kernel's IRQ time accounting (CONFIG_IRQ_TIME_ACCOUNTING): %s.", a)
		}
		w("\n")
		return b.String()
	}
	w("Columns: *asked* is the generator's target, *offered* what it sent (its own count over its own run time), *decoded* what the receiver had counted when the generator stopped, over the generator process's wall time (what it decoded later is in the loss figures, not the rate). *lost* is the generator's count minus the receiver's; *seq lost* is what Sluice's sequence-number accounting saw missing; *socket drops* are the kernel's drops on the receiver's sockets (/proc/net/udp); *app drops* are drops the receiver counted itself. *CPU* is the receiver's user+system time (/proc/PID/stat) per million decoded records; *peak RSS* is VmHWM; *drain* is how long after the generator stopped the receiver was still counting; *others* is CPU used by other processes on the machine during the step (/proc/stat minus the receiver, generator and runner). Generator-limited: the generator offered less than 95%% of the asked rate.\n")
	for _, se := range res.Series {
		if se.Kind == kindGoflow2 {
			w("\n† goflow2 decodes with several workers, so an exporter's first data messages can be decoded before its template message and are dropped (`goflow2_flow_process_nf_errors_total{error=\"template_not_found\"}`); Sluice holds such data until the template comes. These records are shown but not counted as loss: they happen once per exporter start, at any rate.\n")
			break
		}
	}
	return b.String()
}

// renderStepProfiles links a step's profiles and shows the CPU profile's
// top functions.
func (r *runner) renderStepProfiles(w func(string, ...any), s *Step) {
	if len(s.Profiles) == 0 {
		return
	}
	w("Profiles of the `%s` step (%s rec/s):", s.Phase, fmtRate(s.OfferedRPS))
	for _, k := range []string{"cpu", "allocs", "heap"} {
		if p, ok := s.Profiles[k]; ok {
			w(" [%s](%s)", k, r.relPath(p))
			if t, ok := s.Profiles[k+"_top"]; ok {
				w(" ([top](%s))", r.relPath(t))
			}
		}
	}
	w("\n\n")
	if t, ok := s.Profiles["cpu_top"]; ok {
		if top := readTop(t, 18); top != "" {
			w("<details><summary>CPU profile, top functions</summary>\n\n```text\n%s\n```\n</details>\n\n", top)
		}
	}
}

func orQuote(s string) string {
	if s == "" {
		return `""`
	}
	return s
}

func askedText(v float64) string {
	if v == 0 {
		return "max"
	}
	return fmtRate(v)
}

func appDrops(s *Step) string {
	switch s.Kind {
	case kindSluice, kindSplit:
		return fmt.Sprintf("%.0f rec, %.0f sets", s.DropRecs, s.DropUnits)
	case kindGoflow2:
		t := fmt.Sprintf("%.0f pkts", s.DropUnits)
		if s.BeforeTemplate > 0 {
			t += fmt.Sprintf("; %.0f rec before their template†", s.BeforeTemplate)
		}
		return t
	}
	return "-"
}

func bestStep(se *Series) *Step {
	var best *Step
	for _, s := range se.Steps {
		if s.Error == "" && s.ZeroLoss && s.Phase != "profile" && s.Phase != "overload" && (best == nil || s.OfferedRPS > best.OfferedRPS) {
			best = s
		}
	}
	return best
}

func bestText(se *Series) string {
	if se.BestRPS == 0 {
		return "none"
	}
	t := fmtRate(se.BestRPS)
	if se.BestGenLimited {
		t = "≥ " + t + " (generator-limited)"
	}
	return "**" + t + "**"
}

func bestPPSText(se *Series) string {
	if se.BestPPS == 0 {
		return "none"
	}
	t := fmtRate(se.BestPPS)
	if se.BestGenLimited {
		t = "≥ " + t + " (generator-limited)"
	}
	return t
}

func fmtRateOr(v float64, or string) string {
	if v == 0 {
		return or
	}
	return fmtRate(v)
}

func ifStep(s *Step, f func(*Step) string) string {
	if s == nil {
		return "-"
	}
	return f(s)
}

func maxRSS(se *Series) float64 {
	var m float64
	for _, s := range se.Steps {
		m = math.Max(m, s.PeakRSS)
	}
	return m
}

func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	s = strings.ReplaceAll(s, "|", "/")
	if len(s) > 160 {
		s = s[:160] + "..."
	}
	return s
}

// relPath makes a path relative to RESULTS.md's directory.
func (r *runner) relPath(p string) string {
	abs, err1 := filepath.Abs(p)
	dir, err2 := filepath.Abs(filepath.Dir(r.cfg.resultsMD))
	if err1 != nil || err2 != nil {
		return p
	}
	if rel, err := filepath.Rel(dir, abs); err == nil {
		return filepath.ToSlash(rel)
	}
	return p
}

func readTop(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	// Skip the header down to the column titles.
	for i, l := range lines {
		if strings.Contains(l, "flat%") {
			lines = lines[max(0, i-1):]
			break
		}
	}
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}

// plot writes MODE.gp and, when gnuplot is installed, MODE.png: decoded
// against offered rate for every series. It returns the PNG's path
// relative to RESULTS.md, or "".
func (r *runner) plot(res *Result) string {
	gp, err := exec.LookPath("gnuplot")
	pps := res.Mode == "ceiling"
	png := filepath.Join(r.cfg.plotDir, res.Mode+".png")
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	unit, scale := "records/s", 1.0
	if pps {
		unit = "packets/s"
	}
	w("# decoded vs offered rate; generated by perf/runner from %s.json\n", res.Mode)
	var lo, hi = math.Inf(1), 0.0
	var names []string
	for i, se := range res.Series {
		var pts [][2]float64
		for _, s := range se.Steps {
			if s.Error != "" || s.Phase == "profile" {
				continue
			}
			x, y := s.OfferedRPS, s.DecodedRPS
			if pps {
				x = s.OfferedPPS
				y = s.ReceivedPPS
				if s.Kind != kindSink && s.Records > 0 {
					y = s.DecodedRPS / float64(s.Records)
				}
			}
			if x <= 0 || y <= 0 {
				continue
			}
			pts = append(pts, [2]float64{x / scale, y / scale})
			lo, hi = math.Min(lo, math.Min(x, y)), math.Max(hi, math.Max(x, y))
		}
		sort.Slice(pts, func(a, b int) bool { return pts[a][0] < pts[b][0] })
		w("$s%d << EOD\n", i)
		for _, p := range pts {
			w("%g %g\n", p[0], p[1])
		}
		w("EOD\n")
		names = append(names, se.Target)
	}
	if hi == 0 {
		return ""
	}
	w("set terminal TERM size 900,600\nset output '%s'\n", png)
	w("set title 'Decoded vs offered rate (%s, %s, %s)'\n", res.Machine.CPUModel, plural(res.Machine.CPUs, "CPU"), res.Date)
	w("set logscale xy\nset grid\nset key top left\n")
	w("set xlabel 'offered %s'\nset ylabel 'decoded %s'\n", unit, unit)
	w("set format x '%%.0s%%c'\nset format y '%%.0s%%c'\n")
	w("set xrange [%g:%g]\nset yrange [%g:%g]\n", lo/1.5, hi*1.5, lo/1.5, hi*1.5)
	w("plot x title 'decoded = offered' with lines dashtype 2 linecolor rgb 'gray'")
	for i, n := range names {
		w(", \\\n  $s%d using 1:2 title '%s' with linespoints linewidth 2 pointtype %d", i, strings.ReplaceAll(n, "'", ""), 7+i*2)
	}
	w("\n")
	script := filepath.Join(r.cfg.resultsDir, res.Mode+".gp")
	text := b.String()
	_ = os.WriteFile(script, []byte(strings.Replace(text, "TERM", "pngcairo", 1)), 0o644)
	if err != nil {
		r.logf("gnuplot not installed: wrote %s but no %s (apt-get install gnuplot-nox)", script, png)
		return ""
	}
	for _, term := range []string{"pngcairo", "png"} {
		cmd := exec.Command(gp)
		cmd.Stdin = strings.NewReader(strings.Replace(text, "TERM", term, 1))
		if out, err := cmd.CombinedOutput(); err == nil {
			return png
		} else if term == "png" {
			r.logf("gnuplot: %v: %s", err, out)
		}
	}
	return ""
}

func plural(n int, s string) string {
	if n == 1 {
		return "1 " + s
	}
	return fmt.Sprintf("%d %ss", n, s)
}
