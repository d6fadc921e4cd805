package chaos

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// account fills the result from the gens' summaries, the output and the
// counters.
func (w *world) account() error {
	r := w.res
	ec := w.cnt[w.entry]
	for _, g := range w.gens0 {
		for _, x := range g.sum.Exporters {
			d := x.ObservationDomain
			c := w.out.Count(d)
			runs := w.out.Missing(d, 0, x.NextSequence)
			lost := max(0, int(x.Records)-c.Distinct)
			if g.tcp {
				r.TCPSent += int(x.Records)
				r.TCPLost += lost
				r.TCPRepeated += c.Repeated
				r.TCPLostRuns += len(runs)
				continue
			}
			r.UDPSent += int(x.Records)
			r.UDPLost += lost
			r.UDPRepeated += c.Repeated
			for _, run := range runs {
				r.UDPSeqMissing += int(run[1] - run[0])
			}
			// The sequence loss the collector counted for this UDP
			// exporter (scoped by address: the series without a port).
			r.UDPCounted += int(ec.sum("sluice_sequence_lost_total", `exporter="127.0.0.1"`, fmt.Sprintf(`domain="%d"`, d), `version="10"`))
			if !w.vic.gaps {
				continue
			}
			used := map[int]bool{}
			for _, mark := range w.marks {
				start := uint32(0)
				if b, ok := mark[d]; ok {
					start = b + 1
				}
				for i, run := range runs {
					if run[0] >= start && !used[i] {
						used[i] = true
						r.UDPGap += int(run[1] - run[0])
						r.Notes = append(r.Notes, fmt.Sprintf("domain %d: last out before the restart %d, then missing [%d, %d)", d, start-1, run[0], run[1]))
						break
					}
				}
			}
		}
	}
	r.UDPCounted += int(ec.sum("sluice_dropped_records_total"))
	if w.queued != nil {
		r.UDPCounted += int(ec.sum("sluice_output_records_total", `outcome="dropped"`))
	}
	r.UDPSocketDrops = int(ec.sum("sluice_udp_socket_drops_total"))
	r.UDPUnexplained = r.UDPSeqMissing - r.UDPCounted - r.UDPGap
	r.RestartCounted = -1
	if w.med != nil && w.med.proc != nil {
		for _, l := range strings.Split(w.med.proc.Output(), "\n") {
			if strings.Contains(l, "skipped across a collector restart") {
				r.Notes = append(r.Notes, "mediator: "+l[strings.Index(l, "msg="):])
			}
		}
	}
	if w.med != nil {
		r.Replayed = int(w.cnt[w.med].sum("sluice_mediator_replayed_records_total"))
		if w.vic.gaps {
			r.RestartCounted = int(w.cnt[w.med].sum("sluice_mediator_restart_sequence_lost_total", `unit="records"`))
		}
	}
	r.SoftflowdOut = w.out.Other
	r.OtherRepeated = w.out.OtherRepeated
	r.Garbled = w.out.Garbled
	return nil
}

// Problems lists what the scenario lost or did that it must not. Loss of
// records in flight in a TCP connection whose receiving process was killed
// is not among them: IPFIX over TCP has no acknowledgement above TCP's, so
// an exporter cannot know what a dead receiver had read. It must lie
// around the kills, though: at most one run of lost records per exporter
// and kill.
func (r *Result) Problems() []string {
	var p []string
	if r.UDPUnexplained != 0 {
		p = append(p, fmt.Sprintf("UDP: %d records missing that neither the counters nor the downtime explain", r.UDPUnexplained))
	}
	if r.RestartCounted >= 0 && r.RestartCounted != r.UDPGap {
		p = append(p, fmt.Sprintf("UDP: the mediator counted %d records lost across the collector's restarts, the sequence numbers of what came out say %d",
			r.RestartCounted, r.UDPGap))
	}
	tcpInFlight := r.Scenario == "collector" || r.Scenario == "run" || r.Scenario == "downstream"
	if !tcpInFlight && r.TCPLost != 0 {
		p = append(p, fmt.Sprintf("TCP: %d records lost", r.TCPLost))
	}
	if tcpInFlight && r.TCPLostRuns > r.Cycles*len(tcpDomains) {
		p = append(p, fmt.Sprintf("TCP: records missing in %d runs, more than one per exporter and kill", r.TCPLostRuns))
	}
	if rep := r.UDPRepeated + r.TCPRepeated + r.OtherRepeated; rep > r.Replayed {
		p = append(p, fmt.Sprintf("%d records out more than once, %d counted as replayed", rep, r.Replayed))
	}
	if r.SoftflowdSent != r.SoftflowdOut {
		p = append(p, fmt.Sprintf("softflowd exported %d records, %d came out", r.SoftflowdSent, r.SoftflowdOut))
	}
	writerKilled := r.Scenario == "mediator" || r.Scenario == "run" || r.Scenario == "downstream"
	if (!writerKilled && r.Garbled != 0) || r.Garbled > r.Cycles {
		p = append(p, fmt.Sprintf("%d garbled output lines", r.Garbled))
	}
	if r.TCPSent == 0 || r.UDPSent == 0 {
		p = append(p, "no load was sent")
	}
	return p
}

func (w *world) stop() {
	for _, g := range append(w.gens, w.gens0...) {
		g.proc.Stop(time.Second)
	}
	for _, n := range slices.Backward(w.nodes) {
		if n.proc != nil {
			n.proc.Stop(5 * time.Second)
		}
	}
	if w.redis != nil {
		w.redis.Proc.Stop(5 * time.Second)
	}
	if w.cluster != nil {
		w.cluster.Stop()
	}
}

// logs is the tail of every log of the scenario, for a failure.
func (w *world) logs() string {
	var sb strings.Builder
	ents, _ := filepath.Glob(filepath.Join(w.dir, "*.log"))
	for _, f := range ents {
		b, _ := os.ReadFile(f)
		lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
		if len(lines) > 15 {
			lines = lines[len(lines)-15:]
		}
		fmt.Fprintf(&sb, "--- %s:\n%s\n", filepath.Base(f), strings.Join(lines, "\n"))
	}
	for _, n := range w.nodes {
		fmt.Fprintf(&sb, "--- %s counters: ring_bytes %v queued %v records %v\n", n.name,
			w.cnt[n].last.Sum("sluice_ring_bytes"), w.cnt[n].last.Sum("sluice_output_queued_records"), w.cnt[n].last.Sum("sluice_records_total"))
	}
	fmt.Fprintf(&sb, "--- output: %d lines, gen max %v, marker %d\n", w.out.Lines, w.out.MaxN, w.out.Count(markerDomain).Distinct)
	return sb.String()
}

// Table writes results as a Markdown table.
func Table(rs []*Result) string {
	var sb strings.Builder
	sb.WriteString("| scenario (killed) | cycles x down | TCP sent | TCP lost | UDP sent | UDP lost | UDP per sequence numbers: missing = counted + downtime gap (+ unexplained) | downtime gap counted by Sluice | socket drops | repeated (replayed) | softflowd sent/out | back after kill | ready after restart | UDP / TCP flowing after restart | problems |\n")
	sb.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rs {
		probs := strings.Join(r.Problems(), "; ")
		if probs == "" {
			probs = "none"
		}
		restart := "-"
		if r.RestartCounted >= 0 {
			restart = fmt.Sprint(r.RestartCounted)
		}
		fmt.Fprintf(&sb, "| %s (%s) | %d x %v | %d | %d | %d | %d | %d = %d + %d (+ %d) | %s | %d | %d (%d) | %d/%d | %s | %s | %s / %s | %s |\n",
			r.Scenario, r.Killed, r.Cycles, r.Down, r.TCPSent, r.TCPLost, r.UDPSent, r.UDPLost,
			r.UDPSeqMissing, r.UDPCounted, r.UDPGap, r.UDPUnexplained, restart, r.UDPSocketDrops,
			r.UDPRepeated+r.TCPRepeated+r.OtherRepeated, r.Replayed, r.SoftflowdSent, r.SoftflowdOut,
			durations(r.Back), durations(r.Ready), durations(r.UDPFlowing), durations(r.TCPFlowing), probs)
	}
	return sb.String()
}

// durations shows the largest of ds (the worst cycle), and how many.
func durations(ds []time.Duration) string {
	if len(ds) == 0 {
		return "-"
	}
	s := slices.Max(ds).Round(time.Millisecond).String()
	if len(ds) > 1 {
		s = "max " + s
	}
	return s
}
