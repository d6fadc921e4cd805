//go:build linux

package main

import (
	"fmt"
	"sort"
	"strings"
)

// renderPipelineSummary writes the pipeline mode's summary table and the
// pipeline files measured.
func (r *runner) renderPipelineSummary(w func(string, ...any), res *Result) {
	w("Each step starts a fresh `sluice run --pipeline FILE`; where the file names `ipfix+tcp://RECEIVER`, the runner first starts a TCP receiver of its own on a free loopback port (accept, read, count octets, IPFIX messages and data records by template record length, check sequence numbers) and writes its address into the file. Zero loss means: nothing lost on the input side (the three measures of `make perf`), and on the output side nothing dropped (`sluice_output_records_total{outcome=\"dropped\"}`), nothing left queued (`sluice_output_queued_records`) or unsent at the end of the step, and the receiver counted every record the output reported sent, without a sequence-number gap.\n\n")
	w("| pipeline | target: input records/s without loss | highest zero-loss input records/s | output records/s at that rate | lowest lossy records/s | CPU s per M records at that rate | peak RSS at that rate | keys held | memory per key: RSS growth / table | target |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, se := range res.Series {
		best := bestStep(se)
		keys, perKey := "-", "-"
		if best != nil && best.Pipe != nil && best.Pipe.Aggregate {
			keys = fmtCount(best.Pipe.Keys)
			perKey = fmt.Sprintf("%.0f B / %.0f B", best.Pipe.BytesPerKeyRSS, best.Pipe.BytesPerKeyTable)
		}
		w("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", se.Output, fmtRateOr(se.TargetRPS, "-"), bestText(se),
			ifStep(best, outputText),
			fmtRateOr(se.LowestLossRPS, "none"),
			ifStep(best, func(s *Step) string { return fmt.Sprintf("%.3f", s.CPUPerMillion) }),
			ifStep(best, func(s *Step) string { return fmt.Sprintf("%.0f MB", s.PeakRSS/1e6) }),
			keys, perKey, targetVerdict(se))
	}
	w("\n")
	if files, ok := res.Config["pipelines"].(map[string]any); ok {
		names := make([]string, 0, len(files))
		for n := range files {
			names = append(names, n)
		}
		sort.Strings(names)
		w("<details><summary>Pipeline files (RECEIVER: the runner's receiver)</summary>\n\n")
		for _, n := range names {
			text, _ := files[n].(string)
			w("`%s`:\n\n```yaml\n%s\n```\n\n", n, strings.TrimRight(text, "\n"))
		}
		w("</details>\n\n")
	}
}

// renderPipelineSteps writes one pipeline's step table.
func (r *runner) renderPipelineSteps(w func(string, ...any), se *Series) {
	w("| phase | asked rec/s | offered rec/s | decoded rec/s | output rec/s | lost (sent − decoded) | seq lost | socket drops (pkts) | app drops | out dropped | out queued / unsent at end | receiver missing / seq gap | keys | CPU s / M rec | peak RSS MB | drain s | others (cores) | result |\n")
	w("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, s := range se.Steps {
		if s.Error != "" || s.Pipe == nil {
			w("| %s | %s |%s error: %s |\n", s.Phase, askedText(s.TargetRPS), strings.Repeat(" |", 15), oneLine(s.Error))
			continue
		}
		p := s.Pipe
		res := "ok"
		if !s.ZeroLoss {
			res = "loss"
			if s.LossFraction > 0 {
				res = fmt.Sprintf("input loss %.3g%%", 100*s.LossFraction)
			}
			if p.OutLost > 0 {
				res += fmt.Sprintf(", output loss %.0f", p.OutLost)
			}
			if p.RecvUnknownSets > 0 || p.RecvStreamErrors > 0 {
				res += fmt.Sprintf(", receiver could not count (%.0f sets, %.0f streams)", p.RecvUnknownSets, p.RecvStreamErrors)
			}
		}
		if s.GenLimited {
			res += ", gen-limited"
		}
		if !s.Drained {
			res += ", not drained"
		}
		recv, keys := "-", "-"
		if p.Receiver {
			recv = fmt.Sprintf("%.0f / %.0f", p.RecvMissing, p.RecvSeqLost)
		}
		if p.Aggregate {
			keys = fmtCount(p.Keys)
		}
		w("| %s | %s | %s | %s | %s | %.0f | %.0f | %.0f | %s | %.0f | %.0f / %.0f | %s | %s | %.3f | %.0f | %.2f | %.2f | %s |\n",
			s.Phase, askedText(s.TargetRPS), fmtRate(s.OfferedRPS), fmtRate(s.DecodedRPS), outputText(s),
			s.LostRecords, s.SeqLost, s.SocketDrops, appDrops(s), p.OutDropped, p.OutQueued, p.OutUnaccounted, recv, keys,
			s.CPUPerMillion, s.PeakRSS/1e6, s.DrainSeconds, s.OtherCores, res)
	}
	w("\n")
	if best := bestStep(se); best != nil && best.Pipe != nil && best.Pipe.Aggregate {
		p := best.Pipe
		w("Memory at the best rate (%s rec/s): %s keys after filling the table (%s records sent at the start of the step), %s at its end; table %.0f MB (`sluice_aggregate_table_bytes`, %.0f B per key held); VmRSS %.0f MB after the warm-up, %.0f MB at the end: %.0f B per key held. Aggregates emitted during the step %.0f, evicted %.0f.\n\n",
			fmtRate(best.OfferedRPS), fmtCount(p.KeysAfterPrefill), fmtCount(p.PrefillRecords), fmtCount(p.Keys), p.TableBytes/1e6, p.BytesPerKeyTable,
			p.RSSBase/1e6, p.RSSEnd/1e6, p.BytesPerKeyRSS, p.Emitted, p.Evicted)
	}
	for _, s := range se.Steps {
		if s.Phase == "overload" && s.Error == "" && s.Pipe != nil {
			w("Overload (twice the best rate): peak RSS %.0f MB; %.0f records lost on the input side by the generator's count (sluice counted %.0f by sequence numbers, %.0f datagrams dropped by the kernel, %.0f records dropped after decoding); outputs dropped %.0f.\n\n",
				s.PeakRSS/1e6, s.LostRecords, max(s.SeqLost, 0), s.SocketDrops, s.DropRecs, s.Pipe.OutDropped)
		}
		r.renderStepProfiles(w, s)
	}
}

const pipelineColumns = "Columns: *asked* is the generator's target, *offered* what it sent (its own count over its own send time); *decoded* and *output* are what sluice had decoded and what its outputs had sent (`sluice_records_total`, `sluice_output_records_total{outcome=\"sent\"}`) when the generator stopped, over the generator's send time. *lost*, *seq lost*, *socket drops* and *app drops* are the input side as in `make perf`. *out dropped* is what the outputs dropped; *queued* what was still in their queues at the end of the step and *unsent* what the pipelines had handed to outputs but was neither sent nor dropped by then; *receiver missing* is what the outputs reported sent to the runner's receiver minus the records it counted, *seq gap* the records missing by the IPFIX sequence numbers it saw. *keys* is `sluice_aggregate_keys` at the end of the step. *CPU* is sluice's user+system time per million decoded records; *peak RSS* is VmHWM; *others* is CPU used by other processes during the step. Generator-limited: the generator offered less than 95% of the asked rate.\n"

// outputText is a step's output rate; an aggregate that emitted nothing
// says so.
func outputText(s *Step) string {
	if s.Pipe.Aggregate && s.Pipe.OutExpected == 0 {
		return "0 (nothing emitted)"
	}
	return fmtRate(s.Pipe.OutputRPS)
}

// fmtCount writes a count with thousands separators.
func fmtCount(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func toFloat(v any) float64 {
	f, _ := v.(float64)
	return f
}
