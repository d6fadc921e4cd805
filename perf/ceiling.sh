#!/usr/bin/env bash
# What this machine's loopback can deliver at all: the same generator with
# small messages (2 records each, so the per-datagram cost dominates) against
# perf/sink, a minimal recvmmsg receiver, then against `sluice run --output
# discard`; Sluice's packets/s are reported as a fraction of the sink's.
# Writes perf/results/ceiling.json, the "ceiling" section of
# perf/RESULTS.md and perf/ceiling.png.
#
#   perf/ceiling.sh [runner flags]    e.g. --step 10s --records 1
#   bin/perf-runner ceiling -h        lists the flags
#
# Defaults take 1-2 minutes.
source "$(dirname "$0")/lib.sh"
build_sluice
build_sink
ensure_gnuplot
run_mode ceiling perf/ceiling.sh "$@"
