package ipfix

//go:generate go run ./internal/iegen -in ../../../shared/data/iana/ipfix.xml -out ies_iana.go -vendor ../../../shared/data/vendor-ies -vendor-out ies_vendor.go

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
)

// ianaIndex maps an IANA element ID to 1 + its position in ianaIEs (0 means
// unregistered). One index serves both ianaIEs and reverseIEs, which share
// positions. The tables are package variables built by initializers, not
// init(), so that other package variables (the v5 layout) may use Lookup.
var ianaIndex, reverseIEs, byName = buildRegistry()

func buildRegistry() (index *[ianaMaxID + 1]uint16, reverse *[len(ianaIEs)]InfoElement, names map[string]*InfoElement) {
	index = new([ianaMaxID + 1]uint16)
	reverse = new([len(ianaIEs)]InfoElement)
	names = make(map[string]*InfoElement, 2*len(ianaIEs))
	for i := range ianaIEs {
		ie := &ianaIEs[i]
		index[ie.ID] = uint16(i + 1)

		// Every IANA element gets a reverse twin: RFC 5103 leaves a few
		// (exporter/process-scoped) meaningless in reverse, but a collector
		// should still decode them if an exporter sends them.
		rev := *ie
		rev.Name = reverseName(ie.Name)
		rev.PEN = ReversePEN
		rev.Reverse = true
		reverse[i] = rev

		addName(names, ie)
		addName(names, &reverse[i])
	}
	for i := range vendorIEs {
		addName(names, &vendorIEs[i])
	}
	for i := range v9IEs {
		ie := &v9IEs[i]
		// Cisco exports its PEN 9 elements in v9 as the type with the top
		// bit set; such a type shares the name of its PEN 9 element,
		// which the name resolves to.
		if prev := names[ie.Name]; prev != nil && prev.PEN == CiscoPEN && prev.ID|0x8000 == ie.ID {
			continue
		}
		addName(names, ie)
	}
	return index, reverse, names
}

func addName(byName map[string]*InfoElement, ie *InfoElement) {
	if prev, dup := byName[ie.Name]; dup {
		panic("ipfix: duplicate element name " + ie.Name + " (IDs " +
			strconv.Itoa(int(prev.ID)) + ", " + strconv.Itoa(int(ie.ID)) + ")")
	}
	byName[ie.Name] = ie
}

// reverseName applies RFC 5103's naming: octetDeltaCount -> reverseOctetDeltaCount.
func reverseName(name string) string {
	if name != "" && 'a' <= name[0] && name[0] <= 'z' {
		return "reverse" + string(name[0]-'a'+'A') + name[1:]
	}
	return "reverse" + name // already upper-case, e.g. VRFname
}

// Lookup returns the registered element for (pen, id), or nil if unknown.
// It handles IANA elements (pen 0), their RFC 5103 reverse copies (pen
// ReversePEN) and the enterprise elements of the vendor table. It does not
// allocate; the result is shared and read-only.
func Lookup(pen uint32, id uint16) *InfoElement {
	switch pen {
	case 0, ReversePEN:
	default:
		return lookupVendor(pen, id)
	}
	if int(id) >= len(ianaIndex) {
		return nil
	}
	i := ianaIndex[id]
	if i == 0 {
		return nil
	}
	if pen == 0 {
		return &ianaIEs[i-1]
	}
	return &reverseIEs[i-1]
}

// lookupVendor finds an enterprise element by binary search of the sorted
// vendor table.
func lookupVendor(pen uint32, id uint16) *InfoElement {
	i, ok := slices.BinarySearchFunc(vendorIEs[:], uint64(pen)<<16|uint64(id), func(ie InfoElement, key uint64) int {
		return cmp.Compare(uint64(ie.PEN)<<16|uint64(ie.ID), key)
	})
	if !ok {
		return nil
	}
	return &vendorIEs[i]
}

// LookupV9 returns the element a NetFlow v9 field type (RFC 3954: 16 bits,
// no enterprise number) names, or nil: the IANA element of that number
// (IANA numbers v9's types below 128 and follows Cisco's above), else the
// v9-only type of the vendor table (Cisco ASA's 40001-40005, ...). It does
// not allocate; the result is shared and read-only.
func LookupV9(typ uint16) *InfoElement {
	if ie := Lookup(0, typ); ie != nil {
		return ie
	}
	i, ok := slices.BinarySearchFunc(v9IEs[:], typ, func(ie InfoElement, t uint16) int {
		return cmp.Compare(ie.ID, t)
	})
	if !ok {
		return nil
	}
	return &v9IEs[i]
}

// LookupName returns the IANA, reverse, vendor or v9 element with the
// given name, or nil.
func LookupName(name string) *InfoElement {
	return byName[name]
}

// UnknownName names an unregistered element: "_ipfix_<id>" for IANA IDs,
// "e<pen>id<id>" for enterprise ones.
func UnknownName(pen uint32, id uint16) string {
	if pen == 0 {
		return "_ipfix_" + strconv.FormatUint(uint64(id), 10)
	}
	return "e" + strconv.FormatUint(uint64(pen), 10) + "id" + strconv.FormatUint(uint64(id), 10)
}

// UnknownNameV9 names an unregistered NetFlow v9 field type: "_v9_<type>".
func UnknownNameV9(typ uint16) string {
	return "_v9_" + strconv.FormatUint(uint64(typ), 10)
}

// ElementByName resolves a name as LookupName does, and also the names
// UnknownName and UnknownNameV9 give unregistered elements (_ipfix_<id>,
// e<pen>id<id>, _v9_<type>), which resolve through ElementFor and
// ElementForV9.
func ElementByName(name string) (InfoElement, bool) {
	if ie := LookupName(name); ie != nil {
		return *ie, true
	}
	if rest, ok := strings.CutPrefix(name, "_ipfix_"); ok {
		if id, err := strconv.ParseUint(rest, 10, 15); err == nil {
			return ElementFor(0, uint16(id)), true
		}
	}
	if rest, ok := strings.CutPrefix(name, "_v9_"); ok {
		if typ, err := strconv.ParseUint(rest, 10, 16); err == nil {
			return ElementForV9(uint16(typ)), true
		}
	}
	if rest, ok := strings.CutPrefix(name, "e"); ok {
		if p, i, ok := strings.Cut(rest, "id"); ok {
			pen, err1 := strconv.ParseUint(p, 10, 32)
			id, err2 := strconv.ParseUint(i, 10, 15)
			if err1 == nil && err2 == nil && pen != 0 {
				return ElementFor(uint32(pen), uint16(id)), true
			}
		}
	}
	return InfoElement{}, false
}

// ElementFor returns the registered element for (pen, id), or a synthesized
// one (decoded as octetArray, Known false) when it is not registered.
func ElementFor(pen uint32, id uint16) InfoElement {
	if ie := Lookup(pen, id); ie != nil {
		return *ie
	}
	return InfoElement{Name: UnknownName(pen, id), ID: id, PEN: pen, Type: TypeOctetArray}
}

// ElementForV9 returns the element for a NetFlow v9 field type as LookupV9
// finds it, or a synthesized one (octetArray, V9, Known false) named by
// UnknownNameV9.
func ElementForV9(typ uint16) InfoElement {
	if ie := LookupV9(typ); ie != nil {
		return *ie
	}
	return InfoElement{Name: UnknownNameV9(typ), ID: typ, Type: TypeOctetArray, V9: true}
}

// RegistryUpdated returns the date of the IANA registry the table was built from.
func RegistryUpdated() string {
	return ianaRegistryUpdated
}
