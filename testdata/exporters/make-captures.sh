#!/usr/bin/env bash
# Regenerates the exporter captures in testdata/captures/ from real flow
# exporters (Debian packages), all run inside a private network namespace.
#
#   bash testdata/exporters/make-captures.sh
#
# Needs root (network namespaces, packet capture) and the Debian packages
# tshark softflowd pmacct nfdump fprobe tcpreplay iproute2 libfixbuf-tools jq,
# plus the Go toolchain. See testdata/exporters/README.md.
#
# Environment: SEED (traffic seed, default 1), KEEP_WORK=1 keeps the work
# directory, REPLAY_MULTIPLIER (tcpreplay speed-up for live exporters,
# default 4).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
DEST=$ROOT/testdata/captures # written only once every capture succeeded
SEED=${SEED:-1}
REPLAY_MULTIPLIER=${REPLAY_MULTIPLIER:-4}
NS=sluice-captures
VETH_REPLAY=slc-replay # tcpreplay writes here ...
VETH_CAP=slc-cap       # ... live exporters capture here (both in $NS)

# Destination ports, one per capture.
P_SF_IPFIX=19101
P_SF_V9=19102
P_SF_BIFLOW=19103
P_SF_V5=19104
P_SF_TCP=19105
P_PM_V9=19111
P_PM_IPFIX=19112
P_NFD_V9=19121
P_FP_V5=19131

log() { printf '[make-captures] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[[ $(id -u) -eq 0 ]] || die "must run as root (network namespace, packet capture)"
for c in go ip tshark dumpcap capinfos softflowd pmacctd nfpcapd nfdump nfreplay fprobe tcpreplay ipfixDump jq ss timeout sha256sum dpkg-query; do
	command -v "$c" >/dev/null || die "missing command: $c (see README.md for the packages)"
done

WORK=$(mktemp -d /tmp/sluice-captures.XXXXXX)
OUT=$WORK/out
mkdir -p "$OUT"
BG_PIDS=()

cleanup() {
	local rc=$?
	set +e
	for pid in "${BG_PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null
	done
	for pid in "${BG_PIDS[@]}"; do
		wait_pid "$pid" 5
	done
	if ip netns list | grep -qw "$NS"; then
		for pid in $(ip netns pids "$NS" 2>/dev/null); do kill -KILL "$pid" 2>/dev/null; done
		ip netns del "$NS"
	fi
	if [[ ${KEEP_WORK:-0} == 1 || $rc -ne 0 ]]; then
		log "work directory kept: $WORK"
	else
		rm -rf "$WORK"
	fi
	exit "$rc"
}

# wait_pid PID SECONDS: waits (bounded) for a background process to exit,
# killing it if it does not. Returns the exit status when known.
wait_pid() {
	local pid=$1 secs=$2 i
	for ((i = 0; i < secs * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$pid" 2>/dev/null; then
		log "pid $pid still running after ${secs}s, killing it"
		kill -KILL "$pid" 2>/dev/null || true
	fi
	wait "$pid" 2>/dev/null
}

# wait_for SECONDS CMD...: polls CMD until it succeeds, bounded.
wait_for() {
	local secs=$1 i
	shift
	for ((i = 0; i < secs * 10; i++)); do
		"$@" && return 0
		sleep 0.1
	done
	return 1
}

forget_pid() {
	local pid=$1 i
	for i in "${!BG_PIDS[@]}"; do
		[[ ${BG_PIDS[$i]} == "$pid" ]] && unset 'BG_PIDS[i]'
	done
	BG_PIDS=("${BG_PIDS[@]}")
}

trap cleanup EXIT
trap 'exit 130' INT TERM

# nsx runs a command in the namespace. Background jobs are started with
# "ip netns exec" written out instead, so that $! is the pid of the command
# itself (ip execs it) and not of a subshell running the function.
nsx() { ip netns exec "$NS" "$@"; }

# ns_procs COMM: pids of processes in our namespace whose name starts with COMM.
ns_procs() {
	local pid
	for pid in $(ip netns pids "$NS" 2>/dev/null); do
		[[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$1"* ]] && echo "$pid"
	done
	return 0
}

# kill_ns_leftovers COMM: waits (bounded) for processes named COMM in our
# namespace to exit (e.g. the plugin processes of pmacctd), then kills any
# that are left, by pid.
kill_ns_leftovers() {
	local pid
	wait_for 10 test -z "$(ns_procs "$1")" && return 0
	for pid in $(ip netns pids "$NS" 2>/dev/null); do
		if [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$1"* ]]; then
			log "killing leftover $1 process $pid"
			kill -KILL "$pid" 2>/dev/null || true
		fi
	done
}

# --- namespace ---------------------------------------------------------------
# Everything runs in a private namespace: its lo has no other listeners, so a
# leftover process elsewhere on the machine (e.g. a collector bound with
# SO_REUSEPORT) cannot take part of the exported datagrams.
if ip netns list | grep -qw "$NS"; then
	log "removing leftover namespace $NS"
	for pid in $(ip netns pids "$NS"); do kill -KILL "$pid" 2>/dev/null || true; done
	ip netns del "$NS"
fi
ip netns add "$NS"
nsx ip link set lo up
nsx ip link add "$VETH_REPLAY" type veth peer name "$VETH_CAP"
for dev in "$VETH_REPLAY" "$VETH_CAP"; do
	# No IPv6 on the veth pair: no router solicitations, MLD or neighbour
	# discovery mixed into what the live exporters see.
	nsx sysctl -qw "net.ipv6.conf.$dev.disable_ipv6=1"
	nsx ip link set "$dev" up
done

# port_free PROTO PORT: true when nothing in the namespace uses the port.
port_free() {
	local flag=-u
	[[ $1 == tcp ]] && flag=-t
	[[ -z $(nsx ss -Han "$flag" "( sport = :$2 or dport = :$2 )") ]]
}

# ns_clean: kills (by pid) whatever an earlier step left in the namespace, so
# that nothing but the next exporter sends to or listens on its ports.
ns_clean() {
	local pid
	for pid in $(ip netns pids "$NS" 2>/dev/null); do
		log "killing leftover process $pid ($(cat "/proc/$pid/comm" 2>/dev/null)) in $NS"
		kill -KILL "$pid" 2>/dev/null || true
	done
}

# --- tools and traffic ---------------------------------------------------------
log "building helper tools"
(cd "$ROOT" && go build -o "$WORK/trafficpcap" ./testdata/exporters/trafficpcap)
(cd "$ROOT" && go build -o "$WORK/flowsink" ./testdata/exporters/flowsink)

TRAFFIC=$WORK/traffic.pcap
FILLER=$WORK/filler.pcap
"$WORK/trafficpcap" -out "$TRAFFIC" -seed "$SEED" -summary "$WORK/traffic.json" -filler "$FILLER"
TRAFFIC_SHA=$(sha256sum "$TRAFFIC" | cut -d' ' -f1)
jq --arg sha "$TRAFFIC_SHA" --arg cmd "go run ./testdata/exporters/trafficpcap -out traffic.pcap -seed $SEED" \
	'. + {sha256: $sha, command: $cmd, note: "input traffic fed to every exporter; not stored, regenerate it with the command"}' \
	"$WORK/traffic.json" >"$OUT/traffic.json"

TSHARK_VERSION=$(tshark --version 2>/dev/null | head -1 | sed 's/\.$//')

# --- capture helpers ---------------------------------------------------------------
CAP_PID=
SINK_PID=

# start_capture NAME FILTER: dumpcap on the namespace's lo into $WORK/NAME.pcap.
start_capture() {
	local name=$1 filter=$2
	rm -f "$WORK/$name.pcap"
	ip netns exec "$NS" dumpcap -i lo -f "$filter" -P -w "$WORK/$name.pcap" >"$WORK/$name.dumpcap.log" 2>&1 &
	CAP_PID=$!
	BG_PIDS+=("$CAP_PID")
	wait_for 15 grep -qs '^File:' "$WORK/$name.dumpcap.log" || die "dumpcap did not start: $(cat "$WORK/$name.dumpcap.log")"
	sleep 0.5
}

stop_capture() {
	sleep 1 # let the last datagrams reach the capture
	# SIGTERM, not SIGINT: bash starts background jobs of a non-interactive
	# script with SIGINT ignored.
	kill -TERM "$CAP_PID" 2>/dev/null || true
	wait_pid "$CAP_PID" 15 || true
	forget_pid "$CAP_PID"
}

# start_sink udp|tcp PORT [OUTFILE]: a receiver so that exporters get no ICMP
# port-unreachable / ECONNREFUSED.
start_sink() {
	local proto=$1 port=$2 out=${3:-}
	ns_clean
	port_free "$proto" "$port" || die "port $proto/$port already in use in $NS: $(nsx ss -Hanp)"
	rm -f "$WORK/sink.ready"
	if [[ $proto == udp ]]; then
		ip netns exec "$NS" "$WORK/flowsink" -udp "127.0.0.1:$port" -ready "$WORK/sink.ready" 2>>"$WORK/sink.log" &
	else
		ip netns exec "$NS" "$WORK/flowsink" -tcp "127.0.0.1:$port" -out "$out" -exit-after-close -ready "$WORK/sink.ready" 2>>"$WORK/sink.log" &
	fi
	SINK_PID=$!
	BG_PIDS+=("$SINK_PID")
	wait_for 10 test -e "$WORK/sink.ready" || die "flowsink did not start"
}

stop_sink() {
	kill -TERM "$SINK_PID" 2>/dev/null || true
	wait_pid "$SINK_PID" 10 || true
	forget_pid "$SINK_PID"
}

# count_records PCAP DECODE_AS: prints a JSON object with what tshark's cflow
# dissector finds in the capture (see README.md, "How records are counted").
count_records() {
	local pcap=$1 decode=$2 v
	v=$(tshark -r "$pcap" -d "$decode,cflow" -V 2>/dev/null)
	local malformed undecoded seqwarn proto_fields hdr_count octets packets
	malformed=$(grep -ci malformed <<<"$v" || true)
	seqwarn=$(grep -c 'Expert Info.*Unexpected flow sequence' <<<"$v" || true)
	undecoded=$(grep -ciE 'no template' <<<"$v" || true)
	proto_fields=$(tshark -r "$pcap" -d "$decode,cflow" -T fields -E occurrence=a -E aggregator=, -e cflow.protocol 2>/dev/null |
		tr ',' '\n' | grep -c . || true)
	hdr_count=$(tshark -r "$pcap" -d "$decode,cflow" -T fields -E occurrence=a -E aggregator=, -e cflow.count 2>/dev/null |
		tr ',' '\n' | awk 'NF {s += $1; n++} END {print n ? s : "null"}')
	# Sums over every cflow.octets / cflow.packets field; with RFC 5103 biflow
	# records tshark shows the reverse counters under the same field names.
	octets=$(tshark -r "$pcap" -d "$decode,cflow" -T fields -E occurrence=a -E aggregator=, -e cflow.octets 2>/dev/null |
		tr ',' '\n' | awk 'NF {s += $1} END {printf "%d", s}')
	packets=$(tshark -r "$pcap" -d "$decode,cflow" -T fields -E occurrence=a -E aggregator=, -e cflow.packets 2>/dev/null |
		tr ',' '\n' | awk 'NF {s += $1} END {printf "%d", s}')
	awk -v octets="$octets" -v packets="$packets" -v malformed="$malformed" -v seqwarn="$seqwarn" -v undecoded="$undecoded" -v proto_fields="$proto_fields" -v hdr_count="$hdr_count" '
		/^Cisco NetFlow\/IPFIX$/ { msgs++ }
		/^    pdu [0-9]+\/[0-9]+$/ { v5++ }
		/^        Template \(Id = / { tmpl++ }
		/^        Options Template \(Id = / {
			otmpl++
			if (match($0, /Id = [0-9]+/)) { optid[substr($0, RSTART + 5, RLENGTH - 5)] = 1 }
		}
		/^    (Flow)?Set [0-9]+ \[id=[0-9]+\] \([0-9]+ flows\)/ {
			match($0, /\[id=[0-9]+\]/); id = substr($0, RSTART + 4, RLENGTH - 5)
			match($0, /\([0-9]+ flows\)/); n = substr($0, RSTART + 1, RLENGTH - 8) + 0
			if (id in optid) { odata += n } else { data += n; sets++ }
		}
		/^        Flow [0-9]+$/ { flowlines++ }
		END {
			records = v5 ? v5 : data
			printf "{\"messages\": %d, \"data_records\": %d, \"options_data_records\": %d, \"template_records\": %d, \"options_template_records\": %d, \"data_sets\": %d, \"v5_pdus\": %d, \"flow_items\": %d, \"cflow_protocol_fields\": %d, \"header_count_sum\": %s, \"octets_sum\": %s, \"packets_sum\": %s, \"malformed\": %d, \"undecoded_sets\": %d, \"sequence_warnings\": %d}\n",
				msgs, records, odata, tmpl, otmpl, sets, v5, flowlines, proto_fields, hdr_count, octets, packets, malformed, undecoded, seqwarn
		}' <<<"$v"
}

# finish NAME: copies $WORK/NAME.pcap to testdata/captures and writes
# NAME.json from the facts collected in the FACT_* variables.
finish() {
	local name=$1 decode=$2 pcap=$WORK/$1.pcap counts
	[[ -s $pcap ]] || die "$name: no capture"
	counts=$(count_records "$pcap" "$decode")
	local packets
	packets=$(capinfos -M -c "$pcap" | awk -F': *' '/Number of packets/ {print $2}')
	[[ $packets -gt 0 ]] || die "$name: capture is empty"
	if [[ $(jq .malformed <<<"$counts") != 0 || $(jq .undecoded_sets <<<"$counts") != 0 ]]; then
		die "$name: tshark reports malformed or undecodable packets: $counts"
	fi
	local recs pf
	recs=$(jq .data_records <<<"$counts")
	pf=$(jq .cflow_protocol_fields <<<"$counts")
	[[ $recs -gt 0 ]] || die "$name: no data records decoded"
	# Every exporter must account for every packet and byte of the traffic
	# (NetFlow v5: the IPv4 part only). A live exporter that fell behind the
	# replay fails here: rerun, or lower REPLAY_MULTIPLIER.
	local want_pk want_oc
	if [[ $FACT_PROTOCOL == v5 ]]; then
		want_pk=$(jq .ipv4_packets "$OUT/traffic.json") want_oc=$(jq .ipv4_ip_bytes "$OUT/traffic.json")
	else
		want_pk=$(jq .packets "$OUT/traffic.json") want_oc=$(jq .ip_bytes "$OUT/traffic.json")
	fi
	[[ $(jq .packets_sum <<<"$counts") == "$want_pk" && $(jq .octets_sum <<<"$counts") == "$want_oc" ]] ||
		die "$name: exported packets/octets $(jq -c '[.packets_sum, .octets_sum]' <<<"$counts") differ from the traffic's [$want_pk,$want_oc]"
	if [[ $(jq .v5_pdus <<<"$counts") != 0 ]]; then
		[[ $recs == "$pf" && $recs == $(jq .header_count_sum <<<"$counts") ]] ||
			die "$name: record counts disagree: $counts"
	else
		[[ $recs == "$pf" && $recs == $(jq '.flow_items - .options_data_records' <<<"$counts") ]] ||
			die "$name: record counts disagree: $counts"
	fi
	install -m 0644 "$pcap" "$OUT/$name.pcap"
	local udp_datagrams=null tcp_segments=null
	if [[ $FACT_TRANSPORT == udp ]]; then
		udp_datagrams=$packets
	else
		tcp_segments=$packets
	fi
	jq -n \
		--arg name "$name" \
		--arg file "$name.pcap" \
		--arg exporter "$FACT_EXPORTER" \
		--arg exporter_version "$FACT_EXPORTER_VERSION" \
		--arg debian_package "$FACT_PACKAGE" \
		--arg command "$FACT_COMMAND" \
		--arg method "$FACT_METHOD" \
		--arg protocol "$FACT_PROTOCOL" \
		--argjson version "$FACT_VERSION" \
		--arg transport "$FACT_TRANSPORT" \
		--argjson port "$FACT_PORT" \
		--arg capture_filter "$FACT_FILTER" \
		--argjson udp_datagrams "$udp_datagrams" \
		--argjson tcp_packets "$tcp_segments" \
		--argjson tshark "$counts" \
		--arg tshark_version "$TSHARK_VERSION" \
		--arg tshark_command "tshark -r $name.pcap -d $decode,cflow -V" \
		--argjson exporter_reported "${FACT_REPORTED:-null}" \
		--argjson extra "${FACT_EXTRA:-null}" \
		--arg traffic_sha256 "$TRAFFIC_SHA" \
		--argjson seed "$SEED" \
		'{
			name: $name, file: $file,
			exporter: $exporter, exporter_version: $exporter_version, debian_package: $debian_package,
			command: $command, method: $method,
			protocol: $protocol, version: $version, transport: $transport,
			collector: ("127.0.0.1:" + ($port | tostring)), destination_port: $port, capture_filter: $capture_filter,
			udp_datagrams: $udp_datagrams, tcp_packets: $tcp_packets,
			messages: $tshark.messages, data_records: $tshark.data_records,
			options_data_records: $tshark.options_data_records,
			template_records: $tshark.template_records, options_template_records: $tshark.options_template_records,
			octets_sum: $tshark.octets_sum, packets_sum: $tshark.packets_sum,
			count_method: "tshark cflow dissector (\($tshark_version)): data_records = sum of the record counts in the headers of data sets whose template is not an options template (\"Set N [id=T] (K flows)\" lines of -V), equal to the number of cflow.protocol fields and of \"Flow K\" items outside options sets; for NetFlow v5 the number of pdu items (= sum of header counts). octets_sum/packets_sum add up every cflow.octets/cflow.packets field (forward and reverse for biflow)",
			tshark_command: $tshark_command, tshark: $tshark,
			exporter_reported: $exporter_reported,
			input: {generator: "testdata/exporters/trafficpcap", seed: $seed, sha256: $traffic_sha256, summary: "traffic.json"}
		} + (if $extra == null then {} else $extra end)' >"$OUT/$name.json"
	log "$name: $packets packets, $(jq -c '{messages, data_records, options_data_records, template_records}' <<<"$counts")"
	FACT_REPORTED=
	FACT_EXTRA=
}

pkg_version() { dpkg-query -W -f='${Version}' "$1"; }

# --- softflowd -----------------------------------------------------------------------
SF_VERSION=$(softflowd -h 2>&1 | sed -n 's/.*softflowd version \([^ .]*\.[^ ]*\)\. .*/\1/p' | head -1)

# softflowd_run NAME PORT TRANSPORT ARGS...: softflowd reads the traffic pcap
# (-r) and exports to 127.0.0.1:PORT. With -r it needs "-c none", otherwise
# it waits on its control socket after the file ends instead of exiting.
softflowd_run() {
	local name=$1 port=$2 transport=$3
	shift 3
	local args=(-d -c none -p softflowd.pid -r traffic.pcap "$@" -n "127.0.0.1:$port")
	(cd "$WORK" && nsx timeout 120 softflowd "${args[@]}") >"$WORK/$name.softflowd.log" 2>&1 ||
		die "$name: softflowd failed: $(cat "$WORK/$name.softflowd.log")"
	FACT_EXPORTER=softflowd
	FACT_EXPORTER_VERSION=$SF_VERSION
	FACT_PACKAGE="softflowd $(pkg_version softflowd)"
	FACT_COMMAND="softflowd ${args[*]}"
	FACT_METHOD="softflowd reads the generated traffic pcap (-r) and exports at full speed; exported packets captured with dumpcap on lo"
	FACT_TRANSPORT=$transport
	FACT_PORT=$port
	# "Flows exported: 330 (600 records) in 22 packets (0 failures)"
	local line
	line=$(grep -m1 '^Flows exported:' "$WORK/$name.softflowd.log")
	FACT_REPORTED=$(sed -E 's/^Flows exported: ([0-9]+) \(([0-9]+) records\) in ([0-9]+) packets \(([0-9]+) failures\).*/{"flows": \1, "records": \2, "packets": \3, "failures": \4}/' <<<"$line" |
		jq --arg line "$line" '. + {output: $line, note: "printed by softflowd at exit; a softflowd flow is bidirectional, records are what it exported"}')
}

softflowd_udp() {
	local name=$1 port=$2 protocol=$3 version=$4
	shift 4
	FACT_FILTER="udp dst port $port"
	start_sink udp "$port"
	start_capture "$name" "$FACT_FILTER"
	softflowd_run "$name" "$port" udp "$@"
	stop_capture
	stop_sink
	FACT_PROTOCOL=$protocol
	FACT_VERSION=$version
	finish "$name" "udp.port==$port"
}

log "softflowd $SF_VERSION"
softflowd_udp softflowd-ipfix "$P_SF_IPFIX" ipfix 10 -v 10
softflowd_udp softflowd-v9 "$P_SF_V9" v9 9 -v 9
FACT_EXTRA='{"biflow": true, "biflow_note": "RFC 5103 bidirectional records (reverse information elements, PEN 29305)"}'
softflowd_udp softflowd-ipfix-biflow "$P_SF_BIFLOW" ipfix 10 -v 10 -b
softflowd_udp softflowd-v5 "$P_SF_V5" v5 5 -v 5

# IPFIX over TCP: flowsink accepts the connection and saves the byte stream,
# which is an RFC 5655 IPFIX file.
name=softflowd-ipfix-tcp
FACT_FILTER="tcp port $P_SF_TCP"
rm -f "$WORK/$name.ipfix"
start_sink tcp "$P_SF_TCP" "$WORK/$name.ipfix"
start_capture "$name" "$FACT_FILTER"
softflowd_run "$name" "$P_SF_TCP" tcp -v 10 -P tcp
wait_pid "$SINK_PID" 10 || true # exits once softflowd closes the connection
forget_pid "$SINK_PID"
stop_capture
[[ -s $WORK/$name.ipfix ]] || die "$name: empty IPFIX stream"
install -m 0644 "$WORK/$name.ipfix" "$OUT/$name.ipfix"
# libfixbuf's ipfixDump is a second, independent decoder for the stream.
fix_stats=$(ipfixDump --in "$WORK/$name.ipfix" 2>&1 | grep -m1 '^\*\*\* File Stats' || true)
FACT_PROTOCOL=ipfix
FACT_VERSION=10
FACT_EXTRA=$(jq -n --arg f "$name.ipfix" --arg stats "$fix_stats" --argjson size "$(stat -c %s "$WORK/$name.ipfix")" \
	'{ipfix_file: {file: $f, bytes: $size, format: "RFC 5655 IPFIX file: the raw TCP stream as received by flowsink",
	   ipfixdump: $stats, ipfixdump_note: "libfixbuf ipfixDump counts options data records among Data Records"}}')
finish "$name" "tcp.port==$P_SF_TCP"

# --- pmacctd (nfprobe) ----------------------------------------------------------
# pmacctd exports nothing when reading a savefile, so it captures live on one
# end of the veth pair while tcpreplay writes the traffic into the other end.
PM_VERSION=$(pmacctd -V 2>&1 | sed -n 's/.*pmacctd \([0-9][^ ]*\).*/\1/p' | head -1)

# replay NAME: feeds the traffic into the veth pair, then 10 s of ARP filler
# (see writeFiller in trafficpcap).
replay() {
	nsx timeout 300 tcpreplay -q -i "$VETH_REPLAY" -x "$REPLAY_MULTIPLIER" "$TRAFFIC" >"$WORK/$1.tcpreplay.log" 2>&1 ||
		die "$1: tcpreplay failed: $(cat "$WORK/$1.tcpreplay.log")"
	grep -E 'Actual|Failed' "$WORK/$1.tcpreplay.log" | tr -s ' ' | sed 's/^/    /' >&2 || true
	nsx timeout 60 tcpreplay -q -i "$VETH_REPLAY" "$FILLER" >>"$WORK/$1.tcpreplay.log" 2>&1 ||
		die "$1: tcpreplay (filler) failed: $(cat "$WORK/$1.tcpreplay.log")"
}

pmacct_run() {
	local name=$1 port=$2 version=$3 protocol=$4
	local conf=$WORK/$name.pmacctd.conf
	cat >"$conf" <<-EOF
		daemonize: false
		pidfile: $WORK/$name.pmacctd.pid
		logfile: $WORK/$name.pmacctd.log
		pcap_interface: $VETH_CAP
		pcap_filter: net 192.0.2.0/24 or net 198.51.100.0/24 or net 203.0.113.0/24 or net 2001:db8::/32 or arp
		plugins: nfprobe
		aggregate: src_host, dst_host, src_port, dst_port, proto, tos, tcpflags
		nfprobe_receiver: 127.0.0.1:$port
		nfprobe_version: $version
		nfprobe_timeouts: tcp=5:tcp.rst=5:tcp.fin=2:udp=5:icmp=5:general=5:maxlife=60:expint=1
	EOF
	FACT_FILTER="udp dst port $port"
	start_sink udp "$port"
	start_capture "$name" "$FACT_FILTER"
	rm -f "$WORK/$name.pmacctd.log"
	ip netns exec "$NS" pmacctd -f "$conf" >"$WORK/$name.pmacctd.out" 2>&1 &
	local pm=$!
	BG_PIDS+=("$pm")
	wait_for 15 grep -qsi 'link type' "$WORK/$name.pmacctd.log" || sleep 3
	# The 10 s of filler outlast the idle timeouts (5 s) plus the expiry
	# interval. Without it pmacctd sometimes handled the last packet of the
	# traffic only at exit, after the rest of its flow had expired: that flow
	# was exported twice.
	replay "$name"
	sleep 1
	kill -TERM "$pm" 2>/dev/null || true
	wait_pid "$pm" 15 || true
	forget_pid "$pm"
	kill_ns_leftovers pmacctd
	stop_capture
	stop_sink
	FACT_EXPORTER=pmacctd
	FACT_EXPORTER_VERSION=$PM_VERSION
	FACT_PACKAGE="pmacct $(pkg_version pmacct)"
	FACT_COMMAND="pmacctd -f $name.pmacctd.conf  # config: $(grep -v -e pidfile -e logfile "$conf" | sed 's/^[[:space:]]*//' | paste -sd';' | sed 's/;/; /g')"
	FACT_METHOD="pmacctd captures live on a veth in a private netns while 'tcpreplay -x $REPLAY_MULTIPLIER' replays the generated traffic into the peer veth; exported packets captured with dumpcap on the netns lo; then 10 s of ARP filler; pmacctd stopped with SIGTERM once the idle timeouts expired"
	FACT_TRANSPORT=udp
	FACT_PORT=$port
	FACT_PROTOCOL=$protocol
	FACT_VERSION=$version
	FACT_REPORTED=null
	finish "$name" "udp.port==$port"
}

log "pmacctd $PM_VERSION"
pmacct_run pmacct-nfprobe-v9 "$P_PM_V9" 9 v9
pmacct_run pmacct-nfprobe-ipfix "$P_PM_IPFIX" 10 ipfix

# --- nfdump: nfpcapd -> nfcapd file -> nfreplay ------------------------------------
name=nfdump-nfreplay-v9
NFD_VERSION=$(nfdump -V 2>&1 | sed -n 's/.*Version: *//p' | head -1)
log "nfdump $NFD_VERSION"
rm -rf "$WORK/nfcapd" && mkdir -p "$WORK/nfcapd"
timeout 120 nfpcapd -r "$TRAFFIC" -w "$WORK/nfcapd" >"$WORK/nfpcapd.log" 2>&1 || die "nfpcapd failed: $(cat "$WORK/nfpcapd.log")"
mapfile -t nffiles < <(find "$WORK/nfcapd" -name 'nfcapd.2*' -type f | sort)
[[ ${#nffiles[@]} -eq 1 ]] || die "expected one nfcapd file, got: ${nffiles[*]}"
nffile=${nffiles[0]}
nf_stats=$(nfdump -r "$nffile" -I | awk -F': ' '$1 ~ /^(Flows|Flows_tcp|Flows_udp|Flows_icmp|Flows_other|Packets|Bytes)$/ {printf "%s\"%s\": %s", sep, tolower($1), $2; sep = ", "} END {print ""}')
FACT_FILTER="udp dst port $P_NFD_V9"
start_sink udp "$P_NFD_V9"
start_capture "$name" "$FACT_FILTER"
nsx timeout 120 nfreplay -r "$nffile" -H 127.0.0.1 -p "$P_NFD_V9" -v 9 >"$WORK/nfreplay.log" 2>&1 || die "nfreplay failed: $(cat "$WORK/nfreplay.log")"
stop_capture
stop_sink
FACT_EXPORTER=nfreplay
FACT_EXPORTER_VERSION=$NFD_VERSION
FACT_PACKAGE="nfdump $(pkg_version nfdump)"
FACT_COMMAND="nfpcapd -r traffic.pcap -w nfcapd/ && nfreplay -r nfcapd/$(basename "$nffile") -H 127.0.0.1 -p $P_NFD_V9 -v 9"
FACT_METHOD="nfpcapd turns the generated traffic pcap into an nfcapd file, nfreplay sends its flows as NetFlow v9; exported packets captured with dumpcap on lo"
FACT_TRANSPORT=udp
FACT_PORT=$P_NFD_V9
FACT_PROTOCOL=v9
FACT_VERSION=9
FACT_REPORTED=$(jq -n --argjson s "{$nf_stats}" '$s + {source: "nfdump -r nfcapd.FILE -I (flows in the nfcapd file that nfreplay sent)", note: "nfpcapd makes one flow per ICMP packet"}')
finish "$name" "udp.port==$P_NFD_V9"

# --- fprobe (NetFlow v5, live) ----------------------------------------------------------
name=fprobe-v5
FP_VERSION=$(pkg_version fprobe)
log "fprobe $FP_VERSION"
FACT_FILTER="udp dst port $P_FP_V5"
start_sink udp "$P_FP_V5"
start_capture "$name" "$FACT_FILTER"
# A larger pending queue (-q) and kernel capture buffer (-B): with the
# defaults fprobe accounted for less than half of the replayed packets.
fp_args=(-i "$VETH_CAP" -f ip -l 2 -s 1 -d 3 -e 30 -g 10 -q 10000 -B 4096 "127.0.0.1:$P_FP_V5")
ip netns exec "$NS" fprobe "${fp_args[@]}" >"$WORK/$name.fprobe.log" 2>&1 &
fp=$!
BG_PIDS+=("$fp")
sleep 2
replay "$name" # the 10 s of ARP filler (not seen by fprobe's filter) also outlast its idle timeout
sleep 1
# On SIGTERM fprobe emits what is left in its flow cache.
kill -TERM "$fp" 2>/dev/null || true
wait_pid "$fp" 15 || true
forget_pid "$fp"
kill_ns_leftovers fprobe
stop_capture
stop_sink
FACT_EXPORTER=fprobe
FACT_EXPORTER_VERSION=$FP_VERSION
FACT_PACKAGE="fprobe $FP_VERSION"
FACT_COMMAND="fprobe ${fp_args[*]}"
FACT_METHOD="fprobe captures live on a veth in a private netns while 'tcpreplay -x $REPLAY_MULTIPLIER' replays the generated traffic into the peer veth (IPv4 only: NetFlow v5); exported packets captured with dumpcap on the netns lo"
FACT_TRANSPORT=udp
FACT_PORT=$P_FP_V5
FACT_PROTOCOL=v5
FACT_VERSION=5
FACT_REPORTED=null
finish "$name" "udp.port==$P_FP_V5"

mkdir -p "$DEST"
install -m 0644 "$OUT"/* "$DEST/"
log "done; captures in $DEST"
ls -l "$DEST" >&2
