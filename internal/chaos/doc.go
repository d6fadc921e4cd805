// Package chaos drives real Sluice processes, real exporters and real Redis
// servers through failures: it starts them, kills one with SIGKILL under
// load, brings it back and accounts for every record the exporters sent.
// TestChaos (make chaos, and one short round in make test) and the soak
// command (perf/soak, make soak) are built on it.
//
// Records are told apart by what `sluice gen` puts in them: with
// --templates ipv6 and --keys at least the records sent, the n-th data
// record of the exporter of observation domain d has the source address
// 2001:db8:1:d::n (n in the low 32 bits) and the sequence number
// first+n, so the records that came out say exactly which sequence numbers
// were lost.
package chaos
