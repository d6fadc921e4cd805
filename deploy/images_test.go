package deploy

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sluice-flow/sluice/internal/testenv"
)

// The images, built with buildah from deploy/images/*.Containerfile without
// a registry: the Go build stage is a local image assembled here that holds
// the binaries built from the tree (the Containerfiles then skip the
// compile), and the result's base is scratch for sluice and, for the two
// Debian-based images, a rootfs assembled from this Debian machine's own
// files (a shell, dbus-daemon and libzmq with the libraries they load).
// Every RUN step of the Containerfiles runs (buildah's chroot isolation:
// no container runtime works here). Each image is then mounted and its
// entrypoint run from the mounted filesystem, chrooted, as its user, in a
// network namespace of its own.

type buildah struct {
	t         *testing.T
	root, run string
}

func (b buildah) cmd(args ...string) (string, error) {
	full := append([]string{"--root", b.root, "--runroot", b.run, "--storage-driver", "vfs"}, args...)
	out, err := exec.Command("buildah", full...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func (b buildah) must(args ...string) string {
	b.t.Helper()
	out, err := b.cmd(args...)
	if err != nil {
		b.t.Fatalf("buildah %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

var lddPath = regexp.MustCompile(`(/[^ ]+) \(0x`)

// assemble copies each file into root at the same path, with the shared
// libraries ldd says it loads.
func assemble(t *testing.T, root string, files ...string) {
	t.Helper()
	// Debian 12 merges /bin, /lib, /lib64 and /sbin into /usr: the same
	// symlinks in the rootfs, files at their real folders.
	os.MkdirAll(root, 0o755)
	for _, d := range []string{"bin", "lib", "lib64", "sbin"} {
		if target, err := os.Readlink("/" + d); err == nil {
			os.MkdirAll(filepath.Join(root, "usr", d), 0o755)
			os.Symlink(target, filepath.Join(root, d))
		}
	}
	for _, f := range files {
		paths := []string{f}
		if out, err := exec.Command("ldd", f).Output(); err == nil {
			for _, m := range lddPath.FindAllStringSubmatch(string(out), -1) {
				paths = append(paths, m[1])
			}
		}
		for _, p := range paths {
			real, err := filepath.EvalSymlinks(p)
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(real)
			if err != nil {
				t.Fatal(err)
			}
			st, _ := os.Stat(real)
			dir, err := filepath.EvalSymlinks(filepath.Dir(p))
			if err != nil {
				t.Fatal(err)
			}
			dst := filepath.Join(root, dir, filepath.Base(p))
			os.MkdirAll(filepath.Dir(dst), 0o755)
			if err := os.WriteFile(dst, b, st.Mode().Perm()); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// commitRootfs makes a local image from a folder.
func (b buildah) commitRootfs(root, name string) {
	b.t.Helper()
	ctr := b.must("from", "scratch")
	b.must("copy", ctr, root+"/", "/")
	b.must("commit", "--quiet", ctr, name)
	b.must("rm", ctr)
}

func TestImages(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.SkipOrFail(t, "building images with buildah needs root here")
	}
	for _, p := range []string{"buildah", "ip", "chroot", "dbus-daemon", "ldd"} {
		if _, err := exec.LookPath(p); err != nil {
			testenv.SkipOrFail(t, "%s not installed (buildah: apt-get install buildah)", p)
		}
	}
	sluice, api := binary(t, "sluice"), binary(t, "sluice-api")
	tmp, err := os.MkdirTemp("", "sluice-images-")
	if err != nil {
		t.Fatal(err)
	}
	b := buildah{t: t, root: filepath.Join(tmp, "storage"), run: filepath.Join(tmp, "run")}
	t.Cleanup(func() {
		b.cmd("rm", "--all")
		exec.Command("umount", "-R", "-l", b.root).Run()
		os.RemoveAll(tmp)
	})
	start := time.Now()
	shells := []string{"/bin/sh", "/bin/dash"}
	tools := []string{"/bin/mkdir", "/bin/cp"}

	// The build stage: a shell and the tools the RUN step uses, the CA
	// bundle it copies, and the binaries where the compile would put them.
	builder := filepath.Join(tmp, "builder")
	assemble(t, builder, append(append(shells, tools...), "/etc/ssl/certs/ca-certificates.crt")...)
	for src, dst := range map[string]string{sluice: "out/usr/bin/sluice", api: "out/usr/bin/sluice-api"} {
		os.MkdirAll(filepath.Dir(filepath.Join(builder, dst)), 0o755)
		data, _ := os.ReadFile(src)
		os.WriteFile(filepath.Join(builder, dst), data, 0o755)
	}
	b.commitRootfs(builder, "localhost/sluice-test-builder")
	// The Debian base: a shell, dbus-daemon, and the libraries sluice-api
	// loads (libzmq and what it needs), from this machine's packages.
	dbusDaemon, _ := exec.LookPath("dbus-daemon")
	debian := filepath.Join(tmp, "debian")
	assemble(t, debian, append(shells, dbusDaemon, api)...)
	os.Remove(filepath.Join(debian, api)) // only its libraries
	os.MkdirAll(filepath.Join(debian, "etc"), 0o755)
	os.WriteFile(filepath.Join(debian, "etc/passwd"), []byte("root:x:0:0:root:/root:/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(debian, "etc/group"), []byte("root:x:0:\n"), 0o644)
	b.commitRootfs(debian, "localhost/sluice-test-debian")
	t.Logf("local bases assembled in %v", time.Since(start).Round(time.Millisecond))

	ctx := filepath.Join(tmp, "context") // the sources are not compiled: an empty context
	os.Mkdir(ctx, 0o755)
	ns := "sluice-img-" + randHex(3)
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })

	images := []struct {
		file, base string
		args       []string
		want       string
		files      []string
	}{
		{"sluice.Containerfile", "scratch", []string{"version"}, "sluice ",
			[]string{"/etc/ssl/certs/ca-certificates.crt", "/etc/passwd"}},
		{"sluice-controller.Containerfile", "localhost/sluice-test-debian", []string{"controller", "--help"}, "-bus-dir",
			[]string{"/usr/bin/dbus-daemon"}},
		{"sluice-api.Containerfile", "localhost/sluice-test-debian", []string{"serve", "--help"}, "-redis", nil},
	}
	for _, im := range images {
		t.Run(strings.TrimSuffix(im.file, ".Containerfile"), func(t *testing.T) {
			b := b
			b.t = t
			tag := "localhost/" + strings.TrimSuffix(im.file, ".Containerfile") + "-test"
			t0 := time.Now()
			b.must("bud", "--quiet", "--isolation", "chroot", "--pull-never",
				"--build-arg", "BUILDER=localhost/sluice-test-builder", "--build-arg", "BASE="+im.base,
				"--build-arg", "VERSION=test", "-f", filepath.Join("images", im.file), "-t", tag, ctx)
			t.Logf("built in %v", time.Since(t0).Round(time.Millisecond))
			var cfg struct {
				OCIv1 struct {
					Config struct {
						User       string
						Entrypoint []string
						Labels     map[string]string
					} `json:"config"`
				}
			}
			if err := json.Unmarshal([]byte(b.must("inspect", "--type", "image", tag)), &cfg); err != nil {
				t.Fatal(err)
			}
			c := cfg.OCIv1.Config
			if c.User != "65532:65532" || len(c.Entrypoint) != 1 {
				t.Fatalf("user %q entrypoint %v", c.User, c.Entrypoint)
			}
			if c.Labels["org.opencontainers.image.version"] != "test" || c.Labels["org.opencontainers.image.title"] == "" {
				t.Errorf("OCI labels: %v", c.Labels)
			}
			ctr := b.must("from", "--pull-never", tag)
			mnt := b.must("mount", ctr)
			for _, f := range append(im.files, c.Entrypoint[0]) {
				if _, err := os.Stat(filepath.Join(mnt, f)); err != nil {
					t.Errorf("image lacks %s", f)
				}
			}
			if passwd, _ := os.ReadFile(filepath.Join(mnt, "etc/passwd")); !strings.Contains(string(passwd), ":65532:65532:") {
				t.Errorf("no user 65532 in /etc/passwd:\n%s", passwd)
			}
			// As a runtime would: /dev from the host, the rest the image's.
			inImage := func(argv ...string) ([]byte, error) {
				script := `mkdir -p "$0/dev" && mount --bind /dev "$0/dev" && exec chroot --userspec=65532:65532 "$0" "$@"`
				return exec.Command("ip", append([]string{"netns", "exec", ns, "sh", "-c", script, mnt}, argv...)...).CombinedOutput()
			}
			out, _ := inImage(append(c.Entrypoint, im.args...)...)
			if !strings.Contains(string(out), im.want) {
				t.Errorf("%v from the image: want %q in:\n%s", append(c.Entrypoint, im.args...), im.want, out)
			}
			if strings.Contains(im.file, "controller") {
				out, err := inImage("/usr/bin/dbus-daemon", "--version")
				if err != nil || !strings.Contains(string(out), "D-Bus Message Bus Daemon") {
					t.Errorf("dbus-daemon from the image: %v\n%s", err, out)
				}
			}
			b.must("umount", ctr)
			b.must("rm", ctr)
		})
	}
}
