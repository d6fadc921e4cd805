#!/usr/bin/env bash
# Throughput of `sluice run` alone: for each output (default: discard and
# JSON lines into /dev/null) a ladder of rates and a bisection find the
# highest rate without loss; then a profiled step at that rate (CPU and
# allocation profiles) and a step at twice that rate (memory and loss
# accounting under overload). Writes perf/results/run.json, the "run"
# section of perf/RESULTS.md and perf/run.png.
#
#   perf/run.sh [runner flags]        e.g. --step 10s --outputs discard
#   bin/perf-runner run -h            lists the flags
#
# Defaults take 1-3 minutes.
source "$(dirname "$0")/lib.sh"
build_sluice
ensure_gnuplot
run_mode run perf/run.sh "$@"
