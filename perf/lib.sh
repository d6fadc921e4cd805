# Shared by perf/run.sh, perf/ceiling.sh, perf/compare.sh and perf/pipeline.sh:
# build what the runs need into bin/ and install gnuplot for the plots.
# Sourced, not run.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
GO=${GO:-go}
GOFLOW2_VERSION=${GOFLOW2_VERSION:-v2.2.6}

log() { printf '%s\n' "$*" >&2; }

build_sluice() {
	log "building bin/sluice, bin/perf-runner"
	CGO_ENABLED=0 "$GO" build -trimpath -o bin/sluice ./cmd/sluice
	"$GO" build -o bin/perf-runner ./perf/runner
}

build_sink() {
	log "building bin/perf-sink"
	"$GO" build -o bin/perf-sink ./perf/sink
}

# goflow2 is installed outside this module (it must not enter go.mod).
install_goflow2() {
	if [[ -x bin/goflow2 ]] && "$GO" version -m bin/goflow2 2>/dev/null | grep -q "goflow2/v2[[:space:]]*$GOFLOW2_VERSION"; then
		return
	fi
	log "installing goflow2 $GOFLOW2_VERSION into bin/"
	(cd "$(mktemp -d)" && GOBIN="$ROOT/bin" GOFLAGS=-mod=mod "$GO" install "github.com/netsampler/goflow2/v2/cmd/goflow2@$GOFLOW2_VERSION")
}

ensure_gnuplot() {
	command -v gnuplot >/dev/null && return
	log "installing gnuplot-nox for the plots"
	local sudo=()
	[[ $(id -u) -eq 0 ]] || sudo=(sudo -n)
	if ! { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gnuplot-nox >/dev/null 2>&1 ||
		{ "${sudo[@]}" apt-get update -qq >/dev/null 2>&1 &&
			"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gnuplot-nox >/dev/null 2>&1; }; }; then
		log "could not install gnuplot-nox: the results will have no plot (install it and run: bin/perf-runner report)"
	fi
}

# run_mode MODE SCRIPT ARGS...: run the runner; PERF_ARGS (environment)
# adds flags, PERF_COMMAND names the command in RESULTS.md.
run_mode() {
	local mode=$1 script=$2
	shift 2
	local cmd=${PERF_COMMAND:-$script${*:+ $*}${PERF_ARGS:+ $PERF_ARGS}}
	# shellcheck disable=SC2086 # PERF_ARGS is split on purpose
	exec ./bin/perf-runner "$mode" --command "$cmd" ${PERF_ARGS:-} "$@"
}
