package yamlconf

import (
	"errors"
	"strings"
	"testing"
	"time"
)

type inner struct {
	N    int           `yaml:"n"`
	Size Size          `yaml:"size"`
	Wait time.Duration `yaml:"wait"`
}

type testConfig struct {
	Name  string   `yaml:"name"`
	List  []string `yaml:"list"`
	On    bool     `yaml:"on"`
	Inner inner    `yaml:"inner"`
}

func (c *testConfig) Validate() error {
	for i, s := range c.List {
		if s == "bad" {
			return Field("list["+string(rune('0'+i))+"]", "%q is bad", s)
		}
	}
	if c.Inner.N < 0 {
		return Nest("inner", Field("n", "%d is negative", c.Inner.N))
	}
	return nil
}

func TestDecodeErrors(t *testing.T) {
	f := func(doc, want string) {
		t.Helper()
		var c testConfig
		err := Decode([]byte(doc), &c)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want it to contain %q", doc, err, want)
			return
		}
		for _, leak := range []string{"yamlconf.", "testConfig", "time.Duration", "!!", "not found in type"} {
			if strings.Contains(err.Error(), leak) {
				t.Errorf("%q: error %q shows %q", doc, err, leak)
			}
		}
	}
	f("name: a\nnmae: b\n", `line 2: unknown key "nmae"`)
	f("inner:\n  wait: soon\n", `line 2: "soon" is not a duration`)
	f("inner:\n  n: many\n", `line 2: "many" is not an integer`)
	f("inner:\n  size: 12 parsecs\n", "line 2")
	f("on: maybe\n", `line 1: "maybe" is not true or false`)
	f("list: {a: 1}\n", "line 1: want a list")
	f("inner: 3\n", "line 1")
	f("list: [a, b, bad]\n", "line 1: list[2]")
	f("list:\n  - a\n  - bad\n", "line 3: list[1]")
	f("inner:\n  n: -2\n", "line 2: inner.n: -2 is negative")
	f("name: a\n---\nname: b\n", "second YAML document")
	f("[1, 2]\n", "mapping")
	f("name: [\n", "line")
}

func TestDecodeKeepsWhatIsMissing(t *testing.T) {
	c := testConfig{Name: "default", Inner: inner{N: 7, Size: 1 << 20}}
	if err := Decode([]byte("inner:\n  wait: 2s\n"), &c); err != nil {
		t.Fatal(err)
	}
	if c.Name != "default" || c.Inner.N != 7 || c.Inner.Size != 1<<20 || c.Inner.Wait != 2*time.Second {
		t.Fatalf("got %+v", c)
	}
	for _, empty := range []string{"", "# only a comment\n", "~\n"} {
		if err := Decode([]byte(empty), &c); err != nil {
			t.Fatalf("%q: %v", empty, err)
		}
	}
}

func TestFieldErrorWithoutLine(t *testing.T) {
	err := Nest("collector", Field("held.max_age", "must not be negative"))
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Key != "collector.held.max_age" || err.Error() != "collector.held.max_age: must not be negative" {
		t.Fatalf("got %v", err)
	}
	if got := Nest("listen", Field("[2]", "x")).(*FieldError).Key; got != "listen[2]" {
		t.Fatalf("nested index key %q", got)
	}
}

func TestParseSize(t *testing.T) {
	f := func(in string, want Size) {
		t.Helper()
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	f("0", 0)
	f("4194304", 4<<20)
	f("4MiB", 4<<20)
	f("4 MiB", 4<<20)
	f("1KiB", 1024)
	f("3GiB", 3<<30)
	f("2KB", 2000)
	f("5MB", 5e6)
	f("1GB", 1e9)
	f("17B", 17)
	f("1024GiB", 1<<40)
	for _, bad := range []string{"", "-1", "1.5MiB", "12 parsecs", "MiB", "1025GiB", "99999999999999999999"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) accepted", bad)
		}
	}
	for _, s := range []Size{0, 1, 1023, 1024, 4 << 20, 3 << 30, 1500} {
		back, err := ParseSize(s.String())
		if err != nil || back != s {
			t.Errorf("%d formats as %q, which parses as %d, %v", s, s.String(), back, err)
		}
	}
}
