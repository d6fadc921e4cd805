// Package loadgen sends synthetic IPFIX or NetFlow v9 load to a collector,
// as a fleet of exporters that each keep their own socket, observation
// domain, templates and sequence numbers, at a paced rate. Run returns a
// Summary of what was sent, exact enough to check a collector for loss.
package loadgen
