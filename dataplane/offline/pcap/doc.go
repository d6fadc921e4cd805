// Package pcap reads packet captures, classic pcap or pcapng, and yields the
// UDP datagrams in them with their capture times and endpoints, so that
// exported flows (IPFIX, NetFlow) can be decoded from captures; NextPacket
// yields every packet undecoded, with its link type, for flow metering. It also
// writes small classic pcap files of UDP datagrams, for tests.
//
// Buffer lifetimes: Datagram.Payload is a view into the Reader's one
// internal buffer, valid only until the next call to Next; copy it to keep
// it. That buffer is reused and grows to the largest record or block seen,
// never beyond MaxBlockSize, so reading allocates nothing per packet in
// steady state. Writer does not keep the slices passed to it.
//
// The Reader decodes Ethernet (with stacked 802.1Q/802.1ad VLAN tags and
// MPLS labels), Linux cooked capture v1 and v2, raw IP, BSD loopback and the
// IPv4 and IPv6 link types, and skips IPv6 extension headers. It does not
// reassemble IP fragments: a fragmented datagram is skipped and counted as
// a fragment in Stats, unless its first fragment holds the whole UDP
// datagram. Packets without a UDP datagram are skipped silently and counted
// by reason in Stats.
//
// Malformed input yields an error wrapping one of the Err variables, never
// a panic; length fields are checked against MaxPacketSize and MaxBlockSize
// before any buffer is sized by them.
package pcap
