package collector

// seqState follows the sequence numbers of one stream (transport session
// and domain) in one loop. IPFIX and v5 number data records, v9 numbers
// export packets.
type seqState struct {
	next  uint32
	valid bool
	// gaps remembers the most recent ranges counted as lost, so a late
	// message can be told from an exporter restart: only a message that
	// fills a known gap is out of order.
	gaps [8]seqGap
	ngap int
}

type seqGap struct{ from, to uint32 } // [from, to)

// maxGap bounds a forward jump taken for loss; a larger one is a reset. A
// backward jump of up to maxReorder that fills no known gap is a duplicate
// or a late message whose loss was never counted, unless the sequence
// starts again at 0 (an exporter restart).
const (
	maxGap     = 1 << 28
	maxReorder = 1 << 16
)

// checkSeq accounts for a message with sequence number seq carrying n
// units. verifiable is false when n is unknown (data sets held for their
// template); the next message then starts afresh.
func (l *loop) checkSeq(es *stream, seq, n uint32, verifiable bool) {
	s, ex := &es.seq, es.stats
	if s.valid {
		switch d := int32(seq - s.next); {
		case d == 0:
		case d > 0 && d < maxGap:
			ex.lost.Add(uint64(d))
			s.addGap(s.next, seq)
		default:
			if s.fill(seq, n) {
				// A late message: what it carries was counted lost
				// when the messages after it arrived.
				ex.outOfOrd.Add(1)
				ex.lost.Add(^uint64(n - 1)) // subtract n
				return
			}
			if d < 0 && -d <= maxReorder && seq != 0 {
				// A duplicate, or late with nothing counted lost (a
				// template-only message): the sequence goes on.
				ex.outOfOrd.Add(1)
				return
			}
			ex.resets.Add(1)
			s.ngap = 0
		}
	}
	s.next = seq + n
	s.valid = verifiable
}

func (s *seqState) addGap(from, to uint32) {
	if s.ngap == len(s.gaps) {
		copy(s.gaps[:], s.gaps[1:])
		s.ngap--
	}
	s.gaps[s.ngap] = seqGap{from, to}
	s.ngap++
}

// fill removes [seq, seq+n) from a remembered gap and reports whether it lay
// inside one.
func (s *seqState) fill(seq, n uint32) bool {
	if n == 0 {
		return false
	}
	for i := 0; i < s.ngap; i++ {
		g := &s.gaps[i]
		if seq-g.from > g.to-g.from || seq+n-g.from > g.to-g.from {
			continue // not inside (modular arithmetic)
		}
		switch {
		case seq == g.from && seq+n == g.to:
			copy(s.gaps[i:], s.gaps[i+1:s.ngap])
			s.ngap--
		case seq == g.from:
			g.from += n
		case seq+n == g.to:
			g.to = seq
		default:
			// Split; if there is no room, forget the oldest gap.
			rest := seqGap{seq + n, g.to}
			g.to = seq
			s.addGap(rest.from, rest.to)
		}
		return true
	}
	return false
}
