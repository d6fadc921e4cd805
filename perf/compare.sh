#!/usr/bin/env bash
# Sluice (discard output) and goflow2 v2.2.6 (-format bin -transport file
# into /dev/null) under the same generator at the same rates, one after the
# other on this machine. goflow2 is installed into bin/ with `go install`
# (outside this module). Writes perf/results/compare.json, the "compare"
# section of perf/RESULTS.md and perf/compare.png (decoded vs offered for
# both).
#
#   perf/compare.sh [runner flags]    e.g. --step 10s --goflow2-listen-query count=2
#   bin/perf-runner compare -h        lists the flags
#
# Defaults take 2-4 minutes.
source "$(dirname "$0")/lib.sh"
build_sluice
install_goflow2
ensure_gnuplot
run_mode compare perf/compare.sh "$@"
