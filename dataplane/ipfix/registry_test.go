package ipfix

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/sluice-flow/sluice/internal/testenv"
)

// ianaXML is the registry the table is generated from, relative to this
// package's directory (the same path as the go:generate directive).
const ianaXML = "../../../shared/data/iana/ipfix.xml"

// vendorDir holds the vendor element lists ies_vendor.go is generated from.
const vendorDir = "../../../shared/data/vendor-ies"

func TestRegistryKnownElements(t *testing.T) {
	// Facts from IANA's ipfix.xml (2024-07-02).
	tests := []struct {
		id    uint16
		name  string
		typ   DataType
		sem   Semantics
		units string
	}{
		{1, "octetDeltaCount", TypeUnsigned64, SemanticsDeltaCounter, "octets"},
		{2, "packetDeltaCount", TypeUnsigned64, SemanticsDeltaCounter, "packets"},
		{4, "protocolIdentifier", TypeUnsigned8, SemanticsIdentifier, ""},
		{8, "sourceIPv4Address", TypeIPv4Address, SemanticsDefault, ""},
		{27, "sourceIPv6Address", TypeIPv6Address, SemanticsDefault, ""},
		{56, "sourceMacAddress", TypeMACAddress, SemanticsDefault, ""},
		{82, "interfaceName", TypeString, SemanticsDefault, ""},
		{152, "flowStartMilliseconds", TypeDateTimeMilliseconds, SemanticsDefault, "milliseconds"},
		{173, "flowKeyIndicator", TypeUnsigned64, SemanticsFlags, ""},
		{236, "VRFname", TypeString, SemanticsDefault, ""},
		{291, "basicList", TypeBasicList, SemanticsList, ""},
		{292, "subTemplateList", TypeSubTemplateList, SemanticsList, ""},
		{293, "subTemplateMultiList", TypeSubTemplateMultiList, SemanticsList, ""},
	}
	for _, tt := range tests {
		ie := Lookup(0, tt.id)
		if ie == nil {
			t.Errorf("Lookup(0, %d) = nil, want %s", tt.id, tt.name)
			continue
		}
		want := InfoElement{Name: tt.name, ID: tt.id, Type: tt.typ, Semantics: tt.sem, Units: tt.units, Known: true}
		if *ie != want {
			t.Errorf("Lookup(0, %d) = %+v, want %+v", tt.id, *ie, want)
		}
	}
}

func TestRegistryStatus(t *testing.T) {
	if ie := Lookup(0, 34); ie == nil || ie.Name != "samplingInterval" || ie.Status != StatusDeprecated {
		t.Errorf("Lookup(0, 34) = %+v, want deprecated samplingInterval", ie)
	}
	if ie := Lookup(0, 1); ie.Status != StatusCurrent {
		t.Errorf("octetDeltaCount status = %v, want current", ie.Status)
	}
}

func TestRegistrySkipsPlaceholders(t *testing.T) {
	// 0 Reserved, 65-69/97/105-127 NetFlow v9 holes, 416/419 nameless
	// deprecated duplicates, 513+ unassigned.
	for _, id := range []uint16{0, 65, 69, 97, 105, 127, 416, 419, 513, 1023, 32767, 65535} {
		if ie := Lookup(0, id); ie != nil {
			t.Errorf("Lookup(0, %d) = %+v, want nil", id, *ie)
		}
	}
	for _, name := range []string{"", "Reserved", "Unassigned", "Assigned for NetFlow v9 compatibility"} {
		if ie := LookupName(name); ie != nil {
			t.Errorf("LookupName(%q) = %+v, want nil", name, *ie)
		}
	}
}

func TestRegistryTable(t *testing.T) {
	if n := len(ianaIEs); n <= 450 {
		t.Errorf("len(ianaIEs) = %d, want > 450", n)
	}
	for i, ie := range ianaIEs {
		if i > 0 && ie.ID <= ianaIEs[i-1].ID {
			t.Errorf("ianaIEs[%d] ID %d not above previous %d", i, ie.ID, ianaIEs[i-1].ID)
		}
		if !ie.Known || ie.PEN != 0 || ie.Reverse || ie.Name == "" || ie.Type == TypeUnknown {
			t.Errorf("ianaIEs[%d] = %+v", i, ie)
		}
	}
	if last := ianaIEs[len(ianaIEs)-1].ID; last != ianaMaxID {
		t.Errorf("ianaMaxID = %d, last ID %d", ianaMaxID, last)
	}
	if got := RegistryUpdated(); got != "2024-07-02" {
		t.Errorf("RegistryUpdated() = %q", got)
	}
}

func TestLookupReverse(t *testing.T) {
	ie := Lookup(ReversePEN, 1)
	want := InfoElement{Name: "reverseOctetDeltaCount", ID: 1, PEN: ReversePEN, Type: TypeUnsigned64,
		Semantics: SemanticsDeltaCounter, Units: "octets", Reverse: true, Known: true}
	if ie == nil || *ie != want {
		t.Fatalf("Lookup(ReversePEN, 1) = %+v, want %+v", ie, want)
	}
	if got := Lookup(ReversePEN, 236); got == nil || got.Name != "reverseVRFname" {
		t.Errorf("Lookup(ReversePEN, 236) = %+v, want reverseVRFname", got)
	}
	if got := Lookup(ReversePEN, 0); got != nil {
		t.Errorf("Lookup(ReversePEN, 0) = %+v, want nil", got)
	}
	// The reverse table must not alias the forward one.
	if Lookup(0, 1).Name != "octetDeltaCount" {
		t.Errorf("forward element changed: %+v", Lookup(0, 1))
	}
}

func TestLookupOtherPEN(t *testing.T) {
	for _, pen := range []uint32{1, 9, 29304, 29306, 6871} {
		if ie := Lookup(pen, 1); ie != nil {
			t.Errorf("Lookup(%d, 1) = %+v, want nil", pen, *ie)
		}
	}
}

func TestLookupNameRoundTrip(t *testing.T) {
	for i := range ianaIEs {
		ie := &ianaIEs[i]
		if got := LookupName(ie.Name); got != ie {
			t.Errorf("LookupName(%q) = %p, want &ianaIEs[%d]", ie.Name, got, i)
		}
		rev := Lookup(ReversePEN, ie.ID)
		if rev == nil {
			t.Errorf("no reverse for %s", ie.Name)
			continue
		}
		if got := LookupName(rev.Name); got != rev {
			t.Errorf("LookupName(%q) = %p, want %p", rev.Name, got, rev)
		}
	}
	// Every vendor and v9 name is its own, but for v9 types that are
	// Cisco's PEN 9 elements with the top bit set.
	twins := 0
	for i := range v9IEs {
		if ie := LookupName(v9IEs[i].Name); ie != &v9IEs[i] {
			if ie == nil || ie.PEN != CiscoPEN || ie.ID|0x8000 != v9IEs[i].ID {
				t.Errorf("LookupName(%q) = %+v, want v9 type %d", v9IEs[i].Name, ie, v9IEs[i].ID)
			}
			twins++
		}
	}
	for i := range vendorIEs {
		if ie := LookupName(vendorIEs[i].Name); ie != &vendorIEs[i] {
			t.Errorf("LookupName(%q) = %+v, want %+v", vendorIEs[i].Name, ie, vendorIEs[i])
		}
	}
	if n, want := len(byName), 2*len(ianaIEs)+len(vendorIEs)+len(v9IEs)-twins; n != want {
		t.Errorf("byName has %d names, want %d (names not unique?)", n, want)
	}
	if ie := LookupName("noSuchElement"); ie != nil {
		t.Errorf("LookupName(noSuchElement) = %+v", *ie)
	}
}

func TestUnknownName(t *testing.T) {
	tests := []struct {
		pen  uint32
		id   uint16
		want string
	}{
		{0, 999, "_ipfix_999"},
		{0, 0, "_ipfix_0"},
		{9, 12235, "e9id12235"},
		{ReversePEN, 700, "e29305id700"},
		{4294967295, 32767, "e4294967295id32767"},
	}
	for _, tt := range tests {
		if got := UnknownName(tt.pen, tt.id); got != tt.want {
			t.Errorf("UnknownName(%d, %d) = %q, want %q", tt.pen, tt.id, got, tt.want)
		}
	}
}

func TestElementFor(t *testing.T) {
	if got := ElementFor(0, 8); got != *Lookup(0, 8) {
		t.Errorf("ElementFor(0, 8) = %+v", got)
	}
	if got := ElementFor(ReversePEN, 8); got.Name != "reverseSourceIPv4Address" || !got.Reverse || !got.Known {
		t.Errorf("ElementFor(ReversePEN, 8) = %+v", got)
	}
	want := InfoElement{Name: "e9id1", ID: 1, PEN: 9, Type: TypeOctetArray}
	if got := ElementFor(9, 1); got != want {
		t.Errorf("ElementFor(9, 1) = %+v, want %+v", got, want)
	}
	if got := ElementFor(9, 12235); got != *Lookup(9, 12235) || got.Name != "appHTTPHost" {
		t.Errorf("ElementFor(9, 12235) = %+v", got)
	}
	want = InfoElement{Name: "_ipfix_600", ID: 600, Type: TypeOctetArray}
	if got := ElementFor(0, 600); got != want {
		t.Errorf("ElementFor(0, 600) = %+v, want %+v", got, want)
	}
}

func TestLookupAllocs(t *testing.T) {
	var sink *InfoElement
	allocs := testing.AllocsPerRun(100, func() {
		sink = Lookup(0, 1)
		sink = Lookup(ReversePEN, 2)
		sink = Lookup(0, 600)
		sink = Lookup(9, 1)
		sink = Lookup(5951, 128)
		sink = LookupV9(40001)
		sink = LookupV9(8)
		sink = LookupV9(65)
	})
	_ = sink
	if allocs != 0 {
		t.Errorf("Lookup allocates %v times per run, want 0", allocs)
	}
}

func BenchmarkLookup(b *testing.B) {
	for i := 0; b.Loop(); i++ {
		Lookup(0, uint16(i&511))
	}
}

// TestRegistryGeneratedUpToDate regenerates the table and compares it with
// the committed ies_iana.go, catching hand edits and generator drift.
func TestRegistryGeneratedUpToDate(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping generator run in -short mode")
	}
	if _, err := os.Stat(ianaXML); errors.Is(err, fs.ErrNotExist) {
		testenv.SkipOrFail(t, "IANA registry %s not present; cannot check ies_iana.go is up to date", ianaXML)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("go command not found: %v", err)
	}
	if _, err := os.Stat(vendorDir); errors.Is(err, fs.ErrNotExist) {
		testenv.SkipOrFail(t, "vendor element lists %s not present; cannot check ies_vendor.go is up to date", vendorDir)
	}
	dir := t.TempDir()
	// Default -in is ianaXML, which this also checks.
	cmd := exec.Command(goBin, "run", "./internal/iegen", "-out", filepath.Join(dir, "ies_iana.go"),
		"-vendor", vendorDir, "-vendor-out", filepath.Join(dir, "ies_vendor.go"))
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go run ./internal/iegen: %v\n%s", err, msg)
	}
	for _, name := range []string{"ies_iana.go", "ies_vendor.go"} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is stale; run: make generate", name)
		}
	}
}

// ElementByName is the inverse of the names elements get: registered
// names, reverse names, and UnknownName's forms.
func TestElementByName(t *testing.T) {
	for _, c := range []struct {
		name string
		pen  uint32
		id   uint16
	}{
		{"octetDeltaCount", 0, 1}, {"reverseOctetDeltaCount", ReversePEN, 1},
		{UnknownName(0, 32000), 0, 32000}, {UnknownName(32473, 7), 32473, 7},
	} {
		ie, ok := ElementByName(c.name)
		if !ok || ie.PEN != c.pen || ie.ID != c.id || ie.Name != c.name {
			t.Errorf("%s: %+v %v", c.name, ie, ok)
		}
	}
	for _, bad := range []string{"", "octetDeltaCounts", "_ipfix_", "_ipfix_32768", "_ipfix_-1", "_ipfix_+5",
		"e0id5", "e5id", "eid5", "e5id32768", "e4294967296id1", "exidy"} {
		if ie, ok := ElementByName(bad); ok {
			t.Errorf("%q resolved to %+v", bad, ie)
		}
	}
}
