// Package yamlconf decodes YAML configuration files into typed structs: one
// document, unknown keys refused, and every error named by its line in words
// a user reads (no Go type names). Validation errors that name a key
// (FieldError) get the line of that key too.
package yamlconf

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Validator is implemented by configs that check themselves after decoding.
// Errors should be FieldErrors so they can be given a line.
type Validator interface {
	Validate() error
}

// FieldError is a problem with the value of one key. Key is a dotted path
// from the document's root, with [i] for list entries: "collector.loops",
// "listen[1]", "redis.addresses[0]".
type FieldError struct {
	Key string
	Err error
	// Line is the key's line in the file, 0 when unknown.
	Line int
}

func (e *FieldError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("line %d: %s: %v", e.Line, e.Key, e.Err)
	}
	return e.Key + ": " + e.Err.Error()
}

func (e *FieldError) Unwrap() error { return e.Err }

// Field returns a FieldError for key.
func Field(key, format string, args ...any) error {
	return &FieldError{Key: key, Err: fmt.Errorf(format, args...)}
}

// Nest puts err's key under prefix ("held" in "collector" becomes
// "collector.held"); other errors are returned as a FieldError for prefix.
func Nest(prefix string, err error) error {
	if err == nil {
		return nil
	}
	var fe *FieldError
	if errors.As(err, &fe) {
		return &FieldError{Key: join(prefix, fe.Key), Err: fe.Err}
	}
	return &FieldError{Key: prefix, Err: err}
}

func join(prefix, key string) string {
	switch {
	case prefix == "":
		return key
	case key == "" || key[0] == '[':
		return prefix + key
	}
	return prefix + "." + key
}

// Decode decodes one YAML document in data into out, a pointer to a struct
// whose fields carry yaml tags. Keys missing from the document leave their
// fields as they are, so out may hold defaults or values set before. An
// empty document changes nothing. If out implements Validator it is
// validated, and a FieldError gets the line of its key.
func Decode(data []byte, out any) error {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return validate(nil, out)
		}
		return cleanError(err)
	}
	var more yaml.Node
	if err := dec.Decode(&more); err == nil {
		return fmt.Errorf("line %d: a second YAML document; a config file holds one", more.Line)
	} else if !errors.Is(err, io.EOF) {
		return cleanError(err)
	}
	if len(doc.Content) == 0 || (doc.Content[0].Kind == yaml.ScalarNode && doc.Content[0].Tag == "!!null") {
		return validate(nil, out)
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: the file must be a mapping of keys to values", root.Line)
	}
	if err := decodeStrict(data, out); err != nil {
		return err
	}
	return validate(root, out)
}

// decodeStrict decodes data into out with unknown keys refused (yaml.v3
// checks known fields only through a Decoder, not Node.Decode).
func decodeStrict(data []byte, out any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(out); err != nil {
		return cleanError(err)
	}
	return nil
}

func validate(root *yaml.Node, out any) error {
	v, ok := out.(Validator)
	if !ok {
		return nil
	}
	err := v.Validate()
	var fe *FieldError
	if err != nil && errors.As(err, &fe) && root != nil && fe.Line == 0 {
		if n := Lookup(root, fe.Key); n != nil {
			return &FieldError{Key: fe.Key, Err: fe.Err, Line: n.Line}
		}
	}
	return err
}

// Lookup returns the value node at a dotted key path ("a.b[2].c") in a
// mapping node, or nil.
func Lookup(n *yaml.Node, key string) *yaml.Node {
	for key != "" && n != nil {
		var part string
		if key[0] == '[' {
			end := strings.IndexByte(key, ']')
			if end < 0 {
				return nil
			}
			i, err := strconv.Atoi(key[1:end])
			if err != nil || n.Kind != yaml.SequenceNode || i < 0 || i >= len(n.Content) {
				return nil
			}
			n, key = n.Content[i], strings.TrimPrefix(key[end+1:], ".")
			continue
		}
		end := strings.IndexAny(key, ".[")
		if end < 0 {
			part, key = key, ""
		} else {
			part, key = key[:end], strings.TrimPrefix(key[end:], ".")
		}
		n = mapValue(n, part)
	}
	return n
}

func mapValue(n *yaml.Node, k string) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == k {
			return n.Content[i+1]
		}
	}
	// Keys of an inlined struct sit in the same mapping; nothing else to do.
	return nil
}

var (
	reNotFound = regexp.MustCompile(`^line (\d+): field (\S+) not found in type \S+$`)
	reCannot   = regexp.MustCompile("^line (\\d+): cannot unmarshal !!(\\w+)(?: `([^`]*)`)? into (\\S+)$")
)

// cleanError turns yaml.v3's messages into lines without Go type names.
func cleanError(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return errors.New(strings.TrimPrefix(err.Error(), "yaml: "))
	}
	msgs := make([]string, 0, len(te.Errors))
	for _, m := range te.Errors {
		msgs = append(msgs, cleanMessage(m))
	}
	return errors.New(strings.Join(msgs, "; "))
}

func cleanMessage(m string) string {
	if s := reNotFound.FindStringSubmatch(m); s != nil {
		return fmt.Sprintf("line %s: unknown key %q", s[1], s[2])
	}
	if s := reCannot.FindStringSubmatch(m); s != nil {
		line, tag, val, typ := s[1], s[2], s[3], s[4]
		var want string
		switch {
		case typ == "time.Duration":
			want = "a duration like 30s or 5m"
		case strings.HasPrefix(typ, "[]"):
			want = "a list"
		case strings.HasPrefix(typ, "map["):
			want = "a mapping"
		case strings.HasPrefix(typ, "int"), strings.HasPrefix(typ, "uint"):
			want = "an integer"
		case strings.HasPrefix(typ, "float"):
			want = "a number"
		case typ == "bool":
			want = "true or false"
		case typ == "string":
			want = "a string"
		default:
			want = "a mapping"
			if tag == "str" || tag == "int" || tag == "bool" || tag == "float" {
				want = "a mapping of keys, not a single value"
			}
		}
		if val != "" {
			return fmt.Sprintf("line %s: %q is not %s", line, val, want)
		}
		return fmt.Sprintf("line %s: want %s here", line, want)
	}
	return m
}
