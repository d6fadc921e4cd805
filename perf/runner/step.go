//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// genSummary is the JSON line `sluice gen` prints at the end.
type genSummary struct {
	Messages         uint64  `json:"messages"`
	Records          uint64  `json:"records"`
	Bytes            uint64  `json:"bytes"`
	TemplateMessages uint64  `json:"template_messages"`
	Seconds          float64 `json:"seconds"`
	SendErrors       uint64  `json:"send_errors"`
	GSO              bool    `json:"gso"`
}

// Step is one measurement: a fresh receiver, one generator run at one rate.
type Step struct {
	Target    string  `json:"target"`
	Kind      string  `json:"kind"`
	Phase     string  `json:"phase"`      // ladder, bisect, max, profile, overload
	TargetRPS float64 `json:"target_rps"` // 0: as fast as the generator can
	Records   int     `json:"records_per_message"`
	Exporters int     `json:"exporters"`

	GenMessages   uint64  `json:"gen_messages"`
	GenRecords    uint64  `json:"gen_records"`
	GenTemplates  uint64  `json:"gen_template_messages"`
	GenSeconds    float64 `json:"gen_seconds"`
	GenSendErrors uint64  `json:"gen_send_errors"`
	GenCPU        float64 `json:"gen_cpu_seconds"`
	GenGSO        bool    `json:"gen_gso"`
	// GenCores is GenCPU over the generator process's wall time: near 1,
	// a generator on one CPU had no time to spare.
	GenCores float64 `json:"gen_cores"`
	// Path is how the datagrams travel: "loopback", or "veth" from the
	// generator's network namespace (delivered by the generator's CPU, or
	// with RPS by the receiver's).
	Path string `json:"path"`
	// RPS: the receiver's CPU delivered the packets (veth with RPS).
	RPS bool `json:"rps,omitempty"`

	OfferedRPS     float64 `json:"offered_rps"`
	OfferedPPS     float64 `json:"offered_pps"`
	DecodedRecords float64 `json:"decoded_records"`
	DecodedRPS     float64 `json:"decoded_rps"` // counted while the generator ran
	// DecodedRPSWithDrain counts everything decoded, over the generator's
	// run time plus the drain time.
	DecodedRPSWithDrain float64 `json:"decoded_rps_with_drain"`
	ReceivedPackets     float64 `json:"received_packets"`
	ReceivedPPS         float64 `json:"received_pps"`

	LostRecords float64 `json:"lost_records"` // generator's count minus decoded
	// BeforeTemplate: records in data messages the receiver dropped because
	// they came before their template (goflow2 at an exporter's start, when
	// its workers race; Sluice holds such data). Not counted as loss.
	BeforeTemplate float64 `json:"before_template_records"`
	SeqLost        float64 `json:"seq_lost"`        // per sequence numbers; -1: not reported
	SocketDrops    float64 `json:"socket_drops"`    // datagrams the kernel dropped
	DropRecs       float64 `json:"dropped_records"` // sluice: after decoding (ring full ...)
	DropUnits      float64 `json:"dropped_units"`   // sluice: sets; goflow2: packets
	Malformed      float64 `json:"malformed"`
	LossFraction   float64 `json:"loss_fraction"`

	// CPUSeconds is the receiver's; a split pod's adds the mediator's
	// (MediatorCPUSeconds), so the figure per million records compares
	// with sluice run's.
	CPUSeconds         float64 `json:"cpu_seconds"`
	MediatorCPUSeconds float64 `json:"mediator_cpu_seconds,omitempty"`
	CPUPerMillion      float64 `json:"cpu_seconds_per_million"`
	// SystemCPUSeconds is the kernel's share of CPUSeconds (the receiver
	// process's stime: receive system calls and their copies).
	SystemCPUSeconds float64 `json:"system_cpu_seconds"`
	// With pinned CPUs (--receiver-cpus, --gen-cpus), /proc/stat of those
	// CPUs over the step: all non-idle time, and softirq+irq time (packet
	// delivery: for loopback and veth the sending CPU delivers into the
	// receiver's socket, unless RPS moves it), in cores.
	RecvCPUBusy    float64 `json:"receiver_cpus_busy_cores,omitempty"`
	RecvCPUSoftirq float64 `json:"receiver_cpus_softirq_cores,omitempty"`
	GenCPUBusy     float64 `json:"gen_cpus_busy_cores,omitempty"`
	GenCPUSoftirq  float64 `json:"gen_cpus_softirq_cores,omitempty"`
	// SoftirqPerMillion: softirq+irq seconds of the receiver's and the
	// generator's CPUs per million decoded records.
	RecvSoftirqPerMillion float64 `json:"receiver_cpus_softirq_seconds_per_million,omitempty"`
	GenSoftirqPerMillion  float64 `json:"gen_cpus_softirq_seconds_per_million,omitempty"`
	// BacklogDrops: datagrams dropped because a CPU's input backlog
	// (net.core.netdev_max_backlog) was full, machine-wide
	// (/proc/net/softnet_stat); loopback and veth both queue there.
	BacklogDrops float64 `json:"backlog_drops"`

	PeakRSS      float64 `json:"peak_rss_bytes"`
	RingBytes    float64 `json:"ring_capacity_bytes,omitempty"`
	DrainSeconds float64 `json:"drain_seconds"`
	Drained      bool    `json:"drained"`

	OtherCores   float64 `json:"other_cores"`   // CPU other processes used during the step
	SoftirqCores float64 `json:"softirq_cores"` // machine-wide softirq time (loopback delivery)
	StealCores   float64 `json:"steal_cores"`
	LoadAvg      float64 `json:"load_average"`

	ZeroLoss   bool `json:"zero_loss"`
	GenLimited bool `json:"generator_limited"`

	// Pipe: the output side of a pipeline step (pipeline mode).
	Pipe *PipeStep `json:"pipeline,omitempty"`

	Profiles map[string]string `json:"profiles,omitempty"`
	Error    string            `json:"error,omitempty"`
}

type stepOpts struct {
	phase   string
	profile string // non-empty: capture profiles, file name prefix
}

// runStep starts a fresh receiver, warms it up, runs the generator at rate
// records/s, waits for the receiver to drain and reads what it counted.
func (r *runner) runStep(t Target, rate float64, o stepOpts) (*Step, error) {
	s := &Step{Target: t.String(), Kind: t.Kind, Phase: o.phase, TargetRPS: rate,
		Records: r.cfg.records, Exporters: r.cfg.exporters, SeqLost: -1, LoadAvg: loadAverage()}
	p, err := r.startTarget(t, o.profile != "")
	if err != nil {
		return nil, err
	}
	defer func() {
		p.stop()
		r.setCurrent(nil)
	}()
	if err := r.warmUp(p); err != nil {
		return nil, err
	}
	if t.Pipeline != nil {
		s.Pipe = &PipeStep{Pipeline: t.Pipeline.Name, Receiver: p.recv != nil, Aggregate: t.Pipeline.aggregate}
		if t.Pipeline.aggregate {
			s.Pipe.RSSBase, _ = procStatusBytes(p.pid(), "VmRSS")
			if r.cfg.keys > 0 {
				if err := r.prefill(p, s.Pipe); err != nil {
					return nil, err
				}
			}
		}
	}
	base, err := p.scrape()
	if err != nil {
		return nil, err
	}
	baseUser, baseSys, _ := procCPUSplit(p.pid())
	var basePeer float64
	if p.peer != nil {
		basePeer, _ = procCPU(p.peer.pid())
	}
	baseDrops, baseBacklog := udpSocketDrops(p.udpPort), backlogDrops()
	baseRecvCPUs, baseGenCPUs := readCPUSet(r.recCPUs), readCPUSet(r.genCPUs)
	baseMachine, baseSelf := readCPUTimes(), selfCPU()
	startWall := time.Now()

	profDone := make(chan map[string]string, 1)
	dur := r.cfg.step
	if o.profile != "" {
		dur = max(dur, r.cfg.profileTime+time.Second)
	}
	if o.profile != "" && p.pprof != "" {
		secs := max(1, int(dur.Seconds()-1))
		go func() {
			time.Sleep(300 * time.Millisecond)
			out := map[string]string{}
			path := filepath.Join(r.cfg.resultsDir, "profiles", o.profile+"-cpu.pprof")
			if err := fetchTo(p.pprof+"/profile?seconds="+strconv.Itoa(secs), path); err != nil {
				r.logf("    cpu profile: %v", err)
			} else {
				out["cpu"] = path
			}
			profDone <- out
		}()
	} else {
		close(profDone)
	}

	genStart := time.Now()
	gen, genCPU, err := r.runGen(p, rate, dur, 0, false, r.keysArgs(t), r.progress(p))
	if err != nil {
		return nil, err
	}
	genEnd := time.Now()
	atEnd, err := p.scrape()
	if err != nil {
		return nil, fmt.Errorf("%s: reading metrics: %w", t, err)
	}
	sendWindow := genEnd.Sub(genStart).Seconds()
	s.GenMessages, s.GenRecords, s.GenTemplates = gen.Messages, gen.Records, gen.TemplateMessages
	s.GenSeconds, s.GenSendErrors, s.GenCPU, s.GenGSO = gen.Seconds, gen.SendErrors, genCPU, gen.GSO
	if w := genEnd.Sub(genStart).Seconds(); w > 0 {
		s.GenCores = genCPU / w
	}
	s.Path = "loopback"
	if r.veth(t) {
		s.Path = "veth"
		if t.RPS {
			s.Path, s.RPS = "veth, RPS to the receiver's CPU", true
		}
	}

	// Drain: wait until everything sent is counted, or the counters stop
	// moving for the settle time, or the drain timeout.
	expect := func(c counts) bool {
		if t.Kind == kindSink {
			return c.Packets-base.Packets >= float64(gen.Messages+gen.TemplateMessages)
		}
		if t.Pipeline != nil && !c.Pipe.outputsSettled(p.recv != nil) {
			return false
		}
		return c.Decoded-base.Decoded+(c.BeforeTpl-base.BeforeTpl)*float64(r.cfg.records) >= float64(gen.Records)
	}
	last := atEnd
	lastChange := genEnd
	deadline := genEnd.Add(r.cfg.drainTimeout)
	for {
		c, err := p.scrape()
		now := time.Now()
		if err != nil {
			return nil, fmt.Errorf("%s: reading metrics: %w", t, err)
		}
		if c.Decoded != last.Decoded || c.Packets != last.Packets || c.BeforeTpl != last.BeforeTpl || c.Pipe.moved(last.Pipe) {
			lastChange = now
		}
		last = c
		if expect(c) {
			s.Drained = true
			break
		}
		if now.Sub(lastChange) >= r.cfg.settle {
			s.Drained = true
			break
		}
		if now.After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.DrainSeconds = math.Max(0, lastChange.Sub(genEnd).Seconds())
	if s.Drained && expect(last) {
		s.DrainSeconds = math.Max(0, time.Since(genEnd).Seconds())
	}
	endUser, endSys, _ := procCPUSplit(p.pid())
	if p.peer != nil {
		endPeer, _ := procCPU(p.peer.pid())
		s.MediatorCPUSeconds = endPeer - basePeer
	}
	s.PeakRSS, _ = procStatusBytes(p.pid(), "VmHWM")
	if s.Pipe != nil && s.Pipe.Aggregate {
		s.Pipe.RSSEnd, _ = procStatusBytes(p.pid(), "VmRSS")
	}
	s.SocketDrops = udpSocketDrops(p.udpPort) - baseDrops
	s.BacklogDrops = backlogDrops() - baseBacklog
	endRecvCPUs, endGenCPUs := readCPUSet(r.recCPUs), readCPUSet(r.genCPUs)
	endMachine, endSelf := readCPUTimes(), selfCPU()
	wall := time.Since(startWall).Seconds()

	if o.profile != "" && p.pprof != "" {
		prof := <-profDone
		for _, kind := range []string{"allocs", "heap"} {
			path := filepath.Join(r.cfg.resultsDir, "profiles", o.profile+"-"+kind+".pprof")
			if err := fetchTo(p.pprof+"/"+kind, path); err == nil {
				prof[kind] = path
			}
		}
		s.Profiles = r.renderProfiles(prof)
	}

	d := last
	s.ReceivedPackets = d.Packets - base.Packets
	if t.Kind == kindSink {
		dataPackets := math.Max(0, s.ReceivedPackets-float64(gen.TemplateMessages))
		s.DecodedRecords = dataPackets * float64(r.cfg.records)
	} else {
		s.DecodedRecords = d.Decoded - base.Decoded
	}
	if t.Kind == kindSluice || t.Kind == kindSplit {
		s.SeqLost = d.SeqLost - base.SeqLost
		s.RingBytes = d.RingBytes
	}
	s.DropRecs = d.DropRecs - base.DropRecs
	s.DropUnits = d.DropUnits - base.DropUnits
	s.Malformed = d.Malformed - base.Malformed
	s.LostRecords = float64(gen.Records) - s.DecodedRecords
	s.BeforeTemplate = (d.BeforeTpl - base.BeforeTpl) * float64(r.cfg.records)
	if gen.Seconds > 0 {
		s.OfferedRPS = float64(gen.Records) / gen.Seconds
		s.OfferedPPS = float64(gen.Messages) / gen.Seconds
	}
	// Rates while the generator ran: what was counted by its end, over the
	// wall time of its process (a little longer than its own run time).
	// Pipeline steps take the generator's own send time: preparing a
	// million distinct records takes it a tenth of a second at the start.
	if t.Pipeline != nil && gen.Seconds > 0 {
		sendWindow = min(sendWindow, gen.Seconds)
	}
	if sendWindow > 0 {
		decodedAtEnd := atEnd.Decoded - base.Decoded
		s.ReceivedPPS = (atEnd.Packets - base.Packets) / sendWindow
		if t.Kind == kindSink {
			decodedAtEnd = math.Max(0, atEnd.Packets-base.Packets-float64(gen.TemplateMessages)) * float64(r.cfg.records)
		}
		s.DecodedRPS = decodedAtEnd / sendWindow
		s.DecodedRPSWithDrain = s.DecodedRecords / (sendWindow + s.DrainSeconds)
	}
	s.SystemCPUSeconds = endSys - baseSys
	s.CPUSeconds = endUser - baseUser + s.SystemCPUSeconds + s.MediatorCPUSeconds
	recvSoftirq := endRecvCPUs.softirq - baseRecvCPUs.softirq
	genSoftirq := endGenCPUs.softirq - baseGenCPUs.softirq
	if s.DecodedRecords > 0 {
		s.CPUPerMillion = s.CPUSeconds / (s.DecodedRecords / 1e6)
		if len(r.recCPUs) > 0 {
			s.RecvSoftirqPerMillion = recvSoftirq / (s.DecodedRecords / 1e6)
		}
		if len(r.genCPUs) > 0 {
			s.GenSoftirqPerMillion = genSoftirq / (s.DecodedRecords / 1e6)
		}
	}
	if wall > 0 {
		s.RecvCPUBusy = (endRecvCPUs.busy - baseRecvCPUs.busy) / wall
		s.RecvCPUSoftirq = recvSoftirq / wall
		s.GenCPUBusy = (endGenCPUs.busy - baseGenCPUs.busy) / wall
		s.GenCPUSoftirq = genSoftirq / wall
		busy := (endMachine.user + endMachine.system) - (baseMachine.user + baseMachine.system)
		ours := s.CPUSeconds + genCPU + (endSelf - baseSelf)
		s.OtherCores = math.Max(0, (busy-ours)/wall)
		s.SoftirqCores = (endMachine.softirq - baseMachine.softirq) / wall
		s.StealCores = (endMachine.steal - baseMachine.steal) / wall
	}
	lost := math.Max(s.LostRecords-s.BeforeTemplate, math.Max(s.SeqLost, math.Max(s.SocketDrops*float64(r.cfg.records), s.DropRecs)))
	if s.DropUnits > 0 {
		lost = math.Max(lost, 1)
	}
	if gen.Records > 0 {
		s.LossFraction = math.Max(0, lost) / float64(gen.Records)
	}
	s.ZeroLoss = gen.Records > 0 && s.LossFraction <= r.cfg.lossTolerance
	if s.Pipe != nil {
		finishPipeStep(s.Pipe, base.Pipe, atEnd.Pipe, last.Pipe, sendWindow)
		s.ZeroLoss = s.ZeroLoss && s.Pipe.outputOK()
	}
	s.GenLimited = rate > 0 && s.OfferedRPS < r.cfg.genShortfall*rate
	return s, nil
}

// warmUp sends a few messages from 16 loopback addresses (none of which the
// measured run uses) so that every SO_REUSEPORT socket of the receiver has
// seen traffic (Sluice enlarges a socket's receive buffer on its first
// datagram) and the receiver has counted something before the baseline.
func (r *runner) warmUp(p *proc) error {
	before, err := p.scrape()
	if err != nil {
		return err
	}
	gen, _, err := r.runGen(p, 0, 0, 16, true, nil, nil)
	if err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		c, err := p.scrape()
		if err != nil {
			return err
		}
		// A pipeline's outputs must have sent the warm-up's records too
		// (and the receiver counted them), or they would count in the step.
		settled := p.t.Pipeline == nil || c.Pipe.outputsSettled(p.recv != nil)
		if p.t.Kind == kindSink && c.Packets-before.Packets >= float64(gen.Messages+gen.TemplateMessages) ||
			p.t.Kind != kindSink && settled && c.Decoded-before.Decoded+(c.BeforeTpl-before.BeforeTpl)*float64(r.cfg.records) >= float64(gen.Records) {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.logf("    warm-up: %s did not count all %d warm-up records within 3 s; going on", p.t, gen.Records)
	return nil
}

// runGen runs `sluice gen` once and returns its summary and CPU seconds.
// count > 0 sends that many data messages instead of running for dur;
// extra are more generator arguments (not for the warm-up).
func (r *runner) runGen(p *proc, rate float64, dur time.Duration, count int, warm bool, extra []string, tick func(time.Duration)) (*genSummary, float64, error) {
	args := []string{"gen", "--addr", net.JoinHostPort(p.flowHost, strconv.Itoa(p.udpPort)),
		"--records", strconv.Itoa(r.cfg.records), "--rate", strconv.FormatFloat(rate, 'f', 0, 64)}
	veth := r.veth(p.t)
	if veth {
		args = append(args, "--allow-remote")
	}
	// Over veth the exporters share the namespace's one address
	// (--distinct-addrs needs loopback); their 16 source ports still spread
	// over the receiver's SO_REUSEPORT sockets.
	if warm {
		args = append(args, "--exporters", "16", "--distinct-addrs", "--count", strconv.Itoa(count), "--duration", "0")
	} else {
		args = append(args, "--exporters", strconv.Itoa(r.cfg.exporters), "--duration", dur.String(),
			"--batch", strconv.Itoa(r.genBatch(rate)))
		if count > 0 {
			args = append(args, "--count", strconv.Itoa(count))
		}
		args = append(args, r.cfg.genArgs...)
		args = append(args, extra...)
	}
	slack := r.cfg.genSlack
	if slack == 0 {
		slack = 20 * time.Second
	}
	timeout := dur + slack
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var bin string
	if veth {
		bin, args = r.ns.command(r.cfg.genCPUs, r.cfg.gen, args)
	} else {
		bin, args = pinned(r.cfg.genCPUs, r.cfg.gen, args)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		return nil, 0, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	if tick != nil {
		start := time.Now()
		tk := time.NewTicker(time.Second)
	loop:
		for {
			select {
			case err = <-done:
				break loop
			case <-tk.C:
				tick(time.Since(start))
			}
		}
		tk.Stop()
	} else {
		err = <-done
	}
	if err != nil {
		return nil, 0, fmt.Errorf("%s %s: %v: %s", bin, strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	var cpu float64
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		cpu = tv(ru.Utime) + tv(ru.Stime)
	}
	var g genSummary
	line := bytes.TrimSpace(out.Bytes())
	if i := bytes.LastIndexByte(line, '\n'); i >= 0 {
		line = line[i+1:]
	}
	if err := json.Unmarshal(line, &g); err != nil {
		return nil, 0, fmt.Errorf("sluice gen printed %q: %v", out.String(), err)
	}
	return &g, cpu, nil
}

// genBatch is the generator's --batch for a rate: the generator sends a
// batch per exporter and then sleeps off its lead, so a round is a burst of
// batch*exporters datagrams. Bursts are kept to --gen-burst of traffic at
// the asked rate, as a real exporter's would be: otherwise at low rates
// whole rounds land at once and overflow a receiver's default socket
// buffer (212 kB) although the average rate is small.
func (r *runner) genBatch(rate float64) int {
	if rate <= 0 || r.cfg.genBurst <= 0 {
		return 64
	}
	msgs := rate / float64(r.cfg.records) * r.cfg.genBurst.Seconds() / float64(r.cfg.exporters)
	return int(math.Max(1, math.Min(64, math.Round(msgs))))
}

// progress returns a function printing a live line once a second while the
// generator runs, when stderr is a terminal.
func (r *runner) progress(p *proc) func(time.Duration) {
	if !r.tty {
		return nil
	}
	var prev float64
	var prevAt time.Duration
	return func(el time.Duration) {
		c, err := p.scrape()
		if err != nil {
			return
		}
		v := c.Decoded
		if p.t.Kind == kindSink {
			v = c.Packets
		}
		if prevAt > 0 || prev > 0 {
			unit := "rec/s decoded"
			if p.t.Kind == kindSink {
				unit = "datagrams/s received"
			}
			fmt.Fprintf(os.Stderr, "\r      %4.1fs  %s %s   ", el.Seconds(),
				fmtRate((v-prev)/(el-prevAt).Seconds()), unit)
		}
		prev, prevAt = v, el
	}
}

func fetchTo(url, path string) error {
	c := *httpClient
	c.Timeout = 2 * time.Minute
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// renderProfiles writes `go tool pprof -top` text next to each profile.
func (r *runner) renderProfiles(prof map[string]string) map[string]string {
	out := map[string]string{}
	for kind, path := range prof {
		out[kind] = path
		args := []string{"tool", "pprof", "-top", "-nodecount=30"}
		switch kind {
		case "allocs":
			args = append(args, "-sample_index=alloc_space")
		case "heap":
			args = append(args, "-sample_index=inuse_space")
		}
		txt := strings.TrimSuffix(path, ".pprof") + ".txt"
		b, err := exec.Command("go", append(args, path)...).CombinedOutput()
		if err != nil {
			r.logf("    go tool pprof %s: %v", path, err)
			continue
		}
		if os.WriteFile(txt, b, 0o644) == nil {
			out[kind+"_top"] = txt
		}
	}
	return out
}
