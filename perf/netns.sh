#!/usr/bin/env bash
# A ceiling not limited by the generator's share of the CPUs: `sluice gen`
# runs in a network namespace of its own pinned to CPU 1 and sends over a
# veth pair to `sluice run --output discard` pinned to CPU 0 in the root
# namespace (a ladder and a bisection for the highest zero-loss rate); the
# same with RPS on the veth, so that Sluice's CPU delivers the packets (as a
# NIC interrupting its core would) rather than the generator's; then the
# same ladder with the generator in the root namespace over loopback, same
# pinning (--rps=false leaves out the second series). Each step reports Sluice's CPU seconds per million records,
# the kernel's share of it, the generator's own CPU and each pinned CPU's
# softirq time. The namespace and the veth pair are made for the run and
# removed at its end (on Ctrl-C too). Needs root and iproute2. Writes
# perf/results/netns.json, the "netns" section of perf/RESULTS.md and
# perf/netns.png.
#
#   perf/netns.sh [runner flags]      e.g. --step 5s --outputs "discard jsonl:/dev/null"
#   bin/perf-runner netns -h          lists the flags
#
# Defaults take 3-5 minutes on a quiet machine.
source "$(dirname "$0")/lib.sh"
if [[ $(id -u) -ne 0 ]]; then
	log "perf/netns.sh needs root (network namespaces, veth pair)"
	exit 1
fi
build_sluice
ensure_gnuplot
run_mode netns perf/netns.sh --profile=false --overload=false "$@"
