// Package dispatch runs jobs on worker processes over ZeroMQ: a Broker on a
// ROUTER socket hands jobs to Workers on DEALER sockets, both sides send
// heartbeats, and a worker that stops answering loses its job to another
// worker (once; then the job fails with the reason). A Pool starts and
// supervises local worker processes.
//
// ZeroMQ sockets are not safe for concurrent use: every socket here belongs
// to the one goroutine that created it (the Broker's Run, the Worker's Run,
// or a waker's forwarding goroutine), and other goroutines reach it only
// through Go channels and an inproc wake-up socket.
//
// The wire protocol (every message starts with the protocol tag "SLD1" and
// a command; the ROUTER adds the worker's identity in front):
//
//	worker -> broker  READY  {"pid":..,"host":..}       idle, ready for a job (sent once on connect)
//	                  HB                                 heartbeat
//	                  PROG   job-id  progress (8 bytes, float64 bits, big endian)
//	                  DONE   job-id  outputs-json  data...  one data frame per output
//	                  FAIL   job-id  reason
//	                  BYE                                leaving (after its job limit, or stopping)
//	broker -> worker  JOB    job-json
//	                  CANCEL job-id
//	                  HB                                 heartbeat
//	                  RESET                              unknown worker: send READY again
//
// After DONE or FAIL the worker is idle again. Each side sends HB every
// heartbeat interval when it has sent nothing else and counts the other side
// dead after Liveness intervals of silence.
package dispatch
