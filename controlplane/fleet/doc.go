// Package fleet is the frontend's view of the collector pods: it finds
// them (a static list, DNS, or the Kubernetes API through a Discovery),
// reads their state over the per-pod HTTP API that `sluice run` and the
// split pod's controller share, keeps the pipeline they run versioned in
// Redis and pushes it to every pod until each one has it in force.
//
// Redis keys (the first is the one the controller reads at start):
//
//	sluice:pipeline:<name>          string: {"version","saved","pipeline"} in force
//	sluice:pipeline:<name>:history  list: the last History versions, newest first
//	sluice:pipeline:<name>:seq      counter: the last version number given out
//
// A change is announced on the channel sluice:pipeline (the message is the
// name); every frontend replica listening reconciles at once.
package fleet
