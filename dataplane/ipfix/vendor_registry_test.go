package ipfix

import (
	"strings"
	"testing"
)

// Facts from the vendor element lists (libfds, Logstash's NetFlow codec).
func TestVendorLookup(t *testing.T) {
	f := func(pen uint32, id uint16, name string, typ DataType) {
		t.Helper()
		ie := Lookup(pen, id)
		if ie == nil || ie.Name != name || ie.Type != typ || ie.PEN != pen || ie.ID != id || !ie.Known || ie.V9 {
			t.Errorf("Lookup(%d, %d) = %+v, want %s %v", pen, id, ie, name, typ)
			return
		}
		if got := LookupName(name); got != ie {
			t.Errorf("LookupName(%q) = %+v, want %+v", name, got, ie)
		}
	}
	f(5951, 128, "roundTripTime", TypeUnsigned32) // libfds' name wins over Logstash's netscalerRoundTripTime
	f(5951, 130, "httpReqUrl", TypeString)
	f(3054, 111, "ixiaL7AppName", TypeString)
	f(637, 93, "natSubString", TypeString)
	f(6871, 14, "initialTCPFlags", TypeUnsigned16)
	f(6871, 14|0x4000, "reverseInitialTCPFlags", TypeUnsigned16) // YAF's reverse bit
	f(6876, 881, "tenantSourceIPv4", TypeIPv4Address)
	f(15397, 1, "proceraService", TypeString)
	// Two vendors' Timestamp: both keep a vendor prefix.
	f(10704, 1, "barracudaTimestamp", TypeUnsigned32)
	f(12326, 1, "phionTimestamp", TypeUnsigned32)
	// A vendor name that is also IANA's gets the prefix.
	f(9789, 4, "sophosFlowDirection", TypeUnsigned8)
	if ie := Lookup(2636, 137); ie != nil {
		t.Errorf("Lookup(2636, 137) = %+v: no list knows Juniper's elements", ie)
	}
	if ie := Lookup(CiscoPEN, 4315); ie == nil || ie.Semantics != SemanticsIdentifier || ie.Units != "octets" {
		t.Errorf("Lookup(9, 4315) = %+v, want libfds' semantics and units", ie)
	}
}

func TestLookupV9(t *testing.T) {
	f := func(typ uint16, name string, dt DataType, v9 bool) {
		t.Helper()
		ie := LookupV9(typ)
		if ie == nil || ie.Name != name || ie.Type != dt || ie.ID != typ || ie.PEN != 0 || ie.V9 != v9 {
			t.Errorf("LookupV9(%d) = %+v, want %s %v", typ, ie, name, dt)
		}
	}
	f(8, "sourceIPv4Address", TypeIPv4Address, false) // IANA numbers v9's types
	f(225, "postNATSourceIPv4Address", TypeIPv4Address, false)
	f(40001, "xlateSrcAddrIpv4", TypeIPv4Address, true) // Cisco ASA
	f(40004, "xlateDstPort", TypeUnsigned16, true)
	f(40000, "v9UserName", TypeString, true) // IANA has userName
	f(33000, "ingressAclId", TypeOctetArray, true)
	f(56701, "appId", TypeString, true) // Palo Alto
	f(37083, "tcpWindowSizeMin", TypeUnsigned32, true)
	for _, typ := range []uint16{65, 515, 32768, 65535} {
		if ie := LookupV9(typ); ie != nil {
			t.Errorf("LookupV9(%d) = %+v, want nil", typ, ie)
		}
	}
	// Cisco's v9 type 37083 is its PEN 9 element 4315: one name for both.
	if ie := LookupName("tcpWindowSizeMin"); ie == nil || ie.PEN != CiscoPEN || ie.ID != 4315 {
		t.Errorf("LookupName(tcpWindowSizeMin) = %+v, want PEN 9 ID 4315", ie)
	}
	// v9-only types are not IPFIX elements.
	if ie := Lookup(0, 8192); ie != nil {
		t.Errorf("Lookup(0, 8192) = %+v, want nil (v9-only streamcoreWanRtt)", ie)
	}
}

func TestElementByNameVendor(t *testing.T) {
	f := func(name string, pen uint32, id uint16, v9 bool) {
		t.Helper()
		ie, ok := ElementByName(name)
		if !ok || ie.PEN != pen || ie.ID != id || ie.V9 != v9 {
			t.Errorf("ElementByName(%q) = %+v, %v; want PEN %d ID %d", name, ie, ok, pen, id)
		}
	}
	f("roundTripTime", 5951, 128, false)
	f("xlateSrcAddrIpv4", 0, 40001, true)
	f("_v9_65", 0, 65, true)
	f("_v9_65535", 0, 65535, true)
	f("_v9_40001", 0, 40001, true) // the registered type, by its number
	f("e5951id128", 5951, 128, false)
	if ie, _ := ElementByName("_v9_65"); ie.Name != "_v9_65" || ie.Known || ie.Type != TypeOctetArray {
		t.Errorf("ElementByName(_v9_65) = %+v", ie)
	}
	for _, bad := range []string{"_v9_", "_v9_65536", "_v9_-1", "_v9_x"} {
		if ie, ok := ElementByName(bad); ok {
			t.Errorf("%q resolved to %+v", bad, ie)
		}
	}
}

// The tables are sorted for binary search, and every name is one the
// filter language reads and no repeated-field key (name_N) can mimic.
func TestVendorTables(t *testing.T) {
	if len(vendorIEs) < 900 || len(v9IEs) < 80 {
		t.Errorf("vendor table %d, v9 table %d elements: lists not read?", len(vendorIEs), len(v9IEs))
	}
	for i := range vendorIEs {
		ie := &vendorIEs[i]
		if i > 0 {
			p := &vendorIEs[i-1]
			if p.PEN > ie.PEN || p.PEN == ie.PEN && p.ID >= ie.ID {
				t.Errorf("vendorIEs[%d] (%d, %d) not above (%d, %d)", i, ie.PEN, ie.ID, p.PEN, p.ID)
			}
		}
		if ie.PEN == 0 || ie.PEN == ReversePEN || ie.ID > 0x7fff || ie.V9 || !ie.Known || ie.Type == TypeUnknown {
			t.Errorf("vendorIEs[%d] = %+v", i, *ie)
		}
	}
	for i := range v9IEs {
		ie := &v9IEs[i]
		if i > 0 && v9IEs[i-1].ID >= ie.ID {
			t.Errorf("v9IEs[%d] type %d not above %d", i, ie.ID, v9IEs[i-1].ID)
		}
		if ie.PEN != 0 || !ie.V9 || !ie.Known || ie.Type == TypeUnknown || Lookup(0, ie.ID) != nil || ie.ID < 128 {
			t.Errorf("v9IEs[%d] = %+v", i, *ie)
		}
	}
	for name := range byName {
		for j := 0; j < len(name); j++ {
			c := name[j]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || j > 0 && '0' <= c && c <= '9') {
				t.Errorf("name %q: %q is not a letter or digit", name, c)
				break
			}
		}
		if strings.HasPrefix(name, "_") {
			t.Errorf("name %q looks like an unknown element's", name)
		}
	}
}

func TestMPLSLabel(t *testing.T) {
	f := func(b []byte, label uint32, exp uint8, bottom, ok bool) {
		t.Helper()
		l, e, s, k := MPLSLabel(b)
		if l != label || e != exp || s != bottom || k != ok {
			t.Errorf("MPLSLabel(% x) = %d %d %v %v, want %d %d %v %v", b, l, e, s, k, label, exp, bottom, ok)
		}
	}
	// tshark on akvorado's mpls capture: 20005 exp 0, 524250 exp 0 bottom.
	f([]byte{0x04, 0xe2, 0x50}, 20005, 0, false, true)
	f([]byte{0x7f, 0xfd, 0xa1}, 524250, 0, true, true)
	f([]byte{0xff, 0xff, 0xff}, 1<<20-1, 7, true, true)
	f([]byte{0x00, 0x00, 0x0e}, 0, 7, false, true)
	f([]byte{1, 2}, 0, 0, false, false)
	f([]byte{1, 2, 3, 4}, 0, 0, false, false)
	for id := uint16(70); id <= 79; id++ {
		if !Lookup(0, id).IsMPLSLabelStackSection() || !Lookup(ReversePEN, id).IsMPLSLabelStackSection() {
			t.Errorf("element %d is not a label stack section", id)
		}
	}
	for _, ie := range []*InfoElement{Lookup(0, 64), Lookup(0, 80), Lookup(0, 203), LookupV9(40001)} {
		if ie != nil && ie.IsMPLSLabelStackSection() {
			t.Errorf("%s is a label stack section", ie.Name)
		}
	}
}
