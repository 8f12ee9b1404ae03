package runtimes_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/catalyzer/catalyzer/internal/agent"
	"github.com/catalyzer/catalyzer/internal/agent/runtimes"
	"github.com/catalyzer/catalyzer/internal/errdefs"
)

// javac is the JDK 17 compiler next to runtimes.Java.
var javac = filepath.Join(filepath.Dir(runtimes.Java), "javac")

// compileJava compiles sources (path under the package root -> text)
// into a fresh code directory, against the agent's jar when withAgent (for
// catalyzer.Context) and with javac options extra, and returns the
// directory.
func compileJava(t *testing.T, sources map[string]string, withAgent bool, extra ...string) string {
	t.Helper()
	needFile(t, javac)
	src := writeCode(t, sources)
	out := t.TempDir()
	args := []string{"--release", "17", "-encoding", "UTF-8", "-d", out}
	if withAgent {
		args = append(args, "-cp", "java/agent.jar")
	}
	args = append(args, extra...)
	for name := range sources {
		args = append(args, filepath.Join(src, name))
	}
	if b, err := exec.Command(javac, args...).CombinedOutput(); err != nil {
		t.Fatalf("javac: %v\n%s", err, b)
	}
	return out
}

// javaTest holds the handlers of the agent tests, one per behaviour.
const javaTest = `package t;

import catalyzer.Context;
import catalyzer.Forks;
import java.security.SecureRandom;
import java.util.*;
import java.util.concurrent.ThreadLocalRandom;

public class H {
    static final Random seeded = new Random(42);
    static { System.out.println("import-time output is dropped"); Forks.afterFork(() -> seeded.setSeed(new SecureRandom().nextLong())); }
    public int notcallable = 5;
    public static Object echo(Map<String, Object> e) { return e; }
    public Object ctxinfo(Map<String, Object> e, Context c) { return List.of(c.getFunctionName(), c.getInvocationId(), c.getAwsRequestId()); }
    public static long remaining(Map<String, Object> e, Context c) { return c.getRemainingTimeInMillis(); }
    public static Object big(Map<String, Object> e) { System.out.print("x".repeat(1 << 20)); System.err.print("err"); return 1; }
    public static Object notjson(Map<String, Object> e) { return new Object(); }
    public static Object nan(Map<String, Object> e) { return Double.NaN; }
    public static Object cycle(Map<String, Object> e) { List<Object> l = new ArrayList<>(); l.add(l); return l; }
    public static Object boom(Map<String, Object> e) { throw new IllegalStateException("k"); }
    public static Object logs(Map<String, Object> e, Context c) { c.log("hi"); return c.getInvocationId(); }
    public static Object biglog(Map<String, Object> e, Context c) { c.getLogger().log("\u00e9\n".repeat(300000)); c.log("after"); return 1; }
    public static Object stdin(Map<String, Object> e) throws Exception { return System.in.read(); }
    public static Object values(Map<String, Object> e) {
        Map<String, Object> m = new LinkedHashMap<>();
        m.put("l", List.of(1, 2L, 2.5, 1.5f, true, "s\u0000\"\\\ud83d\ude00\ud800"));
        m.put("n", null);
        m.put("big", new java.math.BigInteger("123456789012345678901234567890"));
        m.put("dec", new java.math.BigDecimal("1.50"));
        m.put("set", new TreeSet<>(List.of("b", "a")));
        return m;
    }
    public static Object rnd(Map<String, Object> e) {
        return List.of(ThreadLocalRandom.current().nextLong(), Math.random(), UUID.randomUUID().toString(),
            new SecureRandom().nextLong(), new Random().nextLong(), new SplittableRandom().nextLong(), seeded.nextLong());
    }
}
`

// javaCode is javaTest and its neighbours: a class whose static init
// throws, a non-public class, a handler in a jar under lib/, one taking
// both forms.
func javaCode(t *testing.T) string {
	t.Helper()
	dir := compileJava(t, map[string]string{
		"t/H.java":       javaTest,
		"t/Bad.java":     "package t;\npublic class Bad { static { if (true) throw new IllegalStateException(\"bad init\"); }\npublic static Object h(java.util.Map<String,Object> e) { return 1; } }\n",
		"t/Hidden.java":  "package t;\nclass Hidden { public static Object h(java.util.Map<String,Object> e) { return 1; } }\n",
		"t/NoCtor.java":  "package t;\npublic class NoCtor { public NoCtor(int x) {}\npublic Object h(java.util.Map<String,Object> e) { return 1; } }\n",
		"t/Both.java":    "package t;\npublic class Both { public static Object h(java.util.Map<String,Object> e) { return 1; }\npublic static Object h(java.util.Map<String,Object> e, catalyzer.Context c) { return 2; } }\n",
		"t/Generic.java": "package t;\npublic class Generic { public static Object h(Object e) { return e == null ? \"null\" : e.getClass().getName(); } }\n",
		"t/Finally.java": "package t;\npublic class Finally { public static Object h(java.util.Map<String,Object> e) throws Exception { throw new java.io.IOException(\"io\", new RuntimeException(\"cause\")); } }\n",
	}, true)
	jarSrc := compileJava(t, map[string]string{"lib/InJar.java": "package lib;\npublic class InJar { public static String h(java.util.Map<String,Object> e) { return \"jar\"; } }\n"}, false)
	jar := filepath.Join(filepath.Dir(runtimes.Java), "jar")
	os.MkdirAll(filepath.Join(dir, "lib"), 0o755)
	if b, err := exec.Command(jar, "--create", "--file", filepath.Join(dir, "lib", "injar.jar"), "-C", jarSrc, ".").CombinedOutput(); err != nil {
		t.Fatalf("jar: %v\n%s", err, b)
	}
	return dir
}

func javaInit(t *testing.T, codeDir, handler string, limit int) (*instance, agent.Ready, error) {
	t.Helper()
	needFile(t, runtimes.Java)
	return initHandler(t, "java", codeDir, handler, limit)
}

func TestJavaHelloExample(t *testing.T) {
	codeDir := repoPath(t, "examples/java/hello/fn")
	needFile(t, filepath.Join(codeDir, "example/Hello.class"))
	before := agent.Monotonic()
	in, ready, err := javaInit(t, codeDir, "example.Hello::handler", 0)
	if err != nil {
		t.Fatalf("%v (stderr %s)", err, in.stderr.String())
	}
	after := agent.Monotonic()
	if ready.PID != in.cmd.Process.Pid || ready.ReadyNS < before || ready.ReadyNS > after {
		t.Fatalf("ready = %+v, pid %d, want ready_ns in [%d, %d] (CLOCK_MONOTONIC)", ready, in.cmd.Process.Pid, before, after)
	}
	before = agent.Monotonic()
	res, err := in.conn.Invoke(ctx(t), agent.Invoke{ID: "inv-1", Event: json.RawMessage(`{"name":"ada"}`), DeadlineMS: 5000})
	after = agent.Monotonic()
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		Hello, Runtime, Function, Invocation string
		PID                                  int
		RemainingMS                          int64 `json:"remaining_ms"`
	}
	if err := json.Unmarshal(res.Output, &out); err != nil || out.Hello != "ada" || out.Runtime != "java" || out.PID != ready.PID ||
		out.Function != "fn-java" || out.Invocation != "inv-1" || out.RemainingMS <= 0 || out.RemainingMS > 5000 {
		t.Fatalf("output %s (%v)", res.Output, err)
	}
	if !(before <= res.EntryNS && res.EntryNS <= res.ExitNS && res.ExitNS <= after) {
		t.Fatalf("entry/exit %d/%d outside [%d, %d]", res.EntryNS, res.ExitNS, before, after)
	}
	if res.Stdout != "hello from java: ada\n" || res.Truncated {
		t.Fatalf("stdout %q truncated %v", res.Stdout, res.Truncated)
	}
	res, err = in.conn.Invoke(ctx(t), agent.Invoke{ID: "inv-2"}) // a null event
	if err != nil || !strings.Contains(string(res.Output), `"hello":"world"`) {
		t.Fatalf("null event: %s %v", res.Output, err)
	}
	if code := in.exit(); code != 0 {
		t.Fatalf("exit code on EOF = %d, stderr %s", code, in.stderr.String())
	}
	if in.stdout.Len() != 0 || in.stderr.Len() != 0 {
		t.Fatalf("agent wrote to its own stdout/stderr: %q / %q", in.stdout.String(), in.stderr.String())
	}
}

// TestJavaJDKOnly: a one-argument handler compiled with nothing but the
// JDK, an instance method on a class with the implicit constructor.
func TestJavaJDKOnly(t *testing.T) {
	dir := compileJava(t, map[string]string{"p/q/Plain.java": `package p.q;
import java.util.*;
public class Plain { public List<Object> handle(Map<String, Object> e) { return List.of(e.get("x"), e.size()); } }
`}, false)
	in, _, err := javaInit(t, dir, "p.q.Plain::handle", 0)
	if err != nil {
		t.Fatal(err)
	}
	res, err := in.conn.Invoke(ctx(t), agent.Invoke{ID: "1", Event: json.RawMessage(`{"x":[1,"y"]}`)})
	if err != nil || string(res.Output) != `[[1,"y"],1]` {
		t.Fatalf("invoke: %s %v", res.Output, err)
	}
}

func TestJavaInitErrors(t *testing.T) {
	dir := javaCode(t)
	cases := []struct{ handler, typ, msg string }{
		{"t.Nope::h", "java.lang.ClassNotFoundException", "t.Nope"},
		{"t.H::nosuch", "java.lang.NoSuchMethodException", "nosuch(java.util.Map)"},
		{"t.H::notcallable", "java.lang.NoSuchMethodException", "notcallable"},
		{"t.Bad::h", "java.lang.ExceptionInInitializerError", "bad init"},
		{"t.Hidden::h", "java.lang.IllegalAccessException", "not public"},
		{"t.NoCtor::h", "java.lang.NoSuchMethodException", "<init>()"},
		{"t.H", "java.lang.IllegalArgumentException", "package.Class::method"},
		{"t.H::", "java.lang.IllegalArgumentException", "package.Class::method"},
	}
	for _, tc := range cases {
		t.Run(tc.handler, func(t *testing.T) {
			in, _, err := javaInit(t, dir, tc.handler, 0)
			var fe *agent.FunctionError
			if !errors.As(err, &fe) || fe.Type != tc.typ || !strings.Contains(fe.Message+fe.Trace, tc.msg) || fe.Trace == "" {
				t.Fatalf("init %s: %#v, want a %s naming %q", tc.handler, err, tc.typ, tc.msg)
			}
			if code := in.exit(); code != 0 || in.stdout.Len()+in.stderr.Len() != 0 {
				t.Fatalf("exit code %d, output %q %q", code, in.stdout.String(), in.stderr.String())
			}
		})
	}
}

func javaInvoke(t *testing.T, in *instance, event string) (agent.Result, error) {
	t.Helper()
	var ev json.RawMessage
	if event != "" {
		ev = json.RawMessage(event)
	}
	return in.conn.Invoke(ctx(t), agent.Invoke{ID: "id-7", Event: ev})
}

func TestJavaInvoke(t *testing.T) {
	dir := javaCode(t)
	start := func(t *testing.T, handler string, limit int) *instance {
		t.Helper()
		in, _, err := javaInit(t, dir, handler, limit)
		if err != nil {
			t.Fatalf("init %s: %v", handler, err)
		}
		return in
	}
	answers := []struct{ handler, event, want string }{
		{"t.H::echo", `{"a":[1,2,{"b":"\u00e9"}],"c":-0.5e3,"d":12345678901234567890123}`, `{"a":[1,2,{"b":"é"}],"c":-500.0,"d":12345678901234567890123}`},
		{"t.H::echo", ``, `null`},
		{"t.H::ctxinfo", `{}`, `["fn-java","id-7","id-7"]`},
		{"t.H::remaining", `{}`, `0`},
		{"t.H::values", `{}`, `{"l":[1,2,2.5,1.5,true,"s\u0000\"\\😀` + "\ufffd" + `"],"n":null,"big":123456789012345678901234567890,"dec":1.50,"set":["a","b"]}`},
		{"t.Both::h", `{}`, `2`},
		{"t.Generic::h", `{"k":1}`, `"java.util.LinkedHashMap"`},
		{"t.Generic::h", ``, `"null"`},
		{"lib.InJar::h", `{}`, `"jar"`},
		{"t.H::stdin", `{}`, `-1`},
	}
	for _, a := range answers {
		t.Run(a.handler, func(t *testing.T) {
			in := start(t, a.handler, 0)
			res, err := javaInvoke(t, in, a.event)
			if err != nil || string(res.Output) != a.want || res.Stdout != "" {
				t.Fatalf("%s(%s) = %s (stdout %q), %v; want %s", a.handler, a.event, res.Output, res.Stdout, err, a.want)
			}
		})
	}
	failures := []struct{ handler, event, typ, msg string }{
		{"t.H::boom", `{}`, "java.lang.IllegalStateException", "k"},
		{"t.Finally::h", `{}`, "java.io.IOException", "io"},
		{"t.H::notjson", `{}`, "SerializationError", "java.lang.Object"},
		{"t.H::nan", `{}`, "SerializationError", "NaN"},
		{"t.H::cycle", `{}`, "SerializationError", "cycle"},
		{"t.H::echo", `[1]`, "java.lang.IllegalArgumentException", "array"},
	}
	for _, f := range failures {
		t.Run(f.handler, func(t *testing.T) {
			in := start(t, f.handler, 0)
			for i := 0; i < 2; i++ { // the instance keeps serving after an error
				_, err := javaInvoke(t, in, f.event)
				var fe *agent.FunctionError
				if !errors.As(err, &fe) || fe.Type != f.typ || !strings.Contains(fe.Message, f.msg) || !errors.Is(err, errdefs.ErrFunction) {
					t.Fatalf("%s: %#v, want a %s with %q", f.handler, err, f.typ, f.msg)
				}
				if f.typ != "SerializationError" && f.event == `{}` && (!strings.Contains(fe.Trace, "function//t.") || f.handler == "t.Finally::h" && !strings.Contains(fe.Trace, "Caused by: java.lang.RuntimeException: cause")) {
					t.Fatalf("trace %s", fe.Trace)
				}
			}
		})
	}
	t.Run("truncation", func(t *testing.T) {
		in := start(t, "t.H::big", 0)
		res, err := javaInvoke(t, in, `{}`)
		if err != nil || len(res.Stdout) != agent.DefaultOutputLimit || !res.Truncated || res.Stderr != "err" {
			t.Fatalf("stdout %d bytes, truncated %v, stderr %q, %v", len(res.Stdout), res.Truncated, res.Stderr, err)
		}
		in = start(t, "t.H::big", 100)
		if res, err = javaInvoke(t, in, `{}`); err != nil || len(res.Stdout) != 100 || !res.Truncated {
			t.Fatalf("limit 100: %d bytes, %v", len(res.Stdout), err)
		}
		if code := in.exit(); code != 0 || in.stdout.Len() != 0 {
			t.Fatalf("exit %d, leaked stdout %d bytes", code, in.stdout.Len())
		}
	})
	t.Run("log", func(t *testing.T) {
		in := start(t, "t.H::logs", 0)
		res, err := javaInvoke(t, in, `{}`)
		if err != nil || len(res.Logs) != 1 || res.Logs[0].Message != "hi" || res.Logs[0].ID != "id-7" {
			t.Fatalf("logs: %+v %v", res.Logs, err)
		}
		in = start(t, "t.H::biglog", 0)
		res, err = javaInvoke(t, in, `{}`)
		if err != nil || len(res.Logs) != 2 || len(res.Logs[0].Message) < 1000 || !strings.HasPrefix(res.Logs[0].Message, "\u00e9\n") || res.Logs[1].Message != "after" {
			t.Fatalf("a long log line: %d logs %v", len(res.Logs), err)
		}
	})
}

// TestJavaForkedReseeds: two instances of one class draw the same values
// from a Random seeded at init (the state two clones of a template
// share); after forked every generator the agent reseeds, and the one a
// Forks hook reseeds, draws apart.
func TestJavaForkedReseeds(t *testing.T) {
	dir := javaCode(t)
	var ins []*instance
	for range 2 {
		in, _, err := javaInit(t, dir, "t.H::rnd", 0)
		if err != nil {
			t.Fatal(err)
		}
		ins = append(ins, in)
	}
	for _, in := range ins {
		r, err := in.conn.Forked(ctx(t))
		if err != nil || r.PID != in.cmd.Process.Pid {
			t.Fatalf("forked: %+v %v", r, err)
		}
	}
	var draws [2][]any
	for i, in := range ins {
		res, err := javaInvoke(t, in, `{}`)
		if err != nil || json.Unmarshal(res.Output, &draws[i]) != nil || len(draws[i]) != 7 {
			t.Fatalf("rnd: %s %v", res.Output, err)
		}
	}
	for k := range draws[0] {
		if fmt.Sprint(draws[0][k]) == fmt.Sprint(draws[1][k]) {
			t.Fatalf("value %d is %v in both instances", k, draws[0][k])
		}
	}
}

func TestJavaVersionMismatch(t *testing.T) {
	needFile(t, runtimes.Java)
	in := interpreted(t, "java", t.TempDir())
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
	if err := agent.Decode(reply, agent.TypeError, &e); err != nil || e.Type != "ProtocolError" ||
		!strings.Contains(e.Message, "version 2") || !strings.Contains(e.Message, "version 1") {
		t.Fatalf("reply %+v %v", e, err)
	}
	if code := in.exit(); code != 2 {
		t.Fatalf("exit code %d, want 2", code)
	}
	in = interpreted(t, "java", t.TempDir())
	if _, err := in.conn.Init(ctx(t), agent.Init{Version: 3, Handler: "t.H::echo"}); !errors.Is(err, agent.ErrProtocol) || !strings.Contains(err.Error(), "version 3") {
		t.Fatalf("init version 3: %v", err)
	}
}

// TestJavaTemplateCollects: an init marked as a template's ends with a
// collection (its young generation emptied for the clones, docs/JAVA.md),
// seen by a weak reference made at class init being cleared before the
// first call. The referent is an array larger than the -Xms8m heap's eden,
// so it is allocated in the old generation, where only a full collection
// (System.gc() with the serial collector) clears it: the young ones any
// init may run of its own accord do not. An unmarked init keeps it.
func TestJavaTemplateCollects(t *testing.T) {
	needFile(t, runtimes.Java)
	dir := compileJava(t, map[string]string{"t/Gc.java": `package t;
public class Gc {
    static final java.lang.ref.WeakReference<Object> W = new java.lang.ref.WeakReference<>(new byte[3 << 20]);
    public static Object h(java.util.Map<String, Object> e) { return W.get() == null; }
}
`}, false)
	for _, tpl := range []bool{false, true} {
		in := interpreted(t, "java", dir)
		if _, err := in.conn.Init(ctx(t), agent.Init{Function: "f", Runtime: "java", Handler: "t.Gc::h", CodeDir: dir, Template: tpl}); err != nil {
			t.Fatal(err)
		}
		res, err := javaInvoke(t, in, `{}`)
		if err != nil || string(res.Output) != fmt.Sprint(tpl) {
			t.Fatalf("template %v: init's garbage collected before the first call: %s %v", tpl, res.Output, err)
		}
	}
}
