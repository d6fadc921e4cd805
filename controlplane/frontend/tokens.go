package frontend

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"os"
	"slices"
	"strings"
)

// tokenTable is one reading of the tokens file; it is immutable and
// swapped whole on reload.
type tokenTable struct {
	hashes  [][sha256.Size]byte // of each token
	tenants []string            // tenant of hashes[i]
	labels  map[string]string   // tenant -> metric label (bounded)
}

// maxTenantLabels bounds the tenant label of the metrics: tenants past it
// (in sorted order) share the label "_other".
const maxTenantLabels = 32

// loadTokens reads a tokens file: one "token tenant" pair a line, blank
// lines and # comments ignored. Tenant names are 1-64 characters of
// [A-Za-z0-9._-] not starting with a dot (they name directories).
func loadTokens(path string) (*tokenTable, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("frontend: tokens: %w", err)
	}
	defer f.Close()
	t := &tokenTable{labels: map[string]string{}}
	seen := map[[sha256.Size]byte]bool{}
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 2 {
			return nil, fmt.Errorf("frontend: tokens: %s:%d: want \"token tenant\"", path, n)
		}
		if len(fields[0]) < 16 {
			return nil, fmt.Errorf("frontend: tokens: %s:%d: token shorter than 16 characters", path, n)
		}
		if !validTenant(fields[1]) {
			return nil, fmt.Errorf("frontend: tokens: %s:%d: tenant %q: want 1-64 of [A-Za-z0-9._-], not starting with a dot", path, n, fields[1])
		}
		h := sha256.Sum256([]byte(fields[0]))
		if seen[h] {
			return nil, fmt.Errorf("frontend: tokens: %s:%d: token repeated", path, n)
		}
		seen[h] = true
		t.hashes = append(t.hashes, h)
		t.tenants = append(t.tenants, fields[1])
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("frontend: tokens: %w", err)
	}
	names := slices.Clone(t.tenants)
	slices.Sort(names)
	names = slices.Compact(names)
	for i, name := range names {
		if i < maxTenantLabels {
			t.labels[name] = name
		} else {
			t.labels[name] = "_other"
		}
	}
	return t, nil
}

func validTenant(s string) bool {
	if s == "" || len(s) > 64 || s[0] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// lookup returns the tenant of an Authorization header value. Every token
// is compared, in constant time, whatever matches.
func (t *tokenTable) lookup(auth []byte) (string, bool) {
	tok, ok := bytes.CutPrefix(auth, []byte("Bearer "))
	if !ok || len(tok) == 0 {
		return "", false
	}
	h := sha256.Sum256(tok)
	found := -1
	for i := range t.hashes {
		if subtle.ConstantTimeCompare(h[:], t.hashes[i][:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return "", false
	}
	return t.tenants[found], true
}

// label returns tenant's metric label.
func (t *tokenTable) label(tenant string) string {
	if l, ok := t.labels[tenant]; ok {
		return l
	}
	return "_other"
}
