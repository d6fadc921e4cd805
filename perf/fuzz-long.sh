#!/usr/bin/env bash
# Runs every fuzz target for FUZZTIME, JOBS at a time (one fuzz worker
# each), and writes a table of the executions each reached to OUT.
# Usage: perf/fuzz-long.sh FUZZTIME JOBS OUT pkg:Target...
# A target that fails leaves its log and its crasher (testdata/fuzz/) and
# makes the script exit non-zero after the others finish.
set -u
fuzztime=$1 jobs=$2 out=$3
shift 3
go=${GO:-go}
logs=$(mktemp -d "${TMPDIR:-/tmp}/sluice-fuzz.XXXXXX")
start=$(date -u +%Y-%m-%dT%H:%M:%SZ)
commit=$(git rev-parse --short HEAD 2>/dev/null)
for t in "$@"; do
	pkg=${t%%:*} fn=${t##*:}
	"$go" test -list "^$fn\$" "$pkg" | grep -qx "$fn" || { echo "fuzz-long: no $fn in $pkg" >&2; exit 1; }
done
printf '%s\n' "$@" | xargs -P "$jobs" -I{} bash -c '
	t={} pkg=${t%%:*} fn=${t##*:}
	log='"$logs"'/$(echo "${pkg#./}" | tr / _)_$fn.log
	echo "fuzz $pkg $fn for '"$fuzztime"'"
	if "'"$go"'" test "$pkg" -run "^\$" -fuzz "^$fn\$" -fuzztime '"$fuzztime"' -parallel 1 >"$log" 2>&1; then
		echo ok >"$log.rc"
	else
		echo FAIL >"$log.rc"; echo "fuzz-long: $pkg $fn failed, see $log" >&2
	fi'
status=0
{
	echo "# Long fuzzing (\`make fuzz-long\`)"
	echo
	echo "Started $start, finished $(date -u +%Y-%m-%dT%H:%M:%SZ); each target ran for $fuzztime with one fuzz worker, $jobs targets at a time, on $(nproc) CPUs (commit $commit)."
	echo
	echo "| package | target | result | elapsed | executions | new interesting (total corpus) |"
	echo "|---|---|---|---|---|---|"
	for t in "$@"; do
		pkg=${t%%:*} fn=${t##*:}
		log=$logs/$(echo "${pkg#./}" | tr / _)_$fn.log
		rc=$(cat "$log.rc" 2>/dev/null || echo missing)
		[ "$rc" = ok ] || status=1
		last=$(grep -E '^fuzz: elapsed' "$log" | tail -n 1)
		elapsed=$(sed -nE 's/^fuzz: elapsed: ([^,]+),.*/\1/p' <<<"$last")
		execs=$(sed -nE 's/.*execs: ([0-9]+) .*/\1/p' <<<"$last")
		interesting=$(sed -nE 's/.*new interesting: (.*)$/\1/p' <<<"$last")
		echo "| \`$pkg\` | \`$fn\` | $rc | ${elapsed:--} | ${execs:--} | ${interesting:--} |"
	done
} >"$out"
cat "$out"
echo "logs: $logs"
exit $status
