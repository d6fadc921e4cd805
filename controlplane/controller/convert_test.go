package controller

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"

	godbus "github.com/godbus/dbus/v5"
)

// Arguments are converted by their signature, from the JSON text's digits,
// and what does not fit is refused with errConvert.
func TestFromJSON(t *testing.T) {
	ok := func(in, sig string, want any) {
		t.Helper()
		got, err := fromJSON(json.RawMessage(in), sig)
		if err != nil {
			t.Errorf("%s as %s: %v", in, sig, err)
			return
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s as %s: %#v, want %#v", in, sig, got, want)
		}
		// godbus encodes it with that very signature.
		if s := godbus.SignatureOf(got).String(); s != sig {
			t.Errorf("%s as %s: encodes as %s", in, sig, s)
		}
	}
	ok(`18446744073709551615`, "t", uint64(18446744073709551615))
	ok(`-9223372036854775808`, "x", int64(-9223372036854775808))
	ok(`65535`, "q", uint16(65535))
	ok(`255`, "y", uint8(255))
	ok(`-3`, "n", int16(-3))
	ok(`1.5`, "d", 1.5)
	ok(`"/io/sluice"`, "o", godbus.ObjectPath("/io/sluice"))
	ok(`["a","b"]`, "as", []string{"a", "b"})
	ok(`{"k":7}`, "a{su}", map[string]uint32{"k": 7})
	ok(`{"7":"x"}`, "a{qs}", map[uint16]string{7: "x"})
	ok(`[[1,2],[3]]`, "aau", [][]uint32{{1, 2}, {3}})
	ok(`{"signature":"q","value":7}`, "v", godbus.MakeVariantWithSignature(uint16(7), godbus.ParseSignatureMust("q")))
	ok(`"s"`, "v", godbus.MakeVariant("s"))
	ok(`12`, "v", godbus.MakeVariant(int64(12)))
	got, err := fromJSON(json.RawMessage(`["x",5]`), "(su)")
	if err != nil || godbus.SignatureOf(got).String() != "(su)" {
		t.Errorf("struct: %#v %v", got, err)
	}
	bad := func(in, sig string) {
		t.Helper()
		if v, err := fromJSON(json.RawMessage(in), sig); !errors.Is(err, errConvert) {
			t.Errorf("%s as %s: %#v %v, want errConvert", in, sig, v, err)
		}
	}
	bad(`18446744073709551616`, "t")
	bad(`65536`, "q")
	bad(`-1`, "u")
	bad(`1.0`, "u")
	bad(`1e3`, "u")
	bad(`"7"`, "u")
	bad(`7`, "s")
	bad(`"not a path"`, "o")
	bad(`["a",1]`, "as")
	bad(`["x"]`, "(su)")
	bad(`{"x":1}`, "a{qs}")
	bad(`null`, "v")
	bad(`{"signature":"uu","value":1}`, "v")
	bad(`3`, "h")
	bad(`{`, "s")
	bad(`1`, "a{")
}

// Replies become JSON faithfully: variants as values, dicts as objects,
// structs as arrays, 64-bit integers exact.
func TestToJSON(t *testing.T) {
	in := []any{
		map[string]godbus.Variant{"ready": godbus.MakeVariant(true), "records": godbus.MakeVariant(uint64(18446744073709551615))},
		[]any{"x", uint32(5)},
		godbus.ObjectPath("/a"),
		map[uint16]string{7: "x"},
	}
	b, err := json.Marshal(toJSON(in))
	if err != nil {
		t.Fatal(err)
	}
	if want := `[{"ready":true,"records":18446744073709551615},["x",5],"/a",{"7":"x"}]`; string(b) != want {
		t.Errorf("%s\nwant %s", b, want)
	}
}
