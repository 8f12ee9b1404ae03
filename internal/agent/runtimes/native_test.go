package runtimes_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/catalyzer/catalyzer/internal/agent"
	"github.com/catalyzer/catalyzer/internal/agent/runtimes"
)

// buildNative builds a native function into a fresh code dir and returns the
// dir; the handler is "fn".
func buildNative(t *testing.T, lang, src string) string {
	t.Helper()
	dir := t.TempDir()
	var cmd *exec.Cmd
	switch lang {
	case "go":
		goBin, err := exec.LookPath("go")
		if err != nil {
			t.Skip("go toolchain not in PATH: cannot build the Go native example")
		}
		cmd = exec.Command(goBin, "build", "-o", filepath.Join(dir, "fn"), "./"+src)
		cmd.Dir = repoPath(t, ".")
		cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0")
	case "c":
		cc, err := exec.LookPath("gcc")
		if err != nil {
			t.Skip("gcc not in PATH: cannot build the C native example")
		}
		cmd = exec.Command(cc, "-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-I", repoPath(t, "sdk/c"), "-o", filepath.Join(dir, "fn"), src)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", src, err, out)
	}
	return dir
}

func nativeInstance(t *testing.T, codeDir string) *instance {
	t.Helper()
	r, _ := runtimes.Lookup("native")
	if err := r.CheckHandler(codeDir, "fn"); err != nil {
		t.Fatal(err)
	}
	return startArgv(t, r.Command(codeDir, "/nonexistent-agent-dir", "fn"))
}

func TestNativeHelloExamples(t *testing.T) {
	examples := []struct{ name, lang, src, runtime string }{
		{"go", "go", "examples/native/hello", "native-go"},
		{"c", "c", "", "native-c"},
	}
	for _, ex := range examples {
		t.Run(ex.name, func(t *testing.T) {
			src := ex.src
			if ex.lang == "c" {
				src = repoPath(t, "examples/native-c/hello.c")
			}
			codeDir := buildNative(t, ex.lang, src)
			in := nativeInstance(t, codeDir)
			before := agent.Monotonic()
			ready, err := in.conn.Init(ctx(t), agent.Init{Function: "f", Runtime: "native", Handler: "fn", CodeDir: codeDir})
			if err != nil {
				t.Fatal(err)
			}
			if ready.PID != in.cmd.Process.Pid || ready.ReadyNS < before || ready.ReadyNS > agent.Monotonic() {
				t.Fatalf("ready %+v (pid %d)", ready, in.cmd.Process.Pid)
			}
			for i, name := range []string{"", "ada", "bob"} {
				ev, want := `{}`, "world"
				if name != "" {
					ev, want = fmt.Sprintf(`{"name":%q}`, name), name
				}
				before := agent.Monotonic()
				res, err := in.conn.Invoke(ctx(t), agent.Invoke{ID: fmt.Sprint(i), Event: json.RawMessage(ev)})
				after := agent.Monotonic()
				if err != nil {
					t.Fatal(err)
				}
				var out struct {
					Hello, Runtime string
					PID            int
				}
				if err := json.Unmarshal(res.Output, &out); err != nil || out.Hello != want || out.Runtime != ex.runtime || out.PID != ready.PID {
					t.Fatalf("output %s: %v", res.Output, err)
				}
				if !(before <= res.EntryNS && res.EntryNS <= res.ExitNS && res.ExitNS <= after) {
					t.Fatalf("entry/exit %d/%d outside [%d, %d]", res.EntryNS, res.ExitNS, before, after)
				}
				if !strings.Contains(res.Stdout, "hello from") || !strings.Contains(res.Stdout, want) {
					t.Fatalf("stdout %q", res.Stdout)
				}
			}
			if _, err := in.conn.Forked(ctx(t)); err != nil {
				t.Fatalf("forked: %v", err)
			}
			if code := in.exit(); code != 0 || in.stdout.Len() != 0 || in.stderr.Len() != 0 {
				t.Fatalf("exit %d, leaked %q %q", code, in.stdout.String(), in.stderr.String())
			}

			in = nativeInstance(t, codeDir)
			f, _ := agent.Encode(agent.TypeInit, agent.Init{Version: 2})
			f.Version = 2
			agent.WriteFrame(in.raw, f)
			reply, err := agent.ReadFrame(in.raw)
			var e agent.ErrorMsg
			if err != nil || agent.Decode(reply, agent.TypeError, &e) != nil || e.Type != "ProtocolError" ||
				!strings.Contains(e.Message, "version 2") || !strings.Contains(e.Message, "version 1") {
				t.Fatalf("version 2 reply %+v %v", e, err)
			}
			if code := in.exit(); code != 2 {
				t.Fatalf("exit after version mismatch %d, want 2", code)
			}
		})
	}
}

func TestNativeC(t *testing.T) {
	codeDir := buildNative(t, "c", filepath.Join(mustAbs(t, "testdata"), "ctest.c"))
	in := nativeInstance(t, codeDir)
	if _, err := in.conn.Init(ctx(t), agent.Init{Runtime: "native", Handler: "fn"}); err != nil {
		t.Fatal(err)
	}
	inv := func(ev string, deadline int64) (agent.Result, error) {
		return in.conn.Invoke(ctx(t), agent.Invoke{ID: "i\"d\\1", Event: json.RawMessage(ev), DeadlineMS: deadline})
	}
	for _, ev := range []string{`{"a":[1,2.5e3,{"b":"\u00e9\n"}],"t":true}`, `null`, `"s"`, `-0.5`} {
		res, err := inv(ev, 0)
		if err != nil || string(res.Output) != ev || res.ID != "i\"d\\1" {
			t.Fatalf("echo %s: %s %v", ev, res.Output, err)
		}
	}
	res, err := inv(`{"mode":"big"}`, 0)
	if err != nil || len(res.Stdout) != agent.DefaultOutputLimit || !res.Truncated || res.Stderr != "err" {
		t.Fatalf("big: %d %v %q %v", len(res.Stdout), res.Truncated, res.Stderr, err)
	}
	_, err = inv(`{"mode":"fail"}`, 0)
	var fe *agent.FunctionError
	if !errors.As(err, &fe) || fe.Type != "Error" || fe.Message != `it "broke"` || fe.Stdout != "failing\n" {
		t.Fatalf("fail: %#v", err)
	}
	_, err = inv(`{"mode":"notjson"}`, 0)
	if !errors.As(err, &fe) || fe.Type != "SerializationError" {
		t.Fatalf("notjson: %v", err)
	}
	if res, err := inv(`{"mode":"null"}`, 0); err != nil || string(res.Output) != "null" {
		t.Fatalf("null: %s %v", res.Output, err)
	}
	if res, err := inv(`{"mode":"remaining"}`, 5000); err != nil || string(res.Output) == "0" || len(res.Output) > 4 {
		t.Fatalf("remaining: %s %v", res.Output, err)
	}
	if code := in.exit(); code != 0 {
		t.Fatalf("exit %d", code)
	}
}

func mustAbs(t *testing.T, p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
