package controller

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"

	godbus "github.com/godbus/dbus/v5"
)

// The bridge converts JSON arguments to D-Bus values by the signature the
// object introspects, not by what JSON would guess: 7 is a uint16 for a q,
// an int64 for an x; integers are read from their digits (json.Number),
// never through a float64, so a t keeps all 64 bits.

// errConvert marks an argument that does not fit its signature.
var errConvert = errors.New("argument does not fit its signature")

// splitSignature splits a signature into its complete types.
func splitSignature(sig string) ([]string, error) {
	var out []string
	for len(sig) > 0 {
		n, err := typeLen(sig)
		if err != nil {
			return nil, err
		}
		out = append(out, sig[:n])
		sig = sig[n:]
	}
	return out, nil
}

// typeLen is the length of the first complete type of sig.
func typeLen(sig string) (int, error) {
	if sig == "" {
		return 0, fmt.Errorf("%w: empty signature", errConvert)
	}
	switch sig[0] {
	case 'a':
		n, err := typeLen(sig[1:])
		return n + 1, err
	case '(':
		i := 1
		for i < len(sig) && sig[i] != ')' {
			n, err := typeLen(sig[i:])
			if err != nil {
				return 0, err
			}
			i += n
		}
		if i >= len(sig) {
			return 0, fmt.Errorf("%w: unclosed struct in %q", errConvert, sig)
		}
		return i + 1, nil
	case '{':
		k, err := typeLen(sig[1:])
		if err != nil {
			return 0, err
		}
		v, err := typeLen(sig[1+k:])
		if err != nil {
			return 0, err
		}
		if 1+k+v >= len(sig) || sig[1+k+v] != '}' {
			return 0, fmt.Errorf("%w: bad dict entry in %q", errConvert, sig)
		}
		return k + v + 2, nil
	case 'y', 'b', 'n', 'q', 'i', 'u', 'x', 't', 'd', 's', 'o', 'g', 'v', 'h':
		return 1, nil
	}
	return 0, fmt.Errorf("%w: unknown type %q", errConvert, sig[:1])
}

// goType is the Go type godbus encodes as sig.
func goType(sig string) (reflect.Type, error) {
	switch sig[0] {
	case 'y':
		return reflect.TypeFor[uint8](), nil
	case 'b':
		return reflect.TypeFor[bool](), nil
	case 'n':
		return reflect.TypeFor[int16](), nil
	case 'q':
		return reflect.TypeFor[uint16](), nil
	case 'i':
		return reflect.TypeFor[int32](), nil
	case 'u':
		return reflect.TypeFor[uint32](), nil
	case 'x':
		return reflect.TypeFor[int64](), nil
	case 't':
		return reflect.TypeFor[uint64](), nil
	case 'd':
		return reflect.TypeFor[float64](), nil
	case 's':
		return reflect.TypeFor[string](), nil
	case 'o':
		return reflect.TypeFor[godbus.ObjectPath](), nil
	case 'g':
		return reflect.TypeFor[godbus.Signature](), nil
	case 'v':
		return reflect.TypeFor[godbus.Variant](), nil
	case 'h':
		return nil, fmt.Errorf("%w: file descriptors (h) cannot cross the bridge", errConvert)
	case 'a':
		if sig[1] == '{' {
			k, err := typeLen(sig[2:])
			if err != nil {
				return nil, err
			}
			kt, err := goType(sig[2 : 2+k])
			if err != nil {
				return nil, err
			}
			vt, err := goType(sig[2+k : len(sig)-1])
			if err != nil {
				return nil, err
			}
			return reflect.MapOf(kt, vt), nil
		}
		et, err := goType(sig[1:])
		if err != nil {
			return nil, err
		}
		return reflect.SliceOf(et), nil
	case '(':
		parts, err := splitSignature(sig[1 : len(sig)-1])
		if err != nil {
			return nil, err
		}
		fields := make([]reflect.StructField, len(parts))
		for i, p := range parts {
			ft, err := goType(p)
			if err != nil {
				return nil, err
			}
			fields[i] = reflect.StructField{Name: "F" + strconv.Itoa(i), Type: ft}
		}
		return reflect.StructOf(fields), nil
	}
	return nil, fmt.Errorf("%w: unknown type %q", errConvert, sig)
}

// fromJSON converts the JSON value raw to a D-Bus value of type sig.
func fromJSON(raw json.RawMessage, sig string) (any, error) {
	v, err := decodeJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errConvert, err)
	}
	rv, err := convert(v, sig)
	if err != nil {
		return nil, err
	}
	return rv.Interface(), nil
}

func decodeJSON(raw json.RawMessage) (any, error) {
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

// convert turns a decoded JSON value (json.Number for numbers) into a
// value of sig's Go type.
func convert(v any, sig string) (reflect.Value, error) {
	t, err := goType(sig)
	if err != nil {
		return reflect.Value{}, err
	}
	bad := func() (reflect.Value, error) {
		return reflect.Value{}, fmt.Errorf("%w: %s is not a %s", errConvert, describe(v), typeName(sig))
	}
	switch sig[0] {
	case 'y', 'n', 'q', 'i', 'u', 'x', 't':
		n, ok := v.(json.Number)
		if !ok {
			return bad()
		}
		out := reflect.New(t).Elem()
		if t.Kind() >= reflect.Uint && t.Kind() <= reflect.Uint64 {
			u, err := strconv.ParseUint(string(n), 10, t.Bits())
			if err != nil {
				return bad()
			}
			out.SetUint(u)
		} else {
			i, err := strconv.ParseInt(string(n), 10, t.Bits())
			if err != nil {
				return bad()
			}
			out.SetInt(i)
		}
		return out, nil
	case 'd':
		n, ok := v.(json.Number)
		if !ok {
			return bad()
		}
		f, err := n.Float64()
		if err != nil || math.IsInf(f, 0) {
			return bad()
		}
		return reflect.ValueOf(f), nil
	case 'b':
		b, ok := v.(bool)
		if !ok {
			return bad()
		}
		return reflect.ValueOf(b), nil
	case 's':
		s, ok := v.(string)
		if !ok {
			return bad()
		}
		return reflect.ValueOf(s), nil
	case 'o':
		s, ok := v.(string)
		if !ok || !godbus.ObjectPath(s).IsValid() {
			return bad()
		}
		return reflect.ValueOf(godbus.ObjectPath(s)), nil
	case 'g':
		s, ok := v.(string)
		if !ok {
			return bad()
		}
		g, err := godbus.ParseSignature(s)
		if err != nil {
			return bad()
		}
		return reflect.ValueOf(g), nil
	case 'v':
		return variant(v)
	case 'a':
		if sig[1] == '{' {
			m, ok := v.(map[string]any)
			if !ok {
				return bad()
			}
			k, _ := typeLen(sig[2:])
			ksig, vsig := sig[2:2+k], sig[2+k:len(sig)-1]
			out := reflect.MakeMapWithSize(t, len(m))
			for ks, ev := range m {
				kv, err := mapKey(ks, ksig)
				if err != nil {
					return reflect.Value{}, err
				}
				ev2, err := convert(ev, vsig)
				if err != nil {
					return reflect.Value{}, fmt.Errorf("[%q]: %w", ks, err)
				}
				out.SetMapIndex(kv, ev2)
			}
			return out, nil
		}
		l, ok := v.([]any)
		if !ok {
			return bad()
		}
		out := reflect.MakeSlice(t, len(l), len(l))
		for i, e := range l {
			ev, err := convert(e, sig[1:])
			if err != nil {
				return reflect.Value{}, fmt.Errorf("[%d]: %w", i, err)
			}
			out.Index(i).Set(ev)
		}
		return out, nil
	case '(':
		l, ok := v.([]any)
		parts, _ := splitSignature(sig[1 : len(sig)-1])
		if !ok || len(l) != len(parts) {
			return bad()
		}
		out := reflect.New(t).Elem()
		for i, p := range parts {
			ev, err := convert(l[i], p)
			if err != nil {
				return reflect.Value{}, fmt.Errorf("(%d): %w", i, err)
			}
			out.Field(i).Set(ev)
		}
		return out, nil
	}
	return bad()
}

// mapKey converts a JSON object key to a dict key of type sig (basic
// types only, so a number key is read from its text).
func mapKey(s, sig string) (reflect.Value, error) {
	switch sig[0] {
	case 's', 'o', 'g':
		return convert(s, sig)
	case 'b':
		b, err := strconv.ParseBool(s)
		if err != nil {
			return reflect.Value{}, fmt.Errorf("%w: key %q is not a b", errConvert, s)
		}
		return reflect.ValueOf(b), nil
	}
	return convert(json.Number(s), sig)
}

// variant converts a JSON value for a v: {"signature": "u", "value": 7}
// gives that type; otherwise strings are s, booleans b, integers x (t when
// too large), other numbers d, arrays av and objects a{sv}.
func variant(v any) (reflect.Value, error) {
	if m, ok := v.(map[string]any); ok && len(m) == 2 {
		if s, ok := m["signature"].(string); ok {
			if _, err := godbus.ParseSignature(s); err != nil || s == "" {
				return reflect.Value{}, fmt.Errorf("%w: bad variant signature %q", errConvert, s)
			}
			if n, err := typeLen(s); err != nil || n != len(s) {
				return reflect.Value{}, fmt.Errorf("%w: variant signature %q is not one type", errConvert, s)
			}
			inner, err := convert(m["value"], s)
			if err != nil {
				return reflect.Value{}, err
			}
			return reflect.ValueOf(godbus.MakeVariantWithSignature(inner.Interface(), godbus.ParseSignatureMust(s))), nil
		}
	}
	var sig string
	switch x := v.(type) {
	case string:
		sig = "s"
	case bool:
		sig = "b"
	case json.Number:
		if _, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			sig = "x"
		} else if _, err := strconv.ParseUint(string(x), 10, 64); err == nil {
			sig = "t"
		} else {
			sig = "d"
		}
	case []any:
		sig = "av"
	case map[string]any:
		sig = "a{sv}"
	default:
		return reflect.Value{}, fmt.Errorf("%w: null has no D-Bus type", errConvert)
	}
	inner, err := convert(v, sig)
	if err != nil {
		return reflect.Value{}, err
	}
	return reflect.ValueOf(godbus.MakeVariant(inner.Interface())), nil
}

func describe(v any) string {
	switch x := v.(type) {
	case json.Number:
		return "number " + string(x)
	case string:
		return strconv.Quote(x)
	case nil:
		return "null"
	case bool:
		return "boolean"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return fmt.Sprintf("%T", v)
}

var typeNames = map[byte]string{
	'y': "byte (y, 0..255)", 'b': "boolean (b)", 'n': "int16 (n)", 'q': "uint16 (q)", 'i': "int32 (i)",
	'u': "uint32 (u)", 'x': "int64 (x)", 't': "uint64 (t)", 'd': "double (d)", 's': "string (s)",
	'o': "object path (o)", 'g': "signature (g)", 'v': "variant (v)",
}

func typeName(sig string) string {
	if n, ok := typeNames[sig[0]]; ok && len(sig) == 1 {
		return n
	}
	if sig[0] == '(' {
		return "struct " + sig + " (a JSON array)"
	}
	if len(sig) > 1 && sig[1] == '{' {
		return "dict " + sig + " (a JSON object)"
	}
	return "array " + sig
}

// toJSON turns a value godbus decoded into one encoding/json writes
// faithfully: variants become their values, dicts objects with string
// keys, structs arrays.
func toJSON(v any) any {
	switch x := v.(type) {
	case godbus.Variant:
		return toJSON(x.Value())
	case godbus.ObjectPath:
		return string(x)
	case godbus.Signature:
		return x.String()
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = toJSON(e)
		}
		return out
	case []byte:
		out := make([]int, len(x))
		for i, b := range x {
			out[i] = int(b)
		}
		return out
	case nil, bool, string, uint8, int16, uint16, int32, uint32, int64, uint64, float64:
		return x
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Slice, reflect.Array:
		out := make([]any, rv.Len())
		for i := range out {
			out[i] = toJSON(rv.Index(i).Interface())
		}
		return out
	case reflect.Map:
		out := make(map[string]any, rv.Len())
		keys := rv.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return fmt.Sprint(keys[i]) < fmt.Sprint(keys[j]) })
		for _, k := range keys {
			out[fmt.Sprint(k.Interface())] = toJSON(rv.MapIndex(k).Interface())
		}
		return out
	case reflect.Struct:
		out := make([]any, rv.NumField())
		for i := range out {
			out[i] = toJSON(rv.Field(i).Interface())
		}
		return out
	}
	return fmt.Sprint(v)
}
