// Command iegen generates the information-element tables of package ipfix:
// the IANA table from IANA's IPFIX registry XML
// (https://www.iana.org/assignments/ipfix/ipfix.xml), and with -vendor the
// enterprise-specific and NetFlow v9 tables from the element lists of libfds
// and Logstash's NetFlow codec (see vendor.go).
//
// It is run by go generate in dataplane/ipfix; see registry.go.
package main

import (
	"bytes"
	"encoding/xml"
	"flag"
	"fmt"
	"go/format"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// registry mirrors the parts of ipfix.xml we need. Tags carry no namespace
// so they match IANA's default namespace by local name.
type registry struct {
	Updated string        `xml:"updated"`
	Subs    []subRegistry `xml:"registry"`
}

type subRegistry struct {
	ID      string   `xml:"id,attr"`
	Records []record `xml:"record"`
}

type record struct {
	Name      string `xml:"name"`
	DataType  string `xml:"dataType"`
	Semantics string `xml:"dataTypeSemantics"`
	ElementID string `xml:"elementId"`
	Status    string `xml:"status"`
	Units     string `xml:"units"`
}

// element is one output row; the string fields hold Go identifiers.
type element struct {
	name      string
	id        uint16
	typ       string
	semantics string
	status    string
	units     string
}

const ieRegistryID = "ipfix-information-elements"

// Registry strings to the constant names in ie.go. Kept here rather than
// imported so the generator still runs while package ipfix does not build.
var dataTypes = map[string]string{
	"octetArray":           "TypeOctetArray",
	"unsigned8":            "TypeUnsigned8",
	"unsigned16":           "TypeUnsigned16",
	"unsigned32":           "TypeUnsigned32",
	"unsigned64":           "TypeUnsigned64",
	"signed8":              "TypeSigned8",
	"signed16":             "TypeSigned16",
	"signed32":             "TypeSigned32",
	"signed64":             "TypeSigned64",
	"float32":              "TypeFloat32",
	"float64":              "TypeFloat64",
	"boolean":              "TypeBoolean",
	"macAddress":           "TypeMACAddress",
	"string":               "TypeString",
	"dateTimeSeconds":      "TypeDateTimeSeconds",
	"dateTimeMilliseconds": "TypeDateTimeMilliseconds",
	"dateTimeMicroseconds": "TypeDateTimeMicroseconds",
	"dateTimeNanoseconds":  "TypeDateTimeNanoseconds",
	"ipv4Address":          "TypeIPv4Address",
	"ipv6Address":          "TypeIPv6Address",
	"basicList":            "TypeBasicList",
	"subTemplateList":      "TypeSubTemplateList",
	"subTemplateMultiList": "TypeSubTemplateMultiList",
}

var semantics = map[string]string{
	"default":      "", // zero value, omitted
	"quantity":     "SemanticsQuantity",
	"totalCounter": "SemanticsTotalCounter",
	"deltaCounter": "SemanticsDeltaCounter",
	"identifier":   "SemanticsIdentifier",
	"flags":        "SemanticsFlags",
	"list":         "SemanticsList",
	"snmpCounter":  "SemanticsSNMPCounter",
	"snmpGauge":    "SemanticsSNMPGauge",
}

var statuses = map[string]string{
	"current":    "", // zero value, omitted
	"deprecated": "StatusDeprecated",
	"obsolete":   "StatusObsolete",
}

func main() {
	in := flag.String("in", "../../../shared/data/iana/ipfix.xml", "IANA IPFIX registry XML")
	out := flag.String("out", "ies_iana.go", "generated Go file")
	vendorDir := flag.String("vendor", "", "folder of vendor element lists (libfds/, logstash-codec-netflow/); empty: no vendor table")
	vendorOut := flag.String("vendor-out", "ies_vendor.go", "generated Go file of the vendor and v9 tables")
	flag.Parse()

	if err := run(*in, *out, *vendorDir, *vendorOut, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(in, out, vendorDir, vendorOut string, warn io.Writer) error {
	f, err := os.Open(in)
	if err != nil {
		return fmt.Errorf("iegen: %w", err)
	}
	defer f.Close()

	var reg registry
	if err := xml.NewDecoder(f).Decode(&reg); err != nil {
		return fmt.Errorf("iegen: parse %s: %w", in, err)
	}
	updated := strings.TrimSpace(reg.Updated)
	if updated == "" {
		return fmt.Errorf("iegen: %s has no <updated> date", in)
	}

	var recs []record
	found := false
	for _, s := range reg.Subs {
		if s.ID == ieRegistryID {
			recs, found = s.Records, true
			break
		}
	}
	if !found {
		return fmt.Errorf("iegen: registry %q not found in %s", ieRegistryID, in)
	}

	elems, err := convert(recs, warn)
	if err != nil {
		return err
	}
	src, err := render(elems, updated)
	if err != nil {
		return err
	}
	if err := os.WriteFile(out, src, 0o644); err != nil {
		return fmt.Errorf("iegen: %w", err)
	}
	if vendorDir == "" {
		return nil
	}
	libfds, err := loadLibfds(filepath.Join(vendorDir, "libfds"))
	if err != nil {
		return err
	}
	logstash, err := loadLogstash(filepath.Join(vendorDir, "logstash-codec-netflow"))
	if err != nil {
		return err
	}
	ipfixTab, v9Tab, err := buildVendor(elems, libfds, logstash)
	if err != nil {
		return err
	}
	if src, err = renderVendor(ipfixTab, v9Tab); err != nil {
		return err
	}
	if err := os.WriteFile(vendorOut, src, 0o644); err != nil {
		return fmt.Errorf("iegen: %w", err)
	}
	return nil
}

// convert turns registry records into elements sorted by ID, dropping
// placeholders (ranges, Reserved, Unassigned, NetFlow v9 holes, nameless
// deprecated duplicates).
func convert(recs []record, warn io.Writer) ([]element, error) {
	var elems []element
	ids := make(map[uint16]string)
	names := make(map[string]uint16)
	for _, r := range recs {
		name := strings.TrimSpace(r.Name)
		idStr := strings.TrimSpace(r.ElementID)
		if strings.Contains(idStr, "-") || !isElementName(name) {
			continue
		}
		id, err := strconv.ParseUint(idStr, 10, 15) // the 16th bit is the enterprise bit
		if err != nil {
			return nil, fmt.Errorf("iegen: element %q: bad elementId %q", name, idStr)
		}
		e := element{name: name, id: uint16(id), units: strings.TrimSpace(r.Units)}

		dt := strings.TrimSpace(r.DataType)
		var ok bool
		if e.typ, ok = dataTypes[dt]; !ok {
			fmt.Fprintf(warn, "iegen: warning: element %d %s: unknown data type %q, using TypeUnknown\n", id, name, dt)
		}
		sem := strings.TrimSpace(r.Semantics)
		if sem == "" {
			sem = "default"
		}
		if e.semantics, ok = semantics[sem]; !ok {
			return nil, fmt.Errorf("iegen: element %d %s: unknown semantics %q", id, name, sem)
		}
		st := strings.TrimSpace(r.Status)
		if st == "" {
			st = "current"
		}
		if e.status, ok = statuses[st]; !ok {
			return nil, fmt.Errorf("iegen: element %d %s: unknown status %q", id, name, st)
		}

		// Lookup indexes by ID and LookupName by name, so both must be unique.
		if prev, dup := ids[e.id]; dup {
			return nil, fmt.Errorf("iegen: elementId %d used by both %s and %s", id, prev, name)
		}
		if prev, dup := names[name]; dup {
			return nil, fmt.Errorf("iegen: name %s used by both %d and %d", name, prev, id)
		}
		ids[e.id], names[name] = name, e.id
		elems = append(elems, e)
	}
	if len(elems) == 0 {
		return nil, fmt.Errorf("iegen: no information elements found")
	}
	// Reverse names share LookupName's namespace with IANA names.
	for _, e := range elems {
		if id, clash := names[reverseName(e.name)]; clash {
			return nil, fmt.Errorf("iegen: reverse name of %s clashes with element %d", e.name, id)
		}
	}
	slices.SortFunc(elems, func(a, b element) int { return int(a.id) - int(b.id) })
	return elems, nil
}

// isElementName reports whether s looks like a real IE name: an ASCII
// identifier, which rules out "Assigned for NetFlow v9 compatibility" and
// empty names, plus the two one-word placeholders.
func isElementName(s string) bool {
	if s == "" || s == "Reserved" || s == "Unassigned" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		letter := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
		if !letter && (i == 0 || c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// reverseName mirrors reverseName in registry.go (RFC 5103 naming).
func reverseName(name string) string {
	if name != "" && 'a' <= name[0] && name[0] <= 'z' {
		return "reverse" + string(name[0]-'a'+'A') + name[1:]
	}
	return "reverse" + name
}

func render(elems []element, updated string) ([]byte, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "// Code generated by internal/iegen from IANA's ipfix.xml (updated %s); DO NOT EDIT.\n\n", updated)
	b.WriteString("package ipfix\n\n")
	fmt.Fprintf(&b, "// ianaRegistryUpdated is the <updated> date of the registry this file was built from.\n")
	fmt.Fprintf(&b, "const ianaRegistryUpdated = %s\n\n", strconv.Quote(updated))
	fmt.Fprintf(&b, "// ianaMaxID is the highest element ID in ianaIEs; it sizes the lookup index.\n")
	fmt.Fprintf(&b, "const ianaMaxID = %d\n\n", elems[len(elems)-1].id)
	b.WriteString("// ianaIEs holds the IANA information elements, sorted by ID.\n")
	b.WriteString("var ianaIEs = [...]InfoElement{\n")
	for _, e := range elems {
		fmt.Fprintf(&b, "{Name: %s, ID: %d", strconv.Quote(e.name), e.id)
		for _, f := range [...]struct{ key, val string }{
			{"Type", e.typ},
			{"Semantics", e.semantics},
			{"Status", e.status},
		} {
			if f.val != "" {
				fmt.Fprintf(&b, ", %s: %s", f.key, f.val)
			}
		}
		if e.units != "" {
			fmt.Fprintf(&b, ", Units: %s", strconv.Quote(e.units))
		}
		b.WriteString(", Known: true},\n")
	}
	b.WriteString("}\n")

	src, err := format.Source(b.Bytes())
	if err != nil {
		return nil, fmt.Errorf("iegen: format output: %w", err)
	}
	return src, nil
}
