package pipeline

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/sluice-flow/sluice/dataplane/export"
)

// FileRule confines the files a pipeline may name: those it reads (anonymise
// key_file, enrich networks tables, outputs' certificate, key, password and
// token files) to ReadDir, those outputs write (jsonl:PATH, ipfix-file:PATH)
// to WriteDir. A path counts as inside when it is there once made absolute
// (relative paths are the process's working directory's) and with its
// symbolic links resolved. An empty directory admits no file of its kind.
type FileRule struct {
	ReadDir  string `yaml:"read_dir"`
	WriteDir string `yaml:"write_dir"`
}

// CheckFiles returns an error naming the first file c names outside the
// directory r allows for it. The check is at compile time: a symbolic link
// changed afterwards is not seen (keep the directories writable by the
// operator alone).
func (c *Config) CheckFiles(r FileRule) error {
	check := func(line int, what, dir, key, path string) error {
		ok, err := within(dir, path)
		if err != nil {
			return errAt(line, "%s: %s %q: %v", what, key, path, err)
		}
		if !ok {
			if dir == "" {
				return errAt(line, "%s: %s %q: no directory is allowed for it", what, key, path)
			}
			return errAt(line, "%s: %s %q is outside the allowed directory %s", what, key, path, dir)
		}
		return nil
	}
	spec := func(line int, what, s string) error {
		reads, writes, err := export.SpecFiles(s)
		if err != nil {
			return nil // Compile reports it
		}
		for _, p := range reads {
			if err := check(line, what, r.ReadDir, "output reads", p); err != nil {
				return err
			}
		}
		for _, p := range writes {
			if err := check(line, what, r.WriteDir, "output writes", p); err != nil {
				return err
			}
		}
		return nil
	}
	for name, s := range c.Outputs {
		if err := spec(0, "output "+name, s); err != nil {
			return err
		}
	}
	for _, p := range c.Pipelines {
		for _, st := range p.Stages {
			if a := st.Anonymise; a != nil && a.KeyFile != "" {
				if err := check(st.Line, "anonymise", r.ReadDir, "key_file", a.KeyFile); err != nil {
					return err
				}
			}
			if e := st.Enrich; e != nil {
				for _, nw := range e.Networks {
					if err := check(st.Line, "enrich", r.ReadDir, "networks file", nw.File); err != nil {
						return err
					}
				}
			}
		}
		for _, o := range p.Outputs {
			if _, named := c.Outputs[o]; named {
				continue
			}
			if err := spec(p.Line, "pipeline "+p.Name, o); err != nil {
				return err
			}
		}
	}
	return nil
}

// within reports whether path lies inside dir, both made absolute with
// their symbolic links resolved (for a path that does not exist yet, its
// directory's).
func within(dir, path string) (bool, error) {
	if dir == "" {
		return false, nil
	}
	d, err := resolve(dir)
	if err != nil {
		return false, fmt.Errorf("allowed directory: %w", err)
	}
	p, err := resolve(path)
	if errors.Is(err, fs.ErrNotExist) {
		var parent string
		if parent, err = resolve(filepath.Dir(path)); err == nil {
			p = filepath.Join(parent, filepath.Base(path))
		}
	}
	if err != nil {
		return false, err
	}
	rel, err := filepath.Rel(d, p)
	if err != nil {
		return false, nil
	}
	return rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel), nil
}

func resolve(p string) (string, error) {
	a, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	r, err := filepath.EvalSymlinks(a)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(r); err != nil {
		return "", err
	}
	return r, nil
}
