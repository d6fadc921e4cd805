package ipfix

// IsMPLSLabelStackSection reports whether the element's value is one MPLS
// label stack entry without its TTL (RFC 3032: label, traffic class "exp"
// bits, bottom-of-stack bit; three octets), as IANA's
// mplsTopLabelStackSection and mplsLabelStackSection2-10 (IDs 70-79, also
// NetFlow v9's MPLS_LABEL_1-10) are.
func (ie *InfoElement) IsMPLSLabelStackSection() bool {
	return (ie.PEN == 0 || ie.PEN == ReversePEN) && !ie.V9 && ie.ID >= 70 && ie.ID <= 79
}

// MPLSLabel splits a three-octet label stack entry into its label (20
// bits), exp (3 bits) and bottom-of-stack bit. ok is false for any other
// length.
func MPLSLabel(b []byte) (label uint32, exp uint8, bottom bool, ok bool) {
	if len(b) != 3 {
		return 0, 0, false, false
	}
	v := uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2])
	return v >> 4, uint8(v>>1) & 7, v&1 == 1, true
}
