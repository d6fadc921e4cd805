// Package pcap reads packet captures in the classic pcap format and in the
// pcapng format and yields the UDP datagrams in them, with their timestamps
// and endpoints, so that exported flow records (IPFIX, NetFlow) can be
// decoded from captures. It also writes small classic pcap files of UDP
// datagrams (Writer), for tests.
//
// The Reader understands Ethernet (with stacked 802.1Q/802.1ad VLAN tags and
// MPLS label stacks), Linux cooked capture v1 and v2, raw IP, BSD
// loopback/NULL and the IPv4/IPv6 link types. It skips IPv6 extension
// headers. It does not reassemble IP fragments: a fragmented datagram is
// counted in Stats as a fragment and skipped, unless its first fragment
// happens to hold the whole UDP datagram. Packets that carry no UDP
// datagram are skipped silently and counted by reason in Stats.
//
// Buffer lifetimes: Datagram.Payload is a view into the Reader's single
// internal buffer; it is valid only until the next call to Next and must be
// copied to be kept. The buffer is reused and grows to the largest record or
// block seen, never beyond MaxBlockSize, so reading allocates nothing per
// packet in steady state. Writer.WriteUDP and Writer.WritePacket do not keep
// the slices they are given.
//
// Malformed input yields an error (see the Err variables), never a panic;
// length fields are checked against MaxPacketSize and MaxBlockSize before
// any buffer is sized by them.
package pcap
