package api_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/catalyzer/catalyzer/internal/api"
	"github.com/catalyzer/catalyzer/internal/api/wire"
	"github.com/catalyzer/catalyzer/internal/client"
	"github.com/catalyzer/catalyzer/internal/platform"
	"github.com/catalyzer/catalyzer/internal/sandbox"
	"github.com/catalyzer/catalyzer/internal/testutil"
)

func TestMain(m *testing.M) {
	sandbox.MaybeInit()
	os.Exit(m.Run())
}

type env struct {
	t      *testing.T
	p      *platform.Platform
	srv    *httptest.Server
	c      *client.Client
	token  string
	state  string
	parent string
}

func newEnv(t *testing.T, cfg platform.Config) *env {
	t.Helper()
	testutil.RequiresRoot(t)
	if cfg.StateDir == "" {
		cfg.StateDir = t.TempDir()
	}
	if cfg.CgroupParent == "" {
		cfg.CgroupParent = fmt.Sprintf("catalyzer-test-api-%d", os.Getpid())
	}
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = time.Hour
	}
	if cfg.CodeRoots == nil {
		// The tests name code by path: the examples and their own temp dirs.
		cfg.CodeRoots = []string{examples(t), os.TempDir()}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	p, err := platform.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	token, err := api.LoadOrCreateToken(p.StateDir())
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.New(p, cfg.Logger, token))
	e := &env{t: t, p: p, srv: srv, c: client.New(srv.URL, token), token: token, state: cfg.StateDir, parent: cfg.CgroupParent}
	t.Cleanup(func() {
		srv.Close()
		p.Close()
	})
	return e
}

// writeCode writes files into a fresh code dir.
func writeCode(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func (e *env) deploy(name string, r wire.DeployRequest) {
	e.t.Helper()
	if _, err := e.c.Deploy(context.Background(), name, r); err != nil {
		e.t.Fatalf("deploy %s: %v", name, err)
	}
}

// raw sends one request with token as its bearer token ("" = none).
func (e *env) raw(method, path, token string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequest(method, e.srv.URL+path, body)
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return http.DefaultClient.Do(req)
}

func apiStatus(err error) (int, string) {
	var ae *client.APIError
	if errors.As(err, &ae) {
		return ae.Status, ae.Type
	}
	return 0, ""
}

func examples(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "examples")
}

func TestDeployInvokeReuse(t *testing.T) {
	e := newEnv(t, platform.Config{})
	ctx := context.Background()
	e.deploy("hello", wire.DeployRequest{Runtime: "python", Handler: "main.handler", CodePath: filepath.Join(examples(t), "python", "hello")})

	inv, err := e.c.Invoke(ctx, "hello", "scratch", []byte(`{"name":"ci"}`))
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(inv.Output, &out); err != nil || out["hello"] != "ci" {
		t.Fatalf("output %s (%v)", inv.Output, err)
	}
	if inv.Boot != "scratch" || inv.Reused || inv.BootUs <= 0 || len(inv.Phases) == 0 {
		t.Fatalf("boot headers: %+v", inv)
	}
	var sum int64
	for _, v := range inv.Phases {
		sum += v
	}
	// Each phase is truncated to whole µs on its own.
	if d := inv.BootUs - sum; d < 0 || d > int64(len(inv.Phases)) {
		t.Errorf("phases add up to %d µs, boot took %d µs", sum, inv.BootUs)
	}
	if !strings.Contains(inv.Stdout, "hello from python: ci") {
		t.Errorf("stdout not captured: %q", inv.Stdout)
	}
	// auto reuses the live instance.
	inv2, err := e.c.Invoke(ctx, "hello", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !inv2.Reused || inv2.BootUs != 0 || inv2.Instance != inv.Instance {
		t.Fatalf("second invocation did not reuse: %+v", inv2)
	}

	// The registry lists it; show has the code path.
	fns, err := e.c.List(ctx)
	if err != nil || len(fns) != 1 || fns[0].Name != "hello" || fns[0].MemoryMB != platform.DefaultMemoryMB {
		t.Fatalf("list: %+v %v", fns, err)
	}
	// Metrics mention the function.
	resp, err := e.raw(http.MethodGet, "/metrics", e.token, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`catalyzer_invocations_total{boot="scratch",function="hello",outcome="ok"} 1`, `catalyzer_boot_phase_seconds_count{boot="scratch",function="hello",phase="init"}`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// Draining destroys the idle instance: the next invocation boots.
	if err := e.c.Drain(ctx, "hello"); err != nil {
		t.Fatal(err)
	}
	if inv3, err := e.c.Invoke(ctx, "hello", "", nil); err != nil || inv3.Reused {
		t.Fatalf("after drain: %+v %v", inv3, err)
	}
	if err := e.c.Delete(ctx, "hello"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Get(ctx, "hello"); !isStatus(err, 404) {
		t.Fatalf("get after delete: %v", err)
	}
}

func isStatus(err error, code int) bool {
	s, _ := apiStatus(err)
	return s == code
}

func TestNodeAndNative(t *testing.T) {
	e := newEnv(t, platform.Config{})
	ex := examples(t)
	cases := []struct {
		name string
		req  wire.DeployRequest
	}{
		{"node", wire.DeployRequest{Runtime: "node", Handler: "main.handler", CodePath: filepath.Join(ex, "node", "hello")}},
		{"native-go", wire.DeployRequest{Runtime: "native", Handler: "hello", CodePath: filepath.Join(ex, "native", "hello")}},
		{"native-c", wire.DeployRequest{Runtime: "native", Handler: "hello", CodePath: filepath.Join(ex, "native-c")}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := os.Stat(filepath.Join(c.req.CodePath, c.req.Handler)); c.req.Runtime == "native" && err != nil {
				testutil.Missing(t, "example not built (run make examples; make test does): %v", err)
			}
			e.deploy(c.name, c.req)
			inv, err := e.c.Invoke(context.Background(), c.name, "scratch", []byte(`{"name":"x"}`))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(inv.Output, []byte(`"x"`)) {
				t.Fatalf("output %s", inv.Output)
			}
		})
	}
}

func TestFunctionFailures(t *testing.T) {
	e := newEnv(t, platform.Config{})
	ctx := context.Background()
	code := writeCode(t, map[string]string{"main.py": `
import os, time
def raises(event, context):
    print("about to fail")
    raise ValueError("bad input: " + str(event.get("x")))
def sleeps(event, context):
    time.sleep(10)
def exits(event, context):
    os._exit(3)
def hog(event, context):
    b = []
    while True:
        b.append(bytearray(16 << 20))
def ok(event, context):
    return {"pid": os.getpid()}
`})
	for _, h := range []string{"raises", "sleeps", "exits", "hog", "ok"} {
		e.deploy(h, wire.DeployRequest{Runtime: "python", Handler: "main." + h, CodePath: code, TimeoutMs: 1500, MemoryMB: 64})
	}
	_, err := e.c.Invoke(ctx, "raises", "", []byte(`{"x":1}`))
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != 502 || ae.Type != "ValueError" || ae.Message != "bad input: 1" || !strings.Contains(ae.Stdout, "about to fail") {
		t.Fatalf("handler exception: %#v", err)
	}
	// The instance survives its handler's exception and is reused.
	if inv, err := e.c.Invoke(ctx, "raises", "", []byte(`{}`)); !isStatus(err, 502) || !inv.Reused {
		t.Fatalf("after exception: %+v %v", inv, err)
	}
	start := time.Now()
	if _, err := e.c.Invoke(ctx, "sleeps", "", nil); !isStatus(err, 502) || !errors.As(err, &ae) || ae.Type != "TimeoutError" {
		t.Fatalf("timeout: %v", err)
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Fatalf("timeout took %v", d)
	}
	if _, err := e.c.Invoke(ctx, "exits", "", nil); !errors.As(err, &ae) || ae.Status != 502 || ae.Type != "RuntimeExit" || !strings.Contains(ae.Message, "code 3") {
		t.Fatalf("exit: %v", err)
	}
	if _, err := e.c.Invoke(ctx, "hog", "", nil); !errors.As(err, &ae) || ae.Status != 502 || ae.Type != "OutOfMemory" {
		t.Fatalf("oom: %v", err)
	}
	// The daemon is fine and so are other functions.
	if _, err := e.c.Invoke(ctx, "ok", "", nil); err != nil {
		t.Fatal(err)
	}
}

func TestBadBootMode(t *testing.T) {
	e := newEnv(t, platform.Config{NoTemplates: true})
	e.deploy("hello", wire.DeployRequest{Runtime: "python", Handler: "main.handler", CodePath: filepath.Join(examples(t), "python", "hello")})
	if _, err := e.c.Invoke(context.Background(), "hello", "bogus", nil); !isStatus(err, 400) {
		t.Errorf("boot=bogus: %v, want 400", err)
	}
	// Without templates there is nothing to fork or restore: a clear 503.
	for _, m := range []string{"fork", "warm", "cold"} {
		if _, err := e.c.Invoke(context.Background(), "hello", m, nil); !isStatus(err, 503) {
			t.Errorf("boot=%s without templates: %v, want 503", m, err)
		}
	}
}

// TestUserNS: by default every scratch instance runs in its function's
// user namespace, each function with a host uid range of its own; fork
// instances too; a state dir only root can reach (0700) works.
func TestUserNS(t *testing.T) {
	testutil.RequiresRoot(t)
	e := newEnv(t, platform.Config{StateDir: t.TempDir()})
	code := writeCode(t, map[string]string{"main.py": "def handler(e, c):\n    return open('/proc/self/uid_map').read().split()\n"})
	bases := map[string]string{}
	for _, fn := range []string{"u1", "u2"} {
		e.deploy(fn, wire.DeployRequest{Runtime: "python", Handler: "main.handler", CodePath: code})
		for _, m := range []string{"scratch", "fork"} {
			if m == "fork" {
				e.requireTemplate(t, fn)
			}
			inv, err := e.c.Invoke(context.Background(), fn, m, nil)
			if err != nil {
				t.Fatalf("%s %s: %v", fn, m, err)
			}
			var uidMap []string
			if err := json.Unmarshal(inv.Output, &uidMap); err != nil || len(uidMap) != 3 || uidMap[0] != "0" || uidMap[1] == "0" || uidMap[2] != "65536" {
				t.Fatalf("%s %s: uid_map %s (%v), want 0 -> an unprivileged range of 65536", fn, m, inv.Output, err)
			}
			if b, ok := bases[fn]; ok && b != uidMap[1] {
				t.Errorf("%s: scratch and fork map root to %s and %s, want the function's one range", fn, b, uidMap[1])
			}
			bases[fn] = uidMap[1]
		}
	}
	if bases["u1"] == bases["u2"] {
		t.Errorf("two functions share host uid range %s", bases["u1"])
	}
}

func TestMaxInstances(t *testing.T) {
	e := newEnv(t, platform.Config{})
	code := writeCode(t, map[string]string{"main.py": "import time\ndef handler(e, c):\n    time.sleep(1.5)\n    return 1\n"})
	e.deploy("slow", wire.DeployRequest{Runtime: "python", Handler: "main.handler", CodePath: code, MaxInstances: 1})
	// The first invocation holds the only instance (its handler sleeps
	// 1.5 s): the two sent once it is busy must be refused, not queued.
	errs := make([]error, 3)
	first := make(chan struct{})
	go func() {
		defer close(first)
		_, errs[0] = e.c.Invoke(context.Background(), "slow", "", nil)
	}()
	waitBusy(t, e, "slow")
	for i := 1; i < len(errs); i++ {
		_, errs[i] = e.c.Invoke(context.Background(), "slow", "", nil)
	}
	<-first
	ok, busy := 0, 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case isStatus(err, 429):
			busy++
		default:
			t.Errorf("unexpected: %v", err)
		}
	}
	if ok != 1 || busy != 2 {
		t.Fatalf("ok=%d 429=%d, want 1 and 2", ok, busy)
	}
	// The error metric names the refusals as the error body does.
	_, typ := apiStatus(errs[1])
	if errs[1] == nil {
		_, typ = apiStatus(errs[0])
	}
	resp, err := e.raw(http.MethodGet, "/metrics", e.token, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := `catalyzer_errors_total{function="slow",type="` + typ + `"} 2`; typ != "TooManyRequests" || !bytes.Contains(b, []byte(want)) {
		t.Errorf("error type %q; metrics lack %s", typ, want)
	}
}

// TestShutDown: a closed platform answers 503 ShuttingDown (retry
// elsewhere), not 429 (the function's capacity).
func TestShutDown(t *testing.T) {
	e := newEnv(t, platform.Config{NoTemplates: true})
	e.deploy("hello", wire.DeployRequest{Runtime: "python", Handler: "main.handler", CodePath: filepath.Join(examples(t), "python", "hello")})
	if err := e.p.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Invoke(context.Background(), "hello", "", nil); !isStatus(err, 503) {
		t.Errorf("invoke after close: %v, want 503", err)
	} else if _, typ := apiStatus(err); typ != "ShuttingDown" {
		t.Errorf("invoke after close: type %s, want ShuttingDown", typ)
	}
	_, err := e.c.Deploy(context.Background(), "other", wire.DeployRequest{Runtime: "python", Handler: "main.handler", CodePath: filepath.Join(examples(t), "python", "hello")})
	if !isStatus(err, 503) {
		t.Errorf("deploy after close: %v, want 503", err)
	}
}

func tgz(t *testing.T, entries []tar.Header, bodies map[string]string) string {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, h := range entries {
		h := h
		body := bodies[h.Name]
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(body))
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(body))
	}
	tw.Close()
	zw.Close()
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}

func TestBadInput(t *testing.T) {
	e := newEnv(t, platform.Config{})
	good := writeCode(t, map[string]string{"main.py": "def handler(e, c):\n    return 1\n"})
	mainPy := tar.Header{Name: "main.py", Typeflag: tar.TypeReg}
	bodies := map[string]string{"main.py": "def handler(e, c):\n    return 1\n"}
	cases := []struct {
		name string
		body string
		code int
	}{
		{"malformed json", `{"runtime": "python",`, 400},
		{"unknown field", `{"runtime": "python", "handler": "main.handler", "code_path": "` + good + `", "memroy_mb": 1}`, 400},
		{"unknown runtime", `{"runtime": "cobol", "handler": "main.handler", "code_path": "` + good + `"}`, 400},
		{"missing handler file", `{"runtime": "python", "handler": "nothere.handler", "code_path": "` + good + `"}`, 400},
		{"no code", `{"runtime": "python", "handler": "main.handler"}`, 400},
		{"relative code path", `{"runtime": "python", "handler": "main.handler", "code_path": "examples"}`, 400},
		{"memory out of range", `{"runtime": "python", "handler": "main.handler", "code_path": "` + good + `", "memory_mb": 1}`, 400},
		{"bad network", `{"runtime": "python", "handler": "main.handler", "code_path": "` + good + `", "network": "bridge"}`, 400},
		{"tar dotdot", `{"runtime": "python", "handler": "main.handler", "code_tgz_b64": "` + tgz(t, []tar.Header{mainPy, {Name: "../evil", Typeflag: tar.TypeReg}}, bodies) + `"}`, 400},
		{"tar absolute", `{"runtime": "python", "handler": "main.handler", "code_tgz_b64": "` + tgz(t, []tar.Header{mainPy, {Name: "/etc/evil", Typeflag: tar.TypeReg}}, bodies) + `"}`, 400},
		{"tar escaping link", `{"runtime": "python", "handler": "main.handler", "code_tgz_b64": "` + tgz(t, []tar.Header{mainPy, {Name: "l", Typeflag: tar.TypeSymlink, Linkname: "../../etc"}}, bodies) + `"}`, 400},
		{"tar absolute link", `{"runtime": "python", "handler": "main.handler", "code_tgz_b64": "` + tgz(t, []tar.Header{mainPy, {Name: "l", Typeflag: tar.TypeSymlink, Linkname: "/etc"}}, bodies) + `"}`, 400},
		{"tar write through link", `{"runtime": "python", "handler": "main.handler", "code_tgz_b64": "` + tgz(t, []tar.Header{mainPy, {Name: "d", Typeflag: tar.TypeSymlink, Linkname: "."}, {Name: "d/x", Typeflag: tar.TypeReg}}, bodies) + `"}`, 400},
		{"tar hard link", `{"runtime": "python", "handler": "main.handler", "code_tgz_b64": "` + tgz(t, []tar.Header{mainPy, {Name: "h", Typeflag: tar.TypeLink, Linkname: "main.py"}}, bodies) + `"}`, 400},
		{"not base64", `{"runtime": "python", "handler": "main.handler", "code_tgz_b64": "!!!"}`, 400},
		// Shapes the file system refuses: once answered 500.
		{"tar duplicate entry", `{"runtime": "python", "handler": "main.handler", "code_tgz_b64": "` + tgz(t, []tar.Header{mainPy, mainPy}, bodies) + `"}`, 400},
		{"tar file then dir", `{"runtime": "python", "handler": "main.handler", "code_tgz_b64": "` + tgz(t, []tar.Header{mainPy, {Name: "a", Typeflag: tar.TypeReg}, {Name: "a/", Typeflag: tar.TypeDir}}, bodies) + `"}`, 400},
		{"tar over-long path", `{"runtime": "python", "handler": "main.handler", "code_tgz_b64": "` + tgz(t, []tar.Header{mainPy, {Name: strings.Repeat("d/", 2100) + "x", Typeflag: tar.TypeReg}}, bodies) + `"}`, 400},
		{"tar over-long name", `{"runtime": "python", "handler": "main.handler", "code_tgz_b64": "` + tgz(t, []tar.Header{mainPy, {Name: strings.Repeat("n", 300), Typeflag: tar.TypeReg}}, bodies) + `"}`, 400},
		{"code_path /proc", `{"runtime": "python", "handler": "main.handler", "code_path": "/proc"}`, 400},
		{"code_path /sys", `{"runtime": "python", "handler": "main.handler", "code_path": "/sys"}`, 400},
		{"code_path state dir", `{"runtime": "python", "handler": "main.handler", "code_path": "` + e.state + `"}`, 400},
		{"oversized body", `{"runtime": "python", "handler": "main.handler", "code_tgz_b64": "` + strings.Repeat("A", wire.MaxDeployBody) + `"}`, 413},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, err := e.raw(http.MethodPut, "/v1/functions/f", e.token, strings.NewReader(c.body))
			if err != nil {
				t.Fatal(err)
			}
			var eb wire.ErrorBody
			json.NewDecoder(resp.Body).Decode(&eb)
			resp.Body.Close()
			if resp.StatusCode != c.code || eb.Error.Type == "" || eb.Error.Message == "" {
				t.Fatalf("status %d body %+v, want %d with an error body", resp.StatusCode, eb, c.code)
			}
		})
	}
	// Nothing was written: no function, no code, no staging left.
	if fns, _ := e.c.List(context.Background()); len(fns) != 0 {
		t.Fatalf("functions after bad deploys: %+v", fns)
	}
	for _, d := range []string{"functions", "code", "tmp"} {
		if ents, _ := os.ReadDir(filepath.Join(e.state, d)); len(ents) != 0 {
			t.Errorf("%s/ is not empty after bad deploys: %d entries", d, len(ents))
		}
	}
	// Bad names, bad events, unknown functions.
	if _, err := e.c.Deploy(context.Background(), "Bad..Name", wire.DeployRequest{}); !isStatus(err, 400) {
		t.Errorf("bad name: %v", err)
	}
	e.deploy("f", wire.DeployRequest{Runtime: "python", Handler: "main.handler", CodePath: good})
	if _, err := e.c.Invoke(context.Background(), "f", "", []byte(`{not json`)); !isStatus(err, 400) {
		t.Errorf("bad event: %v", err)
	}
	if _, err := e.c.Invoke(context.Background(), "f", "", bytes.Repeat([]byte(" "), wire.MaxEventBody+1)); !isStatus(err, 413) {
		t.Errorf("oversized event: %v", err)
	}
	if _, err := e.c.Invoke(context.Background(), "nope", "", nil); !isStatus(err, 404) {
		t.Errorf("unknown function: %v", err)
	}
}

func TestRestartKeepsFunctionsAndLeavesNothing(t *testing.T) {
	testutil.RequiresRoot(t)
	state := t.TempDir()
	parent := fmt.Sprintf("catalyzer-test-restart-%d", os.Getpid())
	before := testutil.Take(t, parent)
	e := newEnv(t, platform.Config{StateDir: state, CgroupParent: parent})
	code := writeCode(t, map[string]string{"main.py": "def handler(e, c):\n    return {'ok': True}\n"})
	var b bytes.Buffer
	_ = b
	e.deploy("keep", wire.DeployRequest{Runtime: "python", Handler: "main.handler", CodePath: code})
	for i := 0; i < 3; i++ {
		if _, err := e.c.Invoke(context.Background(), "keep", "scratch", nil); err != nil {
			t.Fatal(err)
		}
	}
	e.srv.Close()
	e.p.Close()
	if after := testutil.Take(t, parent); after.Descendants != before.Descendants || after.Mounts != before.Mounts || after.Cgroups != before.Cgroups {
		t.Fatalf("leak after close: before %+v after %+v", before, after)
	}
	e2 := newEnv(t, platform.Config{StateDir: state, CgroupParent: parent})
	fns, err := e2.c.List(context.Background())
	if err != nil || len(fns) != 1 || fns[0].Name != "keep" {
		t.Fatalf("after restart: %+v %v", fns, err)
	}
	if _, err := e2.c.Invoke(context.Background(), "keep", "", nil); err != nil {
		t.Fatal(err)
	}
}

// TestIsolation checks, through the API, what a function can see and do:
// no host processes, no writes to the host's root, no network, its own
// limits.
func TestIsolation(t *testing.T) {
	e := newEnv(t, platform.Config{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	marker := fmt.Sprintf("/etc/catalyzer-isolation-%d", os.Getpid())
	code := writeCode(t, map[string]string{"main.py": `
import os, socket
def handler(event, context):
    out = {}
    out["pids"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    try:
        with open(event["marker"], "w") as f:
            f.write("x")
        out["wrote"] = True
    except OSError as e:
        out["wrote"] = str(e)
    s = socket.socket()
    s.settimeout(1)
    try:
        s.connect(("127.0.0.1", event["port"]))
        out["connected"] = True
    except OSError as e:
        out["connected"] = False
    out["ifaces"] = sorted(os.listdir("/sys/class/net"))
    for line in open("/proc/self/status"):
        if line.startswith(("CapEff", "Seccomp:", "NoNewPrivs")):
            k, v = line.split(":", 1)
            out[k] = v.strip()
    out["hostname"] = socket.gethostname()
    import ctypes
    out["unshare"] = ctypes.CDLL(None, use_errno=True).unshare(0x00020000) == 0
    return out
`})
	e.deploy("iso", wire.DeployRequest{Runtime: "python", Handler: "main.handler", CodePath: code, MemoryMB: 96})
	port := ln.Addr().(*net.TCPAddr).Port
	inv, err := e.c.Invoke(context.Background(), "iso", "scratch", []byte(fmt.Sprintf(`{"marker": %q, "port": %d}`, marker, port)))
	if err != nil {
		t.Fatal(err)
	}
	var out struct {
		Pids       []int    `json:"pids"`
		Wrote      any      `json:"wrote"`
		Connected  bool     `json:"connected"`
		Ifaces     []string `json:"ifaces"`
		CapEff     string   `json:"CapEff"`
		Seccomp    string   `json:"Seccomp"`
		NoNewPrivs string   `json:"NoNewPrivs"`
		Hostname   string   `json:"hostname"`
		Unshare    bool     `json:"unshare"`
	}
	if err := json.Unmarshal(inv.Output, &out); err != nil {
		t.Fatalf("%s: %v", inv.Output, err)
	}
	if len(out.Pids) != 1 || out.Pids[0] != 1 {
		t.Errorf("function sees pids %v, want only itself as 1", out.Pids)
	}
	if _, err := os.Stat(marker); err == nil {
		os.Remove(marker)
		t.Errorf("function wrote %s on the host", marker)
	}
	if out.Connected {
		t.Error("function reached a host listener with network none")
	}
	if len(out.Ifaces) != 1 || out.Ifaces[0] != "lo" {
		t.Errorf("interfaces %v, want [lo]", out.Ifaces)
	}
	if out.CapEff != "00000000a80425fb" || out.Seccomp != "2" || out.NoNewPrivs != "1" || out.Unshare {
		t.Errorf("security: CapEff=%s Seccomp=%s NoNewPrivs=%s unshare=%v", out.CapEff, out.Seccomp, out.NoNewPrivs, out.Unshare)
	}
	if h, _ := os.Hostname(); out.Hostname == h {
		t.Errorf("function sees the host's hostname %q", h)
	}
	// Its memory limit is the function's.
	if limit := testutil.MemoryLimit(t, filepath.Join(e.parent, inv.Instance)); limit != strconv.Itoa(96<<20) {
		t.Errorf("memory limit %s, want %d", limit, 96<<20)
	}
}

// TestKeepAlive: an idle instance is reused within the keep-alive and
// destroyed after it.
func TestKeepAlive(t *testing.T) {
	e := newEnv(t, platform.Config{KeepAlive: time.Second})
	e.deploy("ka", wire.DeployRequest{Runtime: "python", Handler: "main.handler", CodePath: filepath.Join(examples(t), "python", "hello")})
	ctx := context.Background()
	first, err := e.c.Invoke(ctx, "ka", "", nil)
	if err != nil || first.Reused {
		t.Fatalf("first: %+v %v", first, err)
	}
	if again, err := e.c.Invoke(ctx, "ka", "", nil); err != nil || !again.Reused {
		t.Fatalf("within keep-alive: %+v %v", again, err)
	}
	// The reaper ends the idle instance once its keep-alive (1 s) is
	// over: wait for its cgroup to go, not for a guessed time.
	cg := filepath.Dir(testutil.CgroupFile(filepath.Join(e.parent, first.Instance), "pids", "pids.max", "pids.max"))
	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := os.Stat(cg); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("idle instance %s still has its cgroup 15 s after a 1 s keep-alive", first.Instance)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if late, err := e.c.Invoke(ctx, "ka", "", nil); err != nil || late.Reused {
		t.Fatalf("after keep-alive: %+v %v", late, err)
	}
}
