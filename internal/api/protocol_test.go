package api_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/catalyzer/catalyzer/internal/api/wire"
	"github.com/catalyzer/catalyzer/internal/client"
	"github.com/catalyzer/catalyzer/internal/platform"
)

// rogue is a native handler that speaks the control protocol itself (in
// Python, from the host's /usr/bin/python3) and, once invoked, breaks it
// the way $ROGUE says, as a hostile tenant's agent would.
const rogue = `#!/usr/bin/python3
import json, os, struct, sys, time
fd = int(os.environ.get("CATALYZER_CONTROL_FD", "3"))
mode = os.environ["ROGUE"]

def readn(n):
    b = b""
    while len(b) < n:
        c = os.read(fd, n - len(b))
        if not c:
            sys.exit(0)
        b += c
    return b

def write(data):
    v = memoryview(data)
    while v:
        v = v[os.write(fd, v):]

def frame(typ, obj, magic=b"CZ", version=1, length=None):
    p = json.dumps(obj).encode()
    return magic + struct.pack(">BBI", version, typ, len(p) if length is None else length) + p

def ready():
    write(frame(2, {"version": 1, "pid": os.getpid(), "ready_ns": time.monotonic_ns()}))

while True:
    h = readn(8)
    typ, n = h[3], struct.unpack(">I", h[4:8])[0]
    msg = json.loads(readn(n))
    if typ == 1 and mode == "init-magic":
        write(frame(2, {"version": 1}, magic=b"XX"))
        continue
    if typ in (1, 7):
        ready()
        continue
    now = time.monotonic_ns()
    res = {"id": msg["id"], "output": {"ok": True}, "entry_ns": now, "exit_ns": now, "stdout": "", "stderr": "", "truncated": False}
    if mode == "magic":
        write(frame(4, res, magic=b"XX"))
    elif mode == "version":
        write(frame(4, res, version=9))
    elif mode == "length":
        write(frame(4, res, length=0xFFFFFFFF))
    elif mode == "biglog":
        write(frame(6, {"message": "x"}, length=7 << 20))
    elif mode == "type":
        write(frame(42, res))
    elif mode == "id":
        write(frame(4, dict(res, id="not-" + msg["id"])))
    elif mode == "flood":
        log = frame(6, {"id": msg["id"], "message": "x" * 60000})
        for _ in range(2000):
            write(log)
        write(frame(4, res))
    else:
        write(frame(4, res))
    # Then wait to be killed, as an instance that keeps its channel open.
`

// syncBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func deployRogue(t *testing.T, e *env, name, mode string) {
	t.Helper()
	dir := writeCode(t, map[string]string{"rogue": rogue})
	if err := os.Chmod(filepath.Join(dir, "rogue"), 0o755); err != nil {
		t.Fatal(err)
	}
	e.deploy(name, wire.DeployRequest{Runtime: "native", Handler: "rogue", CodePath: dir, Env: map[string]string{"ROGUE": mode}, TimeoutMs: 20000})
}

// TestProtocolViolations is the attack "an instance answers garbage": bad
// magic, a bad version, an over-long frame (any type, and a 7 MiB log),
// an unknown type, an answer for another invocation. Each is answered 502
// ProtocolError naming the violation, in the response and in the daemon's
// log, at once (not "killed by signal" after 2 s), and the instance is
// destroyed.
func TestProtocolViolations(t *testing.T) {
	var logs syncBuffer
	e := newEnv(t, platform.Config{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	for _, c := range []struct{ mode, want string }{
		{"magic", "bad magic"},
		{"version", "version 9"},
		{"length", "exceeds the limit"},
		{"biglog", "log frame of 7340032 bytes exceeds the limit"},
		{"type", "unknown message type 42"},
		{"id", "for invocation"},
	} {
		t.Run(c.mode, func(t *testing.T) {
			name := "rogue-" + c.mode
			deployRogue(t, e, name, c.mode)
			// In every boot mode: the rogue answers init and forked.
			e.requireTemplate(t, name)
			e.requireImage(t, name)
			for _, m := range []string{"scratch", "fork", "warm", "cold"} {
				start := time.Now()
				_, err := e.c.Invoke(context.Background(), name, m, nil)
				took := time.Since(start)
				var ae *client.APIError
				if !errors.As(err, &ae) || ae.Status != 502 || ae.Type != "ProtocolError" || !strings.Contains(ae.Message, c.want) {
					t.Fatalf("boot=%s: %v, want 502 ProtocolError naming %q", m, err, c.want)
				}
				if strings.Contains(ae.Message, "signal") {
					t.Errorf("boot=%s: the answer is how the instance died, not what it did: %s", m, ae.Message)
				}
				t.Logf("boot=%s answered in %v: %s", m, took, ae.Message)
				if v, err := e.c.Instances(context.Background(), name); err != nil || len(v.Instances) != 0 {
					t.Errorf("boot=%s: the instance that broke the protocol lives on: %+v %v", m, v.Instances, err)
				}
			}
			if l := logs.String(); !strings.Contains(l, "type=ProtocolError") || !strings.Contains(l, c.want) {
				t.Errorf("the daemon's log does not name the violation %q:\n%s", c.want, l)
			}
		})
	}
}

// TestProtocolViolationAtInit: a violation in answer to init is the
// boot's error, named the same way.
func TestProtocolViolationAtInit(t *testing.T) {
	e := newEnv(t, platform.Config{NoTemplates: true})
	deployRogue(t, e, "rogue", "init-magic")
	_, err := e.c.Invoke(context.Background(), "rogue", "scratch", nil)
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != 502 || ae.Type != "ProtocolError" || !strings.Contains(ae.Message, "bad magic") {
		t.Fatalf("invoke: %v, want 502 ProtocolError naming the bad magic", err)
	}
	if v, err := e.c.Instances(context.Background(), "rogue"); err != nil || len(v.Instances) != 0 {
		t.Errorf("instances left: %+v %v", v.Instances, err)
	}
}

// TestLogFlood is the attack "an instance floods the daemon with log
// frames" (2000 frames of 60 KB in one call, 120 MB): the call still
// succeeds, says its logs were truncated, and the daemon's heap does not
// grow with what the instance sent.
func TestLogFlood(t *testing.T) {
	e := newEnv(t, platform.Config{})
	deployRogue(t, e, "flood", "flood")
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	var peak uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
		}
	}()
	inv, err := e.c.Invoke(context.Background(), "flood", "scratch", nil)
	close(stop)
	<-done
	if err != nil {
		t.Fatal(err)
	}
	growth := int64(peak) - int64(base.HeapInuse)
	t.Logf("heap in use: %d MiB before, peak %d MiB during the flood", base.HeapInuse>>20, peak>>20)
	if growth > 48<<20 {
		t.Errorf("the daemon's heap grew by %d MiB while an instance sent 120 MB of logs", growth>>20)
	}
	if !inv.LogsTruncated || !strings.Contains(string(inv.Output), "ok") {
		t.Fatalf("flooded call: %+v, want its output and logs truncated", inv)
	}
	// The instance is fine and serves again.
	if _, err := e.c.Invoke(context.Background(), "flood", "", nil); err != nil {
		t.Fatal(err)
	}
}
