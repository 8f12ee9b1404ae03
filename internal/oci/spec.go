package oci

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/catalyzer/catalyzer/internal/errdefs"
)

// Annotations that select how a container boots (see doc.go).
const (
	AnnotationTemplate   = "dev.catalyzer.template"
	AnnotationBoot       = "dev.catalyzer.boot"
	AnnotationTemplateID = "dev.catalyzer.template-id"
	AnnotationImage      = "dev.catalyzer.image"
	annotationPrefix     = "dev.catalyzer."
)

// Boot is how a container's process comes to be.
type Boot string

const (
	// BootScratch (the default) execs process.args in a new container.
	BootScratch Boot = "scratch"
	// BootFork sforks the container from a live template container.
	BootFork Boot = "fork"
	// BootRestore restores the container from an image directory.
	BootRestore Boot = "restore"
)

// Bundle is a parsed, validated OCI bundle.
type Bundle struct {
	Dir    string // absolute bundle directory
	Rootfs string // absolute root file system directory
	Spec   *specs.Spec
	Boot   BootSpec
}

// BootSpec is what a bundle's dev.catalyzer.* annotations ask for.
type BootSpec struct {
	Mode       Boot
	Template   bool   // dev.catalyzer.template=true: freeze it once ready, for forks
	TemplateID string // BootFork: the template container's id
	Image      string // BootRestore: the image directory
}

var idRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_+.-]{0,127}$`)

// CheckID validates a container id as runc does (letters, digits and
// "_+.-", not starting with a symbol); a bad id wraps errdefs.ErrInvalid.
func CheckID(id string) error {
	if !idRE.MatchString(id) {
		return fmt.Errorf("container id %q must match %s: %w", id, idRE, errdefs.ErrInvalid)
	}
	return nil
}

// LoadBundle reads dir/config.json and validates what this runtime
// relies on. Errors wrap errdefs.ErrInvalid (a malformed or incomplete
// config) or errdefs.ErrNotSupported (something valid this runtime does
// not do).
func LoadBundle(dir string) (*Bundle, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	data, err := os.ReadFile(filepath.Join(abs, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w: %w", abs, err, errdefs.ErrInvalid)
	}
	var s specs.Spec
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("bundle %s: config.json: %w: %w", abs, err, errdefs.ErrInvalid)
	}
	b := &Bundle{Dir: abs, Spec: &s}
	if err := b.validate(); err != nil {
		return nil, fmt.Errorf("bundle %s: %w", abs, err)
	}
	return b, nil
}

func invalid(f string, a ...any) error {
	return fmt.Errorf(f+": %w", append(a, errdefs.ErrInvalid)...)
}

func (b *Bundle) validate() error {
	s := b.Spec
	if s.Root == nil || s.Root.Path == "" {
		return invalid("root.path is required")
	}
	b.Rootfs = s.Root.Path
	if !filepath.IsAbs(b.Rootfs) {
		b.Rootfs = filepath.Join(b.Dir, b.Rootfs)
	}
	if st, err := os.Stat(b.Rootfs); err != nil || !st.IsDir() {
		return invalid("root.path %q is not a directory", b.Rootfs)
	}
	if s.Process == nil {
		return invalid("process is required")
	}
	if len(s.Process.Args) == 0 {
		return invalid("process.args must not be empty")
	}
	if s.Process.Cwd == "" || !filepath.IsAbs(s.Process.Cwd) {
		return invalid("process.cwd %q must be an absolute path", s.Process.Cwd)
	}
	if s.Linux == nil {
		return fmt.Errorf("no linux section: only Linux containers are run: %w", errdefs.ErrNotSupported)
	}
	if err := checkNamespaces(s.Linux.Namespaces); err != nil {
		return err
	}
	for _, m := range s.Mounts {
		if !filepath.IsAbs(m.Destination) {
			return invalid("mount destination %q is not absolute", m.Destination)
		}
		if _, _, _, err := parseMountOptions(m.Options); err != nil {
			return fmt.Errorf("mount %s: %w", m.Destination, err)
		}
	}
	if _, _, err := propagationFlag(s.Linux.RootfsPropagation); err != nil {
		return err
	}
	for _, r := range s.Process.Rlimits {
		if _, ok := rlimitByName[r.Type]; !ok {
			return invalid("unknown rlimit %q", r.Type)
		}
	}
	var err error
	b.Boot, err = parseBoot(s.Annotations)
	return err
}

// checkNamespaces refuses duplicate or unknown types and, for joining by
// path, what a Go runtime cannot do (setns(CLONE_NEWUSER) needs a
// single-threaded caller).
func checkNamespaces(nss []specs.LinuxNamespace) error {
	seen := map[specs.LinuxNamespaceType]bool{}
	for _, ns := range nss {
		if _, ok := nsFlags[ns.Type]; !ok {
			if ns.Type == specs.TimeNamespace {
				return fmt.Errorf("namespace %q: %w", ns.Type, errdefs.ErrNotSupported)
			}
			return invalid("unknown namespace type %q", ns.Type)
		}
		if seen[ns.Type] {
			return invalid("namespace %q listed twice", ns.Type)
		}
		seen[ns.Type] = true
		if ns.Path != "" {
			if ns.Type == specs.UserNamespace {
				return fmt.Errorf("joining a user namespace by path: %w", errdefs.ErrNotSupported)
			}
			if _, err := os.Stat(ns.Path); err != nil {
				return invalid("namespace %s path: %v", ns.Type, err)
			}
		}
	}
	if !seen[specs.MountNamespace] {
		return invalid("a mount namespace is required")
	}
	return nil
}

// parseBoot checks the dev.catalyzer.* annotations as the API checks its
// input: unknown keys, bad values and missing companions are ErrInvalid.
func parseBoot(ann map[string]string) (BootSpec, error) {
	bs := BootSpec{Mode: BootScratch}
	for k, v := range ann {
		if !strings.HasPrefix(k, annotationPrefix) {
			continue
		}
		switch k {
		case AnnotationTemplate:
			switch v {
			case "true":
				bs.Template = true
			case "false", "":
			default:
				return bs, invalid("annotation %s=%q: want true or false", k, v)
			}
		case AnnotationBoot:
			switch Boot(v) {
			case BootScratch, BootFork, BootRestore:
				bs.Mode = Boot(v)
			case "":
			default:
				return bs, invalid("annotation %s=%q: want scratch, fork or restore", k, v)
			}
		case AnnotationTemplateID:
			if err := CheckID(v); err != nil {
				return bs, invalid("annotation %s: %v", k, err)
			}
			bs.TemplateID = v
		case AnnotationImage:
			if !filepath.IsAbs(v) {
				return bs, invalid("annotation %s=%q: want an absolute directory", k, v)
			}
			bs.Image = filepath.Clean(v)
		default:
			return bs, invalid("unknown annotation %s", k)
		}
	}
	switch {
	case bs.Mode == BootFork && bs.TemplateID == "":
		return bs, invalid("%s=fork needs %s", AnnotationBoot, AnnotationTemplateID)
	case bs.Mode == BootRestore && bs.Image == "":
		return bs, invalid("%s=restore needs %s", AnnotationBoot, AnnotationImage)
	case bs.Mode != BootFork && bs.TemplateID != "":
		return bs, invalid("%s is only for %s=fork", AnnotationTemplateID, AnnotationBoot)
	case bs.Mode != BootRestore && bs.Image != "":
		return bs, invalid("%s is only for %s=restore", AnnotationImage, AnnotationBoot)
	case bs.Template && bs.Mode != BootScratch:
		return bs, invalid("a template boots from scratch (%s=%s)", AnnotationBoot, bs.Mode)
	}
	return bs, nil
}
