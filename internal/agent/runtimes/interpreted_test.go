package runtimes_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/catalyzer/catalyzer/internal/agent"
	"github.com/catalyzer/catalyzer/internal/errdefs"
)

// The same handlers in both interpreted runtimes.
var testCode = map[string]map[string]string{
	"python": {
		"main.py": `import os, random, sys
random.seed(42)
print("import-time output is dropped")
def echo(event, context): return event
def big(event, context):
    print("x" * (1 << 20))
    os.write(2, b"err")
    return 1
def fdlevel(event, context):
    os.write(1, b"fd-level\n")
    sys.stdout.write("buffered\n")
    return None
def notjson(event, context): return object()
def rnd(event, context): return random.random()
def boom(event, context): raise KeyError("k")
notcallable = 5
def remaining(event, context): return context.get_remaining_time_in_millis()
def logs(event, context):
    context.log("hi")
    return context.invocation_id
def ctxinfo(event, context): return [context.function_name, context.invocation_id]
def biglog(event, context):
    context.log("\u00e9\n" * 300000)
    context.log("after")
    return 1
`,
		"bad.py":          "def handler(:\n",
		"pkg/__init__.py": "",
		"pkg/mod.py":      "def fn(event, context): return 'pkg'\n",
	},
	"node": {
		"main.js": `'use strict';
console.log('import-time output is dropped');
exports.echo = (event) => event;
exports.big = () => { process.stdout.write('x'.repeat(1 << 20)); process.stderr.write('err'); return 1; };
exports.fdlevel = () => { console.log('fd-level'); return undefined; };
exports.notjson = () => ({ n: 1n });
exports.rnd = () => Math.random();
exports.boom = async () => { await new Promise((r) => setTimeout(r, 5)); throw new RangeError('k'); };
exports.notcallable = 5;
exports.remaining = (e, context) => context.getRemainingTimeInMillis();
exports.logs = (e, context) => { context.log('hi'); return context.invocationId; };
exports.ctxinfo = (e, context) => [context.functionName, context.invocationId];
exports.biglog = (e, context) => { context.log('\u00e9\n'.repeat(300000)); context.log('after'); return 1; };
`,
		"bad.js":     "exports.handler = (;\n",
		"pkg/mod.js": "exports.fn = () => 'pkg';\n",
	},
}

var interpretedRuntimes = []string{"python", "node"}

func initHandler(t *testing.T, rt, codeDir, handler string, limit int) (*instance, agent.Ready, error) {
	t.Helper()
	in := interpreted(t, rt, codeDir)
	r, err := in.conn.Init(ctx(t), agent.Init{Function: "fn-" + rt, Runtime: rt, Handler: handler, CodeDir: codeDir, OutputLimit: limit})
	return in, r, err
}

func mustInit(t *testing.T, rt, handler string, limit int) *instance {
	t.Helper()
	in, _, err := initHandler(t, rt, writeCode(t, testCode[rt]), handler, limit)
	if err != nil {
		t.Fatalf("init %s: %v", handler, err)
	}
	return in
}

func TestHelloExamples(t *testing.T) {
	for _, rt := range interpretedRuntimes {
		t.Run(rt, func(t *testing.T) {
			codeDir := repoPath(t, "examples/"+rt+"/hello")
			before := agent.Monotonic()
			in, ready, err := initHandler(t, rt, codeDir, "main.handler", 0)
			if err != nil {
				t.Fatal(err)
			}
			after := agent.Monotonic()
			if ready.PID != in.cmd.Process.Pid || ready.Version != agent.ProtocolVersion {
				t.Fatalf("ready = %+v, process pid %d", ready, in.cmd.Process.Pid)
			}
			// The agent's clock is the daemon's CLOCK_MONOTONIC.
			if ready.ReadyNS < before || ready.ReadyNS > after {
				t.Fatalf("ready_ns %d outside [%d, %d]: not CLOCK_MONOTONIC", ready.ReadyNS, before, after)
			}
			for i, name := range []string{"", "ada", "bob"} {
				event := json.RawMessage(`{}`)
				want := "world"
				if name != "" {
					event = json.RawMessage(fmt.Sprintf(`{"name":%q}`, name))
					want = name
				}
				id := fmt.Sprintf("inv-%d", i)
				before := agent.Monotonic()
				res, err := in.conn.Invoke(ctx(t), agent.Invoke{ID: id, Event: event, DeadlineMS: 5000})
				after := agent.Monotonic()
				if err != nil {
					t.Fatal(err)
				}
				var out struct {
					Hello, Runtime, Function, Invocation string
					PID                                  int
					RemainingMS                          int64 `json:"remaining_ms"`
				}
				if err := json.Unmarshal(res.Output, &out); err != nil {
					t.Fatalf("output %s: %v", res.Output, err)
				}
				if out.Hello != want || out.Runtime != rt || out.PID != ready.PID || out.Function != "fn-"+rt || out.Invocation != id || res.ID != id {
					t.Fatalf("output %s", res.Output)
				}
				if out.RemainingMS <= 0 || out.RemainingMS > 5000 {
					t.Fatalf("remaining_ms = %d, want (0, 5000]", out.RemainingMS)
				}
				if !(before <= res.EntryNS && res.EntryNS <= res.ExitNS && res.ExitNS <= after) {
					t.Fatalf("entry/exit %d/%d outside [%d, %d]", res.EntryNS, res.ExitNS, before, after)
				}
				if !strings.Contains(res.Stdout, "hello from "+rt+": "+want) || res.Truncated {
					t.Fatalf("stdout %q truncated %v", res.Stdout, res.Truncated)
				}
			}
			if code := in.exit(); code != 0 {
				t.Fatalf("exit code on EOF = %d, stderr %s", code, in.stderr.String())
			}
			if in.stdout.Len() != 0 || in.stderr.Len() != 0 {
				t.Fatalf("agent wrote to its own stdout/stderr: %q / %q", in.stdout.String(), in.stderr.String())
			}
		})
	}
}

func TestPythonErrorExample(t *testing.T) {
	in, _, err := initHandler(t, "python", repoPath(t, "examples/python/error"), "main.handler", 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = in.conn.Invoke(ctx(t), agent.Invoke{ID: "1", Event: json.RawMessage(`{"x":1}`)})
	var fe *agent.FunctionError
	if !errors.As(err, &fe) || fe.Type != "ValueError" || !strings.Contains(fe.Message, "bad input") ||
		!strings.Contains(fe.Trace, "main.py") || fe.Stdout != "about to fail\n" || !errors.Is(err, errdefs.ErrFunction) {
		t.Fatalf("invoke: %#v", err)
	}
	// The instance keeps serving after a handler error.
	if _, err := in.conn.Invoke(ctx(t), agent.Invoke{ID: "2"}); !errors.As(err, &fe) {
		t.Fatalf("second invoke: %v", err)
	}
}

func TestInitErrors(t *testing.T) {
	cases := []struct{ handler, pyType, nodeType string }{
		{"nosuch.handler", "ModuleNotFoundError", "ModuleNotFoundError"},
		{"main.nosuch", "AttributeError", "AttributeError"},
		{"bad.handler", "SyntaxError", "SyntaxError"},
		{"main.notcallable", "TypeError", "TypeError"},
		{"nodot", "ValueError", "TypeError"},
	}
	for _, rt := range interpretedRuntimes {
		for _, tc := range cases {
			t.Run(rt+"/"+tc.handler, func(t *testing.T) {
				in, _, err := initHandler(t, rt, writeCode(t, testCode[rt]), tc.handler, 0)
				want := tc.pyType
				if rt == "node" {
					want = tc.nodeType
				}
				var fe *agent.FunctionError
				if !errors.As(err, &fe) || fe.Type != want {
					t.Fatalf("init %s: %v, want a %s", tc.handler, err, want)
				}
				if code := in.exit(); code != 0 {
					t.Fatalf("exit code %d", code)
				}
			})
		}
	}
}

func TestPackageHandler(t *testing.T) {
	for _, rt := range interpretedRuntimes {
		t.Run(rt, func(t *testing.T) {
			in := mustInit(t, rt, "pkg.mod.fn", 0)
			res, err := in.conn.Invoke(ctx(t), agent.Invoke{ID: "1"})
			if err != nil || string(res.Output) != `"pkg"` {
				t.Fatalf("invoke: %s %v", res.Output, err)
			}
		})
	}
}

func TestInvokeBehaviour(t *testing.T) {
	for _, rt := range interpretedRuntimes {
		t.Run(rt, func(t *testing.T) {
			t.Run("echo", func(t *testing.T) {
				in := mustInit(t, rt, "main.echo", 0)
				big := `"` + strings.Repeat("y", 3<<20) + `"` // arrives in many reads
				for _, ev := range []string{`{"a":[1,2,{"b":"\u00e9"}]}`, `null`, `"s"`, `12.5`, big} {
					res, err := in.conn.Invoke(ctx(t), agent.Invoke{ID: "e", Event: json.RawMessage(ev)})
					if err != nil {
						t.Fatal(err)
					}
					var got, want any
					json.Unmarshal(res.Output, &got)
					json.Unmarshal([]byte(ev), &want)
					if fmt.Sprint(got) != fmt.Sprint(want) {
						t.Fatalf("echo %s = %s", ev, res.Output)
					}
					if res.Stdout != "" {
						t.Fatalf("import-time output leaked into the invocation: %q", res.Stdout)
					}
				}
			})
			t.Run("truncation", func(t *testing.T) {
				in := mustInit(t, rt, "main.big", 0)
				for i := 0; i < 2; i++ {
					res, err := in.conn.Invoke(ctx(t), agent.Invoke{ID: "b"})
					if err != nil {
						t.Fatal(err)
					}
					if len(res.Stdout) != agent.DefaultOutputLimit || !res.Truncated || res.Stderr != "err" {
						t.Fatalf("stdout %d bytes, truncated %v, stderr %q", len(res.Stdout), res.Truncated, res.Stderr)
					}
				}
				in2 := mustInit(t, rt, "main.big", 100)
				res, err := in2.conn.Invoke(ctx(t), agent.Invoke{ID: "b"})
				if err != nil || len(res.Stdout) != 100 || !res.Truncated {
					t.Fatalf("limit 100: %d bytes, %v", len(res.Stdout), err)
				}
			})
			t.Run("capture", func(t *testing.T) {
				in := mustInit(t, rt, "main.fdlevel", 0)
				res, err := in.conn.Invoke(ctx(t), agent.Invoke{ID: "c"})
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(res.Stdout, "fd-level\n") || string(res.Output) != "null" {
					t.Fatalf("stdout %q output %s", res.Stdout, res.Output)
				}
				if rt == "python" && !strings.Contains(res.Stdout, "buffered\n") {
					t.Fatalf("buffered sys.stdout not flushed into the capture: %q", res.Stdout)
				}
				if code := in.exit(); code != 0 || in.stdout.Len() != 0 {
					t.Fatalf("exit %d, leaked stdout %q", code, in.stdout.String())
				}
			})
			t.Run("not serialisable", func(t *testing.T) {
				in := mustInit(t, rt, "main.notjson", 0)
				_, err := in.conn.Invoke(ctx(t), agent.Invoke{ID: "n"})
				var fe *agent.FunctionError
				if !errors.As(err, &fe) || fe.Type != "SerializationError" {
					t.Fatalf("invoke: %v", err)
				}
			})
			t.Run("exception", func(t *testing.T) {
				in := mustInit(t, rt, "main.boom", 0)
				_, err := in.conn.Invoke(ctx(t), agent.Invoke{ID: "x"})
				want := map[string]string{"python": "KeyError", "node": "RangeError"}[rt]
				var fe *agent.FunctionError
				if !errors.As(err, &fe) || fe.Type != want || !strings.Contains(fe.Message, "k") || fe.Trace == "" {
					t.Fatalf("invoke: %#v", err)
				}
			})
			t.Run("context", func(t *testing.T) {
				in := mustInit(t, rt, "main.ctxinfo", 0)
				res, err := in.conn.Invoke(ctx(t), agent.Invoke{ID: "id-7"})
				if err != nil || string(res.Output) != fmt.Sprintf(`["fn-%s", "id-7"]`, rt) && string(res.Output) != fmt.Sprintf(`["fn-%s","id-7"]`, rt) {
					t.Fatalf("ctxinfo: %s %v", res.Output, err)
				}
				in = mustInit(t, rt, "main.remaining", 0)
				res, err = in.conn.Invoke(ctx(t), agent.Invoke{ID: "r"})
				if err != nil || string(res.Output) != "0" {
					t.Fatalf("remaining without deadline: %s %v", res.Output, err)
				}
			})
			t.Run("log", func(t *testing.T) {
				in := mustInit(t, rt, "main.logs", 0)
				res, err := in.conn.Invoke(ctx(t), agent.Invoke{ID: "l"})
				if err != nil || len(res.Logs) != 1 || res.Logs[0].Message != "hi" || res.Logs[0].ID != "l" {
					t.Fatalf("logs: %+v %v", res.Logs, err)
				}
				// A message longer than a log frame may carry is cut to
				// fit, not sent as a frame the daemon refuses.
				in = mustInit(t, rt, "main.biglog", 0)
				res, err = in.conn.Invoke(ctx(t), agent.Invoke{ID: "b"})
				if err != nil || len(res.Logs) != 2 || len(res.Logs[0].Message) < 1000 || !strings.HasPrefix(res.Logs[0].Message, "\u00e9\n") || res.Logs[1].Message != "after" {
					t.Fatalf("a long log line: %d logs %v", len(res.Logs), err)
				}
			})
		})
	}
}

func TestForkedReseeds(t *testing.T) {
	for _, rt := range interpretedRuntimes {
		t.Run(rt, func(t *testing.T) {
			a, b := mustInit(t, rt, "main.rnd", 0), mustInit(t, rt, "main.rnd", 0)
			draw := func(in *instance) string {
				res, err := in.conn.Invoke(ctx(t), agent.Invoke{ID: "r"})
				if err != nil {
					t.Fatal(err)
				}
				return string(res.Output)
			}
			if rt == "python" {
				// Same seed state (random.seed(42) at import), as two clones of a template would have.
				if x, y := draw(a), draw(b); x != y {
					t.Fatalf("control: same seed gave %s and %s", x, y)
				}
			}
			for _, in := range []*instance{a, b} {
				r, err := in.conn.Forked(ctx(t))
				if err != nil || r.PID != in.cmd.Process.Pid {
					t.Fatalf("forked: %+v %v", r, err)
				}
			}
			x, y := draw(a), draw(b)
			if x == y {
				t.Fatalf("after forked both clones drew %s", x)
			}
			var f float64
			if err := json.Unmarshal([]byte(x), &f); err != nil || f < 0 || f >= 1 {
				t.Fatalf("random() after forked = %s", x)
			}
		})
	}
}

func TestVersionMismatch(t *testing.T) {
	for _, rt := range interpretedRuntimes {
		t.Run(rt, func(t *testing.T) {
			in := interpreted(t, rt, writeCode(t, testCode[rt]))
			f, _ := agent.Encode(agent.TypeInit, agent.Init{Version: 2})
			f.Version = 2
			if err := agent.WriteFrame(in.raw, f); err != nil {
				t.Fatal(err)
			}
			reply, err := agent.ReadFrame(in.raw)
			if err != nil {
				t.Fatal(err)
			}
			var e agent.ErrorMsg
			if err := agent.Decode(reply, agent.TypeError, &e); err != nil {
				t.Fatal(err)
			}
			if e.Type != "ProtocolError" || !strings.Contains(e.Message, "version 2") || !strings.Contains(e.Message, "version 1") {
				t.Fatalf("reply %+v", e)
			}
			if code := in.exit(); code != 2 {
				t.Fatalf("exit code %d, want 2", code)
			}
			// And an init message that names another version.
			in = interpreted(t, rt, writeCode(t, testCode[rt]))
			_, err = in.conn.Init(ctx(t), agent.Init{Version: 3, Handler: "main.echo"})
			if !errors.Is(err, agent.ErrProtocol) || !strings.Contains(err.Error(), "version 3") {
				t.Fatalf("init version 3: %v", err)
			}
		})
	}
}

// TestPythonTemplateWarm: a template's init runs the agent's own invoke
// path (Agent.warm) but never the tenant's handler, and leaves no frame
// or output behind: the first invocation is the handler's first call and
// sees only its own output.
func TestPythonTemplateWarm(t *testing.T) {
	dir := writeCode(t, map[string]string{"main.py": `calls = 0
def count(event, context):
    global calls
    calls += 1
    print("call", calls)
    return calls
`})
	in := interpreted(t, "python", dir)
	if _, err := in.conn.Init(ctx(t), agent.Init{Function: "fn-python", Runtime: "python", Handler: "main.count", CodeDir: dir, Template: true}); err != nil {
		t.Fatalf("template init: %v", err)
	}
	if _, err := in.conn.Forked(ctx(t)); err != nil {
		t.Fatalf("forked: %v", err)
	}
	res, err := in.conn.Invoke(ctx(t), agent.Invoke{ID: "first"})
	if err != nil {
		t.Fatalf("invoke: %v", err)
	}
	if string(res.Output) != "1" || res.Stdout != "call 1\n" || res.ID != "first" {
		t.Fatalf("first invocation after a template init: output %s stdout %q id %q, want 1, %q, first", res.Output, res.Stdout, res.ID, "call 1\n")
	}
}
