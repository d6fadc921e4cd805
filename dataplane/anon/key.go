package anon

import (
	"errors"
	"fmt"
	"strings"
)

func errorf(format string, args ...any) error {
	return fmt.Errorf("anon: "+format, args...)
}

// ParseKey parses a Crypto-PAn key written as exactly 64 hexadecimal digits
// (32 bytes, the first 16 being the AES key and the last 16 the padding
// seed), upper or lower case, with no separators or "0x" prefix. Leading and
// trailing white space (such as the newline of a key file) is ignored.
//
// Error messages never contain the key or any part of it: they report only
// lengths and positions, so that a misconfigured secret does not end up in a
// log.
func ParseKey(s string) ([KeySize]byte, error) {
	var key [KeySize]byte
	s = strings.TrimSpace(s)
	if s == "" {
		return key, errors.New("anon: empty key, want 64 hex digits")
	}
	if len(s) != 2*KeySize {
		return key, errorf("key has %d characters, want 64 hex digits", len(s))
	}
	for i := 0; i < KeySize; i++ {
		hi, ok1 := unhex(s[2*i])
		lo, ok2 := unhex(s[2*i+1])
		if !ok1 || !ok2 {
			pos := 2 * i
			if ok1 {
				pos++
			}
			return [KeySize]byte{}, errorf("key has a non-hex character at offset %d, want 64 hex digits", pos)
		}
		key[i] = hi<<4 | lo
	}
	return key, nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
