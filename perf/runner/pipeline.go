//go:build linux

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-flow/sluice/dataplane/pipeline"
)

// receiverPlaceholder stands for the runner's TCP receiver (host:port) in
// a pipeline file.
const receiverPlaceholder = "RECEIVER"

// pipelineSpec is a pipeline file the pipeline mode measures.
type pipelineSpec struct {
	Name string
	// Text is the file; RECEIVER is replaced by the address of the TCP
	// receiver the runner starts for each step.
	Text string
	// TargetRPS is the goal for the input rate without loss (0:
	// none).
	TargetRPS float64

	// From parsing Text.
	outputs   []int    // per pipeline: distinct outputs it feeds
	names     []string // pipeline names as in the metrics
	aggregate bool     // some stage aggregates: fill the table before measuring
	receiver  bool     // some output goes to the receiver
}

// builtinPipelines are measured by default, in this order.
var builtinPipelines = []pipelineSpec{
	{Name: "select-project-tcp", TargetRPS: 5e6, Text: `pipelines:
  - name: select-project-tcp
    stages:
      - select: protocolIdentifier == 6 or protocolIdentifier == 17
      - project: {keep: [sourceIPv4Address, destinationIPv4Address, sourceTransportPort, destinationTransportPort, protocolIdentifier, octetDeltaCount, packetDeltaCount]}
    outputs: ["ipfix+tcp://RECEIVER"]
`},
	{Name: "aggregate-1m", TargetRPS: 3e6, Text: `pipelines:
  - name: aggregate-1m
    stages:
      - aggregate:
          keys: [sourceIPv4Address, destinationIPv4Address, sourceTransportPort, destinationTransportPort, protocolIdentifier]
          interval: 1h
          max_keys: 1100000
    outputs: [discard]
`},
}

// lookupPipeline returns a built-in pipeline by name, or reads a file:
// its name is the file's base name without the extension.
func lookupPipeline(arg string) (*pipelineSpec, error) {
	var ps pipelineSpec
	found := false
	for _, b := range builtinPipelines {
		if b.Name == arg {
			ps, found = b, true
		}
	}
	if !found {
		if !strings.ContainsAny(arg, "/.") {
			var names []string
			for _, b := range builtinPipelines {
				names = append(names, b.Name)
			}
			return nil, fmt.Errorf("--pipelines: %q is neither a built-in pipeline (%s) nor a file", arg, strings.Join(names, ", "))
		}
		b, err := os.ReadFile(arg)
		if err != nil {
			return nil, fmt.Errorf("--pipelines: %w", err)
		}
		ps.Name = strings.TrimSuffix(filepath.Base(arg), filepath.Ext(arg))
		ps.Text = string(b)
	}
	if err := ps.parse(); err != nil {
		return nil, err
	}
	return &ps, nil
}

// parse checks the file with Sluice's own parser (with a stand-in
// receiver address) and notes what the steps need to know.
func (ps *pipelineSpec) parse() error {
	cfg, err := pipeline.Parse([]byte(ps.file("127.0.0.1:4739")))
	if err != nil {
		return fmt.Errorf("pipeline %s: %w", ps.Name, err)
	}
	ps.receiver = strings.Contains(ps.Text, receiverPlaceholder)
	ps.outputs, ps.names, ps.aggregate = nil, nil, false
	for i, p := range cfg.Pipelines {
		name := p.Name
		if name == "" {
			name = "pipeline" + strconv.Itoa(i+1)
		}
		distinct := map[string]bool{}
		for _, o := range p.Outputs {
			if spec, ok := cfg.Outputs[o]; ok {
				o = spec
			}
			distinct[o] = true
		}
		ps.names = append(ps.names, name)
		ps.outputs = append(ps.outputs, len(distinct))
		for _, s := range p.Stages {
			ps.aggregate = ps.aggregate || s.Aggregate != nil
		}
	}
	return nil
}

// file is the pipeline file for a receiver at addr.
func (ps *pipelineSpec) file(addr string) string {
	return strings.ReplaceAll(ps.Text, receiverPlaceholder, addr)
}

// pipeCounts are a pipeline run's counters at one moment.
type pipeCounts struct {
	// OutExpected: records the pipelines handed to their outputs, once per
	// output (sluice_pipeline_stage_records_total{stage="outputs"}).
	OutExpected float64
	OutSent     float64
	OutDropped  float64
	OutQueued   float64 // gauge
	// OutSentRecv: sent by the outputs that go to the receiver.
	OutSentRecv float64
	// Stages: sluice_pipeline_stage_records_total by "pipeline/stage/direction".
	Stages     map[string]float64
	AggKeys    float64 // gauge
	AggBytes   float64 // gauge
	AggEvicted float64
	AggEmitted float64
	AggDropped float64
	Recv       recvCounts
}

func scrapePipeline(m metrics, ps *pipelineSpec, recvAddr string) pipeCounts {
	var c pipeCounts
	for i, name := range ps.names {
		c.OutExpected += float64(ps.outputs[i]) * m.sum("sluice_pipeline_stage_records_total", "pipeline", name, "stage", "outputs", "direction", "in")
	}
	c.OutSent = m.sum("sluice_output_records_total", "outcome", "sent")
	c.OutDropped = m.sum("sluice_output_records_total", "outcome", "dropped")
	c.OutQueued = m.sum("sluice_output_queued_records")
	c.Stages = map[string]float64{}
	for _, s := range m {
		switch s.name {
		case "sluice_pipeline_stage_records_total":
			c.Stages[s.labels["pipeline"]+"/"+s.labels["stage"]+"/"+s.labels["direction"]] += s.value
		case "sluice_output_records_total":
			if recvAddr != "" && s.labels["outcome"] == "sent" && strings.Contains(s.labels["output"], recvAddr) {
				c.OutSentRecv += s.value
			}
		}
	}
	c.AggKeys = m.sum("sluice_aggregate_keys")
	c.AggBytes = m.sum("sluice_aggregate_table_bytes")
	c.AggEvicted = m.sum("sluice_aggregate_evicted_total")
	c.AggEmitted = m.sum("sluice_aggregate_emitted_total")
	c.AggDropped = m.sum("sluice_aggregate_dropped_total")
	return c
}

// outputsSettled reports whether everything the pipelines handed to the
// outputs is accounted for (sent or dropped, nothing queued) and, with a
// receiver, whether it has counted all that was sent to it.
func (c pipeCounts) outputsSettled(withRecv bool) bool {
	if c.OutQueued > 0 || c.OutSent+c.OutDropped < c.OutExpected {
		return false
	}
	return !withRecv || c.Recv.Records >= c.OutSentRecv
}

// moved reports whether any counter the drain waits on changed.
func (c pipeCounts) moved(o pipeCounts) bool {
	return c.OutExpected != o.OutExpected || c.OutSent != o.OutSent || c.OutDropped != o.OutDropped ||
		c.OutQueued != o.OutQueued || c.Recv.Records != o.Recv.Records || c.AggKeys != o.AggKeys
}

// PipeStep is what a pipeline step measured beyond the input side.
type PipeStep struct {
	Pipeline string `json:"pipeline"`
	// OutExpected: records the pipelines handed to outputs (per output).
	OutExpected float64 `json:"output_expected_records"`
	OutSent     float64 `json:"output_sent_records"`
	OutDropped  float64 `json:"output_dropped_records"`
	// OutQueued: records still in output queues at the end of the step.
	OutQueued float64 `json:"output_queued_records_at_end"`
	// OutUnaccounted: handed to outputs but neither sent nor dropped by
	// the end of the step (encoder buffers not flushed).
	OutUnaccounted float64 `json:"output_unaccounted_records"`
	// OutputRPS: records sent by the outputs while the generator ran, over
	// its send time.
	OutputRPS float64 `json:"output_rps"`

	Receiver         bool    `json:"receiver"`
	RecvRecords      float64 `json:"receiver_records"`
	RecvOctets       float64 `json:"receiver_octets"`
	RecvMessages     float64 `json:"receiver_messages"`
	RecvMissing      float64 `json:"receiver_missing_records"` // sent to it minus counted by it
	RecvSeqLost      float64 `json:"receiver_sequence_lost"`
	RecvUnknownSets  float64 `json:"receiver_unknown_sets"`
	RecvStreamErrors float64 `json:"receiver_stream_errors"`

	// OutLost is the largest of the output-side loss measures.
	OutLost float64 `json:"output_lost_records"`

	Stages map[string]float64 `json:"stage_records,omitempty"`

	Aggregate        bool    `json:"aggregate"`
	PrefillRecords   float64 `json:"prefill_records,omitempty"`
	PrefillSeconds   float64 `json:"prefill_seconds,omitempty"`
	KeysAfterPrefill float64 `json:"keys_after_prefill,omitempty"`
	Keys             float64 `json:"keys_at_end,omitempty"`
	TableBytes       float64 `json:"aggregate_table_bytes,omitempty"`
	Evicted          float64 `json:"aggregates_evicted,omitempty"`
	Emitted          float64 `json:"aggregates_emitted,omitempty"`
	AggDropped       float64 `json:"aggregates_dropped,omitempty"`
	// RSSBase is VmRSS after the warm-up, before the table was filled;
	// RSSEnd VmRSS at the end of the step.
	RSSBase float64 `json:"rss_base_bytes,omitempty"`
	RSSEnd  float64 `json:"rss_end_bytes,omitempty"`
	// BytesPerKeyRSS: (RSSEnd - RSSBase) / keys held; BytesPerKeyTable:
	// sluice_aggregate_table_bytes / keys held.
	BytesPerKeyRSS   float64 `json:"bytes_per_key_rss,omitempty"`
	BytesPerKeyTable float64 `json:"bytes_per_key_table,omitempty"`
}

// finishPipeStep fills in a step's output side from the counters at the
// baseline, when the generator stopped, and at the end.
func finishPipeStep(ps *PipeStep, base, atEnd, last pipeCounts, sendSeconds float64) {
	ps.OutExpected = last.OutExpected - base.OutExpected
	ps.OutSent = last.OutSent - base.OutSent
	ps.OutDropped = last.OutDropped - base.OutDropped
	ps.OutQueued = last.OutQueued
	ps.OutUnaccounted = max(0, ps.OutExpected-ps.OutSent-ps.OutDropped-ps.OutQueued)
	if sendSeconds > 0 {
		ps.OutputRPS = (atEnd.OutSent - base.OutSent) / sendSeconds
	}
	if ps.Receiver {
		r, b := last.Recv, base.Recv
		ps.RecvRecords = r.Records - b.Records
		ps.RecvOctets = r.Octets - b.Octets
		ps.RecvMessages = r.Messages - b.Messages
		ps.RecvMissing = max(0, (last.OutSentRecv-base.OutSentRecv)-ps.RecvRecords)
		ps.RecvSeqLost = r.SeqLost - b.SeqLost
		ps.RecvUnknownSets = r.UnknownSets - b.UnknownSets
		ps.RecvStreamErrors = r.StreamErrors - b.StreamErrors
	}
	ps.OutLost = max(ps.OutDropped, ps.OutQueued, ps.OutUnaccounted, ps.RecvMissing, ps.RecvSeqLost)
	ps.Stages = map[string]float64{}
	for k, v := range last.Stages {
		ps.Stages[k] = v - base.Stages[k]
	}
	if ps.Aggregate {
		ps.Keys = last.AggKeys
		ps.TableBytes = last.AggBytes
		ps.Evicted = last.AggEvicted - base.AggEvicted
		ps.Emitted = last.AggEmitted - base.AggEmitted
		ps.AggDropped = last.AggDropped - base.AggDropped
		if ps.Keys > 0 {
			ps.BytesPerKeyTable = ps.TableBytes / ps.Keys
			if ps.RSSEnd > ps.RSSBase {
				ps.BytesPerKeyRSS = (ps.RSSEnd - ps.RSSBase) / ps.Keys
			}
		}
	}
}

// outputOK reports whether the output side lost nothing and the receiver
// could count everything.
func (ps *PipeStep) outputOK() bool {
	return ps.OutLost == 0 && ps.RecvUnknownSets == 0 && ps.RecvStreamErrors == 0 && ps.AggDropped == 0
}

// prefillCount is how many data messages send each of keys once from
// every exporter: each exporter's share in whole messages, plus one more
// round of batches because the generator hands out a count round by round.
func prefillCount(keys, exporters, records, batch int) int {
	per := (keys/exporters + 1 + records - 1) / records
	return exporters*per + exporters*batch
}

// prefill sends every key once at --prefill-rate and waits until the
// aggregate table stops growing, so the measured step starts with the
// table full.
func (r *runner) prefill(p *proc, ps *PipeStep) error {
	before, err := p.scrape()
	if err != nil {
		return err
	}
	rate := r.cfg.prefillRate
	count := prefillCount(r.cfg.keys, r.cfg.exporters, r.cfg.records, r.genBatch(rate))
	start := time.Now()
	gen, _, err := r.runGen(p, rate, 0, count, false, r.keysArgs(p.t), nil)
	if err != nil {
		return fmt.Errorf("prefill: %w", err)
	}
	last := before
	lastChange := time.Now()
	deadline := time.Now().Add(r.cfg.drainTimeout + 5*time.Second)
	for {
		c, err := p.scrape()
		if err != nil {
			return err
		}
		if c.Decoded != last.Decoded || c.Pipe.AggKeys != last.Pipe.AggKeys {
			lastChange = time.Now()
		}
		last = c
		caughtUp := c.Decoded-before.Decoded >= float64(gen.Records)
		if caughtUp && time.Since(lastChange) >= r.cfg.settle {
			break
		}
		if !caughtUp && time.Since(lastChange) >= time.Second {
			r.logf("    prefill: sluice decoded %.0f of the %d records sent; going on", c.Decoded-before.Decoded, gen.Records)
			break
		}
		if time.Now().After(deadline) {
			r.logf("    prefill: the table did not settle within %s; going on", r.cfg.drainTimeout+5*time.Second)
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	ps.PrefillRecords = float64(gen.Records)
	ps.PrefillSeconds = time.Since(start).Seconds()
	ps.KeysAfterPrefill = last.Pipe.AggKeys
	return nil
}

// keysArgs are the generator arguments that give target t its distinct
// flow keys.
func (r *runner) keysArgs(t Target) []string {
	if t.Pipeline == nil || !t.Pipeline.aggregate || r.cfg.keys <= 0 {
		return nil
	}
	return []string{"--keys", strconv.Itoa(r.cfg.keys)}
}
