package chaos

import (
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"strings"
	"time"
)

// Scenarios are the failures TestChaos goes through, in order: what is
// killed with SIGKILL and started again.
var Scenarios = []string{"collector", "mediator", "run", "redis", "redis-cluster-node", "downstream"}

// Load is how hard and how long a scenario runs.
type Load struct {
	// Rate is the records/s of each of the two gen processes (UDP and
	// TCP, two exporters each).
	Rate int
	// Cycles is how many times the victim is killed and started again.
	Cycles int
	// Down is how long the victim stays dead; Steady how long the load
	// runs before the first kill and after each recovery.
	Down, Steady time.Duration
	// Softflowd runs softflowd once per scenario (Env.Traffic), IPFIX
	// over TCP and NetFlow v9 over UDP.
	Softflowd bool
}

// Gen domains: UDP exporters 1 and 2, TCP exporters 11 and 12, the end
// marker 50.
var (
	udpDomains         = []uint32{1, 2}
	tcpDomains         = []uint32{11, 12}
	markerDomain       = uint32(50)
	markerRecords      = 50
	recoverTimeout     = 40 * time.Second
	templateLifetime   = "8s"
	clusterNodeTimeout = time.Second
	mediatorRing       = "128KiB"
)

// Result is one scenario's accounting. Times are per cycle.
type Result struct {
	Scenario, Killed string
	Cycles           int
	Down             time.Duration
	// TCP: records gen wrote to its sockets; of them, never out; out more
	// than once.
	TCPSent, TCPLost, TCPRepeated int
	// TCPLostRuns counts runs of consecutive lost TCP records.
	TCPLostRuns int
	// UDP: records gen sent, never out, out more than once.
	UDPSent, UDPLost, UDPRepeated int
	// UDPSeqMissing is what the sequence numbers say: numbers gen used
	// whose record never came out (UDPLost plus sends that failed).
	UDPSeqMissing int
	// UDPCounted is what the receiving process counted: sequence loss of
	// the UDP exporters, records it dropped (ring full, ...), records its
	// output dropped; UDPSocketDrops is the kernel's share of the
	// sequence loss (datagrams, not records).
	UDPCounted, UDPSocketDrops int
	// UDPGap is the records missing between the last one out before a
	// restart of the receiving process and the first one after it: the
	// loss nobody alive could count, from the sequence numbers.
	UDPGap int
	// UDPUnexplained = UDPSeqMissing - UDPCounted - UDPGap (goal 0).
	UDPUnexplained int
	// RestartCounted is the gap the split pod's mediator counted across
	// collector restarts (sluice_mediator_restart_sequence_lost_total,
	// records); -1 where no process could count it.
	RestartCounted int
	// Replayed is what a restarted mediator counted as replayed.
	Replayed                    int
	SoftflowdSent, SoftflowdOut int
	// OtherRepeated: softflowd's records out more than once.
	OtherRepeated int
	Garbled       int
	// Back: from the kill until the victim serves again. Ready: from the
	// restart until it answers. UDPFlowing, TCPFlowing: from the restart
	// until a record sent after it comes out.
	Back, Ready, UDPFlowing, TCPFlowing []time.Duration
	Notes                               []string
}

// victim is what a scenario kills.
type victim struct {
	name      string
	kill      func() error
	restart   func() error
	back      func() bool // serving again
	entryDies bool        // it owns the exporters' sockets
	// gaps: records in flight when it died are lost (it owns the
	// exporters' sockets, or it is the far end of an ipfix+tcp output).
	gaps bool
	node *node // a sluice victim, for its counters
	// diag says why back is false, for a failure.
	diag func() string
	// restartable, when set, must hold before the victim is started
	// again (besides Load.Down having passed).
	restartable func() bool
}

// world is one scenario's processes.
type world struct {
	env      *Env
	dir      string
	load     Load
	flow     int
	outPath  string
	out      *Output
	entry    *node   // receives the exporters
	nodes    []*node // every sluice process
	cnt      map[*node]*counters
	med      *node // the mediator, for its replay counter
	ringNode *node // its rings must be empty when settled
	queued   *node // its outputs' queues must be empty when settled
	writer   *node // writes the output file (a kill may cut a line)
	vic      victim
	redis    *Redis
	cluster  *Cluster
	gens     []*genRun // running
	gens0    []*genRun // finished, with their summaries
	marks    []map[uint32]uint32
	res      *Result
}

// Run runs one scenario of Scenarios.
func (e *Env) Run(name string, load Load) (*Result, error) {
	dir, err := mkdir(filepath.Join(e.Dir, name))
	if err != nil {
		return nil, err
	}
	w := &world{env: e, dir: dir, load: load, cnt: map[*node]*counters{},
		res: &Result{Scenario: name, Cycles: load.Cycles, Down: load.Down}}
	w.outPath = filepath.Join(dir, "out.jsonl")
	w.out = NewOutput(w.outPath)
	defer w.stop()
	if w.flow, err = FreePort(false); err != nil {
		return nil, err
	}
	if err := w.setup(name); err != nil {
		return w.res, err
	}
	w.res.Killed = w.vic.name
	err = w.drive()
	if err != nil {
		return w.res, fmt.Errorf("%s: %w\n%s", name, err, w.logs())
	}
	return w.res, w.account()
}

func (w *world) add(n *node) *node {
	w.nodes = append(w.nodes, n)
	w.cnt[n] = &counters{}
	return n
}

func (w *world) nodeVictim(n *node, entryDies bool) victim {
	return victim{name: "sluice " + n.args[0], node: n, entryDies: entryDies, gaps: entryDies,
		kill:    func() error { err := n.proc.Kill(); w.cnt[n].fold(); return err },
		restart: func() error { return n.start(w.dir) },
		back:    func() bool { return n.proc != nil && !n.proc.Exited() && Ready(n.admin) },
	}
}

func (w *world) setup(name string) error {
	e := w.env
	flowAddr := fmt.Sprintf("127.0.0.1:%d", w.flow)
	listen := []string{"--listen", "udp://" + flowAddr, "--listen", "tcp://" + flowAddr, "--loops", "2"}
	output := "jsonl:" + w.outPath
	run := func(extra ...string) (*node, error) {
		n, err := e.node("run", append(append([]string{"run"}, listen...), append([]string{"--output", output}, extra...)...)...)
		if err != nil {
			return nil, err
		}
		w.entry, w.ringNode, w.writer = w.add(n), n, n
		return n, n.start(w.dir)
	}
	switch name {
	case "collector", "mediator":
		ring := filepath.Join(w.dir, "rings")
		// With the mediator away, small rings fill: UDP is dropped and
		// counted (ring_full), TCP waits (backpressure).
		size := "4MiB"
		if name == "mediator" {
			size = mediatorRing
		}
		col, err := e.node("collector", append([]string{"collector", "--ring-dir", ring, "--ring-size", size}, listen...)...)
		if err != nil {
			return err
		}
		med, err := e.node("mediator", "mediator", "--ring-dir", ring, "--output", output)
		if err != nil {
			return err
		}
		w.entry, w.ringNode, w.med, w.writer = w.add(col), col, w.add(med), med
		if err := col.start(w.dir); err != nil {
			return err
		}
		if err := med.start(w.dir); err != nil {
			return err
		}
		if name == "collector" {
			w.vic = w.nodeVictim(col, true)
		} else {
			w.vic = w.nodeVictim(med, false)
		}
	case "run":
		n, err := run()
		if err != nil {
			return err
		}
		w.vic = w.nodeVictim(n, true)
	case "redis":
		r, err := NewRedis(filepath.Join(w.dir, "redis"))
		if err != nil {
			return err
		}
		w.redis = r
		n, err := run("--redis", r.Addr(), "--template-lifetime", templateLifetime)
		if err != nil {
			return err
		}
		var restarted time.Time
		w.vic = victim{name: "redis-server",
			kill:    func() error { return r.Proc.Kill() },
			restart: func() error { restarted = time.Now(); return r.Start() },
			// Back: Redis answers, the collector says it is up and has
			// written back the UDP exporters' templates (Redis came back
			// empty).
			back: func() bool {
				if restarted.IsZero() || r.Proc.Exited() || w.cnt[n].last.Sum("sluice_template_shared_up") != 1 {
					return false
				}
				keys, err := r.CLI("--scan", "--pattern", "sluice:tpl:*")
				return err == nil && len(strings.Fields(keys)) >= len(udpDomains)
			},
		}
	case "redis-cluster-node":
		c, err := NewCluster(filepath.Join(w.dir, "cluster"), clusterNodeTimeout)
		if err != nil {
			return err
		}
		w.cluster = c
		n, err := run("--redis", strings.Join(c.Addrs(), ","), "--template-lifetime", templateLifetime)
		if err != nil {
			return err
		}
		key := fmt.Sprintf("sluice:tpl:{127.0.0.1}:%d:256", udpDomains[0])
		var killed *Redis
		var writesAtKill float64
		writes := func() float64 {
			return w.cnt[n].sum("sluice_template_shared_writes_total", `result="written"`) +
				w.cnt[n].sum("sluice_template_shared_writes_total", `result="unchanged"`)
		}
		w.vic = victim{name: "redis cluster master of the exporter's slot",
			kill: func() error {
				// Wait for the template to be in the cluster first.
				if err := waitFor(20*time.Second, func() bool {
					m, err := c.MasterOf(key, nil)
					if err != nil {
						return false
					}
					v, err := m.CLI("get", key)
					return err == nil && v != ""
				}, func() string { return "the exporter's template in the cluster" }); err != nil {
					return err
				}
				m, err := c.MasterOf(key, nil)
				if err != nil {
					return err
				}
				killed, writesAtKill = m, writes()
				w.res.Notes = append(w.res.Notes, fmt.Sprintf("killed master %s (slot of %s)", m.Addr(), key))
				return m.Proc.Kill()
			},
			// The killed master comes back only after its replica took
			// over: started earlier it would simply be the master again.
			restartable: func() bool {
				m, err := c.MasterOf(key, killed)
				return err == nil && m != killed
			},
			restart: func() error {
				if err := killed.Start(); err != nil {
					return err
				}
				return waitFor(30*time.Second, killed.clusterOK, func() string { return "the restarted node to rejoin" })
			},
			// Back: another node is master of the slot and holds the
			// template, and the collector has written to the cluster
			// since the kill and says it is up.
			back: func() bool {
				if killed == nil {
					return false
				}
				m, err := c.MasterOf(key, killed)
				if err != nil || m == killed {
					return false
				}
				v, err := m.CLI("get", key)
				return err == nil && v != "" && writes() > writesAtKill && w.cnt[n].last.Sum("sluice_template_shared_up") == 1
			},
			diag: func() string {
				m, err := c.MasterOf(key, killed)
				var v string
				if m != nil {
					v, _ = m.CLI("get", key)
				}
				l := w.cnt[n].last
				return fmt.Sprintf("master of the slot now %v (err %v), value %d octets; writes %v (at kill %v), up %v, errors %v, pending %v",
					m != nil && m != killed, err, len(v), writes(), writesAtKill, l.Sum("sluice_template_shared_up"),
					l.Sum("sluice_template_shared_errors_total"), l.Sum("sluice_template_shared_pending"))
			},
		}
	case "downstream":
		port, err := FreePort(false)
		if err != nil {
			return err
		}
		down, err := e.node("downstream", "run", "--listen", fmt.Sprintf("tcp://127.0.0.1:%d", port), "--loops", "2", "--output", output)
		if err != nil {
			return err
		}
		w.writer = w.add(down)
		if err := down.start(w.dir); err != nil {
			return err
		}
		up, err := e.node("upstream", append(append([]string{"run"}, listen...),
			"--output", fmt.Sprintf("ipfix+tcp://127.0.0.1:%d", port))...)
		if err != nil {
			return err
		}
		w.entry, w.ringNode, w.queued = w.add(up), up, up
		if err := up.start(w.dir); err != nil {
			return err
		}
		w.vic = w.nodeVictim(down, false)
		w.vic.gaps = true
		w.vic.name = "downstream sluice run (ipfix+tcp receiver)"
	default:
		return fmt.Errorf("chaos: no scenario %q", name)
	}
	return nil
}

// tick reads the output and every process's counters.
func (w *world) tick() error {
	if err := w.out.Poll(); err != nil {
		return err
	}
	for _, n := range w.nodes {
		w.cnt[n].update(n.scrape())
	}
	for _, g := range w.gens {
		if g.proc.Exited() {
			return fmt.Errorf("chaos: %s exited early:\n%s", g.proc.Name, g.proc.Tail(10))
		}
	}
	return nil
}

// until ticks every 50 ms until ok holds, for at most d.
func (w *world) until(what string, d time.Duration, ok func() bool) error {
	deadline := time.Now().Add(d)
	for {
		if err := w.tick(); err != nil {
			return err
		}
		if ok() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("chaos: timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// newer reports whether a record numbered above mark came out for one of
// domains.
func (w *world) newer(mark map[uint32]uint32, domains []uint32) bool {
	for _, d := range domains {
		if m, ok := w.out.MaxN[d]; ok && m > mark[d] {
			return true
		}
	}
	return false
}

// steady lets the load run for load.Steady and until records of both gens
// came out.
func (w *world) steady() error {
	mark := maps.Clone(w.out.MaxN)
	start := time.Now()
	return w.until("records of both exporters flowing", w.load.Steady+recoverTimeout, func() bool {
		return time.Since(start) >= w.load.Steady && w.newer(mark, udpDomains) && w.newer(mark, tcpDomains)
	})
}

func (w *world) drive() error {
	load := w.load
	// The gens run until stopped, for at most maxTime: it sizes their keys
	// (about 75 octets each), so it allows 10 s a cycle for the recovery
	// (it takes one or two) and 30 s besides; a run that takes longer
	// fails with the gens' early exit.
	maxTime := load.Steady*time.Duration(load.Cycles+1) + time.Duration(load.Cycles)*(load.Down+10*time.Second) + 30*time.Second
	for _, g := range []struct {
		name  string
		tcp   bool
		first uint32
	}{{"gen-udp", false, udpDomains[0]}, {"gen-tcp", true, tcpDomains[0]}} {
		gr, err := w.env.startGen(w.dir, g.name, w.flow, g.tcp, g.first, load.Rate, maxTime)
		if err != nil {
			return err
		}
		w.gens = append(w.gens, gr)
	}
	if err := w.steady(); err != nil {
		return err
	}
	// softflowd over TCP runs while the victim is down when the
	// exporters' receiver lives on (a TCP exporter then waits, it must
	// not lose), else after the first recovery; over UDP (v9) it runs
	// once the gens have stopped: right after a recovery the rings may
	// still be full of the backlog, and UDP sent into full rings is
	// dropped (counted, but not by exporter).
	sfDone := map[bool]bool{}
	softflowd := func(tcp bool) error {
		if !load.Softflowd || sfDone[tcp] || w.env.Traffic == "" {
			return nil
		}
		sfDone[tcp] = true
		n, err := w.env.softflowd(w.dir, w.flow, tcp)
		w.res.SoftflowdSent += n
		return err
	}
	for range load.Cycles {
		tKill := time.Now()
		if err := w.vic.kill(); err != nil {
			return err
		}
		w.env.Logf("%s: killed %s", w.res.Scenario, w.vic.name)
		var tBack time.Time
		probe := func() {
			if tBack.IsZero() && w.vic.back() {
				tBack = time.Now()
			}
		}
		if !w.vic.entryDies {
			// A real exporter sends while the victim is away.
			if err := softflowd(true); err != nil {
				return err
			}
		}
		if err := w.until("the down time", load.Down+time.Minute, func() bool {
			probe()
			return time.Since(tKill) >= load.Down && (w.vic.restartable == nil || w.vic.restartable())
		}); err != nil {
			return err
		}
		if w.vic.entryDies {
			// What the dead process handed over drains (the split
			// mediator reads the old rings): wait for the output to
			// stand still before the snapshot.
			last, since := w.out.Lines, time.Now()
			if err := w.until("the output to stand still", 20*time.Second, func() bool {
				if w.out.Lines != last {
					last, since = w.out.Lines, time.Now()
				}
				return time.Since(since) >= 300*time.Millisecond
			}); err != nil {
				return err
			}
		}
		mark := maps.Clone(w.out.MaxN)
		w.marks = append(w.marks, mark)
		tRestart := time.Now()
		if err := w.vic.restart(); err != nil {
			return err
		}
		tReady := time.Now()
		w.env.Logf("%s: %s started again", w.res.Scenario, w.vic.name)
		var tUDP, tTCP time.Time
		if err := w.until("recovery", recoverTimeout, func() bool {
			probe()
			if tUDP.IsZero() && w.newer(mark, udpDomains) {
				tUDP = time.Now()
			}
			if tTCP.IsZero() && w.newer(mark, tcpDomains) {
				tTCP = time.Now()
			}
			return !tBack.IsZero() && !tUDP.IsZero() && !tTCP.IsZero()
		}); err != nil {
			diag := ""
			if w.vic.diag != nil {
				diag = w.vic.diag()
			}
			return fmt.Errorf("%w (victim back: %v, UDP flowing: %v, TCP flowing: %v) %s", err, !tBack.IsZero(), !tUDP.IsZero(), !tTCP.IsZero(), diag)
		}
		r := w.res
		r.Back = append(r.Back, tBack.Sub(tKill))
		r.Ready = append(r.Ready, tReady.Sub(tRestart))
		r.UDPFlowing = append(r.UDPFlowing, tUDP.Sub(tRestart))
		r.TCPFlowing = append(r.TCPFlowing, tTCP.Sub(tRestart))
		if err := softflowd(true); err != nil {
			return err
		}
		if err := w.steady(); err != nil {
			return err
		}
	}
	for _, g := range w.gens {
		if err := g.finish(); err != nil {
			return err
		}
	}
	gens := w.gens
	w.gens = nil
	w.gens0 = gens
	// The backlog drained (rings and queues empty), softflowd over UDP.
	if err := w.until("the backlog to drain", time.Minute, func() bool { return w.drained() }); err != nil {
		return err
	}
	if err := softflowd(false); err != nil {
		return err
	}
	// The end marker: its records out, the output still, the rings and
	// queues empty.
	marker, err := Start(w.dir, "gen-marker", w.env.Sluice, "gen", "--addr", fmt.Sprintf("127.0.0.1:%d", w.flow),
		"--tcp", "--count", "5", "--records", "10", "--templates", "ipv6", "--keys", fmt.Sprint(markerRecords),
		"--first-domain", fmt.Sprint(markerDomain), "--duration", "0")
	if err != nil {
		return err
	}
	if !marker.Wait(30 * time.Second) {
		marker.Stop(time.Second)
		return errors.New("chaos: the marker gen did not finish")
	}
	last, since := -1, time.Now()
	return w.until("the end marker and a still output", time.Minute, func() bool {
		if w.out.Lines != last {
			last, since = w.out.Lines, time.Now()
		}
		return w.out.Count(markerDomain).Distinct >= markerRecords && time.Since(since) >= time.Second && w.drained()
	})
}

// drained reports whether the rings and the outputs' queues are empty.
func (w *world) drained() bool {
	if w.ringNode != nil && w.cnt[w.ringNode].last.Sum("sluice_ring_bytes") != 0 {
		return false
	}
	return w.queued == nil || w.cnt[w.queued].last.Sum("sluice_output_queued_records") == 0
}
