//go:build linux

package main

import (
	"fmt"
	"math"
	"os"
	"time"
)

// Series is every step run against one target, and what they show.
type Series struct {
	Target string  `json:"target"`
	Kind   string  `json:"kind"`
	Output string  `json:"output"`
	Steps  []*Step `json:"steps"`
	// Best is the zero-loss step with the highest offered rate.
	BestRPS float64 `json:"best_zero_loss_rps"`
	BestPPS float64 `json:"best_zero_loss_pps"`
	// BestGenLimited: the generator could not offer more than BestRPS, so
	// the receiver's limit is at least that.
	BestGenLimited bool `json:"best_generator_limited"`
	// LowestLossRPS is the lowest offered rate that lost records (0: none).
	LowestLossRPS float64 `json:"lowest_loss_rps"`
	// MaxRPS and MaxPPS: the most decoded (received, for the sink) by any
	// step, usually with the generator running flat out.
	MaxRPS  float64 `json:"max_decoded_rps"`
	MaxPPS  float64 `json:"max_received_pps"`
	Aborted string  `json:"aborted,omitempty"`
	// TargetRPS is the goal for BestRPS, if the target has one.
	TargetRPS float64 `json:"target_rps,omitempty"`
}

type searchCfg struct {
	start, factor, max float64
	pastLoss           int // ladder steps to run past the first loss (to show saturation)
	bisect             int // bisection steps
	precision          float64
	maxStep            bool // first run the generator flat out (rate 0)
	profile            bool // then a profiled step at the best rate
	overload           bool // then a step at twice the best rate
	profileName        string
}

// search runs a ladder of rates (start, start*factor, ...) and bisects
// between the highest zero-loss rate and the lowest lossy one.
func (r *runner) search(t Target, c searchCfg) *Series {
	se := &Series{Target: t.String(), Kind: t.Kind, Output: t.Output}
	lo, hi := 0.0, math.Inf(1)
	run := func(rate float64, phase string, profile string) *Step {
		if r.timeUp() {
			if se.Aborted == "" {
				se.Aborted = fmt.Sprintf("stopped after --max-time %s", r.cfg.maxTime)
				r.logf("  %s: --max-time %s reached; skipping the remaining steps", t, r.cfg.maxTime)
			}
			return nil
		}
		r.stepNo++
		label := "as fast as possible"
		if rate > 0 {
			label = fmtRate(rate) + " rec/s"
		}
		r.logf("  [%s] step %d (%s): %s for %s ...", t, r.stepNo, phase, label, r.cfg.step)
		s, err := r.runStep(t, rate, stepOpts{phase: phase, profile: profile})
		if r.tty {
			fmt.Fprint(os.Stderr, "\r\033[K")
		}
		if err != nil {
			r.logf("    error: %v", err)
			s = &Step{Target: t.String(), Kind: t.Kind, Phase: phase, TargetRPS: rate, Error: err.Error()}
			se.Steps = append(se.Steps, s)
			return nil
		}
		se.Steps = append(se.Steps, s)
		r.logf("    %s", stepLine(s))
		if s.DecodedRPS > se.MaxRPS {
			se.MaxRPS = s.DecodedRPS
		}
		if s.ReceivedPPS > se.MaxPPS {
			se.MaxPPS = s.ReceivedPPS
		}
		if phase == "profile" || phase == "overload" {
			return s
		}
		if s.ZeroLoss {
			if s.OfferedRPS > lo {
				lo = s.OfferedRPS
				se.BestRPS, se.BestPPS, se.BestGenLimited = s.OfferedRPS, s.OfferedPPS, s.GenLimited || rate == 0
			}
		} else if s.OfferedRPS < hi {
			hi = s.OfferedRPS
			se.LowestLossRPS = hi
		}
		return s
	}
	if c.maxStep {
		run(0, "max", "")
	}
	// Ladder up.
	pastLoss := -1
	prevOffered := 0.0
	for rate := c.start; rate <= c.max; rate *= c.factor {
		s := run(rate, "ladder", "")
		if s == nil {
			break
		}
		if !s.ZeroLoss {
			pastLoss++
			if pastLoss >= c.pastLoss {
				break
			}
		}
		// The generator could not offer what was asked. Asking for more
		// is useless once that no longer raises the offered rate (a busy
		// machine can hold it back at one step and not the next).
		if s.GenLimited && s.OfferedRPS < 1.1*prevOffered {
			break
		}
		prevOffered = math.Max(prevOffered, s.OfferedRPS)
	}
	// Nothing held: ladder down.
	for i, rate := 0, c.start/c.factor; lo == 0 && i < 4 && !r.timeUp(); i, rate = i+1, rate/c.factor {
		run(rate, "ladder", "")
	}
	// Bisect (geometrically) between the best zero-loss and the lowest
	// lossy offered rates.
	for i := 0; i < c.bisect && lo > 0 && !math.IsInf(hi, 1) && hi/lo > 1+c.precision; i++ {
		if run(math.Sqrt(lo*hi), "bisect", "") == nil {
			break
		}
	}
	if lo > 0 && c.profile && t.Kind == kindSluice {
		if !r.nativePprof {
			r.logf("  sluice run has no --pprof flag: skipping the profile step")
		} else {
			run(lo, "profile", c.profileName)
		}
	}
	if lo > 0 && c.overload {
		run(2*lo, "overload", "")
	}
	return se
}

func (r *runner) timeUp() bool {
	return r.cfg.maxTime > 0 && time.Since(r.started) > r.cfg.maxTime
}

// stepLine is the progress line of a finished step.
func stepLine(s *Step) string {
	verdict := "zero loss"
	if !s.ZeroLoss {
		verdict = fmt.Sprintf("LOSS %.3g%%", 100*s.LossFraction)
	}
	if s.GenLimited {
		verdict += ", generator-limited"
	}
	what := fmt.Sprintf("decoded %s rec/s", fmtRate(s.DecodedRPS))
	if s.Kind == kindSink {
		what = fmt.Sprintf("received %s pkt/s", fmtRate(s.ReceivedPPS))
	}
	seq := ""
	if s.SeqLost >= 0 {
		seq = fmt.Sprintf(" seq-lost %.0f,", s.SeqLost)
	}
	pipe := ""
	if p := s.Pipe; p != nil {
		pipe = fmt.Sprintf("; output %s rec/s, out-lost %.0f (dropped %.0f, queued %.0f, unsent %.0f", fmtRate(p.OutputRPS), p.OutLost, p.OutDropped, p.OutQueued, p.OutUnaccounted)
		if p.Receiver {
			pipe += fmt.Sprintf(", receiver missing %.0f, seq %.0f", p.RecvMissing, p.RecvSeqLost)
		}
		pipe += ")"
		if p.Aggregate {
			pipe += fmt.Sprintf("; keys %.0f, %.0f B/key (RSS), %.0f B/key (table)", p.Keys, p.BytesPerKeyRSS, p.BytesPerKeyTable)
		}
	}
	return fmt.Sprintf("offered %s rec/s (%s pkt/s), %s; lost %.0f,%s sock-drops %.0f%s; cpu %.3f s/M rec, rss %.0f MB, drain %.2f s, others %.2f cores: %s",
		fmtRate(s.OfferedRPS), fmtRate(s.OfferedPPS), what, s.LostRecords, seq, s.SocketDrops, pipe,
		s.CPUPerMillion, s.PeakRSS/1e6, s.DrainSeconds, s.OtherCores, verdict)
}
