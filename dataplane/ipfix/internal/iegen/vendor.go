package main

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"go/format"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The vendor table is built from two published element lists (facts, kept
// with their licences in the vendor folder):
//   - libfds/*.xml, CESNET libfds (ipfixcol2): one file per enterprise, with
//     IANA data types and semantics. netflow.xml and netflowExtra.xml are
//     NetFlow v9 field types under libfds' pseudo-PENs 2^32-2 (types
//     128-32767) and 2^32-1 (types 32768-65535, stored as type-32768).
//   - logstash-codec-netflow/{ipfix,netflow}.yaml: Logstash's tables, keyed
//     by PEN (IPFIX) or v9 field type, with Logstash's value types.
//
// Where both define one element, libfds wins (it carries semantics and
// units). IANA elements (PEN 0 and RFC 5103's reverse PEN) come from IANA's
// registry alone, so both lists' copies of them are ignored, and so are v9
// types IANA numbers.

const (
	libfdsV9Low  = 4294967294 // v9 types 128-32767
	libfdsV9High = 4294967295 // v9 types 32768-65535, minus 32768
	ciscoPEN     = 9
	reversePEN   = 29305
)

// vendorNames names the enterprises whose elements get a prefix when their
// names clash. libfds files name their own; Logstash's need this table (PEN
// registry names, shortened). A PEN missing here stops the generator.
var vendorNames = map[uint32]string{
	9:     "cisco",
	637:   "nokia",
	3054:  "ixia",
	5951:  "netscaler",
	6871:  "cert",
	6876:  "vmware",
	8057:  "cesnet",
	9789:  "sophos", // Astaro (Sophos UTM)
	10704: "barracuda",
	12326: "phion", // Barracuda's firewall, formerly phion
	15397: "procera",
	21373: "netfilter",
	26866: "gigamon",
	39499: "flowmon",
	41916: "viptela",
}

// vendorElem is one row of the vendor or v9 table.
type vendorElem struct {
	element
	pen    uint32 // 0 for v9 types
	v9     bool
	vendor string // prefix for clashing names
	source string // for error messages
}

type libfdsFile struct {
	Scope struct {
		PEN    uint32 `xml:"pen"`
		Name   string `xml:"name"`
		Biflow struct {
			Mode string `xml:"mode,attr"`
			Bit  string `xml:",chardata"`
		} `xml:"biflow"`
	} `xml:"scope"`
	Elements []struct {
		Name      string `xml:"name"`
		DataType  string `xml:"dataType"`
		Semantics string `xml:"dataSemantics"`
		ID        string `xml:"id"`
		Status    string `xml:"status"`
		Units     string `xml:"units"`
	} `xml:"element"`
}

// loadLibfds reads libfds' element files.
func loadLibfds(dir string) ([]vendorElem, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.xml"))
	if err != nil || len(files) == 0 {
		return nil, fmt.Errorf("iegen: no libfds element files in %s", dir)
	}
	slices.Sort(files)
	var out []vendorElem
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("iegen: %w", err)
		}
		var f libfdsFile
		if err := xml.Unmarshal(b, &f); err != nil {
			return nil, fmt.Errorf("iegen: parse %s: %w", file, err)
		}
		base := filepath.Base(file)
		pen := f.Scope.PEN
		reverseBit := uint16(0)
		switch mode := strings.TrimSpace(f.Scope.Biflow.Mode); mode {
		case "", "none":
		case "split":
			// Reverse elements are the forward ID with one bit set
			// (YAF: bit 15 counted from 1, 0x4000).
			n, err := strconv.Atoi(strings.TrimSpace(f.Scope.Biflow.Bit))
			if err != nil || n < 1 || n > 15 {
				return nil, fmt.Errorf("iegen: %s: bad biflow split bit %q", base, f.Scope.Biflow.Bit)
			}
			reverseBit = 1 << (n - 1)
		default:
			return nil, fmt.Errorf("iegen: %s: unsupported biflow mode %q", base, mode)
		}
		vendor := strings.TrimSpace(f.Scope.Name)
		for _, x := range f.Elements {
			name := camelName(strings.TrimSpace(x.Name))
			id, err := strconv.ParseUint(strings.TrimSpace(x.ID), 10, 15)
			if err != nil {
				return nil, fmt.Errorf("iegen: %s: element %q: bad id %q", base, name, x.ID)
			}
			e := vendorElem{pen: pen, vendor: vendor, source: "libfds/" + base}
			e.name, e.id = name, uint16(id)
			if e.typ, err = libfdsType(x.DataType); err != nil {
				return nil, fmt.Errorf("iegen: %s: element %d %s: %w", base, id, name, err)
			}
			sem := strings.TrimSpace(x.Semantics)
			if sem == "" {
				sem = "default"
			}
			var ok bool
			if e.semantics, ok = semantics[sem]; !ok {
				return nil, fmt.Errorf("iegen: %s: element %d %s: unknown semantics %q", base, id, name, sem)
			}
			st := strings.TrimSpace(x.Status)
			if st == "" {
				st = "current"
			}
			if e.status, ok = statuses[st]; !ok {
				return nil, fmt.Errorf("iegen: %s: element %d %s: unknown status %q", base, id, name, st)
			}
			if u := strings.TrimSpace(x.Units); u != "none" {
				e.units = u
			}
			switch pen {
			case libfdsV9Low:
				e.pen, e.v9, e.vendor = 0, true, "v9"
			case libfdsV9High:
				e.pen, e.v9, e.vendor = 0, true, "v9"
				e.id += 0x8000
			}
			out = append(out, e)
			if reverseBit != 0 && e.id&reverseBit == 0 {
				r := e
				r.id |= reverseBit
				r.name = reverseName(e.name)
				out = append(out, r)
			}
		}
	}
	return out, nil
}

func libfdsType(s string) (string, error) {
	s = strings.TrimSpace(s)
	for k, v := range dataTypes {
		if strings.EqualFold(k, s) { // netflowExtra.xml writes ipv6address once
			return v, nil
		}
	}
	return "", fmt.Errorf("unknown data type %q", s)
}

// logstashTypes maps Logstash's value types to IANA data types.
var logstashTypes = map[string]string{
	"uint8":      "TypeUnsigned8",
	"uint15":     "TypeUnsigned16",
	"uint16":     "TypeUnsigned16",
	"uint24":     "TypeUnsigned32",
	"uint32":     "TypeUnsigned32",
	"uint64":     "TypeUnsigned64",
	"int8":       "TypeSigned8",
	"int32":      "TypeSigned32",
	"float":      "TypeFloat32",
	"double":     "TypeFloat64",
	"ip4_addr":   "TypeIPv4Address",
	"ip6_addr":   "TypeIPv6Address",
	"mac_addr":   "TypeMACAddress",
	"string":     "TypeString",
	"octetarray": "TypeOctetArray",
	"acl_id_asa": "TypeOctetArray", // three 32-bit ACL IDs
	// Used only for IANA numbers, whose IANA definition is kept.
	"forwarding_status":       "TypeOctetArray",
	"application_id":          "TypeOctetArray",
	"mpls_label_stack_octets": "TypeOctetArray",
}

// logstashEntry turns one table row ([type, name]) into an element; ok is
// false for :skip rows.
func logstashEntry(n *yaml.Node, src string, id uint64) (e vendorElem, ok bool, err error) {
	var row []string
	if n.Kind == yaml.SequenceNode {
		for _, c := range n.Content {
			row = append(row, strings.TrimSpace(c.Value))
		}
	}
	if len(row) == 1 && row[0] == ":skip" {
		return e, false, nil
	}
	if len(row) != 2 {
		return e, false, fmt.Errorf("iegen: %s: line %d: id %d: row is not [type, name]", src, n.Line, id)
	}
	name := strings.TrimPrefix(row[1], ":")
	// A bare number is a length: unsigned of that size.
	typ := map[string]string{"1": "TypeUnsigned8", "2": "TypeUnsigned16", "4": "TypeUnsigned32", "8": "TypeUnsigned64"}[row[0]]
	if typ == "" {
		typ = logstashTypes[strings.TrimPrefix(row[0], ":")]
	}
	if typ == "" {
		return e, false, fmt.Errorf("iegen: %s: line %d: %d %s: unknown type %s", src, n.Line, id, name, row[0])
	}
	e.name, e.typ, e.source = camelName(name), typ, src
	return e, true, nil
}

// camelName writes names with '_' or '-' in lowerCamelCase, the style of
// IANA's names and one the filter language can read (Logstash's
// xlate_src_addr_ipv4 -> xlateSrcAddrIpv4, CERT's httpX-Forwarded-For ->
// httpXForwardedFor); other names are kept as published.
func camelName(s string) string {
	if !strings.ContainsAny(s, "_-") {
		return s
	}
	var b strings.Builder
	for _, part := range strings.FieldsFunc(s, func(r rune) bool { return r == '_' || r == '-' }) {
		if part == "" {
			continue
		}
		if b.Len() == 0 {
			b.WriteString(strings.ToLower(part[:1]) + part[1:])
		} else {
			b.WriteString(upperFirst(part))
		}
	}
	return b.String()
}

// loadLogstash reads Logstash's ipfix.yaml (PEN -> ID -> row) and
// netflow.yaml (v9 type -> row).
func loadLogstash(dir string) ([]vendorElem, error) {
	var out []vendorElem
	ipfix, err := readYAML(filepath.Join(dir, "ipfix.yaml"))
	if err != nil {
		return nil, err
	}
	pens, err := intMap(ipfix, "logstash ipfix.yaml", 0xffffffff)
	if err != nil {
		return nil, err
	}
	for _, p := range pens {
		pen := uint32(p.key)
		if pen == 0 || pen == reversePEN {
			continue // IANA's own registry is the source for these
		}
		vendor, ok := vendorNames[pen]
		if !ok {
			return nil, fmt.Errorf("iegen: logstash ipfix.yaml: PEN %d has no vendor name in vendorNames", pen)
		}
		rows, err := intMap(p.val, "logstash ipfix.yaml PEN "+strconv.FormatUint(p.key, 10), 0x7fff)
		if err != nil {
			return nil, err
		}
		for _, r := range rows {
			e, ok, err := logstashEntry(r.val, "logstash ipfix.yaml", r.key)
			if err != nil {
				return nil, err
			}
			if ok {
				e.pen, e.id, e.vendor = pen, uint16(r.key), vendor
				out = append(out, e)
			}
		}
	}
	v9, err := readYAML(filepath.Join(dir, "netflow.yaml"))
	if err != nil {
		return nil, err
	}
	rows, err := intMap(v9, "logstash netflow.yaml", 0xffff)
	if err != nil {
		return nil, err
	}
	for _, r := range rows {
		e, ok, err := logstashEntry(r.val, "logstash netflow.yaml", r.key)
		if err != nil {
			return nil, err
		}
		if ok {
			e.id, e.v9, e.vendor = uint16(r.key), true, "v9"
			out = append(out, e)
		}
	}
	return out, nil
}

// readYAML returns the document's top node. The files repeat a few keys
// (Gigamon's 2250 twice), which yaml.Unmarshal into a map refuses, so they
// are walked as nodes.
func readYAML(path string) (*yaml.Node, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("iegen: %w", err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("iegen: parse %s: %w", path, err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, fmt.Errorf("iegen: %s: not one YAML document", path)
	}
	return doc.Content[0], nil
}

type intEntry struct {
	key uint64
	val *yaml.Node
}

// intMap returns a mapping's entries sorted by their integer keys. A
// repeated key keeps its last value, as Ruby's YAML loader (Logstash's)
// does.
func intMap(n *yaml.Node, src string, max uint64) ([]intEntry, error) {
	if n.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("iegen: %s: line %d: not a mapping", src, n.Line)
	}
	at := map[uint64]int{}
	var out []intEntry
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		key, err := strconv.ParseUint(k.Value, 10, 64)
		if err != nil || key > max {
			return nil, fmt.Errorf("iegen: %s: line %d: bad key %q", src, k.Line, k.Value)
		}
		if j, dup := at[key]; dup {
			out[j].val = v
			continue
		}
		at[key] = len(out)
		out = append(out, intEntry{key, v})
	}
	slices.SortFunc(out, func(a, b intEntry) int { return cmpU(a.key, b.key) })
	return out, nil
}

type vendorKey struct {
	pen uint32
	v9  bool
	id  uint16
}

// buildVendor merges the lists (libfds first), drops what IANA defines,
// and makes names unique: a name that IANA uses, or that two elements
// share, gets its vendor's prefix on every vendor element that has it
// (Barracuda's and phion's Timestamp become barracudaTimestamp and
// phionTimestamp; v9 types get "v9"). The one exception is a
// v9 type above 32767 that carries the name and type of Cisco's (PEN 9)
// element with the same low 15 bits: Cisco exports its elements that way in
// v9, so both keep the name.
func buildVendor(iana []element, libfds, logstash []vendorElem) (ipfixTab, v9Tab []vendorElem, err error) {
	ianaIDs := make(map[uint16]bool, len(iana))
	reserved := make(map[string]bool, 2*len(iana))
	for _, e := range iana {
		ianaIDs[e.id] = true
		reserved[e.name], reserved[reverseName(e.name)] = true, true
	}
	seen := map[vendorKey]bool{}
	var all []vendorElem
	for _, list := range [][]vendorElem{libfds, logstash} {
		for _, e := range list {
			if e.v9 && ianaIDs[e.id] || e.v9 && e.id < 128 {
				continue
			}
			k := vendorKey{e.pen, e.v9, e.id}
			if seen[k] {
				continue // libfds came first, or a repeated row
			}
			if !isElementName(e.name) {
				return nil, nil, fmt.Errorf("iegen: %s: element %d: bad name %q", e.source, e.id, e.name)
			}
			seen[k] = true
			all = append(all, e)
		}
	}

	// Cisco's elements by ID, for the v9 exception.
	cisco := map[uint16]int{}
	for i := range all {
		if all[i].pen == ciscoPEN {
			cisco[all[i].id] = i
		}
	}
	// One vendor's name for two IDs (Gigamon's ssl_server_name_raw):
	// each gets its ID appended (sslServerNameRawId2539).
	type vendorName struct {
		pen  uint32
		v9   bool
		name string
	}
	perVendor := map[vendorName]int{}
	for _, e := range all {
		perVendor[vendorName{e.pen, e.v9, e.name}]++
	}
	for i := range all {
		e := &all[i]
		if perVendor[vendorName{e.pen, e.v9, e.name}] > 1 {
			e.name += "Id" + strconv.Itoa(int(e.id))
		}
	}
	twin := make([]int, len(all)) // 1 + index of the Cisco twin, 0 for none
	// v9 names first: NetFlow v9 published them before the enterprise
	// lists that copy them (Flowmon's xlate_src_addr_ipv4), so the v9
	// type keeps the bare name.
	users := map[string]int{}
	for i := range all {
		e := &all[i]
		if c, ok := cisco[e.id&0x7fff]; ok && e.v9 && e.id&0x8000 != 0 && all[c].name == e.name && all[c].typ == e.typ {
			twin[i] = c + 1
			continue
		}
		if e.v9 {
			users[e.name]++
		}
	}
	v9Names := map[string]bool{}
	for i := range all {
		e := &all[i]
		if e.v9 && twin[i] == 0 {
			if users[e.name] > 1 || reserved[e.name] {
				e.name = e.vendor + upperFirst(e.name)
			}
			v9Names[e.name] = true
		}
	}
	clear(users)
	for _, e := range all {
		if !e.v9 {
			users[e.name]++
		}
	}
	for i := range all {
		e := &all[i]
		if !e.v9 && (users[e.name] > 1 || reserved[e.name] || v9Names[e.name]) {
			e.name = e.vendor + upperFirst(e.name)
		}
	}
	names := map[string]vendorKey{}
	for i := range all {
		e := &all[i]
		if twin[i] != 0 {
			e.name = all[twin[i]-1].name
			continue
		}
		k := vendorKey{e.pen, e.v9, e.id}
		if reserved[e.name] {
			return nil, nil, fmt.Errorf("iegen: %s: %s still clashes with an IANA name", e.source, e.name)
		}
		if prev, dup := names[e.name]; dup {
			return nil, nil, fmt.Errorf("iegen: name %s used by %+v and %+v even with vendor prefixes", e.name, prev, k)
		}
		names[e.name] = k
	}
	for _, e := range all {
		if e.v9 {
			v9Tab = append(v9Tab, e)
		} else {
			ipfixTab = append(ipfixTab, e)
		}
	}
	slices.SortFunc(ipfixTab, func(a, b vendorElem) int {
		if a.pen != b.pen {
			return cmpU(uint64(a.pen), uint64(b.pen))
		}
		return cmpU(uint64(a.id), uint64(b.id))
	})
	slices.SortFunc(v9Tab, func(a, b vendorElem) int { return cmpU(uint64(a.id), uint64(b.id)) })
	return ipfixTab, v9Tab, nil
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

func cmpU(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func renderVendor(ipfixTab, v9Tab []vendorElem) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("// Code generated by internal/iegen from the vendor element lists of libfds and Logstash's NetFlow codec; DO NOT EDIT.\n\n")
	b.WriteString("package ipfix\n\n")
	b.WriteString("// vendorIEs holds enterprise-specific elements, sorted by PEN and ID.\n")
	b.WriteString("var vendorIEs = [...]InfoElement{\n")
	for _, e := range ipfixTab {
		writeVendorElem(&b, e)
	}
	b.WriteString("}\n\n")
	b.WriteString("// v9IEs holds NetFlow v9 field types that IANA does not number, sorted by type.\n")
	b.WriteString("var v9IEs = [...]InfoElement{\n")
	for _, e := range v9Tab {
		writeVendorElem(&b, e)
	}
	b.WriteString("}\n")
	src, err := format.Source(b.Bytes())
	if err != nil {
		return nil, fmt.Errorf("iegen: format vendor output: %w", err)
	}
	return src, nil
}

func writeVendorElem(b *bytes.Buffer, e vendorElem) {
	fmt.Fprintf(b, "{Name: %s, ID: %d", strconv.Quote(e.name), e.id)
	if e.pen != 0 {
		fmt.Fprintf(b, ", PEN: %d", e.pen)
	}
	for _, f := range [...]struct{ key, val string }{
		{"Type", e.typ},
		{"Semantics", e.semantics},
		{"Status", e.status},
	} {
		if f.val != "" {
			fmt.Fprintf(b, ", %s: %s", f.key, f.val)
		}
	}
	if e.units != "" {
		fmt.Fprintf(b, ", Units: %s", strconv.Quote(e.units))
	}
	if e.v9 {
		b.WriteString(", V9: true")
	}
	b.WriteString(", Known: true},\n")
}
