package controller

import "bytes"

// MergeExpositions appends the Prometheus text expositions parts to dst so
// that each family appears once, with its HELP and TYPE from the first part
// that has it and its samples from every part in order, and no series
// (name and labels) twice: a series two processes both report is counted
// once, from the first. It reads the text format the processes write with
// promtext; it does not re-encode values.
func MergeExpositions(dst []byte, parts ...[]byte) []byte {
	type family struct {
		header  []byte
		samples []byte
	}
	var order []string
	fams := map[string]*family{}
	seen := map[string]bool{}
	get := func(name string) *family {
		f, ok := fams[name]
		if !ok {
			f = &family{}
			fams[name] = f
			order = append(order, name)
		}
		return f
	}
	for _, p := range parts {
		cur := ""
		for len(p) > 0 {
			line := p
			if i := bytes.IndexByte(p, '\n'); i >= 0 {
				line, p = p[:i+1], p[i+1:]
			} else {
				p = nil
				line = append(line[:len(line):len(line)], '\n')
			}
			switch {
			case bytes.HasPrefix(line, []byte("# HELP ")), bytes.HasPrefix(line, []byte("# TYPE ")):
				name := string(firstField(line[7:]))
				if name != cur {
					cur = name
				}
				f := get(name)
				if !bytes.Contains(f.header, line[:7]) {
					f.header = append(f.header, line...)
				}
			case len(bytes.TrimSpace(line)) == 0, line[0] == '#':
			default:
				series := line
				if i := bytes.LastIndexByte(bytes.TrimRight(line, "\n"), ' '); i > 0 {
					series = line[:i]
				}
				if seen[string(series)] {
					continue
				}
				seen[string(series)] = true
				name := cur
				if name == "" || !bytes.HasPrefix(series, []byte(name)) {
					name = string(metricName(series))
				}
				f := get(name)
				f.samples = append(f.samples, line...)
			}
		}
	}
	for _, name := range order {
		f := fams[name]
		dst = append(dst, f.header...)
		dst = append(dst, f.samples...)
	}
	return dst
}

func firstField(b []byte) []byte {
	if i := bytes.IndexAny(b, " \n"); i >= 0 {
		return b[:i]
	}
	return b
}

func metricName(series []byte) []byte {
	if i := bytes.IndexAny(series, "{ "); i >= 0 {
		return series[:i]
	}
	return series
}
