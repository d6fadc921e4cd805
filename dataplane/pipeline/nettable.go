package pipeline

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strings"
)

// MaxTablePrefixes bounds a CIDR table file.
const MaxTablePrefixes = 4 << 20

// trie is a binary trie over address bits for longest-prefix match. Nodes
// live in one slice; child 0 means none (the root is never a child).
type trie struct {
	nodes []trieNode
}

type trieNode struct {
	child [2]int32
	val   int32 // row index + 1; 0: no prefix ends here
}

func (t *trie) insert(addr []byte, bits int, row int) {
	if len(t.nodes) == 0 {
		t.nodes = append(t.nodes, trieNode{})
	}
	n := int32(0)
	for i := range bits {
		b := addr[i>>3] >> (7 - i&7) & 1
		c := t.nodes[n].child[b]
		if c == 0 {
			t.nodes = append(t.nodes, trieNode{})
			c = int32(len(t.nodes) - 1)
			t.nodes[n].child[b] = c
		}
		n = c
	}
	t.nodes[n].val = int32(row + 1)
}

// lookup returns the row of the longest prefix holding addr, or -1.
func (t *trie) lookup(addr []byte) int {
	if len(t.nodes) == 0 {
		return -1
	}
	best := t.nodes[0].val
	n := int32(0)
	for i := range len(addr) * 8 {
		n = t.nodes[n].child[addr[i>>3]>>(7-i&7)&1]
		if n == 0 {
			break
		}
		if v := t.nodes[n].val; v != 0 {
			best = v
		}
	}
	return int(best) - 1
}

// netTable is a CIDR table file: prefixes and their rows of cells.
type netTable struct {
	header []string // column names after "prefix"
	v4, v6 trie
	rows   [][]string
}

func (t *netTable) lookup(addr []byte) int {
	if len(addr) == 4 {
		return t.v4.lookup(addr)
	}
	return t.v6.lookup(addr)
}

// loadNetTable reads a CSV table: "prefix,<column>..." then rows. A later
// row for the same prefix replaces an earlier one.
func loadNetTable(path string) (*netTable, error) {
	f, err := openBounded(path, MaxTableFileSize)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readNetTable(f, path)
}

// MaxTableFileSize bounds a CIDR table file.
const MaxTableFileSize = 512 << 20

// openBounded opens a regular file of at most max bytes: a pipeline must
// not hang reading a device or a FIFO, nor exhaust memory.
func openBounded(path string, max int64) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	switch {
	case err != nil:
	case !st.Mode().IsRegular():
		err = fmt.Errorf("%s: not a regular file", path)
	case st.Size() > max:
		err = fmt.Errorf("%s: %d bytes, more than %d", path, st.Size(), max)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

func readNetTable(r io.Reader, name string) (*netTable, error) {
	cr := csv.NewReader(r)
	cr.Comment = '#'
	cr.TrimLeadingSpace = true
	head, err := cr.Read()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: empty file", name)
		}
		return nil, fmt.Errorf("%s: %v", name, err)
	}
	if len(head) < 2 || strings.TrimSpace(head[0]) != "prefix" {
		return nil, fmt.Errorf("%s: the first line must be a header: prefix,<column>,...", name)
	}
	t := &netTable{header: head[1:]}
	for i := range t.header {
		t.header[i] = strings.TrimSpace(t.header[i])
	}
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %v", name, err)
		}
		line, _ := cr.FieldPos(0) // panics after an error in the first field
		if len(t.rows) >= MaxTablePrefixes {
			return nil, fmt.Errorf("%s:%d: more than %d prefixes", name, line, MaxTablePrefixes)
		}
		p, err := netip.ParsePrefix(strings.TrimSpace(rec[0]))
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %v", name, line, err)
		}
		p = p.Masked()
		a := p.Addr().AsSlice()
		row := len(t.rows)
		cells := rec[1:]
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		t.rows = append(t.rows, cells)
		if p.Addr().Is4() {
			t.v4.insert(a, p.Bits(), row)
		} else {
			t.v6.insert(a, p.Bits(), row)
		}
	}
	return t, nil
}
