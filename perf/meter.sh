#!/usr/bin/env bash
# sluice meter against softflowd on the same capture, one core each: the
# 1M-packet synthetic capture of dataplane/meter's tests (TCP sessions,
# UDP and ICMP echo, IPv4 and IPv6, 2000 conversations open at a time).
# BenchmarkMeter meters the file (pcap reading included) and then runs
# softflowd -r on it (exporting IPFIX over UDP to the benchmark); both
# are pinned to CPU ${CPU:-1} with taskset. Prints the results and the
# load average, so a busy machine shows.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
GO=${GO:-go}
CPU=${CPU:-1}
COUNT=${COUNT:-5}
command -v softflowd >/dev/null || { echo "softflowd is not installed (apt-get install softflowd)" >&2; exit 1; }
"$GO" test -c -o bin/meter.test ./dataplane/meter
echo "commit $(git rev-parse --short HEAD), $(nproc) CPUs, $(uname -r), $("$GO" version | cut -d' ' -f3)"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
taskset -c "$CPU" bin/meter.test -test.run '^$' -test.bench 'BenchmarkMeter$' -test.benchtime 3x -test.count "$COUNT"
filter() { grep -v '^goos\|^goarch\|^pkg\|^cpu\|^PASS'; }
taskset -c "$CPU" bin/meter.test -test.run '^$' -test.bench 'BenchmarkMeterPacket$' -test.benchtime 5000000x -test.count 3 | filter
taskset -c "$CPU" bin/meter.test -test.run '^$' -test.bench 'BenchmarkMeterFlowMemory$' -test.benchtime 1x -test.count 1 | filter
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
