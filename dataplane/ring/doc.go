// Package ring carries framed entries (templates, data sets, withdrawals)
// from one collector event loop to the mediator through a single-producer
// single-consumer ring of variable-length entries that takes no lock and
// allocates nothing per entry. All shared state (head, tail, the consumer's
// sleeping flag, counters) lives at fixed offsets in the byte buffer the ring
// is built on, with no Go pointers in it, so the same code runs over process
// memory (New) or over a file mapped on a shared tmpfs (On) where the
// consumer is another process.
//
// Ownership: the Producer belongs to the goroutine that runs the event loop
// and the Consumer to the one goroutine that drains the ring; neither is safe
// for concurrent use. Ring's Len, Cap, MaxEntry and Refused are safe from any
// goroutine.
//
// Layout of the buffer: a HeaderSize-byte header, then a power-of-two entry
// area. In the header, magic, version, the area size and the producer's
// Meta (generation, index, count; written once when formatting) share the
// first 64-byte line; head and the closed flag (written by the producer)
// and tail and the checkpoint (written by the consumer) each have their
// own line, head and tail being monotonically increasing byte counters, and
// the sleeping flag has a line of its own too. An entry is a 4-byte
// length then the payload, padded to 8 bytes; an entry that does not fit
// before the end of the area is placed at its start, after a wrap marker.
//
// Memory ordering: the producer writes an entry's bytes with plain stores and
// publishes them with an atomic store of head; the consumer loads head
// atomically before it reads the bytes (release/acquire). Likewise the
// consumer's reads of an entry happen before its atomic store of tail, which
// the producer loads before it reuses that space. Go's sync/atomic operations
// are sequentially consistent, which the sleeping-flag handshake in Wait
// relies on to lose no wake-up. The same holds between processes sharing a
// mapping, as the atomics are plain locked instructions on the shared memory.
//
// File rings (Create, Open): the split pod keeps one ring per collector
// event loop in a file on a tmpfs. The consumer's tail is in the file, so a
// mediator that restarts resumes where the last Publish left it; entries it
// had skipped and handed on without publishing are read again, and
// Checkpoint lets the successor count them. A collector restart makes new
// files with a new generation, renamed over the old paths, so a consumer
// drains the old mapping before it follows the new one; a ring that still
// holds unread entries (no consumer ran) is first renamed to RetainedName,
// and the consumer drains and removes it.
package ring
