// Package analysis runs the Web API's analysis jobs (records, top N, time
// series, communication graph) over pcap, pcapng and IPFIX files decoded as
// `sluice decode` decodes them, with an optional select filter. Captures
// of ordinary traffic (not flow export) are first metered into flows by
// dataplane/meter, as `sluice meter` does (traffic.go). It is a pure
// library: the frontend's workers call it with files, typed parameters, a
// progress callback and a context, and format its typed results as JSON,
// CSV, PNG, GraphML or DOT; HTTP, Redis and ZeroMQ stay outside.
//
// Every job reads its files once in order (twice for a split time series),
// keeps templates across the files, and does not allocate per record: keys
// and counters are read through field positions compiled once per template
// layout.
//
// Counters, the same in every job: octets are octetDeltaCount (or
// octetTotalCount when a template has no delta) plus the RFC 5103 reverse
// octets of a biflow record, so a biflow record counts its whole
// conversation; packets likewise with packetDeltaCount; flows are
// deltaFlowCount when the template carries it and 1 otherwise. Options
// records are not flows: only the records job shows them.
package analysis
