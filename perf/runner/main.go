//go:build linux

// Command runner drives Sluice's throughput measurements (perf/run.sh,
// perf/ceiling.sh, perf/compare.sh, perf/pipeline.sh call it; see
// README.md "Performance").
//
// Each step starts a fresh receiver (sluice run, goflow2 or the recvmmsg
// sink) on a free loopback port, warms it up, runs `sluice gen` at one rate
// for --step, waits for the receiver to drain, and reads its counters: what
// the generator says it sent against what the receiver decoded, sequence
// number loss, kernel socket drops (/proc/net/udp), CPU seconds
// (/proc/PID/stat), peak RSS (VmHWM), drain time, and how much CPU other
// processes took meanwhile (/proc/stat). A ladder of rates and a bisection
// find the highest rate without loss.
//
//	runner run     [flags]   sluice with each --outputs entry
//	runner ceiling [flags]   the recvmmsg sink, then sluice, small messages
//	runner compare [flags]   sluice and goflow2 at the same rates
//	runner pipeline [flags]  sluice with pipeline files (stages, IPFIX over
//	                         TCP to a receiver in the runner, aggregation)
//	runner netns   [flags]   sluice with the generator in a network namespace
//	                         of its own (a veth pair), then over loopback;
//	                         generator and sluice pinned to a CPU each
//	runner report  [flags]   rewrite RESULTS.md and the plots from results/*.json
//
// Results go to perf/results/MODE.json, a section of perf/RESULTS.md and a
// plot perf/MODE.png.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

type config struct {
	mode                           string
	sluice, gen, sink              string
	goflow2, goflow2Query          string
	sluiceArgs, goflow2Args        []string
	sinkArgs, genArgs              []string
	genCPUs, receiverCPUs          string // taskset CPU lists; "" leaves the scheduler free
	netns                          bool   // the generator sends from a namespace of its own over a veth pair
	rps                            bool   // netns mode: also a series with the veth's delivery on the receiver's CPUs
	outputs                        []string
	pipelines                      []*pipelineSpec
	keys                           int
	prefillRate                    float64
	records, exporters             int
	step, drainTimeout, settle     time.Duration
	genBurst, profileTime          time.Duration
	maxTime                        time.Duration
	start, factor, max             float64
	bisect, pastLoss               int
	precision                      float64
	lossTolerance, genShortfall    float64
	profile, overload              bool
	resultsDir, resultsMD, plotDir string
	command                        string

	// readyTimeout and genSlack bound the wait for a receiver to be ready
	// and for a generator run beyond its own duration (0: 15 s and 20 s;
	// tests on a busy machine give more).
	readyTimeout, genSlack time.Duration
}

type runner struct {
	cfg         config
	started     time.Time
	logDir      string
	logSeq      int
	stepNo      int
	tty         bool
	nativePprof bool

	// ns is the generator's namespace (--netns, netns mode), removed at
	// the end, on SIGINT or SIGTERM too.
	ns      *vethNS
	genCPUs []int // parsed cfg.genCPUs and cfg.receiverCPUs
	recCPUs []int

	mu      sync.Mutex
	current *proc
}

// Result is what one script run measured.
type Result struct {
	Mode          string         `json:"mode"`
	Date          string         `json:"date"`
	Command       string         `json:"command"`
	Machine       machineInfo    `json:"machine"`
	LoadAvgStart  float64        `json:"load_average_start"`
	OtherCoresAvg float64        `json:"other_cores_average"`
	Config        map[string]any `json:"config"`
	Seconds       float64        `json:"seconds"`
	Series        []*Series      `json:"series"`
	Notes         []string       `json:"notes,omitempty"`
}

func main() {
	if len(os.Args) < 2 || strings.HasPrefix(os.Args[1], "-") {
		fmt.Fprintln(os.Stderr, "usage: runner run|ceiling|compare|pipeline|report [flags]  (runner MODE -h for the flags)")
		os.Exit(2)
	}
	cfg, err := parseFlags(os.Args[1], os.Args[2:])
	if err != nil {
		if err == flag.ErrHelp {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "runner:", err)
		os.Exit(2)
	}
	if err := run(cfg); err != nil {
		fmt.Fprintln(os.Stderr, "runner:", err)
		os.Exit(1)
	}
}

var modeHelp = map[string]string{
	"run":      "Measures sluice run with each --outputs entry: a ladder of rates and a bisection\nfor the highest zero-loss rate, a profiled step at that rate, a step at twice it.",
	"ceiling":  "Measures the recvmmsg sink (perf/sink), then sluice run --output discard, with\nsmall messages: what loopback delivers at all, and Sluice's share of it.",
	"compare":  "Measures sluice run --output discard, then goflow2 (-format bin -transport file\ninto /dev/null), at the same rates.",
	"pipeline": "Measures sluice run --pipeline FILE for each --pipelines entry: a ladder and a\nbisection for the highest input rate without loss on either side (input as in\nrun; outputs: nothing dropped, queued or unsent, and a TCP receiver in the\nrunner counted every record sent to it). Pipelines that aggregate get --keys\ndistinct 5-tuples, sent once before each step to fill the table, and report\nmemory per key.",
	"split":    "Measures sluice run --output X, then the split pod (sluice collector and sluice\nmediator --output X over file rings on /dev/shm) at the same rates, for each\n--outputs entry (default discard): the split form's zero-loss rate against run's.",
	"netns":    "Measures sluice run --output X (default discard) with the generator in a network\nnamespace of its own, sending over a veth pair to the receiver in the root\nnamespace (with --rps, again with the pair's packets delivered on the receiver's\nCPU), then with the generator in the root namespace over loopback; all\npinned (--gen-cpus, default 1; --receiver-cpus, default 0). Reports the\ngenerator's own CPU and each pinned CPU's softirq time per step.",
	"report":   "Rewrites the sections of RESULTS.md and the plots from the results/*.json files.",
}

type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, " ") }
func (l *listFlag) Set(v string) error {
	*l = append(*l, strings.Fields(v)...)
	return nil
}

func parseRateFlag(s string) (float64, error) {
	mult := 1.0
	switch {
	case strings.HasSuffix(s, "k"):
		mult, s = 1e3, strings.TrimSuffix(s, "k")
	case strings.HasSuffix(s, "M"):
		mult, s = 1e6, strings.TrimSuffix(s, "M")
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v <= 0 {
		return 0, fmt.Errorf("bad rate %q (records/s, e.g. 500k or 2M)", s)
	}
	return v * mult, nil
}

func parseFlags(mode string, args []string) (config, error) {
	c := config{mode: mode}
	switch mode {
	case "run", "ceiling", "compare", "pipeline", "split", "netns", "report":
	default:
		return c, fmt.Errorf("unknown mode %q: run, ceiling, compare, pipeline, split, netns or report", mode)
	}
	fs := flag.NewFlagSet(mode, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: runner %s [flags]\n\n%s\n\nFlags:\n", mode, modeHelp[mode])
		fs.PrintDefaults()
	}
	fs.StringVar(&c.sluice, "sluice", "bin/sluice", "sluice binary (runs sluice run, and sluice gen unless --gen is given)")
	fs.StringVar(&c.gen, "gen", "", "generator binary (default: the --sluice binary)")
	fs.StringVar(&c.sink, "sink", "bin/perf-sink", "recvmmsg sink binary (ceiling)")
	fs.StringVar(&c.goflow2, "goflow2", "bin/goflow2", "goflow2 binary (compare)")
	fs.StringVar(&c.goflow2Query, "goflow2-listen-query", "", "query appended to goflow2's -listen URL, e.g. count=2 (default: goflow2's own defaults)")
	var sluiceArgs, goflow2Args, sinkArgs, genArgs, outputs, pipelines listFlag
	fs.StringVar(&c.genCPUs, "gen-cpus", "", "pin the generator to these CPUs (a taskset list, e.g. 0), so the receiver's ceiling is measured rather than the generator's share")
	fs.StringVar(&c.receiverCPUs, "receiver-cpus", "", "pin the receiver (sluice run, the split pod's two processes, the sink, goflow2) to these CPUs (e.g. 1)")
	fs.BoolVar(&c.rps, "rps", mode == "netns", "netns mode: also measure with the veth's packets delivered on the receiver's CPUs (RPS), as a NIC interrupting the receiver's core would, instead of on the generator's")
	fs.BoolVar(&c.netns, "netns", mode == "netns", "run the generator in a network namespace of its own, sending over a veth pair to the receiver in the root namespace (needs root and iproute2; pins the generator to CPU 1 and the receiver to CPU 0 unless --gen-cpus or --receiver-cpus say otherwise)")
	fs.Var(&sluiceArgs, "sluice-args", "extra sluice run arguments (space-separated; repeatable)")
	fs.Var(&goflow2Args, "goflow2-args", "extra goflow2 arguments")
	fs.Var(&sinkArgs, "sink-args", "extra sink arguments")
	fs.Var(&genArgs, "gen-args", "extra sluice gen arguments, e.g. \"--templates ipv6\"")
	fs.Var(&outputs, "outputs", "sluice outputs to measure, space-separated (run; default \"discard jsonl:/dev/null\")")
	fs.Var(&pipelines, "pipelines", "pipelines to measure, space-separated: built-in names or YAML files where RECEIVER stands for the runner's TCP receiver (pipeline; default \"select-project-tcp aggregate-1m\")")
	fs.IntVar(&c.keys, "keys", 1000000, "distinct 5-tuples the generator sends to pipelines that aggregate (sluice gen --keys; 0: the generator's default)")
	prefillRate := fs.String("prefill-rate", "1M", "records/s at which the aggregate table is filled before each step")
	defRecords, defStart, defPast := 30, "1M", 1
	switch mode {
	case "ceiling":
		defRecords, defStart, defPast = 2, "200k", 0
	case "compare":
		defStart, defPast = "100k", 3
	case "split", "netns":
		defPast = 2
	}
	fs.IntVar(&c.records, "records", defRecords, "records per message")
	fs.IntVar(&c.exporters, "exporters", 4, "exporters (sockets) the generator sends from")
	fs.DurationVar(&c.step, "step", 3*time.Second, "generator run time per step")
	fs.DurationVar(&c.genBurst, "gen-burst", time.Millisecond, "largest burst the generator sends at once, as time at the asked rate (sets its --batch per step, 1..64; 0: always 64)")
	fs.DurationVar(&c.drainTimeout, "drain-timeout", 5*time.Second, "longest wait for the receiver to drain after the generator stops")
	fs.DurationVar(&c.settle, "settle", 300*time.Millisecond, "counters still for this long after the generator stops: drained")
	fs.DurationVar(&c.maxTime, "max-time", 15*time.Minute, "stop starting new steps after this long (0: no limit)")
	start := fs.String("start", defStart, "first rate of the ladder, records/s")
	maxRate := fs.String("max", "64M", "highest ladder rate, records/s")
	fs.Float64Var(&c.factor, "factor", 2, "ladder factor between rates")
	fs.IntVar(&c.bisect, "bisect", 4, "bisection steps after the ladder")
	fs.IntVar(&c.pastLoss, "past-loss", defPast, "ladder steps to run after the first loss (shows saturation)")
	fs.Float64Var(&c.precision, "precision", 0.1, "stop bisecting when the lossy rate is within this fraction of the zero-loss one")
	fs.Float64Var(&c.lossTolerance, "loss-tolerance", 0, "loss fraction still counted as zero loss")
	fs.Float64Var(&c.genShortfall, "gen-shortfall", 0.95, "a step offering less than this fraction of its rate is generator-limited")
	fs.DurationVar(&c.profileTime, "profile-time", 5*time.Second, "length of the CPU profile (the profiled step runs that long plus 1 s, at least --step)")
	fs.BoolVar(&c.profile, "profile", mode == "run" || mode == "ceiling" || mode == "pipeline", "capture CPU and allocation profiles of sluice at its best rate")
	fs.BoolVar(&c.overload, "overload", mode != "ceiling", "finish with a step at twice the best rate (memory and loss accounting under overload)")
	fs.StringVar(&c.resultsDir, "results", "perf/results", "directory for MODE.json, MODE.gp and profiles/ (receiver logs go to a temporary directory, named at the start)")
	fs.StringVar(&c.resultsMD, "results-md", "perf/RESULTS.md", "Markdown file whose MODE section is rewritten")
	fs.StringVar(&c.plotDir, "plot-dir", "perf", "directory for the PNG plots")
	fs.StringVar(&c.command, "command", "", "the command to show in RESULTS.md (default: this runner's command line)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var err error
	if c.start, err = parseRateFlag(*start); err != nil {
		return c, err
	}
	if c.max, err = parseRateFlag(*maxRate); err != nil {
		return c, err
	}
	if c.prefillRate, err = parseRateFlag(*prefillRate); err != nil {
		return c, err
	}
	if mode == "pipeline" {
		if len(pipelines) == 0 {
			for _, b := range builtinPipelines {
				pipelines = append(pipelines, b.Name)
			}
		}
		for _, name := range pipelines {
			ps, err := lookupPipeline(name)
			if err != nil {
				return c, err
			}
			c.pipelines = append(c.pipelines, ps)
		}
	}
	c.sluiceArgs, c.goflow2Args, c.sinkArgs, c.genArgs = sluiceArgs, goflow2Args, sinkArgs, genArgs
	c.outputs = outputs
	if len(c.outputs) == 0 {
		c.outputs = []string{"discard", "jsonl:/dev/null"}
		if mode == "split" || mode == "netns" {
			c.outputs = []string{"discard"}
		}
	}
	if c.gen == "" {
		c.gen = c.sluice
	}
	if mode == "netns" && !c.netns {
		return c, fmt.Errorf("the netns mode needs --netns")
	}
	if c.netns {
		if c.genCPUs == "" {
			c.genCPUs = "1"
		}
		if c.receiverCPUs == "" {
			c.receiverCPUs = "0"
		}
	}
	for _, l := range []string{c.genCPUs, c.receiverCPUs} {
		if _, err := parseCPUList(l); err != nil {
			return c, err
		}
	}
	if c.command == "" {
		c.command = strings.Join(os.Args, " ")
	}
	switch {
	case c.records < 1 || c.exporters < 1:
		return c, fmt.Errorf("--records and --exporters must be at least 1")
	case c.factor <= 1:
		return c, fmt.Errorf("--factor must be above 1")
	case c.step < 500*time.Millisecond:
		return c, fmt.Errorf("--step must be at least 500ms")
	case c.keys < 0:
		return c, fmt.Errorf("--keys must be at least 0")
	}
	return c, nil
}

func run(cfg config) error {
	r := &runner{cfg: cfg, started: time.Now()}
	if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		r.tty = true
	}
	if cfg.mode == "report" {
		return r.reportAll()
	}
	for _, b := range r.binaries() {
		if _, err := exec.LookPath(b); err != nil {
			return fmt.Errorf("%s not found (the perf/*.sh scripts build it)", b)
		}
	}
	if out, _ := exec.Command(cfg.sluice, "run", "-h").CombinedOutput(); strings.Contains(string(out), "-pprof") {
		r.nativePprof = true
	}
	if err := os.MkdirAll(filepath.Join(cfg.resultsDir, "profiles"), 0o755); err != nil {
		return err
	}
	var err error
	if r.logDir, err = os.MkdirTemp("", "sluice-perf-"+cfg.mode+"-"); err != nil {
		return err
	}
	r.genCPUs, _ = parseCPUList(cfg.genCPUs)
	r.recCPUs, _ = parseCPUList(cfg.receiverCPUs)
	r.handleSignals()
	if cfg.netns {
		if r.ns, err = newVethNS(); err != nil {
			return err
		}
		defer r.closeNS()
		r.logf("generator namespace %s: veth %s (%s, receiver) <-> %s (%s, generator)", r.ns.Name, r.ns.HostDev, r.ns.HostAddr, r.ns.NSDev, r.ns.NSAddr)
	}

	res := &Result{Mode: cfg.mode, Date: time.Now().UTC().Format("2006-01-02 15:04 UTC"), Command: cfg.command,
		Machine: readMachineInfo(map[bool]string{true: cfg.goflow2}[cfg.mode == "compare"]), LoadAvgStart: loadAverage(),
		Config: map[string]any{"records_per_message": cfg.records, "exporters": cfg.exporters,
			"step_seconds": cfg.step.Seconds(), "start_rps": cfg.start, "factor": cfg.factor, "bisect": cfg.bisect,
			"sluice_args": strings.Join(cfg.sluiceArgs, " "), "gen_args": strings.Join(cfg.genArgs, " "),
			"goflow2_listen_query": cfg.goflow2Query, "gen_burst": cfg.genBurst.String(), "loss_tolerance": cfg.lossTolerance,
			"gen_cpus": cfg.genCPUs, "receiver_cpus": cfg.receiverCPUs, "netns": cfg.netns, "irq_time_accounting": irqTimeAccounting()}}
	if cfg.mode == "pipeline" {
		res.Config["keys"] = cfg.keys
		res.Config["prefill_rps"] = cfg.prefillRate
		files := map[string]string{}
		for _, ps := range cfg.pipelines {
			files[ps.Name] = ps.Text
		}
		res.Config["pipelines"] = files
	}
	r.logf("perf %s: %s, %d CPUs, kernel %s, %s; load average %.2f; receiver logs in %s (removed if all goes well)",
		cfg.mode, res.Machine.CPUModel, res.Machine.CPUs, res.Machine.Kernel, res.Machine.GoVersion, res.LoadAvgStart, r.logDir)
	if res.LoadAvgStart > 0.5 {
		r.logf("note: the machine is not idle (load average %.2f): other work will disturb the numbers", res.LoadAvgStart)
	}

	sc := searchCfg{start: cfg.start, factor: cfg.factor, max: cfg.max, pastLoss: cfg.pastLoss,
		bisect: cfg.bisect, precision: cfg.precision, overload: cfg.overload}
	switch cfg.mode {
	case "run":
		for i, o := range cfg.outputs {
			c := sc
			c.profile = cfg.profile
			c.profileName = "run-" + sanitize(o)
			_ = i
			res.Series = append(res.Series, r.search(Target{Kind: kindSluice, Output: o}, c))
		}
	case "ceiling":
		c := sc
		c.maxStep = true
		res.Series = append(res.Series, r.search(Target{Kind: kindSink, Output: "recvmmsg"}, c))
		c.profile, c.profileName = cfg.profile, "ceiling-sluice"
		res.Series = append(res.Series, r.search(Target{Kind: kindSluice, Output: "discard"}, c))
	case "split":
		for _, o := range cfg.outputs {
			res.Series = append(res.Series, r.search(Target{Kind: kindSluice, Output: o}, sc))
			res.Series = append(res.Series, r.search(Target{Kind: kindSplit, Output: o}, sc))
		}
	case "netns":
		for _, o := range cfg.outputs {
			res.Series = append(res.Series, r.search(Target{Kind: kindSluice, Output: o, Veth: true}, sc))
			if cfg.rps {
				res.Series = append(res.Series, r.search(Target{Kind: kindSluice, Output: o, Veth: true, RPS: true}, sc))
			}
			res.Series = append(res.Series, r.search(Target{Kind: kindSluice, Output: o, Loopback: true}, sc))
		}
	case "compare":
		res.Series = append(res.Series, r.search(Target{Kind: kindSluice, Output: "discard"}, sc))
		res.Series = append(res.Series, r.search(Target{Kind: kindGoflow2, Output: "-format bin -transport file → /dev/null"}, sc))
	case "pipeline":
		for _, ps := range cfg.pipelines {
			c := sc
			c.profile = cfg.profile
			c.profileName = "pipeline-" + sanitize(ps.Name)
			se := r.search(Target{Kind: kindSluice, Output: ps.Name, Pipeline: ps}, c)
			se.TargetRPS = ps.TargetRPS
			res.Series = append(res.Series, se)
		}
	}
	res.Seconds = time.Since(r.started).Seconds()
	var n int
	for _, se := range res.Series {
		for _, s := range se.Steps {
			if s.Error == "" {
				res.OtherCoresAvg += s.OtherCores
				n++
			}
		}
	}
	if n > 0 {
		res.OtherCoresAvg /= float64(n)
	}
	path := filepath.Join(cfg.resultsDir, cfg.mode+".json")
	b, _ := json.MarshalIndent(res, "", "  ")
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return err
	}
	r.logf("results: %s", path)
	failed := false
	for _, se := range res.Series {
		for _, s := range se.Steps {
			failed = failed || s.Error != ""
		}
	}
	if failed {
		r.logf("some steps failed: the receivers' logs are in %s", r.logDir)
	} else {
		_ = os.RemoveAll(r.logDir)
	}
	for _, l := range summaryLines(res) {
		r.logf("%s", l)
	}
	return r.reportAll()
}

func (r *runner) binaries() []string {
	bins := []string{r.cfg.sluice, r.cfg.gen}
	switch r.cfg.mode {
	case "ceiling":
		bins = append(bins, r.cfg.sink)
	case "compare":
		bins = append(bins, r.cfg.goflow2)
	}
	return bins
}

func (r *runner) setCurrent(p *proc) {
	r.mu.Lock()
	r.current = p
	r.mu.Unlock()
}

// handleSignals stops the receiver of the current step before exiting on
// SIGINT or SIGTERM (children also get SIGKILL through Pdeathsig).
func (r *runner) handleSignals() {
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		sig := <-ch
		r.mu.Lock()
		p := r.current
		r.mu.Unlock()
		if p != nil && p.cmd.Process != nil {
			_ = p.cmd.Process.Kill()
		}
		r.closeNS()
		fmt.Fprintf(os.Stderr, "\nrunner: %s: stopped\n", sig)
		os.Exit(130)
	}()
}

// veth reports whether the generator sends to t over the veth pair: the
// targets the netns mode says so of, every target with --netns in the
// other modes.
func (r *runner) veth(t Target) bool {
	return r.ns != nil && (t.Veth || r.cfg.mode != "netns")
}

// closeNS removes the generator's namespace and veth pair, once.
func (r *runner) closeNS() {
	r.mu.Lock()
	ns := r.ns
	r.ns = nil
	r.mu.Unlock()
	if err := ns.Close(); err != nil {
		r.logf("%v", err)
	}
}

func (r *runner) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}

func sanitize(s string) string {
	return strings.Map(func(c rune) rune {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' {
			return c
		}
		return '-'
	}, s)
}

// pinned returns the command that runs bin with args on cpus (through
// taskset, which sets the affinity before exec, so every thread inherits
// it and the process keeps its PID), or bin and args unchanged.
func pinned(cpus, bin string, args []string) (string, []string) {
	if cpus == "" {
		return bin, args
	}
	return "taskset", append([]string{"-c", cpus, bin}, args...)
}
