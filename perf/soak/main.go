// Command soak runs `sluice run` for a long time under steady load with
// exporters coming and going, template churn and pipeline reloads, samples
// its resident memory, goroutines and open files, and judges whether they
// stay flat after the warm-up. make soak DURATION=1h runs it.
//
// The load: one long-lived `sluice gen` (UDP, four exporters) at 70 % of the
// rate, and every 20 s a short-lived one (15 s, alternately UDP and TCP,
// four exporters with their own source addresses) at 30 %, whose
// observation domains and templates change from one to the next and recur
// every six runs, so templates are learned, replaced and expire
// (--template-lifetime 2m) all the time. Every minute a different pipeline
// is put through the admin API (PUT /api/v1/pipeline). Every 10 s one row
// goes to the CSV: seconds, resident bytes and open files (from /proc),
// goroutines (go_goroutines from /metrics), records decoded, records
// dropped, sequence loss.
//
// Pass: after the warm-up (the first 20 % of the run), a least-squares
// line through each series changes over the rest of the run by less than
// 10 % of the series' mean, or by less than a floor (8 MiB of memory, 10
// goroutines, 5 open files), whichever is larger.
package main

import (
	"flag"
	"fmt"
	"os"
	"time"
)

func main() {
	var c config
	flag.StringVar(&c.sluice, "sluice", "bin/sluice", "the sluice binary")
	flag.DurationVar(&c.duration, "duration", time.Hour, "how long to run")
	flag.IntVar(&c.rate, "rate", 0, "total records/s (0: half the zero-loss rate, measured first in 3 s steps)")
	flag.IntVar(&c.maxRate, "max-rate", 200000, "cap on the measured rate (a shared machine; 0: none)")
	flag.DurationVar(&c.interval, "interval", 10*time.Second, "sampling interval")
	flag.DurationVar(&c.reload, "reload", time.Minute, "pipeline reload interval")
	flag.DurationVar(&c.churn, "churn", 20*time.Second, "a short-lived exporter group starts this often")
	flag.Float64Var(&c.warmup, "warmup", 0.2, "fraction of the run left out of the judgement")
	flag.StringVar(&c.csv, "csv", "perf/results/soak.csv", "samples (CSV)")
	flag.StringVar(&c.png, "png", "perf/soak.png", "plot of the samples (PNG)")
	flag.StringVar(&c.results, "results", "", "Markdown file whose \"## Soak\" section is replaced with the result (e.g. perf/RESULTS.md)")
	flag.StringVar(&c.note, "note", "", "a line about the machine or run, written with the result")
	flag.Parse()
	ok, err := run(c)
	if err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(2)
	}
	if !ok {
		fmt.Fprintln(os.Stderr, "soak: FAIL: not flat after the warm-up")
		os.Exit(1)
	}
}
