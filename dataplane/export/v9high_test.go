package export

import (
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-flow/sluice/dataplane/ipfix"
)

// A NetFlow v9 type above 32767 (Cisco ASA's 40001, an address after NAT)
// has no IPFIX number: re-exported, it must become a well-formed enterprise
// element (Cisco's, the low 15 bits), not an enterprise bit without a number.
func TestV9HighTypesReexported(t *testing.T) {
	w := &ipfix.MessageWriter{Version: ipfix.VersionNetFlow9, DomainID: 1}
	b := w.Begin(nil, 1700000000)
	b = w.BeginSet(b, ipfix.TemplateSetID)
	b = ipfix.AppendTemplateRecord(b, 260, []ipfix.FieldSpec{{ID: 8, Length: 4}, {ID: 40001, Length: 4}, {ID: 7, Length: 2}})
	w.AddTemplates(1)
	b = w.EndSet(b)
	b = w.BeginSet(b, 260)
	b = binary.BigEndian.AppendUint32(b, 0x0a000001)
	b = binary.BigEndian.AppendUint32(b, 0xc0000201)
	b = binary.BigEndian.AppendUint16(b, 443)
	w.AddRecords(1)
	b = w.EndSet(b)
	msg, err := w.Finish(b)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "out.ipfix")
	o, err := Parse("ipfix-file:"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	fed := feed(t, o, [][]byte{msg})
	if err := o.Close(); err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got := decodeStream(t, file, true)
	if len(got) != 1 || got[0].raw != fed[0].raw {
		t.Fatalf("records %+v, want the one fed", got)
	}
	if got[0].specs != "0/8/4 9/7233/4 0/7/2 " {
		t.Fatalf("re-exported template %q, want type 40001 as Cisco's element 7233", got[0].specs)
	}
	if _, err := exec.LookPath("ipfixDump"); err == nil {
		out, err := exec.Command("ipfixDump", "--in", path).CombinedOutput()
		if err != nil || strings.Contains(strings.ToLower(string(out)), "error") {
			t.Fatalf("ipfixDump: %v\n%s", err, out)
		}
	}
}
