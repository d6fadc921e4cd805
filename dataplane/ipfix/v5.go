package ipfix

// v5Layout decodes NetFlow v5 flow records (48 octets) as IPFIX elements.
// First and Last are sysUpTime-relative, like v9's, and are named by IANA's
// flowStartSysUpTime and flowEndSysUpTime.
var v5Layout = mustCompileV5()

// V5TemplateID is the template ID reported for NetFlow v5 records, which
// have no template of their own.
const V5TemplateID = 0

func mustCompileV5() *Layout {
	specs := []FieldSpec{
		{ID: 8, Length: 4},   // sourceIPv4Address
		{ID: 12, Length: 4},  // destinationIPv4Address
		{ID: 15, Length: 4},  // ipNextHopIPv4Address
		{ID: 10, Length: 2},  // ingressInterface
		{ID: 14, Length: 2},  // egressInterface
		{ID: 2, Length: 4},   // packetDeltaCount
		{ID: 1, Length: 4},   // octetDeltaCount
		{ID: 22, Length: 4},  // flowStartSysUpTime
		{ID: 21, Length: 4},  // flowEndSysUpTime
		{ID: 7, Length: 2},   // sourceTransportPort
		{ID: 11, Length: 2},  // destinationTransportPort
		{ID: 210, Length: 1}, // paddingOctets
		{ID: 6, Length: 1},   // tcpControlBits
		{ID: 4, Length: 1},   // protocolIdentifier
		{ID: 5, Length: 1},   // ipClassOfService
		{ID: 16, Length: 2},  // bgpSourceAsNumber
		{ID: 17, Length: 2},  // bgpDestinationAsNumber
		{ID: 9, Length: 1},   // sourceIPv4PrefixLength
		{ID: 13, Length: 1},  // destinationIPv4PrefixLength
		{ID: 210, Length: 2}, // paddingOctets
	}
	l, err := Compile(&TemplateRecord{ID: V5TemplateID, Fields: specs, V9: true})
	if err != nil || l.RecordLen != v5RecordLen {
		panic("BUG: netflow v5 layout does not compile to 48 octets")
	}
	return l
}

// V5Layout returns the built-in layout of NetFlow v5 records.
func V5Layout() *Layout { return v5Layout }

// V5Records iterates the flow records of a NetFlow v5 message.
func (m *Message) V5Records() DataIter { return NewDataIter(v5Layout, m.body) }
