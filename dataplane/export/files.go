package export

import "strings"

// SpecFiles returns the files an output spec names: those it reads
// (certificates, keys, password and token files) and those it writes (the
// output file; rotation writes its siblings beside it). A spec that does
// not parse is an error, as for CheckSpec.
func SpecFiles(spec string) (reads, writes []string, err error) {
	if err := CheckSpec(spec); err != nil {
		return nil, nil, err
	}
	add := func(dst []string, paths ...string) []string {
		for _, p := range paths {
			if p != "" {
				dst = append(dst, p)
			}
		}
		return dst
	}
	switch {
	case spec == "discard", spec == "jsonl:-":
	case strings.HasPrefix(spec, "jsonl:"):
		path, _, _, _ := parseJSONLFileSpec(spec)
		writes = add(writes, path)
	case isIPFIXSpec(spec):
		s, _ := parseIPFIXSpec(spec)
		writes = add(writes, s.path)
		reads = add(reads, s.tlsFiles()...)
	case strings.HasPrefix(spec, "kafka://"):
		c, _ := parseKafkaSpec(spec)
		reads = add(reads, c.TLSCAFile, c.TLSCertFile, c.TLSKeyFile, c.SASLPasswordFile)
	case strings.HasPrefix(spec, "graphql+"):
		c, _ := parseGraphQLSpec(spec)
		reads = add(reads, c.TokenFile)
	}
	return reads, writes, nil
}
