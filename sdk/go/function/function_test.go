package function_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/agent"
	"github.com/catalyzer/catalyzer/sdk/go/function"
)

// The test binary doubles as a native function: with CATALYZER_SDK_TEST set
// it serves this handler instead of running tests.
func handler(ctx context.Context, event json.RawMessage) (any, error) {
	var ev struct{ Mode string }
	json.Unmarshal(event, &ev)
	switch ev.Mode {
	case "error":
		fmt.Println("failing")
		return nil, errors.New("it broke")
	case "panic":
		panic("oh no")
	case "big":
		os.Stdout.Write([]byte(strings.Repeat("x", 1<<20)))
		fmt.Fprint(os.Stderr, "err")
		return 1, nil
	case "fd":
		unix.Write(1, []byte("fd-level\n"))
		return nil, nil
	case "notjson":
		return make(chan int), nil
	case "deadline":
		dl, ok := ctx.Deadline()
		if !ok {
			return nil, errors.New("no deadline")
		}
		<-ctx.Done()
		return time.Until(dl) <= 0, nil
	case "log":
		function.Log(ctx, "hi")
		return []string{function.FunctionName(ctx), function.InvocationID(ctx)}, nil
	case "biglog":
		function.Log(ctx, strings.Repeat("<\n", 200000)) // cut to fit a log frame
		function.Log(ctx, "after")
		return nil, nil
	case "rand":
		return rand.Uint64(), nil
	}
	return event, nil
}

func TestMain(m *testing.M) {
	if os.Getenv("CATALYZER_SDK_TEST") != "" {
		function.Start(handler)
	}
	os.Exit(m.Run())
}

type inst struct {
	raw  net.Conn
	conn *agent.Conn
	cmd  *exec.Cmd
	out  strings.Builder
}

func start(t *testing.T) *inst {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	d, a := os.NewFile(uintptr(fds[0]), "d"), os.NewFile(uintptr(fds[1]), "a")
	raw, err := net.FileConn(d)
	d.Close()
	if err != nil {
		t.Fatal(err)
	}
	in := &inst{raw: raw, conn: agent.NewConn(raw)}
	in.cmd = exec.Command(os.Args[0])
	in.cmd.Env = []string{"CATALYZER_SDK_TEST=1", "CATALYZER_CONTROL_FD=3"}
	in.cmd.ExtraFiles = []*os.File{a}
	in.cmd.Stdout, in.cmd.Stderr = &in.out, &in.out
	if err := in.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	a.Close()
	t.Cleanup(func() { raw.Close(); in.cmd.Process.Kill(); in.cmd.Wait() })
	return in
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestSDK(t *testing.T) {
	in := start(t)
	before := agent.Monotonic()
	r, err := in.conn.Init(ctx(t), agent.Init{Function: "gofn", Runtime: "native", Handler: "fn"})
	if err != nil {
		t.Fatal(err)
	}
	if r.PID != in.cmd.Process.Pid || r.ReadyNS < before || r.ReadyNS > agent.Monotonic() {
		t.Fatalf("ready %+v", r)
	}
	inv := func(id, mode string, deadline int64) (agent.Result, error) {
		return in.conn.Invoke(ctx(t), agent.Invoke{ID: id, Event: json.RawMessage(fmt.Sprintf(`{"mode":%q}`, mode)), DeadlineMS: deadline})
	}
	res, err := inv("1", "echo", 0)
	if err != nil || string(res.Output) != `{"mode":"echo"}` || res.EntryNS < before || res.ExitNS < res.EntryNS {
		t.Fatalf("echo: %+v %v", res, err)
	}
	var fe *agent.FunctionError
	_, err = inv("2", "error", 0)
	if !errors.As(err, &fe) || fe.Type != "*errors.errorString" || fe.Message != "it broke" || fe.Stdout != "failing\n" {
		t.Fatalf("error: %#v", err)
	}
	_, err = inv("3", "panic", 0)
	if !errors.As(err, &fe) || fe.Type != "panic" || fe.Message != "oh no" || !strings.Contains(fe.Trace, "function_test.go") {
		t.Fatalf("panic: %#v", err)
	}
	res, err = inv("4", "big", 0)
	if err != nil || len(res.Stdout) != agent.DefaultOutputLimit || !res.Truncated || res.Stderr != "err" {
		t.Fatalf("big: %d bytes %v %q %v", len(res.Stdout), res.Truncated, res.Stderr, err)
	}
	res, err = inv("5", "fd", 0)
	if err != nil || res.Stdout != "fd-level\n" || res.Truncated || string(res.Output) != "null" {
		t.Fatalf("fd: %+v %v", res, err)
	}
	_, err = inv("6", "notjson", 0)
	if !errors.As(err, &fe) || fe.Type != "SerializationError" {
		t.Fatalf("notjson: %v", err)
	}
	res, err = inv("7", "deadline", 50)
	if err != nil || string(res.Output) != "true" {
		t.Fatalf("deadline: %s %v", res.Output, err)
	}
	res, err = inv("8", "log", 0)
	if err != nil || string(res.Output) != `["gofn","8"]` || len(res.Logs) != 1 || res.Logs[0].Message != "hi" {
		t.Fatalf("log: %+v %v", res, err)
	}
	res, err = inv("8b", "biglog", 0)
	if err != nil || len(res.Logs) != 2 || len(res.Logs[0].Message) < 1000 || res.Logs[1].Message != "after" {
		t.Fatalf("biglog: %d logs %v", len(res.Logs), err)
	}
	if _, err := in.conn.Forked(ctx(t)); err != nil {
		t.Fatalf("forked: %v", err)
	}
	if _, err := inv("9", "rand", 0); err != nil {
		t.Fatalf("after forked: %v", err)
	}
	in.raw.Close()
	if err := in.cmd.Wait(); err != nil {
		t.Fatalf("exit on EOF: %v", err)
	}
	if in.out.Len() != 0 {
		t.Fatalf("SDK leaked output to the real fds: %q", in.out.String())
	}
}

func TestSDKVersionMismatch(t *testing.T) {
	in := start(t)
	f, _ := agent.Encode(agent.TypeInit, agent.Init{})
	f.Version = 2
	agent.WriteFrame(in.raw, f)
	reply, err := agent.ReadFrame(in.raw)
	if err != nil {
		t.Fatal(err)
	}
	var e agent.ErrorMsg
	if err := agent.Decode(reply, agent.TypeError, &e); err != nil || e.Type != "ProtocolError" || !strings.Contains(e.Message, "version 2") || !strings.Contains(e.Message, "version 1") {
		t.Fatalf("reply %+v %v", e, err)
	}
	var ee *exec.ExitError
	if err := in.cmd.Wait(); !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("exit: %v", err)
	}
}
