//go:build !unix

package ring

import "errors"

// File is a Ring kept in a memory-mapped file; only unix systems have them.
type File struct {
	*Ring
	path string
}

var errNoFiles = errors.New("ring: file rings need a unix system")

// Create is not available on this system.
func Create(path string, size int, meta Meta) (*File, error) { return nil, errNoFiles }

// Open is not available on this system.
func Open(path string) (*File, error) { return nil, errNoFiles }

// ReadMeta is not available on this system.
func ReadMeta(path string) (Meta, error) { return Meta{}, errNoFiles }

// Path returns the file's path.
func (f *File) Path() string { return f.path }

// Close does nothing here.
func (f *File) Close() error { return nil }
