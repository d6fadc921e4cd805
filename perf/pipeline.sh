#!/usr/bin/env bash
# Throughput of `sluice run --pipeline FILE` for the issue's two targets:
# select + project + IPFIX re-export over TCP (to a receiver inside the
# runner that counts every record), and aggregation with a million distinct
# keys (`sluice gen --keys`, the table filled before each step; memory per
# key from RSS growth and sluice_aggregate_table_bytes). For each pipeline a
# ladder and a bisection find the highest input rate without loss on either
# side, then a profiled step and a step at twice that rate. Writes
# perf/results/pipeline.json, the "pipeline" section of perf/RESULTS.md and
# perf/pipeline.png.
#
#   perf/pipeline.sh [runner flags]   e.g. --pipelines aggregate-1m --keys 2000000
#   bin/perf-runner pipeline -h       lists the flags
#
# Defaults take 3-5 minutes.
source "$(dirname "$0")/lib.sh"
build_sluice
ensure_gnuplot
run_mode pipeline perf/pipeline.sh "$@"
