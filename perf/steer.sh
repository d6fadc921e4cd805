#!/usr/bin/env bash
# eBPF steering against the kernel's hashing (`make perf-steer`). Exporters
# that send from many source ports (sluice gen --ports) at loopback
# addresses of their own (--distinct-addrs):
#   1. the zero-loss rate of `sluice run --steer kernel` and `--steer ebpf`
#      (perf-runner run, discard output, no profile or overload step);
#   2. A/B at fixed rates, the two modes alternating (kernel, ebpf, kernel,
#      ebpf at each rate of STEER_AB_RATES): on a shared machine the ladders
#      of step 1 are disturbed unevenly, alternating steps less so;
#   3. at one fixed rate, each loop's template cache hit rate and how many
#      (exporter, domain) pairs more than one loop saw
#      (sluice_template_cache_lookups_total, /api/v1/exporters "loops").
# Writes perf/results/steer-{kernel,ebpf}.json, perf/results/steer.json and
# the "steer" section of perf/RESULTS.md. Needs root (the BPF program).
#
#   perf/steer.sh [runner flags]     e.g. --step 5s
#   STEER_EXPORTERS=16 STEER_PORTS=8 STEER_RATE=500k perf/steer.sh
#
# Defaults take 2-5 minutes.
source "$(dirname "$0")/lib.sh"
EXPORTERS=${STEER_EXPORTERS:-16}
PORTS=${STEER_PORTS:-8}
RATE=${STEER_RATE:-300k}
AB_RATES=${STEER_AB_RATES:-2M 4M}
CMD=${PERF_COMMAND:-perf/steer.sh${*:+ $*}${PERF_ARGS:+ $PERF_ARGS}}
build_sluice
tmp=$(mktemp -d /tmp/sluice-steer.XXXXXX)
log "work directory $tmp"
mkdir -p perf/results

free_port() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

for mode in kernel ebpf; do
	log "zero-loss rate, --steer $mode"
	# shellcheck disable=SC2086 # PERF_ARGS is split on purpose
	./bin/perf-runner run --command "$CMD" --sluice-args "--steer $mode" \
		--gen-args "--distinct-addrs --ports $PORTS" --exporters "$EXPORTERS" \
		--outputs discard --profile=false --overload=false \
		--results "$tmp/runner-$mode" --results-md "$tmp/RESULTS-$mode.md" --plot-dir "$tmp" \
		${PERF_ARGS:-} "$@"
	cp "$tmp/runner-$mode/run.json" "perf/results/steer-$mode.json"
done

log "A/B at fixed rates: $AB_RATES"
: >"$tmp/ab.jsonl"
for rate in $AB_RATES; do
	for rep in 1 2; do
		for mode in kernel ebpf; do
			./bin/perf-runner run --command "$CMD" --sluice-args "--steer $mode" \
				--gen-args "--distinct-addrs --ports $PORTS" --exporters "$EXPORTERS" \
				--outputs discard --profile=false --overload=false --start "$rate" --max "$rate" \
				--bisect 0 --past-loss 0 \
				--results "$tmp/ab-$mode" --results-md "$tmp/RESULTS-ab.md" --plot-dir "$tmp" >&2
			python3 -c '
import json, sys
s = json.load(open(sys.argv[1]))["series"][0]["steps"][0]
print(json.dumps({"mode": sys.argv[2], "rate": sys.argv[3], "rep": int(sys.argv[4]), "offered_rps": s["offered_rps"],
    "decoded_rps": s["decoded_rps"], "loss_fraction": s["loss_fraction"], "other_cores": s["other_cores"],
    "generator_limited": s["generator_limited"]}))' "$tmp/ab-$mode/run.json" "$mode" "$rate" "$rep" >>"$tmp/ab.jsonl"
		done
	done
done
cp "$tmp/ab.jsonl" perf/results/steer-ab.jsonl

# cache_run MODE: one fixed-rate run; prints a JSON object.
cache_run() {
	local mode=$1 flow admin pid
	flow=$(free_port)
	admin=$(free_port)
	./bin/sluice run --steer "$mode" --listen "udp://127.0.0.1:$flow" --admin "127.0.0.1:$admin" \
		--output discard 2>"$tmp/sluice-$mode.log" &
	pid=$!
	for _ in $(seq 100); do
		curl -sf "http://127.0.0.1:$admin/readyz" >/dev/null && break
		sleep 0.1
	done
	if [[ $mode == ebpf ]]; then
		# Ready once the socket array is filled (the log line says so).
		for _ in $(seq 100); do
			grep -q 'udp steering: eBPF' "$tmp/sluice-$mode.log" && break
			sleep 0.1
		done
	fi
	./bin/sluice gen --addr "127.0.0.1:$flow" --distinct-addrs --ports "$PORTS" --exporters "$EXPORTERS" \
		--rate "$RATE" --duration 5s >"$tmp/gen-$mode.json"
	# The loops have finished what was queued when two scrapes agree.
	local last=""
	for _ in $(seq 50); do
		curl -sf "http://127.0.0.1:$admin/metrics" >"$tmp/metrics-$mode.txt"
		local now
		now=$(grep '^sluice_loop_datagrams_total' "$tmp/metrics-$mode.txt" || true)
		[[ -n $now && $now == "$last" ]] && break
		last=$now
		sleep 0.2
	done
	curl -sf "http://127.0.0.1:$admin/api/v1/exporters" >"$tmp/exporters-$mode.json"
	kill "$pid"
	wait "$pid" || true
	python3 - "$mode" "$tmp/metrics-$mode.txt" "$tmp/exporters-$mode.json" <<'EOF'
import json, re, sys
mode, metrics, exporters = sys.argv[1:]
loops = {}
for line in open(metrics):
    m = re.match(r'sluice_template_cache_lookups_total\{loop="(\d+)",result="(\w+)"\} (\d+)', line)
    if m:
        loops.setdefault(int(m[1]), {})[m[2]] = int(m[3])
    m = re.match(r'sluice_loop_datagrams_total\{loop="(\d+)"\} (\d+)', line)
    if m:
        loops.setdefault(int(m[1]), {})["datagrams"] = int(m[2])
per_loop = []
for i in sorted(loops):
    l = loops[i]
    total = l.get("hit", 0) + l.get("shared", 0) + l.get("miss", 0)
    per_loop.append({"loop": i, "datagrams": l.get("datagrams", 0), "lookups": total,
                     "hit_rate": l.get("hit", 0) / total if total else None,
                     "shared": l.get("shared", 0), "miss": l.get("miss", 0)})
es = [e for e in json.load(open(exporters)) if e["transport"] == "udp"]
print(json.dumps({"mode": mode, "per_loop": per_loop, "exporter_domains": len(es),
                  "seen_by_several_loops": sum(1 for e in es if len(e["loops"]) > 1)}))
EOF
}

log "template cache at $RATE, --steer kernel then ebpf"
{
	cache_run kernel
	cache_run ebpf
} >"$tmp/cache.jsonl"

python3 - "$tmp" "$CMD" "$EXPORTERS" "$PORTS" "$RATE" "$(git rev-parse --short HEAD)" <<'EOF'
import json, os, subprocess, sys, datetime
tmp, cmd, exporters, ports, rate, commit = sys.argv[1:]
best = {}
for mode in ("kernel", "ebpf"):
    r = json.load(open(f"perf/results/steer-{mode}.json"))
    s = r["series"][0]
    best[mode] = {"rps": s["best_zero_loss_rps"], "pps": s["best_zero_loss_pps"],
                  "generator_limited": s["best_generator_limited"], "load_average": r.get("load_average_start")}
cache = [json.loads(l) for l in open(f"{tmp}/cache.jsonl")]
out = {"date": datetime.datetime.utcnow().isoformat(timespec="seconds") + "Z", "command": cmd, "commit": commit,
       "exporters": int(exporters), "ports": int(ports), "rate": rate, "best": best, "cache": cache,
       "load_average": open("/proc/loadavg").read().split()[:3], "cpus": os.cpu_count()}
json.dump(out, open("perf/results/steer.json", "w"), indent=1)
lines = [f"Run {out['date']} at commit {commit}: `{cmd}`; {exporters} exporters (own loopback addresses), "
         f"{ports} source ports each, one domain each; {out['cpus']} CPUs, load average at the end "
         f"{' '.join(out['load_average'])}.", "",
         "| steering | zero-loss records/s | zero-loss datagrams/s |", "|---|---|---|"]
for mode in ("kernel", "ebpf"):
    b = best[mode]
    lim = " (generator-limited)" if b["generator_limited"] else ""
    lines.append(f"| {mode} | {b['rps']/1e6:.2f} M{lim} | {b['pps']/1e3:.0f} k |")
lines += ["", "A/B at fixed rates, alternating (loss fraction; offered and decoded records/s; cores other processes used):", "",
          "| rate | run | kernel | ebpf |", "|---|---|---|---|"]
ab = [json.loads(l) for l in open(f"{tmp}/ab.jsonl")]
def cell(x):
    gl = ", generator-limited" if x["generator_limited"] else ""
    return f"{100*x['loss_fraction']:.2f} % ({x['offered_rps']/1e6:.2f} M -> {x['decoded_rps']/1e6:.2f} M, others {x['other_cores']:.1f}{gl})"
for r in dict.fromkeys(x["rate"] for x in ab):
    for rep in (1, 2):
        k = [x for x in ab if x["rate"] == r and x["rep"] == rep and x["mode"] == "kernel"]
        e = [x for x in ab if x["rate"] == r and x["rep"] == rep and x["mode"] == "ebpf"]
        if k and e:
            lines.append(f"| {r} | {rep} | {cell(k[0])} | {cell(e[0])} |")
out["ab"] = ab
json.dump(out, open("perf/results/steer.json", "w"), indent=1)
lines += ["", f"At {rate} records/s for 5 s:", "",
          "| steering | (exporter, domain) seen by several loops | loop: datagrams, template lookups, hit rate (own cache) |",
          "|---|---|---|"]
for c in cache:
    loops = "; ".join(f"{l['loop']}: {l['datagrams']}, {l['lookups']}, "
                      + (f"{100*l['hit_rate']:.2f} % (shared {l['shared']}, miss {l['miss']})" if l["hit_rate"] is not None else "-")
                      for l in c["per_loop"])
    lines.append(f"| {c['mode']} | {c['seen_by_several_loops']} of {c['exporter_domains']} | {loops} |")
body = "\n".join(lines) + "\n"
path = "perf/RESULTS.md"
text = open(path).read()
begin, end = "<!-- perf:steer:begin -->", "<!-- perf:steer:end -->"
i, j = text.find(begin), text.find(end)
block = begin + "\n" + body + end
if i >= 0 and j > i:
    text = text[:i] + block + text[j + len(end):]
else:
    text = text.rstrip("\n") + "\n\n## eBPF steering against the kernel's hashing (`perf/steer.sh`, `make perf-steer`)\n\n" + block + "\n"
open(path, "w").write(text)
print(body)
EOF
