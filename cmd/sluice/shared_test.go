package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/sluice-flow/sluice/internal/testenv"
)

// TestSharedCaptures decodes the workspace's vendor captures (when the folder
// exists; it is not part of the repository). Template and data captures that
// come as a pair are decoded together, templates first, as a collector would
// see them. The only error allowed is a data set whose template the capture
// never carries, which tshark cannot decode either; the record count must
// equal tshark's.
func TestSharedCaptures(t *testing.T) {
	if _, err := os.Stat(sharedCaptures); err != nil {
		testenv.SkipOrFail(t, "no shared captures at %s: %v", sharedCaptures, err)
	}
	files, _ := filepath.Glob(filepath.Join(sharedCaptures, "*.pcap"))
	ipfixFiles, _ := filepath.Glob(filepath.Join(sharedCaptures, "*.ipfix"))
	files = append(files, ipfixFiles...)
	if len(files) == 0 {
		testenv.SkipOrFail(t, "shared captures folder is empty")
	}
	tshark, _ := exec.LookPath("tshark")
	mergecap, _ := exec.LookPath("mergecap")
	for _, group := range pairCaptures(files) {
		name := filepath.Base(group[len(group)-1])
		t.Run(name, func(t *testing.T) {
			// tshark scopes templates by address and port; so does
			// --scope-port (the default scope is the address alone).
			out, stderr := decodeFiles(t, append([]string{"--scope-port"}, group...)...)
			data, options := summaryCounts(t, stderr)
			if data+options == 0 {
				t.Fatalf("no records decoded: %s", stderr)
			}
			if n := strings.Count(out, "\n"); n != data+options {
				t.Errorf("printed %d lines for %d records", n, data+options)
			}
			if bad := otherErrors(stderr); bad != "" {
				t.Errorf("unexpected decode errors: %s", bad)
			}
			if tshark == "" || strings.HasSuffix(name, ".ipfix") {
				return
			}
			if strings.Contains(name, "nf9_cisco_asa") {
				// The ASA redefines template 263 (18 fields, then 20);
				// tshark keeps decoding with the first definition and finds
				// one record more than the set holds under the new one
				// (8 x 50 octets plus 36 of "padding" instead of 7 x 62
				// plus 2). RFC 3954 says the newest definition applies.
				return
			}
			file := group[0]
			if len(group) > 1 {
				if mergecap == "" {
					return
				}
				file = filepath.Join(t.TempDir(), "merged.pcap")
				args := append([]string{"-a", "-F", "pcap", "-w", file}, group...)
				if out, err := exec.Command(mergecap, args...).CombinedOutput(); err != nil {
					t.Fatalf("mergecap: %v\n%s", err, out)
				}
			}
			if n := tsharkRecordCount(t, tshark, file); n != data+options {
				t.Errorf("tshark decodes %d records, sluice %d", n, data+options)
			}
		})
	}
}

var errorsRe = regexp.MustCompile(`(?m)^errors: (.*)$`)

// otherErrors returns the error counts other than unknown_template.
func otherErrors(stderr string) string {
	m := errorsRe.FindStringSubmatch(stderr)
	if m == nil || m[1] == "none" {
		return ""
	}
	var bad []string
	for _, f := range strings.Fields(m[1]) {
		if !strings.HasPrefix(f, "unknown_template=") {
			bad = append(bad, f)
		}
	}
	return strings.Join(bad, " ")
}

// pairCaptures groups "...-template(s).pcap" files with the "...-data.pcap"
// files of the same prefix, templates first; other files stand alone.
func pairCaptures(files []string) [][]string {
	var groups [][]string
	templates := map[string]string{}
	for _, f := range files {
		base := strings.TrimSuffix(f, ".pcap")
		for _, suf := range []string{"-templates", "-template"} {
			if strings.HasSuffix(base, suf) {
				templates[strings.TrimSuffix(base, suf)] = f
			}
		}
	}
	for _, f := range files {
		base := strings.TrimSuffix(f, ".pcap")
		switch {
		case strings.HasSuffix(base, "-template"), strings.HasSuffix(base, "-templates"):
			continue
		case strings.HasSuffix(base, "-data"):
			prefix := strings.TrimSuffix(base, "-data")
			// multiplesamplingrates-options-data pairs with -options-template.
			if tpl, ok := templates[prefix]; ok {
				groups = append(groups, []string{tpl, f})
				continue
			}
		}
		groups = append(groups, []string{f})
	}
	return groups
}
