package oci

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/errdefs"
)

func writeBundle(t *testing.T, mut func(*specs.Spec)) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "rootfs"), 0o755); err != nil {
		t.Fatal(err)
	}
	s := &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: "rootfs"},
		Process: &specs.Process{Args: []string{"/bin/true"}, Cwd: "/"},
		Linux:   &specs.Linux{Namespaces: []specs.LinuxNamespace{{Type: specs.MountNamespace}, {Type: specs.PIDNamespace}}},
	}
	if mut != nil {
		mut(s)
	}
	b, _ := json.Marshal(s)
	if err := os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestLoadBundle(t *testing.T) {
	b, err := LoadBundle(writeBundle(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(b.Rootfs) || filepath.Base(b.Rootfs) != "rootfs" || b.Boot.Mode != BootScratch {
		t.Errorf("bundle %+v", b)
	}
	bad := map[string]struct {
		mut  func(*specs.Spec)
		want error
	}{
		"no process":     {func(s *specs.Spec) { s.Process = nil }, errdefs.ErrInvalid},
		"no args":        {func(s *specs.Spec) { s.Process.Args = nil }, errdefs.ErrInvalid},
		"relative cwd":   {func(s *specs.Spec) { s.Process.Cwd = "x" }, errdefs.ErrInvalid},
		"no root":        {func(s *specs.Spec) { s.Root = nil }, errdefs.ErrInvalid},
		"missing rootfs": {func(s *specs.Spec) { s.Root.Path = "nope" }, errdefs.ErrInvalid},
		"no linux":       {func(s *specs.Spec) { s.Linux = nil }, errdefs.ErrNotSupported},
		"no mount ns":    {func(s *specs.Spec) { s.Linux.Namespaces = s.Linux.Namespaces[1:] }, errdefs.ErrInvalid},
		"ns twice":       {func(s *specs.Spec) { s.Linux.Namespaces = append(s.Linux.Namespaces, s.Linux.Namespaces[0]) }, errdefs.ErrInvalid},
		"unknown ns": {func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: "bogus"})
		}, errdefs.ErrInvalid},
		"join user ns": {func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace, Path: "/proc/1/ns/user"})
		}, errdefs.ErrNotSupported},
		"time ns": {func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.TimeNamespace})
		}, errdefs.ErrNotSupported},
		"relative mount": {func(s *specs.Spec) { s.Mounts = []specs.Mount{{Destination: "proc", Type: "proc"}} }, errdefs.ErrInvalid},
		"idmap mount": {func(s *specs.Spec) {
			s.Mounts = []specs.Mount{{Destination: "/x", Type: "bind", Options: []string{"idmap"}}}
		}, errdefs.ErrNotSupported},
		"bad propagation": {func(s *specs.Spec) { s.Linux.RootfsPropagation = "sideways" }, errdefs.ErrInvalid},
		"bad rlimit":      {func(s *specs.Spec) { s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_BOGUS"}} }, errdefs.ErrInvalid},
		"bad annotation":  {func(s *specs.Spec) { s.Annotations = map[string]string{"dev.catalyzer.bogus": "1"} }, errdefs.ErrInvalid},
	}
	for name, c := range bad {
		if _, err := LoadBundle(writeBundle(t, c.mut)); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", name, err, c.want)
		}
	}
}

func TestParseBoot(t *testing.T) {
	good := []struct {
		ann  map[string]string
		want BootSpec
	}{
		{nil, BootSpec{Mode: BootScratch}},
		{map[string]string{"other.annotation": "x"}, BootSpec{Mode: BootScratch}},
		{map[string]string{AnnotationTemplate: "true"}, BootSpec{Mode: BootScratch, Template: true}},
		{map[string]string{AnnotationBoot: "fork", AnnotationTemplateID: "tpl-1"}, BootSpec{Mode: BootFork, TemplateID: "tpl-1"}},
		{map[string]string{AnnotationBoot: "restore", AnnotationImage: "/var/img/"}, BootSpec{Mode: BootRestore, Image: "/var/img"}},
	}
	for _, c := range good {
		if got, err := parseBoot(c.ann); err != nil || got != c.want {
			t.Errorf("parseBoot(%v) = %+v, %v; want %+v", c.ann, got, err, c.want)
		}
	}
	for _, ann := range []map[string]string{
		{AnnotationTemplate: "yes"},
		{AnnotationBoot: "teleport"},
		{AnnotationBoot: "fork"},
		{AnnotationBoot: "fork", AnnotationTemplateID: "../etc"},
		{AnnotationBoot: "restore"},
		{AnnotationBoot: "restore", AnnotationImage: "relative/dir"},
		{AnnotationTemplateID: "t"},
		{AnnotationImage: "/img"},
		{AnnotationTemplate: "true", AnnotationBoot: "fork", AnnotationTemplateID: "t"},
		{"dev.catalyzer.typo": "x"},
	} {
		if _, err := parseBoot(ann); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("parseBoot(%v) = %v, want ErrInvalid", ann, err)
		}
	}
}

func TestCheckID(t *testing.T) {
	for _, id := range []string{"a", "ctr-1", "A.b_c+d", "0123456789abcdef"} {
		if err := CheckID(id); err != nil {
			t.Errorf("CheckID(%q) = %v", id, err)
		}
	}
	for _, id := range []string{"", "-a", ".", "..", "a/b", "a b", string(make([]byte, 200))} {
		if err := CheckID(id); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("CheckID(%q) = %v, want ErrInvalid", id, err)
		}
	}
}

func TestParseMountOptions(t *testing.T) {
	flags, prop, data, err := parseMountOptions([]string{"nosuid", "noexec", "ro", "rw", "rbind", "rslave", "mode=755", "size=65536k"})
	if err != nil {
		t.Fatal(err)
	}
	if want := uintptr(unix.MS_NOSUID | unix.MS_NOEXEC | unix.MS_BIND | unix.MS_REC); flags != want {
		t.Errorf("flags %#x, want %#x (rw clears ro)", flags, want)
	}
	if len(prop) != 1 || prop[0] != unix.MS_SLAVE|unix.MS_REC {
		t.Errorf("propagation %v", prop)
	}
	if data != "mode=755,size=65536k" {
		t.Errorf("data %q", data)
	}
}

func TestCgroupPath(t *testing.T) {
	for in, want := range map[string]string{"": "/" + DefaultCgroupParent + "/c1", "/default/c1": "/default/c1", "k8s/pod/c1": "/k8s/pod/c1", "/a/../b/c": "/b/c"} {
		if got, err := cgroupPath("c1", in); err != nil || got != want {
			t.Errorf("cgroupPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := cgroupPath("c1", "system.slice:cri:c1"); !errors.Is(err, errdefs.ErrNotSupported) {
		t.Errorf("systemd path: %v, want ErrNotSupported", err)
	}
}

func TestSecureJoin(t *testing.T) {
	root := t.TempDir()
	_ = os.MkdirAll(filepath.Join(root, "a", "b"), 0o755)
	_ = os.Symlink("/etc", filepath.Join(root, "abs"))
	_ = os.Symlink("../../..", filepath.Join(root, "a", "b", "up"))
	_ = os.Symlink("a/b", filepath.Join(root, "rel"))
	for in, want := range map[string]string{
		"/a/b": "/a/b", "abs/passwd": "/etc/passwd", "/a/b/up/x": "/x", "/rel/c": "/a/b/c", "/../../x": "/x",
	} {
		got, err := secureJoin(root, in)
		if err != nil || got != filepath.Join(root, want) {
			t.Errorf("secureJoin(%q) = %q, %v; want %q", in, got, err, filepath.Join(root, want))
		}
	}
	_ = os.Symlink("loop", filepath.Join(root, "loop"))
	if _, err := secureJoin(root, "/loop/x"); !errors.Is(err, unix.ELOOP) {
		t.Errorf("symlink loop: %v, want ELOOP", err)
	}
}

// Each state refuses what it cannot do with ErrConflict, as containerd's
// init_state.go does.
func TestLifecycleRefusals(t *testing.T) {
	c := &Container{rec: &record{ID: "x"}}
	for _, s := range []lifecycle{createdState{c}, runningState{c}, pausedState{c}, stoppedState{c}} {
		refused := map[string]error{}
		switch s.status() {
		case Created:
			refused["pause"], refused["resume"] = s.pause(), s.resume()
		case Running:
			refused["start"], refused["resume"], refused["delete"] = s.start(), s.resume(), s.delete(false)
		case Paused:
			refused["start"], refused["pause"], refused["delete"] = s.start(), s.pause(), s.delete(false)
		case Stopped:
			refused["start"], refused["pause"], refused["resume"] = s.start(), s.pause(), s.resume()
			if err := s.kill(unix.SIGTERM, false); !errors.Is(err, errdefs.ErrNotFound) {
				t.Errorf("kill in stopped state: %v, want ErrNotFound ('container not running')", err)
			}
		}
		for op, err := range refused {
			if !errors.Is(err, errdefs.ErrConflict) {
				t.Errorf("%s in %s state: %v, want ErrConflict", op, s.status(), err)
			}
		}
	}
}
