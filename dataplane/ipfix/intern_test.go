package ipfix

import (
	"runtime"
	"testing"
)

// Layouts of the same content share their field descriptions; different
// content, or the same field specifiers read as v9, does not.
func TestLayoutsShareShape(t *testing.T) {
	specs := []FieldSpec{{ID: 8, Length: 4}, {ID: 12, Length: 4}, {ID: 1, Length: 8}, {ID: 2, Length: 8}}
	compile := func(id uint16, v9 bool, specs []FieldSpec) *Layout {
		t.Helper()
		l, err := Compile(&TemplateRecord{ID: id, V9: v9, Fields: specs, Raw: AppendTemplateRecord(nil, id, specs)})
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	a, b := compile(256, false, specs), compile(300, false, specs)
	if &a.Fields[0] != &b.Fields[0] {
		t.Fatal("two templates of the same content do not share their fields")
	}
	if a.ID != 256 || b.ID != 300 || a.Raw[1] != 0 || b.Raw[1] != 44 {
		t.Fatalf("IDs or raw bytes shared: %d %d % x % x", a.ID, b.ID, a.Raw[:2], b.Raw[:2])
	}
	if c := compile(256, true, specs); &c.Fields[0] == &a.Fields[0] {
		t.Fatal("a v9 template shares an IPFIX template's fields")
	}
	other := append([]FieldSpec(nil), specs...)
	other[3].Length = 4
	if d := compile(256, false, other); &d.Fields[0] == &a.Fields[0] || d.RecordLen != 20 {
		t.Fatalf("different content shared fields (record length %d)", d.RecordLen)
	}
	runtime.KeepAlive(a)
	runtime.KeepAlive(b)
}

// Shapes no layout uses leave the intern table.
func TestShapesAreCollected(t *testing.T) {
	specs := []FieldSpec{{ID: 8, Length: 4}, {ID: 1, Length: 3}}
	before := internedShapes()
	for i := range 100 {
		s := append([]FieldSpec(nil), specs...)
		s[1].Length = uint16(10 + i) // 100 distinct contents
		if _, err := Compile(&TemplateRecord{ID: 256, Fields: s, Raw: AppendTemplateRecord(nil, 256, s)}); err != nil {
			t.Fatal(err)
		}
	}
	for range 50 {
		runtime.GC()
		if internedShapes() <= before {
			return
		}
	}
	t.Fatalf("%d shapes interned after the layouts went, %d before", internedShapes(), before)
}
