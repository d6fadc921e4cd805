// Package meter is a flow meter (an RFC 7011 Metering and Exporting
// Process): it reads packet captures, keeps flows by 5-tuple, VLAN and ICMP
// type and code (optionally as RFC 5103 biflows) under active, idle and TCP
// end-of-flow rules driven by capture time, and exports them as IPFIX
// messages to a Sink: an RFC 5655 file or the export outputs of sluice run.
//
// parse.go is the packet parser (pure, allocation-free); table.go the flow
// table; encode.go the records; dpi.go the light payload inspection.
// A Meter and its Sink belong to one goroutine.
package meter
