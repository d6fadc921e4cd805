package ipfix

// DataType is an IPFIX abstract data type (RFC 7012 section 3.1, RFC 6313).
type DataType uint8

// Abstract data types. The zero value is an unknown type, decoded as octetArray.
const (
	TypeUnknown DataType = iota
	TypeOctetArray
	TypeUnsigned8
	TypeUnsigned16
	TypeUnsigned32
	TypeUnsigned64
	TypeSigned8
	TypeSigned16
	TypeSigned32
	TypeSigned64
	TypeFloat32
	TypeFloat64
	TypeBoolean
	TypeMACAddress
	TypeString
	TypeDateTimeSeconds
	TypeDateTimeMilliseconds
	TypeDateTimeMicroseconds
	TypeDateTimeNanoseconds
	TypeIPv4Address
	TypeIPv6Address
	TypeBasicList
	TypeSubTemplateList
	TypeSubTemplateMultiList
)

var dataTypeNames = [...]string{
	TypeUnknown:              "unknown",
	TypeOctetArray:           "octetArray",
	TypeUnsigned8:            "unsigned8",
	TypeUnsigned16:           "unsigned16",
	TypeUnsigned32:           "unsigned32",
	TypeUnsigned64:           "unsigned64",
	TypeSigned8:              "signed8",
	TypeSigned16:             "signed16",
	TypeSigned32:             "signed32",
	TypeSigned64:             "signed64",
	TypeFloat32:              "float32",
	TypeFloat64:              "float64",
	TypeBoolean:              "boolean",
	TypeMACAddress:           "macAddress",
	TypeString:               "string",
	TypeDateTimeSeconds:      "dateTimeSeconds",
	TypeDateTimeMilliseconds: "dateTimeMilliseconds",
	TypeDateTimeMicroseconds: "dateTimeMicroseconds",
	TypeDateTimeNanoseconds:  "dateTimeNanoseconds",
	TypeIPv4Address:          "ipv4Address",
	TypeIPv6Address:          "ipv6Address",
	TypeBasicList:            "basicList",
	TypeSubTemplateList:      "subTemplateList",
	TypeSubTemplateMultiList: "subTemplateMultiList",
}

// String returns the registry's name for t.
func (t DataType) String() string {
	if int(t) < len(dataTypeNames) {
		return dataTypeNames[t]
	}
	return "unknown"
}

// Semantics is an IPFIX data type semantic (RFC 7012 section 3.2).
type Semantics uint8

// Data type semantics. The zero value means none was registered.
const (
	SemanticsDefault Semantics = iota
	SemanticsQuantity
	SemanticsTotalCounter
	SemanticsDeltaCounter
	SemanticsIdentifier
	SemanticsFlags
	SemanticsList
	SemanticsSNMPCounter
	SemanticsSNMPGauge
)

var semanticsNames = [...]string{
	SemanticsDefault:      "default",
	SemanticsQuantity:     "quantity",
	SemanticsTotalCounter: "totalCounter",
	SemanticsDeltaCounter: "deltaCounter",
	SemanticsIdentifier:   "identifier",
	SemanticsFlags:        "flags",
	SemanticsList:         "list",
	SemanticsSNMPCounter:  "snmpCounter",
	SemanticsSNMPGauge:    "snmpGauge",
}

// String returns the registry's name for s.
func (s Semantics) String() string {
	if int(s) < len(semanticsNames) {
		return semanticsNames[s]
	}
	return "default"
}

// Status is an IE's registration status.
type Status uint8

// Registration statuses.
const (
	StatusCurrent Status = iota
	StatusDeprecated
	StatusObsolete
)

// String returns the registry's name for s.
func (s Status) String() string {
	switch s {
	case StatusDeprecated:
		return "deprecated"
	case StatusObsolete:
		return "obsolete"
	}
	return "current"
}

// ReversePEN is the private enterprise number under which RFC 5103 carries
// reverse-direction copies of IANA information elements.
const ReversePEN = 29305

// CiscoPEN is Cisco's private enterprise number. Cisco's NetFlow v9 types
// above 32767 are its PEN 9 elements with the top bit set.
const CiscoPEN = 9

// InfoElement describes one information element. Values returned by Lookup
// are shared and must not be modified.
type InfoElement struct {
	Name      string
	ID        uint16 // without the enterprise bit; the field type for V9
	PEN       uint32 // 0 for IANA elements and v9 types
	Type      DataType
	Semantics Semantics
	Status    Status
	Units     string
	// Reverse is set for RFC 5103 reverse elements (PEN 29305).
	Reverse bool
	// V9 is set for NetFlow v9 field types IANA does not number; they
	// exist only in v9 templates, and ID may exceed 32767.
	V9 bool
	// Known is false for elements synthesized for an unregistered ID.
	Known bool
}
