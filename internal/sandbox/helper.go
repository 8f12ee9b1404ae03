package sandbox

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"

	"github.com/catalyzer/catalyzer/internal/sandbox/cgroup"
)

// helperEnv names the helper a re-executed daemon binary runs (RunHelper).
const helperEnv = "_CATALYZER_HELPER"

var (
	helpersMu sync.Mutex
	helpers   = map[string]func(args []string) error{}
)

// RegisterHelper makes fn runnable by RunHelper under name. Call it from
// an init function: MaybeInit, first thing in main, runs it in the
// re-executed binary.
func RegisterHelper(name string, fn func(args []string) error) {
	helpersMu.Lock()
	defer helpersMu.Unlock()
	if _, dup := helpers[name]; dup {
		panic("sandbox: helper " + name + " registered twice")
	}
	helpers[name] = fn
}

// RunHelper runs the helper registered as name with args in a child
// process (this binary, re-executed) that joins cg before it does
// anything, so that what it allocates is charged there: the tmpfs pages
// it writes stay charged to cg after it exits, until they are freed. It
// returns the helper's error (its stderr) when it fails.
func RunHelper(cg *cgroup.Group, name string, args ...string) error {
	helpersMu.Lock()
	_, ok := helpers[name]
	helpersMu.Unlock()
	if !ok {
		return fmt.Errorf("helper %s: not registered", name)
	}
	goR, goW, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("helper %s: %w", name, err)
	}
	defer goR.Close()
	defer goW.Close()
	var stderr bytes.Buffer
	cmd := &exec.Cmd{
		Path:       "/proc/self/exe",
		Args:       append([]string{"catalyzer-" + name}, args...),
		Env:        []string{helperEnv + "=" + name},
		ExtraFiles: []*os.File{goR},
		Stderr:     &stderr,
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("helper %s: %w", name, err)
	}
	goR.Close()
	if err := cg.Add(cmd.Process.Pid); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return fmt.Errorf("helper %s: %w", name, err)
	}
	goW.Close() // EOF: it is in cg, it may start
	if err := cmd.Wait(); err != nil {
		if msg := strings.TrimSpace(stderr.String()); msg != "" {
			return fmt.Errorf("helper %s: %s", name, msg)
		}
		return fmt.Errorf("helper %s: %w", name, err)
	}
	return nil
}

// runHelper is MaybeInit's part for a process started by RunHelper.
func runHelper(name string) {
	helpersMu.Lock()
	fn := helpers[name]
	helpersMu.Unlock()
	if fn == nil {
		fmt.Fprintf(os.Stderr, "no helper %q in this binary\n", name)
		os.Exit(2)
	}
	// Wait until the daemon has put us in our cgroup (EOF on fd 3).
	buf := make([]byte, 1)
	if _, err := os.NewFile(3, "go").Read(buf); err == nil {
		fmt.Fprintln(os.Stderr, "helper: unexpected data on the go pipe")
		os.Exit(2)
	}
	if err := fn(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}
