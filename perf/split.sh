#!/usr/bin/env bash
# The split pod against sluice run: for each output (default discard) the
# ladder and bisection of `make perf` run first on `sluice run`, then on
# `sluice collector` + `sluice mediator` over file rings on /dev/shm, and
# the report gives the split form's zero-loss rate as a fraction of run's
# (goal: at least 90 %). The CPU column of a split step counts both
# processes. Writes perf/results/split.json, the "split" section of
# perf/RESULTS.md and perf/split.png.
#
#   perf/split.sh [runner flags]      e.g. --gen-cpus 0 --receiver-cpus 1
#   bin/perf-runner split -h          lists the flags
#
# Defaults take 2-3 minutes.
source "$(dirname "$0")/lib.sh"
build_sluice
ensure_gnuplot
run_mode split perf/split.sh --profile=false --overload=false "$@"
