//go:build linux

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Target kinds.
const (
	kindSluice  = "sluice"
	kindGoflow2 = "goflow2"
	kindSink    = "sink"
	// kindSplit is the split pod: sluice collector and sluice mediator
	// over file rings; the mediator is the proc's peer.
	kindSplit = "split"
)

// Target is one receiver a series of steps is run against.
type Target struct {
	Kind   string `json:"kind"`
	Output string `json:"output"` // sluice output spec; a description for the others
	// Pipeline, if set, runs sluice with this pipeline file instead of
	// --output (Output then names the pipeline).
	Pipeline *pipelineSpec `json:"-"`
	// Veth: the generator sends from its network namespace over the veth
	// pair (netns mode; with --netns every target does).
	Veth bool `json:"veth,omitempty"`
	// RPS: the veth's packets are delivered on the receiver's CPUs (RPS)
	// instead of the generator's.
	RPS bool `json:"rps,omitempty"`
	// Loopback names the path in String (the netns mode's loopback
	// series); it changes nothing else.
	Loopback bool `json:"-"`
}

func (t Target) String() string {
	if t.Veth {
		rps := t.RPS
		t.Veth, t.RPS = false, false
		if rps {
			return t.String() + " over veth, RPS"
		}
		return t.String() + " over veth"
	}
	if t.Loopback {
		t.Loopback = false
		return t.String() + " over loopback"
	}
	switch t.Kind {
	case kindSluice:
		if t.Pipeline != nil {
			return "sluice pipeline " + t.Pipeline.Name
		}
		return "sluice " + t.Output
	case kindGoflow2:
		return "goflow2 " + t.Output
	case kindSplit:
		return "split pod " + t.Output
	}
	return t.Kind
}

// counts are the receiver's counters at one moment.
type counts struct {
	Decoded   float64 // data records decoded (sink: datagrams; see Step)
	Packets   float64 // datagrams the application read
	SeqLost   float64 // records (IPFIX) missing per sequence numbers
	DropRecs  float64 // records the application dropped after decoding
	DropUnits float64 // sets or datagrams the application dropped (sluice: sets; goflow2: packets)
	Malformed float64
	// BeforeTpl: data messages dropped because their template was not
	// known yet (goflow2; Sluice holds such data instead).
	BeforeTpl float64
	RingBytes float64    // sluice: configured ring capacity, all loops
	Pipe      pipeCounts // sluice with a pipeline file
}

// proc is a started receiver.
type proc struct {
	t        Target
	cmd      *exec.Cmd
	done     chan struct{}
	udpPort  int
	flowHost string // the address the receiver takes flows on
	httpBase string
	metrics  string
	ready    string
	pprof    string // base URL of net/http/pprof, or ""
	logPath  string
	logFile  *os.File
	recv     *tcpReceiver // pipeline mode: where ipfix+tcp outputs send
	peer     *proc        // split: the mediator (this proc is the collector)
	ringDir  string       // split: removed at stop
}

func (r *runner) startTarget(t Target, profile bool) (*proc, error) {
	udp, err := freePort("udp")
	if err != nil {
		return nil, err
	}
	adm, err := freePort("tcp")
	if err != nil {
		return nil, err
	}
	// A port free on loopback is free on the veth address too (a wildcard
	// socket would hold both).
	host := "127.0.0.1"
	if r.veth(t) {
		host = r.ns.HostAddr.String()
		var rps []int
		if t.RPS {
			if rps = r.recCPUs; len(rps) == 0 {
				return nil, fmt.Errorf("%s: RPS needs --receiver-cpus", t)
			}
		}
		if err := r.ns.setRPS(rps); err != nil {
			return nil, err
		}
	}
	p := &proc{t: t, udpPort: udp, flowHost: host, httpBase: fmt.Sprintf("http://127.0.0.1:%d", adm)}
	var args []string
	var bin string
	env := os.Environ()
	switch t.Kind {
	case kindSluice:
		bin = r.cfg.sluice
		args = []string{"run", "--listen", fmt.Sprintf("udp://%s:%d", host, udp),
			"--admin", fmt.Sprintf("127.0.0.1:%d", adm), "--log-level", "warn"}
		if t.Pipeline != nil {
			path, err := r.writePipeline(p)
			if err != nil {
				return nil, err
			}
			args = append(args, "--pipeline", path)
		} else {
			args = append(args, "--output", t.Output)
		}
		args = append(args, r.cfg.sluiceArgs...)
		p.metrics, p.ready = "/metrics", "/readyz"
		if profile {
			pp, err := freePort("tcp")
			if err != nil {
				return nil, err
			}
			addr := fmt.Sprintf("127.0.0.1:%d", pp)
			if r.nativePprof {
				args = append(args, "--pprof", addr)
			} else {
				addr = ""
			}
			if addr != "" {
				p.pprof = "http://" + addr + "/debug/pprof"
			}
		}
	case kindGoflow2:
		bin = r.cfg.goflow2
		listen := fmt.Sprintf("netflow://%s:%d", host, udp)
		if r.cfg.goflow2Query != "" {
			listen += "?" + r.cfg.goflow2Query
		}
		args = []string{"-listen", listen, "-addr", fmt.Sprintf("127.0.0.1:%d", adm),
			"-format", "bin", "-transport", "file", "-transport.file", os.DevNull, "-loglevel", "warn"}
		args = append(args, r.cfg.goflow2Args...)
		p.metrics, p.ready = "/metrics", "/__health"
	case kindSplit:
		bin = r.cfg.sluice
		if p.ringDir, err = os.MkdirTemp(shmOr(), "sluice-perf-rings-"); err != nil {
			return nil, err
		}
		args = []string{"collector", "--ring-dir", p.ringDir, "--listen", fmt.Sprintf("udp://%s:%d", host, udp),
			"--admin", fmt.Sprintf("127.0.0.1:%d", adm), "--log-level", "warn"}
		args = append(args, r.cfg.sluiceArgs...)
		p.metrics, p.ready = "/metrics", "/readyz"
		medAdm, err := freePort("tcp")
		if err != nil {
			return nil, err
		}
		peer, err := r.startPeer(Target{Kind: "mediator", Output: t.Output}, r.cfg.sluice, []string{"mediator",
			"--ring-dir", p.ringDir, "--output", t.Output, "--admin", fmt.Sprintf("127.0.0.1:%d", medAdm), "--log-level", "warn"},
			fmt.Sprintf("http://127.0.0.1:%d", medAdm))
		if err != nil {
			return nil, err
		}
		p.peer = peer
	case kindSink:
		bin = r.cfg.sink
		args = []string{"--addr", fmt.Sprintf("%s:%d", host, udp), "--http", fmt.Sprintf("127.0.0.1:%d", adm)}
		args = append(args, r.cfg.sinkArgs...)
		p.metrics, p.ready = "/metrics", "/readyz"
	default:
		return nil, fmt.Errorf("unknown target %q", t.Kind)
	}
	r.logSeq++
	p.logPath = filepath.Join(r.logDir, fmt.Sprintf("%03d-%s.log", r.logSeq, t.Kind))
	p.logFile, err = os.Create(p.logPath)
	if err != nil {
		return nil, err
	}
	bin, args = pinned(r.cfg.receiverCPUs, bin, args)
	fmt.Fprintf(p.logFile, "# %s %s\n", bin, strings.Join(args, " "))
	devnull, _ := os.Open(os.DevNull)
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = env
	p.cmd.Stdin = devnull
	p.cmd.Stdout = p.logFile
	p.cmd.Stderr = p.logFile
	// The receiver dies with the runner, whatever ends it.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if t.Kind == kindSluice && t.Output == "jsonl:-" {
		p.cmd.Stdout = devnull
	}
	if err := p.cmd.Start(); err != nil {
		p.logFile.Close()
		p.closeReceiver()
		p.peer.stop()
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	r.setCurrent(p)
	p.done = make(chan struct{})
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	wait := r.cfg.readyTimeout
	if wait == 0 {
		wait = 15 * time.Second
	}
	deadline := time.Now().Add(wait)
	for {
		select {
		case <-p.done:
			p.closeReceiver()
			return nil, fmt.Errorf("%s exited at start (%s); log %s:\n%s", t, p.cmd.ProcessState, p.logPath, tail(p.logPath, 10))
		default:
		}
		if _, code, err := httpGet(p.httpBase + p.ready); err == nil && code == 200 {
			if p.peer == nil {
				break
			}
			// The mediator is ready once it has attached to the rings.
			if _, code, err := httpGet(p.peer.httpBase + p.ready); err == nil && code == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("%s not ready after %s; log %s:\n%s", t, wait, p.logPath, tail(p.logPath, 10))
		}
		time.Sleep(20 * time.Millisecond)
	}
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// stop sends SIGTERM and waits up to 10 s, then kills; then it closes the
// receiver, which the outputs may use until sluice has exited.
func (p *proc) stop() {
	if p == nil || p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	p.logFile.Close()
	p.closeReceiver()
	p.peer.stop() // after the collector: the mediator drains what it left
	if p.ringDir != "" {
		os.RemoveAll(p.ringDir)
	}
}

func (p *proc) closeReceiver() {
	if p.recv != nil {
		p.recv.Close()
		p.recv = nil
	}
}

// writePipeline starts the step's TCP receiver if the pipeline file names
// it, and writes the file with its address into the log directory.
func (r *runner) writePipeline(p *proc) (string, error) {
	ps := p.t.Pipeline
	addr := ""
	if ps.receiver {
		recv, err := startReceiver()
		if err != nil {
			return "", fmt.Errorf("receiver: %w", err)
		}
		p.recv, addr = recv, recv.Addr()
	}
	path := filepath.Join(r.logDir, fmt.Sprintf("%03d-%s.yaml", r.logSeq+1, sanitize(ps.Name)))
	if err := os.WriteFile(path, []byte(ps.file(addr)), 0o644); err != nil {
		p.closeReceiver()
		return "", err
	}
	return path, nil
}

// scrape reads the receiver's counters (a split pod's: both processes').
func (p *proc) scrape() (counts, error) {
	b, code, err := httpGet(p.httpBase + p.metrics)
	if err != nil {
		return counts{}, err
	}
	if code != 200 {
		return counts{}, fmt.Errorf("GET %s: status %d", p.metrics, code)
	}
	if p.peer != nil {
		pb, code, err := httpGet(p.peer.httpBase + p.metrics)
		if err != nil {
			return counts{}, err
		}
		if code != 200 {
			return counts{}, fmt.Errorf("GET mediator %s: status %d", p.metrics, code)
		}
		b = append(append(b, '\n'), pb...)
	}
	m := parseMetrics(string(b))
	var c counts
	switch p.t.Kind {
	case kindSluice, kindSplit:
		c.Decoded = m.sum("sluice_records_total")
		c.Packets = m.sum("sluice_packets_total", "transport", "udp")
		c.SeqLost = m.sum("sluice_sequence_lost_total")
		c.DropRecs = m.sum("sluice_dropped_records_total")
		c.DropUnits = m.sum("sluice_dropped_sets_total")
		c.Malformed = m.sum("sluice_malformed_total")
		c.RingBytes = m.sum("sluice_ring_capacity_bytes")
		if ps := p.t.Pipeline; ps != nil {
			addr := ""
			if p.recv != nil {
				addr = p.recv.Addr()
			}
			c.Pipe = scrapePipeline(m, ps, addr)
			if p.recv != nil {
				c.Pipe.Recv = p.recv.counts()
			}
		}
	case kindGoflow2:
		// goflow2 counts the records of each data set it produced flow
		// messages for (metrics/producer.go, PromProducerWrapper).
		c.Decoded = m.sum("goflow2_flow_process_nf_flowset_records_total", "type", "DataFlowSet")
		c.Packets = m.sum("goflow2_flow_traffic_packets_total")
		c.DropUnits = m.sum("goflow2_flow_dropped_packets_total")
		c.Malformed = m.sum("goflow2_flow_decoder_error_total")
		c.BeforeTpl = m.sum("goflow2_flow_process_nf_errors_total", "error", "template_not_found")
	case kindSink:
		c.Packets = m.sum("sink_datagrams_total")
		c.Decoded = c.Packets
	}
	return c, nil
}

func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

func fmtRate(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', 2, 64) + "M"
	case v >= 1e3:
		return strconv.FormatFloat(v/1e3, 'f', 0, 64) + "k"
	}
	return strconv.FormatFloat(v, 'f', 0, 64)
}

// startPeer starts a second process of a target (the split pod's
// mediator) with its log next to the others'.
func (r *runner) startPeer(t Target, bin string, args []string, base string) (*proc, error) {
	p := &proc{t: t, httpBase: base, metrics: "/metrics", ready: "/readyz"}
	r.logSeq++
	p.logPath = filepath.Join(r.logDir, fmt.Sprintf("%03d-%s.log", r.logSeq, t.Kind))
	var err error
	if p.logFile, err = os.Create(p.logPath); err != nil {
		return nil, err
	}
	bin, args = pinned(r.cfg.receiverCPUs, bin, args)
	fmt.Fprintf(p.logFile, "# %s %s\n", bin, strings.Join(args, " "))
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.logFile, p.logFile
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		p.logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	p.done = make(chan struct{})
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// shmOr returns /dev/shm when there is one (the split pod's rings are on a
// tmpfs), else the temporary directory.
func shmOr() string {
	if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
		return "/dev/shm"
	}
	return os.TempDir()
}
