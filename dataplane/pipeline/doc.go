// Package pipeline is the mediator's configurable part: a pipeline file
// (YAML) names chains of stages (select, project, rename, set, anonymise,
// sample, enrich, aggregate) and the outputs they feed; Compile turns it
// into an immutable Snapshot that the mediator runs and replaces whole.
//
// A file:
//
//	outputs:
//	  upstream: ipfix+tcp://collector.example:4739
//	pipelines:
//	  - name: web
//	    stages:
//	      - select: protocolIdentifier == 6 and destinationTransportPort in [80, 443]
//	      - project: {keep: [sourceIPv4Address, destinationIPv4Address, octetDeltaCount]}
//	      - anonymise: {method: cryptopan, key_file: /etc/sluice/cryptopan.key}
//	    outputs: [upstream]
//
// Stages see records as views (ipfix.Record) and hand the next stage
// either the same view or one into their own buffer: nothing is allocated
// per record, and a record no stage changes reaches the outputs as the
// bytes it arrived in. Every stage compiles what it needs once per input
// template.
package pipeline
