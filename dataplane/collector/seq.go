package collector

// seqState follows the sequence numbers of one (exporter scope, domain) in
// one loop. IPFIX and v5 number data records, v9 numbers export packets.
type seqState struct {
	next  uint32
	valid bool
}

// Gaps larger than this forward, or than maxReorder backward, are taken for
// an exporter restart (a reset), not for loss or reordering.
const (
	maxGap     = 1 << 28
	maxReorder = 1 << 16
)

// checkSeq accounts for a message with sequence number seq carrying n
// units. verifiable is false when n is unknown (data sets held for their
// template); the next message then starts afresh.
func (l *loop) checkSeq(k ExporterKey, ex *exporterStats, seq, n uint32, verifiable bool) {
	s := l.seq[k]
	if s == nil {
		if len(l.seq) > maxTrackedExporters {
			clear(l.seq)
		}
		s = &seqState{}
		l.seq[k] = s
	}
	if s.valid {
		switch d := int32(seq - s.next); {
		case d == 0:
		case d > 0 && d < maxGap:
			ex.lost.Add(uint64(d))
		case d < 0 && -d <= maxReorder:
			// A late message: what it carries was counted lost when the
			// messages after it arrived.
			ex.outOfOrd.Add(1)
			if lost := ex.lost.Load(); lost >= uint64(n) && n > 0 {
				ex.lost.Add(^uint64(n - 1))
			}
			return
		default:
			ex.resets.Add(1)
		}
	}
	s.next = seq + n
	s.valid = verifiable
}
