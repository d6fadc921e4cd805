package chaos

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

func TestOutputFollows(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.jsonl")
	o := NewOutput(path)
	if err := o.Poll(); err != nil {
		t.Fatal(err)
	}
	write := func(s string) {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteString(s); err != nil {
			t.Fatal(err)
		}
	}
	write(`{"observation_domain":11,"sourceIPv6Address":"2001:db8:1:b::1:2","x":1}` + "\n" +
		`{"observation_domain":1,"sourceIPv6Address":"2001:db8:1::5"}` + "\n" + // not gen's: group 4 is 0
		`{"observation_domain":2,"sourceIPv6Address":"2001:db8:1:1::7"}` + "\n" + // domain disagrees
		`{"observation_domain":11,"options":true}` + "\n" + `{"observation_domain":11,"sourceIPv6Addr`)
	if err := o.Poll(); err != nil {
		t.Fatal(err)
	}
	write(`ess":"2001:db8:1:b::1:2"}` + "\n" + `{"cut` + "\n" + `{"observation_domain":1,"sourceIPv6Address":"2001:db8:1::5"}` + "\n")
	if err := o.Poll(); err != nil {
		t.Fatal(err)
	}
	if c := o.Count(11); c.Distinct != 1 || c.Repeated != 1 || o.MaxN[11] != 1<<16|2 {
		t.Errorf("domain 11: %+v, max %d", c, o.MaxN[11])
	}
	if o.Other != 2 || o.OtherRepeated != 1 || o.Options != 1 || o.Garbled != 1 || o.Lines != 7 {
		t.Errorf("other %d (repeated %d) options %d garbled %d lines %d", o.Other, o.OtherRepeated, o.Options, o.Garbled, o.Lines)
	}
	if m := o.Missing(11, 1<<16, 1<<16+5); len(m) != 2 || m[0] != [2]uint32{1 << 16, 1<<16 + 2} || m[1] != [2]uint32{1<<16 + 3, 1<<16 + 5} {
		t.Errorf("missing %v", m)
	}
	if d, n, ok := GenRecord(netip.MustParseAddr("2001:db8:1:c::ff")); !ok || d != 12 || n != 255 {
		t.Errorf("GenRecord: %d %d %v", d, n, ok)
	}
}
