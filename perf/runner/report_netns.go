//go:build linux

package main

import (
	"fmt"
	"math"
)

// renderNetnsSummary writes the netns mode's summary: for each path the
// zero-loss rate and where the CPU went at that rate.
func (r *runner) renderNetnsSummary(w func(string, ...any), res *Result) {
	w("The generator runs on CPU %v and Sluice on CPU %v (taskset). Path *veth*: `sluice gen` runs in a network namespace of its own (`ip netns exec`) and sends over a veth pair to Sluice in the root namespace, addresses from 198.18.0.0/15 (RFC 2544's benchmarking range); the kernel then delivers each datagram into Sluice's socket in a softirq on the CPU that sent it (the generator's), as over loopback. Path *veth, RPS*: the same, with RPS on the veth's receiving end set to Sluice's CPU, so that CPU delivers the packets, as a NIC interrupting Sluice's core would. Path *loopback*: the same generator in the root namespace sends to 127.0.0.1. A fresh namespace and pair per run, removed at the end.\n\n",
		res.Config["gen_cpus"], res.Config["receiver_cpus"])
	w("| path | highest zero-loss records/s | lowest lossy records/s | Sluice CPU s / M rec | of which kernel (stime) | Sluice + delivery, s / M rec | softirq on Sluice's CPU, s / M rec | softirq on the generator's CPU, s / M rec | generator process (cores) | generator's CPU busy (cores) |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, se := range res.Series {
		b := bestStep(se)
		w("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", pathOf(se), bestText(se), fmtRateOr(se.LowestLossRPS, "none"),
			ifStep(b, func(s *Step) string { return fmt.Sprintf("%.3f", s.CPUPerMillion) }),
			ifStep(b, func(s *Step) string { return pct(s.SystemCPUSeconds, s.CPUSeconds) }),
			ifStep(b, func(s *Step) string { return fmt.Sprintf("%.3f", s.CPUPerMillion+deliveryPerMillion(s)) }),
			ifStep(b, func(s *Step) string { return fmt.Sprintf("%.3f", s.RecvSoftirqPerMillion) }),
			ifStep(b, func(s *Step) string { return fmt.Sprintf("%.3f", s.GenSoftirqPerMillion) }),
			ifStep(b, func(s *Step) string { return fmt.Sprintf("%.2f", s.GenCores) }),
			ifStep(b, func(s *Step) string { return fmt.Sprintf("%.2f", s.GenCPUBusy) }))
	}
	w("\n*Sluice + delivery* adds to Sluice's own CPU the softirq time of the CPU that delivered the packets into its socket: the generator's (veth, loopback) or Sluice's (veth with RPS). It is an upper bound: that softirq time also holds the CPU's timers and any other softirq work done there. This is the figure to compare between paths and machines.\n\n")
}

// deliveryPerMillion is the softirq time, per million decoded records, of
// the CPU that delivered the step's packets into the receiver's socket:
// the receiver's with RPS, else the sender's.
func deliveryPerMillion(s *Step) float64 {
	if s.RPS {
		return s.RecvSoftirqPerMillion
	}
	return s.GenSoftirqPerMillion
}

// renderPinnedSteps writes a step table with the CPU split of pinned runs.
func renderPinnedSteps(w func(string, ...any), se *Series) {
	w("| phase | asked rec/s | offered rec/s | decoded rec/s | lost (sent − decoded) | socket drops (pkts) | backlog drops (pkts) | Sluice CPU s / M rec | kernel share | Sluice's CPU: busy / softirq (cores) | softirq s / M rec on Sluice's CPU | generator process (cores) | generator's CPU: busy / softirq (cores) | others (cores) | result |\n")
	w("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, s := range se.Steps {
		if s.Error != "" {
			w("| %s | %s | | | | | | | | | | | | | error: %s |\n", s.Phase, askedText(s.TargetRPS), oneLine(s.Error))
			continue
		}
		w("| %s | %s | %s | %s | %.0f | %.0f | %.0f | %.3f | %s | %.2f / %.2f | %.3f | %.2f | %.2f / %.2f | %.2f | %s |\n",
			s.Phase, askedText(s.TargetRPS), fmtRate(s.OfferedRPS), fmtRate(s.DecodedRPS), s.LostRecords, s.SocketDrops, s.BacklogDrops,
			s.CPUPerMillion, pct(s.SystemCPUSeconds, s.CPUSeconds), s.RecvCPUBusy, s.RecvCPUSoftirq, s.RecvSoftirqPerMillion,
			s.GenCores, s.GenCPUBusy, s.GenCPUSoftirq, s.OtherCores, stepResult(s))
	}
	w("\n")
}

const pinnedColumns = "Columns: *offered* is what the generator sent (its own count over its own run time), *decoded* what Sluice had counted when the generator stopped; *lost* is the generator's count minus Sluice's; *socket drops* are the kernel's drops on Sluice's sockets (/proc/net/udp), *backlog drops* the packets dropped because a CPU's input queue (`net.core.netdev_max_backlog`) was full (/proc/net/softnet_stat, machine-wide). *Sluice CPU* is the process's user+system time (/proc/PID/stat) per million decoded records and *kernel share* its system part. *busy* and *softirq* are the pinned CPU's /proc/stat over the step (busy: all but idle; softirq: softirq+irq), in cores. Without IRQ time accounting in the kernel, softirq time is sampled at the tick (a tick that lands in a softirq counts there, not in the process it interrupted); with it, it is measured exactly; in both cases it is not also in a process's time. *generator process* is `sluice gen`'s own CPU over its run time: near 1.00, or the generator's CPU busy near 1.00, the generator was the limit, and gen-limited marks a step that offered less than 95% of the asked rate. *others* is CPU used by other processes on the machine during the step.\n"

func pathOf(se *Series) string {
	for _, s := range se.Steps {
		if s.Path != "" {
			return s.Path
		}
	}
	return "-"
}

func pct(part, whole float64) string {
	if whole <= 0 || math.IsNaN(part/whole) {
		return "-"
	}
	return fmt.Sprintf("%.0f%%", 100*part/whole)
}

// stepResult is a step's verdict in the tables.
func stepResult(s *Step) string {
	res := "ok"
	if !s.ZeroLoss {
		res = fmt.Sprintf("loss %.3g%%", 100*s.LossFraction)
	}
	if s.GenLimited {
		res += ", gen-limited"
	}
	if !s.Drained {
		res += ", not drained"
	}
	return res
}
