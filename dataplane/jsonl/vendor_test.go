package jsonl

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
)

// vendorLayout has enterprise elements the vendor registry types, MPLS
// label stack entries and an element no list knows.
func vendorLayout(t testing.TB) (*ipfix.Layout, []byte) {
	l := compile(t, 256, false, 0,
		ipfix.FieldSpec{ID: 128, Length: 4, PEN: 5951},            // NetScaler roundTripTime
		ipfix.FieldSpec{ID: 111, Length: ipfix.VarLen, PEN: 3054}, // ixiaL7AppName
		ipfix.FieldSpec{ID: 881, Length: 4, PEN: 6876},            // VMware tenantSourceIPv4
		ipfix.FieldSpec{ID: 70, Length: 3},                        // mplsTopLabelStackSection
		ipfix.FieldSpec{ID: 71, Length: 3},                        // mplsLabelStackSection2
		ipfix.FieldSpec{ID: 70, Length: 3, PEN: ipfix.ReversePEN}, // reverseMplsTopLabelStackSection
		ipfix.FieldSpec{ID: 72, Length: 4},                        // wrong length: hex
		ipfix.FieldSpec{ID: 137, Length: ipfix.VarLen, PEN: 2636}, // Juniper: unknown
	)
	var b []byte
	b = ipfix.AppendUint(b, 42, 4)
	b = ipfix.AppendVarlen(b, []byte("netflix"))
	b = ipfix.AppendAddr(b, netip.MustParseAddr("10.1.2.3"))
	b = append(b, 0x04, 0xe2, 0x50) // 20005, exp 0
	b = append(b, 0x7f, 0xfd, 0xa5) // 524250, exp 2, bottom
	b = append(b, 0x00, 0x01, 0x0f) // 16, exp 7, bottom
	b = append(b, 1, 2, 3, 4)
	b = ipfix.AppendVarlen(b, []byte{0xde, 0xad})
	return l, b
}

func TestAppendRecordVendor(t *testing.T) {
	l, body := vendorLayout(t)
	m, r := oneRecord(t, l, body)
	out := string(AppendRecord(nil, &Meta{Msg: m}, r))
	for _, want := range []string{
		`"roundTripTime":42`,
		`"ixiaL7AppName":"netflix"`,
		`"tenantSourceIPv4":"10.1.2.3"`,
		`"mplsTopLabelStackSection":{"label":20005,"exp":0,"bottom_of_stack":false}`,
		`"mplsLabelStackSection2":{"label":524250,"exp":2,"bottom_of_stack":true}`,
		`"reverseMplsTopLabelStackSection":{"label":16,"exp":7,"bottom_of_stack":true}`,
		`"mplsLabelStackSection3":"01020304"`,
		`"e2636id137":"dead"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %s in %s", want, out)
		}
	}
	if !json.Valid([]byte(out)) {
		t.Errorf("invalid JSON: %s", out)
	}
}

// NetFlow v9 types the v9 table knows are named and typed; unknown ones
// are _v9_<type>.
func TestAppendRecordV9Types(t *testing.T) {
	l, err := ipfix.Compile(&ipfix.TemplateRecord{ID: 260, V9: true, Fields: []ipfix.FieldSpec{
		{ID: 40001, Length: 4}, // Cisco ASA NF_F_XLATE_SRC_ADDR_IPV4
		{ID: 40003, Length: 2}, // NF_F_XLATE_SRC_PORT
		{ID: 65, Length: 2},    // unknown
		{ID: 37083, Length: 4}, // Cisco PEN 9 element 4315 in v9
	}})
	if err != nil {
		t.Fatal(err)
	}
	var b []byte
	b = ipfix.AppendAddr(b, netip.MustParseAddr("192.0.2.7"))
	b = ipfix.AppendUint(b, 1024, 2)
	b = ipfix.AppendUint(b, 0xabcd, 2)
	b = ipfix.AppendUint(b, 65535, 4)
	m, r := oneRecord(t, l, b)
	out := string(AppendRecord(nil, &Meta{Msg: m}, r))
	for _, want := range []string{`"xlateSrcAddrIpv4":"192.0.2.7"`, `"xlateSrcPort":1024`, `"_v9_65":"abcd"`, `"tcpWindowSizeMin":65535`} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %s in %s", want, out)
		}
	}
}

func TestAppendRecordVendorNoAllocs(t *testing.T) {
	l, body := vendorLayout(t)
	m, r := oneRecord(t, l, body)
	meta := &Meta{Exporter: netip.MustParseAddrPort("192.0.2.9:1234"), Msg: m}
	buf := make([]byte, 0, 4096)
	if n := testing.AllocsPerRun(100, func() { buf = AppendRecord(buf[:0], meta, r) }); n != 0 {
		t.Fatalf("AppendRecord allocates %v times per record", n)
	}
}
