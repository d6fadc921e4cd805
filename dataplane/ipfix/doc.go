// Package ipfix decodes and encodes IPFIX (RFC 7011), NetFlow v9 (RFC 3954)
// and NetFlow v5 messages without copying: Message, Set, TemplateRecord and
// Record are views into the caller's buffer, valid until the caller reuses
// it. A template compiles once into a Layout (fixed offsets, variable-length
// marks) that data-record decoding reuses, so decoding a record allocates
// nothing. Encoders append to the caller's slice.
//
// Malformed input is rejected with one of the preallocated *Error sentinels,
// whose Reason labels drop counters; nothing here panics on input or sizes
// an allocation by a length read from the wire beyond what the message
// itself holds.
package ipfix
