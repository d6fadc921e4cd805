#!/usr/bin/env bash
# JSON lines into /dev/null before and after issue 19 (cheaper encoder,
# mediator workers), one binary after the other on this machine: the
# encoder before (BEFORE, default 35ec279), the new one on one mediator
# goroutine (--mediator-workers 1), and on the default (one per event
# loop, at most one per CPU). Each is a `perf-runner run` ladder and
# bisection with a CPU profile at its best rate; results, profiles and
# a Markdown file per binary go to perf/results/jsonmed/ (RESULTS.md is
# left alone: its section "JSON lines on more than one goroutine" quotes
# them).
#
#   perf/jsonmed.sh [runner flags]     e.g. --step 5s
source "$(dirname "$0")/lib.sh"
BEFORE=${BEFORE:-35ec279}
build_sluice
out=perf/results/jsonmed
mkdir -p "$out"
if [[ ! -x bin/sluice-before || "$(cat bin/sluice-before.ref 2>/dev/null)" != "$BEFORE" ]]; then
	log "building bin/sluice-before from $BEFORE"
	src=$(mktemp -d)
	git archive "$BEFORE" | tar -x -C "$src"
	(cd "$src" && CGO_ENABLED=0 "$GO" build -trimpath -o "$ROOT/bin/sluice-before" ./cmd/sluice)
	rm -rf "$src"
	echo "$BEFORE" > bin/sluice-before.ref
fi
run() {
	local name=$1 bin=$2
	shift 2
	log "== $name"
	bin/perf-runner run --sluice "$bin" --gen bin/sluice --outputs jsonl:/dev/null --overload=false \
		--results "$out/$name" --results-md "$out/$name.md" --plot-dir "$out/$name" \
		--command "perf/jsonmed.sh ($name)" "$@"
}
run before bin/sluice-before "$@"
run workers-1 bin/sluice --sluice-args "--mediator-workers 1" "$@"
run workers-default bin/sluice "$@"
grep -h -A4 '^| output |' "$out"/before.md "$out"/workers-1.md "$out"/workers-default.md
