package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-flow/sluice/dataplane/export"
	"github.com/sluice-flow/sluice/dataplane/meter"
)

// runMeter is `sluice meter [flags] -o OUT CAPTURE...`.
func runMeter(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("meter", "[flags] (-o OUT | --output SPEC...) CAPTURE...",
		"Meters pcap/pcapng captures into IPFIX flow records (capture time drives every timeout).\n"+
			"-o FILE writes an RFC 5655 IPFIX file, -o - JSON lines on stdout; --output takes any\n"+
			"output sluice run accepts. Captures given together continue one another.", stderr)
	out := fs.String("o", "", "output: FILE (RFC 5655 IPFIX file, replaced) or - (JSON lines on stdout)")
	var outputs stringList
	fs.Var(&outputs, "output", "output spec, repeatable: jsonl:-, jsonl:PATH, jsonl+tcp://HOST:PORT, ipfix+tcp://HOST:PORT, ipfix+udp://HOST:PORT, ipfix-file:PATH, discard")
	biflow := fs.Bool("biflow", false, "one RFC 5103 record per bidirectional flow (initiator: first packet)")
	active := fs.Duration("active-timeout", meter.DefaultActiveTimeout, "export a flow that has lasted this long")
	idle := fs.Duration("idle-timeout", meter.DefaultIdleTimeout, "export a flow without packets for this long")
	maxFlows := fs.Int("max-flows", meter.DefaultMaxFlows, "flow table bound; at it the least recently seen flow is exported early")
	maxFrags := fs.Int("max-fragments", meter.DefaultMaxFragments, "bound of the table giving later IP fragments their ports")
	dpi := fs.Bool("dpi", false, "read TLS server name, HTTP method and Host, DNS query name and type from each flow's first packets")
	domain := fs.Uint("domain", 0, "IPFIX observation domain ID")
	quiet := fs.Bool("quiet", false, "no progress or summary on stderr")
	if err := parseFlags(fs, args, 1, stdout); err != nil {
		return err
	}
	if *out == "" && len(outputs) == 0 {
		return usageError{errors.New("no output: give -o FILE, -o - or --output SPEC")}
	}
	if *domain > 1<<32-1 {
		return usageError{fmt.Errorf("--domain %d out of range", *domain)}
	}
	cfg := meter.Config{
		ActiveTimeout:     *active,
		IdleTimeout:       *idle,
		Biflow:            *biflow,
		MaxFlows:          *maxFlows,
		MaxFragments:      *maxFrags,
		DPI:               *dpi,
		ObservationDomain: uint32(*domain),
	}
	start := time.Now()
	if !*quiet {
		cfg.Progress = func(p meter.Progress) {
			if time.Since(start) >= time.Second {
				writeMeterProgress(stderr, p)
			}
		}
	}
	var sinks meter.Tee
	var outs []export.Output
	if *out == "-" {
		outputs = append([]string{"jsonl:-"}, outputs...)
	}
	for _, spec := range outputs {
		o, err := export.Parse(spec, stdout)
		if err != nil {
			for _, o := range outs {
				o.Close()
			}
			return usageError{err}
		}
		outs = append(outs, o)
	}
	if *out != "" && *out != "-" {
		f, err := os.Create(*out)
		if err != nil {
			for _, o := range outs {
				o.Close()
			}
			return err
		}
		sinks = append(sinks, meter.NewFileSink(f))
	}
	if len(outs) > 0 {
		sinks = append(sinks, meter.NewOutputSink(outs...))
	}
	m, err := meter.New(cfg, sinks)
	if err != nil {
		sinks.Close()
		return usageError{err}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var firstErr error
	for _, name := range fs.Args() {
		err := m.ReadFile(ctx, name)
		switch {
		case err == nil:
		case errors.Is(err, meter.ErrDamaged):
			fmt.Fprintf(stderr, "sluice meter: warning: %v (the rest of the file is skipped)\n", err)
		default:
			if firstErr == nil {
				firstErr = err
			}
			fmt.Fprintf(stderr, "sluice meter: %v\n", err)
		}
		if ctx.Err() != nil {
			break
		}
	}
	if err := m.Close(); err != nil && firstErr == nil {
		firstErr = err
	}
	if !*quiet {
		writeMeterSummary(stderr, m.Stats(), time.Since(start))
	}
	return firstErr
}

func writeMeterProgress(w io.Writer, p meter.Progress) {
	pct := ""
	if v := p.Percent(); v >= 0 {
		pct = fmt.Sprintf(" %.0f%%", v)
	}
	fmt.Fprintf(w, "sluice meter: %s%s: %d packets, %d bytes read, %d flows open, %d exported\n",
		p.File, pct, p.Packets, p.Bytes, p.FlowsOpen, p.Flows)
}

func writeMeterSummary(w io.Writer, s meter.Stats, took time.Duration) {
	var skipped []string
	for r := 1; r < meter.NumReasons; r++ {
		if n := s.Skipped[r]; n > 0 {
			skipped = append(skipped, fmt.Sprintf("%s=%d", meter.Reason(r), n))
		}
	}
	sk := "none"
	if len(skipped) > 0 {
		sk = strings.Join(skipped, " ")
	}
	fmt.Fprintf(w, "sluice meter: %d packets (%d metered, %d IP octets), %d flows exported (%d early at --max-flows), %d messages, skipped: %s, in %v\n",
		s.Packets, s.Metered, s.Octets, s.Flows, s.EarlyExports, s.Messages, sk, took.Round(time.Millisecond))
}
