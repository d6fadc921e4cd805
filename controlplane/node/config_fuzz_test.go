package node

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/sluice-flow/sluice/dataplane/collector"
)

// FuzzConfig feeds arbitrary files to the config loader: it must return an
// error or a configuration, never panic, and an error must name a line or
// the file.
func FuzzConfig(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/config/*.yaml")
	for _, s := range seeds {
		b, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("listen: [udp://:0]\n"))
	f.Add([]byte("collector: {held: {max_age: -1s}}\n"))
	f.Add([]byte("outputs: [[1]]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var rc Config
		if err := Load("fuzz.yaml", data, &rc); err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		// Whatever loaded has been validated: its listeners parse.
		if _, err := collector.ParseListeners(rc.withDefaults().Collector.Listen); err != nil {
			t.Fatalf("loaded config has bad listeners: %v", err)
		}
	})
}

func TestFullConfigExample(t *testing.T) {
	var rc Config
	if err := LoadFile("testdata/config/full.yaml", &rc); err != nil {
		t.Fatal(err)
	}
	if err := rc.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(rc.Listen) != 4 || len(rc.Redis.Addrs) != 1 || len(rc.Redis.WarmUp) != 2 {
		t.Fatalf("example not fully applied: %+v", rc)
	}
}
