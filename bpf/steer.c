//go:build ignore

// SPDX-License-Identifier: Apache-2.0
//
// Sluice's SO_REUSEPORT steering program. The kernel runs it for every UDP
// datagram to a port whose reuseport group it is attached to. It picks the
// event loop by a consistent hash of the exporter's address and, for IPFIX
// and NetFlow v9, the observation domain (source ID), so that one exporter's
// templates and data meet in one loop whichever source port they come from.
// When an allow-list is loaded, datagrams from other sources are dropped
// here, before they reach a socket.
//
// The hash and the bucket choice are mirrored in Go (hash.go); a test checks
// that both agree.

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define UDP_HLEN 8

// MAX_LOOPS bounds the socket array and the jump hash's rounds; it equals
// the collector's largest event loop count.
#define MAX_LOOPS 1024
#define MAX_ALLOW 16384

#define VERSION_NETFLOW9 9
#define VERSION_IPFIX 10
#define DOMAIN_OFF_NETFLOW9 16
#define DOMAIN_OFF_IPFIX 12

// Counters in steer_stats, one slot each (per CPU).
enum steer_stat {
	STAT_STEERED = 0,   // socket chosen by (address, domain)
	STAT_ADDR_ONLY = 1, // of those, by address alone (v5, short, unknown)
	STAT_DENIED = 2,    // dropped: source not in the allow-list
	STAT_FALLBACK = 3,  // left to the kernel's hash (no socket in the slot)
	STAT_MAX = 4,
};

// steer_config is written by user space: loops is how many sockets the
// array holds (0 until it is filled: the kernel hashes meanwhile);
// allow_only turns the allow-list on.
struct steer_config {
	__u32 loops;
	__u32 allow_only;
};

// addr_key is an LPM trie key: IPv4 addresses in their IPv4-mapped IPv6
// form (::ffff:a.b.c.d), so one trie holds both families.
struct addr_key {
	__u32 prefixlen;
	__u8 addr[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_REUSEPORT_SOCKARRAY);
	__uint(max_entries, MAX_LOOPS);
	__type(key, __u32);
	__type(value, __u64);
} steer_sockets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct steer_config);
} steer_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, MAX_ALLOW);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct addr_key);
	__type(value, __u8);
} steer_allow SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} steer_stats SEC(".maps");

static __always_inline void count(__u32 stat)
{
	__u64 *n = bpf_map_lookup_elem(&steer_stats, &stat);
	if (n)
		*n += 1;
}

#define FNV_OFFSET 14695981039346656037ULL
#define FNV_PRIME 1099511628211ULL

static __always_inline __u64 fnv1a(__u64 h, const __u8 *b, int n)
{
#pragma unroll
	for (int i = 0; i < n; i++) {
		h ^= b[i];
		h *= FNV_PRIME;
	}
	return h;
}

// mix spreads the bits of an FNV hash (MurmurHash3's 64-bit finalizer):
// FNV alone leaves the high bits, which the jump hash reads first, alike
// for addresses that differ only in their last octet.
static __always_inline __u64 mix(__u64 h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

// jump is Lamping and Veach's jump consistent hash in integers only (BPF
// has no floating point): when the bucket count grows from n to n+1, a key
// moves only to the new bucket, and only with probability 1/(n+1).
static __always_inline __u32 jump(__u64 key, __u32 n)
{
	__u64 b = 0, j = 0;
	// j grows by at least one per round, so n rounds always suffice.
	for (int i = 0; i < MAX_LOOPS && j < n; i++) {
		b = j;
		key = key * 2862933555777941757ULL + 1;
		j = ((b + 1) << 31) / ((key >> 33) + 1);
	}
	return (__u32)b;
}

SEC("sk_reuseport")
int steer(struct sk_reuseport_md *md)
{
	__u32 zero = 0;
	struct steer_config *cfg = bpf_map_lookup_elem(&steer_config, &zero);
	if (!cfg)
		return SK_PASS;

	struct addr_key k = {.prefixlen = 128};
	int err = -1;
	if (md->eth_protocol == bpf_htons(ETH_P_IP)) {
		k.addr[10] = 0xff;
		k.addr[11] = 0xff;
		err = bpf_skb_load_bytes_relative(md, 12, &k.addr[12], 4, BPF_HDR_START_NET);
	} else if (md->eth_protocol == bpf_htons(ETH_P_IPV6)) {
		err = bpf_skb_load_bytes_relative(md, 8, k.addr, 16, BPF_HDR_START_NET);
	}
	if (err) {
		// No source address to judge by: refuse it when only listed
		// exporters are admitted, else let the kernel choose.
		if (cfg->allow_only) {
			count(STAT_DENIED);
			return SK_DROP;
		}
		count(STAT_FALLBACK);
		return SK_PASS;
	}
	if (cfg->allow_only && !bpf_map_lookup_elem(&steer_allow, &k)) {
		count(STAT_DENIED);
		return SK_DROP;
	}

	__u32 loops = cfg->loops;
	if (loops == 0 || loops > MAX_LOOPS) {
		count(STAT_FALLBACK);
		return SK_PASS;
	}

	// The payload follows the UDP header; offsets are from its start.
	__u64 h = fnv1a(FNV_OFFSET, k.addr, 16);
	__u16 version = 0;
	__u32 off = 0;
	if (bpf_skb_load_bytes(md, UDP_HLEN, &version, 2) == 0) {
		version = bpf_ntohs(version);
		if (version == VERSION_IPFIX)
			off = DOMAIN_OFF_IPFIX;
		else if (version == VERSION_NETFLOW9)
			off = DOMAIN_OFF_NETFLOW9;
	}
	__u8 domain[4];
	if (off && bpf_skb_load_bytes(md, UDP_HLEN + off, domain, 4) == 0) {
		h = fnv1a(h, domain, 4);
	} else {
		count(STAT_ADDR_ONLY);
	}

	__u32 idx = jump(mix(h), loops);
	if (bpf_sk_select_reuseport(md, &steer_sockets, &idx, 0)) {
		count(STAT_FALLBACK);
		return SK_PASS;
	}
	count(STAT_STEERED);
	return SK_PASS;
}

char LICENSE[] SEC("license") = "Apache-2.0";
