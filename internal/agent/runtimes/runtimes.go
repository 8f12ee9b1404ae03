// Package runtimes knows the function runtimes: how to check a handler
// name against a code directory, the argv that starts an instance's agent,
// the environment it must run with, and the embedded in-sandbox agents
// (python/agent.py, node/agent.js with its OpenSSL reseed addon,
// java/agent.jar built from java/src by java/build.sh) that InstallAgents
// writes out. Native functions have no agent: the function
// binary links an SDK (sdk/go/function, sdk/c/catalyzer.h) and speaks the
// protocol itself.
//
// Errors: Lookup and CheckHandler return errors wrapping errdefs.ErrInvalid.
package runtimes

import (
	"archive/zip"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/catalyzer/catalyzer/internal/errdefs"

	"github.com/catalyzer/catalyzer/internal/atomicfile"
)

//go:embed python/agent.py node/agent.js node/reseed_amd64.node java/agent.jar
var agents embed.FS

// NodeReseedAddon is the file name, in the agent dir, of the Node agent's
// OpenSSL reseed addon (node/reseed.c, built by node/build.sh into
// node/reseed_amd64.node). agent.js dlopens it by this name, so the
// agent dir's mount must not be noexec: a Node clone without it fails its
// forked message.
const NodeReseedAddon = "reseed.node"

// installed lists what InstallAgents writes: name in the agent dir, source
// in agents.
var installed = []struct{ name, src string }{
	{"agent.py", "python/agent.py"},
	{"agent.js", "node/agent.js"},
	{NodeReseedAddon, "node/reseed_amd64.node"},
	{"agent.jar", "java/agent.jar"},
}

// Interpreters used by Command. The sandbox's rootfs provides the same
// paths.
const (
	Python = "/usr/bin/python3"
	Node   = "/usr/bin/node"
	// Java is Debian's OpenJDK 17, named by its own path: /usr/bin/java
	// is an alternative that may point at another JDK.
	Java = "/usr/lib/jvm/java-17-openjdk-amd64/bin/java"
)

// JavaFlags are the JVM options of every Java instance, before the agent's
// module (docs/JAVA.md says why each, with the measurements):
//   - no hsperfdata: its /tmp/hsperfdata_<user>/<pid> is a shared file
//     mapping, which a fork clone cannot be given a copy of (refused);
//   - no attach listener: it would be a UNIX socket made on demand;
//   - the serial collector and C1 only: the fewest threads a JVM can have
//     (no GC workers, one compiler thread), the fastest scratch boot and
//     the least memory per clone, for short handlers;
//   - no signal dispatcher, sweeper or notification thread (11 threads
//     where there were 15: a fork re-creates each one); SIGSEGV, SIGBUS
//     and the other synchronous signals are handled as before, SIGTERM
//     and SIGINT no longer run shutdown hooks;
//   - a small initial heap (it grows as the handler needs) and the CDS
//     archive mapped where it was dumped, not relocated: a template's
//     private anonymous memory 53 -> 15 MiB, which every fork copies the
//     page tables of and takes its copy-on-write faults in;
//   - java.base's internals the agent needs opened to its module alone:
//     java.io for the control fd (catalyzer.agent.Channel), the rest for
//     the generators it reseeds in a clone (catalyzer.agent.Reseed).
var JavaFlags = []string{
	"-XX:-UsePerfData",
	"-XX:+DisableAttachMechanism",
	"-XX:+UseSerialGC",
	"-XX:TieredStopAtLevel=1",
	"-XX:CICompilerCount=1",
	"-XX:-MethodFlushing",
	"-XX:-UseNotificationThread",
	"-XX:+ReduceSignalUsage",
	"-Xms8m",
	"-Xshare:auto",
	"-XX:+UnlockDiagnosticVMOptions",
	"-XX:ArchiveRelocationMode=0",
	"--add-opens=java.base/java.io=catalyzer",
	"--add-opens=java.base/java.lang=catalyzer",
	"--add-opens=java.base/java.util=catalyzer",
	"--add-opens=java.base/java.util.concurrent=catalyzer",
	"--add-opens=java.base/sun.security.jca=catalyzer",
	"--add-opens=java.base/sun.security.provider=catalyzer",
}

// Runtime is one kind of function runtime.
type Runtime struct {
	Name      string // "python", "node", "java", "native"
	AgentFile string // agent file name inside the agent dir ("" for native)
	Ext       string // module file extension (".py", ".js"; "" for java and native)
	// Env is what the runtime's environment must hold whatever the
	// function's own variables say ("KEY=value"); see Node's.
	Env []string
}

var all = []Runtime{
	{Name: "python", AgentFile: "agent.py", Ext: ".py"},
	// libuv's io_uring rings are kernel objects that neither an sfork
	// clone nor a restored checkpoint can carry over (a clone would share
	// its template's ring). Node 20 leaves io_uring off by default, but
	// UV_USE_IO_URING=1 in a function's env would turn it on in the
	// template: pinned to 0.
	{Name: "node", AgentFile: "agent.js", Ext: ".js", Env: []string{"UV_USE_IO_URING=0"}},
	{Name: "java", AgentFile: "agent.jar"},
	{Name: "native"},
}

// Names returns the valid runtime names.
func Names() []string {
	n := make([]string, len(all))
	for i, r := range all {
		n[i] = r.Name
	}
	return n
}

// Lookup returns the runtime called name.
func Lookup(name string) (Runtime, error) {
	for _, r := range all {
		if r.Name == name {
			return r, nil
		}
	}
	return Runtime{}, fmt.Errorf("unknown runtime %q (valid: %s): %w", name, strings.Join(Names(), ", "), errdefs.ErrInvalid)
}

// A module path is identifiers separated by dots or slashes; the handler is
// module path "." function name.
var handlerRE = regexp.MustCompile(`^([A-Za-z_$][A-Za-z0-9_$-]*(?:[./][A-Za-z_$][A-Za-z0-9_$-]*)*)\.([A-Za-z_$][A-Za-z0-9_$]*)$`)

// CheckHandler checks that handler is well formed for r and that the file it
// names exists in codeDir. For python and node the handler is
// "module.function" where module may contain dots or slashes as package
// separators ("main.handler" is main.py / main.js, "pkg.mod.fn" is
// pkg/mod.py); for native it is a relative path to an executable regular
// file inside codeDir (no "..", symlinks may not leave codeDir).
func (r Runtime) CheckHandler(codeDir, handler string) error {
	switch r.Name {
	case "native":
		return checkNative(codeDir, handler)
	case "java":
		return checkJava(codeDir, handler)
	}
	m := handlerRE.FindStringSubmatch(handler)
	if m == nil || strings.Contains(m[1], "-") && r.Name == "python" {
		return fmt.Errorf("%s handler %q: want the form module.function, e.g. main.handler: %w", r.Name, handler, errdefs.ErrInvalid)
	}
	mod := strings.ReplaceAll(m[1], ".", "/")
	candidates := []string{mod + r.Ext}
	switch r.Name {
	case "python":
		candidates = append(candidates, mod+"/__init__.py")
	case "node":
		candidates = append(candidates, mod+"/index.js")
	}
	for _, c := range candidates {
		fi, err := os.Stat(filepath.Join(codeDir, filepath.FromSlash(c)))
		if err == nil && fi.Mode().IsRegular() {
			return nil
		}
	}
	return fmt.Errorf("%s handler %q: module file %s not found in the code directory: %w", r.Name, handler, candidates[0], errdefs.ErrInvalid)
}

var javaHandlerRE = regexp.MustCompile(`^([A-Za-z_$][A-Za-z0-9_$]*(?:\.[A-Za-z_$][A-Za-z0-9_$]*)*)::[A-Za-z_$][A-Za-z0-9_$]*$`)

func checkJava(codeDir, handler string) error {
	m := javaHandlerRE.FindStringSubmatch(handler)
	if m == nil {
		return fmt.Errorf("java handler %q: want the form package.Class::method, e.g. example.Hello::handle: %w", handler, errdefs.ErrInvalid)
	}
	class := strings.ReplaceAll(m[1], ".", "/") + ".class"
	if fi, err := os.Stat(filepath.Join(codeDir, filepath.FromSlash(class))); err == nil && fi.Mode().IsRegular() {
		return nil
	}
	for _, jar := range javaJars(codeDir) {
		z, err := zip.OpenReader(jar)
		if err != nil {
			return fmt.Errorf("java handler %q: %s: %v: %w", handler, filepath.Base(jar), err, errdefs.ErrInvalid)
		}
		_, err = z.Open(class)
		z.Close()
		if err == nil {
			return nil
		}
	}
	return fmt.Errorf("java handler %q: class file %s found neither in the code directory nor in its jars: %w", handler, class, errdefs.ErrInvalid)
}

// javaJars lists a Java function's jars in codeDir, as the agent puts
// them on its classpath after codeDir itself: *.jar, then lib/*.jar,
// each in name order.
func javaJars(codeDir string) []string {
	var jars []string
	for _, d := range []string{codeDir, filepath.Join(codeDir, "lib")} {
		m, _ := filepath.Glob(filepath.Join(d, "*.jar")) // sorted; the pattern is well formed
		for _, j := range m {
			if fi, err := os.Stat(j); err == nil && fi.Mode().IsRegular() {
				jars = append(jars, j)
			}
		}
	}
	return jars
}

func checkNative(codeDir, handler string) error {
	if handler == "" || !filepath.IsLocal(handler) || strings.Contains(handler, "\\") ||
		slices.Contains(strings.Split(filepath.ToSlash(handler), "/"), "..") {
		return fmt.Errorf("native handler %q: want a relative path to an executable inside the code directory, without \"..\": %w", handler, errdefs.ErrInvalid)
	}
	root, err := os.OpenRoot(codeDir)
	if err != nil {
		return fmt.Errorf("native handler %q: code directory: %v: %w", handler, err, errdefs.ErrInvalid)
	}
	defer root.Close()
	fi, err := root.Stat(handler) // follows symlinks, but not out of codeDir
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("native handler %q: no such file in the code directory: %w", handler, errdefs.ErrInvalid)
		}
		return fmt.Errorf("native handler %q: %v: %w", handler, err, errdefs.ErrInvalid)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("native handler %q: not an executable regular file (mode %v): %w", handler, fi.Mode(), errdefs.ErrInvalid)
	}
	return nil
}

// Command returns the argv that starts an instance of r. codeDir and
// agentDir are paths as the instance sees them (/var/task and /opt/catalyzer
// in a sandbox, host paths without one). The agent learns codeDir and the
// handler from the init message, not from argv.
//
// Python runs with -I (isolated mode: PYTHON* variables, the user site
// directory and the script's own directory are ignored, so the host's or
// image's environment cannot inject code before the agent runs; the system
// site-packages stay available) and -B (no .pyc files written into the
// read-only code directory). The agent itself puts code_dir first on
// sys.path so the function imports its own modules.
func (r Runtime) Command(codeDir, agentDir, handler string) []string {
	switch r.Name {
	case "python":
		return []string{Python, "-I", "-B", path.Join(agentDir, r.AgentFile)}
	case "node":
		return []string{Node, path.Join(agentDir, r.AgentFile)}
	case "java":
		argv := append([]string{Java}, JavaFlags...)
		return append(argv, "-p", path.Join(agentDir, r.AgentFile), "-m", "catalyzer/catalyzer.agent.Main")
	case "native":
		return []string{path.Join(codeDir, handler)}
	}
	return nil
}

// InstallAgents writes the embedded agents and NodeReseedAddon into dir
// (created if needed) with mode 0644. Each file is written to a temporary
// name and renamed, so a concurrent reader sees either the old or the new
// file (and a process that mapped the old addon keeps it); a file that is
// already identical is left alone.
func InstallAgents(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("install agents: %w", err)
	}
	for _, f := range installed {
		data, err := agents.ReadFile(f.src)
		if err != nil {
			return fmt.Errorf("install agents: %w", err)
		}
		dst := filepath.Join(dir, f.name)
		if old, err := os.ReadFile(dst); err == nil && string(old) == string(data) {
			if fi, err := os.Stat(dst); err == nil && fi.Mode().Perm() == 0o644 {
				continue
			}
		}
		if err := atomicfile.WriteFile(dst, data, 0o644); err != nil {
			return fmt.Errorf("install agents: %w", err)
		}
	}
	return nil
}

// Agent returns the embedded agent source of runtime name ("python",
// "node"); nil for native.
func Agent(name string) []byte {
	r, err := Lookup(name)
	if err != nil || r.AgentFile == "" {
		return nil
	}
	b, _ := agents.ReadFile(r.Name + "/" + r.AgentFile)
	return b
}
