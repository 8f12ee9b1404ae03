package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/catalyzer/catalyzer/internal/api/wire"
	"github.com/catalyzer/catalyzer/internal/platform"
	"github.com/catalyzer/catalyzer/internal/testutil"
)

// waitTemplate waits until name's fork template is ready (or fails).
func (e *env) waitTemplate(name string) string {
	return e.waitBuilt(name, "template", func(f wire.Function) string { return f.Template })
}

// waitImage waits until name's checkpoint image is ready (or fails).
func (e *env) waitImage(name string) string {
	return e.waitBuilt(name, "image", func(f wire.Function) string { return f.Image })
}

// requireTemplate waits for name's fork template and fails t (the test
// or subtest that needs it) unless it is ready.
func (e *env) requireTemplate(t testing.TB, name string) {
	t.Helper()
	if st := e.waitTemplate(name); st != "ready" {
		t.Fatalf("template of %s: %s", name, st)
	}
}

// requireImage waits for name's checkpoint image and fails t unless it
// is ready.
func (e *env) requireImage(t testing.TB, name string) {
	t.Helper()
	if st := e.waitImage(name); st != "ready" {
		t.Fatalf("image of %s: %s", name, st)
	}
}

// waitBuilt waits until the state that field reads is neither
// "building" nor "none", and returns it.
func (e *env) waitBuilt(name, what string, field func(wire.Function) string) string {
	e.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		f, err := e.c.Get(context.Background(), name)
		if err != nil {
			e.t.Fatal(err)
		}
		if st := field(f); st != "building" && st != "none" {
			return st
		}
		time.Sleep(20 * time.Millisecond)
	}
	e.t.Fatalf("%s of %s not built within 60s", what, name)
	return ""
}

const isoPy = `
import os, socket, random, uuid, ctypes
open("/written-at-init", "w").write("init")
def handler(event, context):
    out = {}
    out["pids"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    out["pid"] = os.getpid()
    for path in ("/x-" + event.get("tag", ""), "/tmp/x-" + event.get("tag", "")):
        try:
            open(path, "w").write("x")
        except OSError as e:
            out["write_err"] = str(e)
    out["seen"] = sorted(p for p in os.listdir("/") if p.startswith("x-")) + sorted(os.listdir("/tmp"))
    out["init_file"] = os.path.exists("/written-at-init")
    s = socket.socket()
    s.settimeout(1)
    try:
        s.connect(("127.0.0.1", event.get("port", 1)))
        out["connected"] = True
    except OSError:
        out["connected"] = False
    out["ifaces"] = sorted(os.listdir("/sys/class/net"))
    for line in open("/proc/self/status"):
        if line.startswith(("CapEff", "CapPrm", "CapBnd", "Seccomp:", "NoNewPrivs")):
            k, v = line.split(":", 1)
            out[k] = v.strip()
    out["hostname"] = socket.gethostname()
    out["unshare"] = ctypes.CDLL(None, use_errno=True).unshare(0x00020000) == 0
    out["random"] = random.random()
    out["urandom"] = os.urandom(16).hex()
    out["uuid"] = str(uuid.uuid4())
    out["kcore"] = open("/proc/kcore", "rb").read(16).hex() if os.path.exists("/proc/kcore") else ""
    shown = [p for p in ("/etc/shadow", "/etc/gshadow", "/etc/ssh", "/etc/sudoers", "/home", "/var/lib",
                         "/run/catalyzer", "/etc/machine-id", event.get("state", "/nonexistent")) if os.path.exists(p)]
    shown += ["/root/" + p for p in os.listdir("/root")]
    shown += ["/etc/passwd:" + l.split(":")[0] for l in open("/etc/passwd") if l.split(":")[0] not in ("root", "nobody")]
    out["host_paths"] = shown
    out["control_inheritable"] = os.get_inheritable(3)
    out["dumpable"] = ctypes.CDLL(None).prctl(3, 0, 0, 0, 0)  # PR_GET_DUMPABLE
    out["cgroups"] = [l.strip().split(":", 2)[2] for l in open("/proc/self/cgroup") if l.strip()]
    return out
`

type isoOut struct {
	Pids       []int    `json:"pids"`
	Pid        int      `json:"pid"`
	WriteErr   string   `json:"write_err"`
	Seen       []string `json:"seen"`
	InitFile   bool     `json:"init_file"`
	Connected  bool     `json:"connected"`
	Ifaces     []string `json:"ifaces"`
	CapEff     string   `json:"CapEff"`
	CapPrm     string   `json:"CapPrm"`
	CapBnd     string   `json:"CapBnd"`
	Seccomp    string   `json:"Seccomp"`
	NoNewPrivs string   `json:"NoNewPrivs"`
	Hostname   string   `json:"hostname"`
	Unshare    bool     `json:"unshare"`
	Random     float64  `json:"random"`
	Urandom    string   `json:"urandom"`
	UUID       string   `json:"uuid"`
	Kcore      string   `json:"kcore"`
	HostPaths  []string `json:"host_paths"`
	// ControlInheritable: the control channel (fd 3) would cross an exec.
	ControlInheritable bool `json:"control_inheritable"`
	Dumpable           int  `json:"dumpable"`
	// Cgroups: the paths /proc/self/cgroup shows, one per hierarchy.
	Cgroups []string `json:"cgroups"`
}

// TestBootIsolation: instances booted by fork, warm and cold restore
// have every isolation property of a scratch boot, their own filesystem
// layer over the template's init-time changes, and fresh entropy.
func TestBootIsolation(t *testing.T) {
	e := newEnv(t, platform.Config{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	code := writeCode(t, map[string]string{"main.py": isoPy})
	e.deploy("iso", wire.DeployRequest{Runtime: "python", Handler: "main.handler", CodePath: code, MemoryMB: 96})
	e.requireTemplate(t, "iso")
	e.requireImage(t, "iso")
	const docker = "00000000a80425fb"
	host, _ := os.Hostname()
	seen := map[string]bool{}
	for i, mode := range []string{"scratch", "fork", "fork", "warm", "cold", "warm", "cold"} {
		label := fmt.Sprintf("%s boot %d", mode, i)
		inv, err := e.c.Invoke(context.Background(), "iso", mode, []byte(fmt.Sprintf(`{"tag": "%d", "port": %d, "state": %q}`, i, port, e.state)))
		if err != nil {
			t.Fatalf("%s: %v", label, err)
		}
		if inv.Boot != mode || inv.Reused || inv.BootUs <= 0 || len(inv.Phases) == 0 {
			t.Fatalf("%s: headers %+v", label, inv)
		}
		var o isoOut
		if err := json.Unmarshal(inv.Output, &o); err != nil {
			t.Fatal(err)
		}
		// Its memory limit is the function's.
		if limit := testutil.MemoryLimit(t, filepath.Join(e.parent, inv.Instance)); limit != strconv.Itoa(96<<20) {
			t.Errorf("%s: memory limit %s", label, limit)
		}
		if o.Pid != 1 || len(o.Pids) != 1 || o.Pids[0] != 1 {
			t.Errorf("%s: pid %d sees %v, want only itself as 1", label, o.Pid, o.Pids)
		}
		if o.Connected || len(o.Ifaces) != 1 || o.Ifaces[0] != "lo" {
			t.Errorf("%s: network: connected=%v ifaces=%v", label, o.Connected, o.Ifaces)
		}
		if o.CapEff != docker || o.CapPrm != docker || o.CapBnd != docker || o.Seccomp != "2" || o.NoNewPrivs != "1" || o.Unshare {
			t.Errorf("%s: security: eff=%s prm=%s bnd=%s seccomp=%s nnp=%s unshare=%v", label, o.CapEff, o.CapPrm, o.CapBnd, o.Seccomp, o.NoNewPrivs, o.Unshare)
		}
		if o.Hostname == host || o.Hostname == "" {
			t.Errorf("%s: hostname %q", label, o.Hostname)
		}
		for _, cg := range o.Cgroups {
			if cg != "/" {
				t.Errorf("%s: sees its cgroup as %q (%v), want \"/\": a cgroup namespace of its own", label, cg, o.Cgroups)
				break
			}
		}
		if (mode == "fork" || mode == "warm" || mode == "cold") && o.Dumpable != 0 {
			t.Errorf("%s: dumpable %d: its memory is open to processes with its credentials", label, o.Dumpable)
		}
		if o.ControlInheritable {
			t.Errorf("%s: the control fd is not close-on-exec", label)
		}
		// The default root shows no host secrets (the audit's fifth item).
		if len(o.HostPaths) != 0 {
			t.Errorf("%s: the sandbox shows host paths %v", label, o.HostPaths)
		}
		if o.Kcore != "" {
			t.Errorf("%s: /proc/kcore readable: %s", label, o.Kcore)
		}
		// Writes stay in the instance's own layer: it sees its own, not
		// its siblings'; it sees what init wrote.
		want := []string{"x-" + strconv.Itoa(i), "x-" + strconv.Itoa(i)}
		if strings.Join(o.Seen, ",") != strings.Join(want, ",") || o.WriteErr != "" || !o.InitFile {
			t.Errorf("%s: sees %v (write err %q, init file %v), want %v", label, o.Seen, o.WriteErr, o.InitFile, want)
		}
		for _, v := range []string{fmt.Sprint(o.Random), o.Urandom, o.UUID} {
			if seen[v] {
				t.Errorf("%s repeats random output %s of a sibling", label, v)
			}
			seen[v] = true
		}
		if _, err := os.Stat("/x-" + strconv.Itoa(i)); err == nil {
			t.Errorf("%s wrote the host's /", label)
		}
	}
	// The template's own layer has only what init wrote.
	ups, _ := filepath.Glob(filepath.Join("/run/catalyzer/sandbox", e.parent, "tpl-*", "upper", "x-*"))
	if len(ups) != 0 {
		t.Errorf("forks wrote into the template's layer: %v", ups)
	}
}

// TestForkFailures: a forked instance that crashes or runs out of memory
// is reported and cleaned up without touching the template; a template
// that dies is rebuilt.
func TestForkFailures(t *testing.T) {
	e := newEnv(t, platform.Config{})
	code := writeCode(t, map[string]string{"main.py": `
import os
def exits(event, context):
    os._exit(7)
def hog(event, context):
    b = []
    while True:
        b.append(bytearray(8 << 20))
def ok(event, context):
    return "ok"
`})
	for _, h := range []string{"exits", "hog", "ok"} {
		e.deploy(h, wire.DeployRequest{Runtime: "python", Handler: "main." + h, CodePath: code, MemoryMB: 64, TimeoutMs: 5000})
		e.requireTemplate(t, h)
	}
	ctx := context.Background()
	_, err := e.c.Invoke(ctx, "exits", "fork", nil)
	if s, typ := apiStatus(err); s != 502 || typ != "RuntimeExit" || !strings.Contains(err.Error(), "code 7") {
		t.Fatalf("crashing fork: %v", err)
	}
	_, err = e.c.Invoke(ctx, "hog", "fork", nil)
	if s, typ := apiStatus(err); s != 502 || typ != "OutOfMemory" {
		t.Fatalf("OOM fork: %v", err)
	}
	// Dead forks are reaped by their template without waiting for the
	// next fork.
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range templatePids(t, e.parent) {
		for testutil.Zombies(pid) > 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if n := testutil.Zombies(pid); n > 0 {
			t.Errorf("template %d keeps %d zombie children", pid, n)
		}
	}
	for i := 0; i < 3; i++ {
		if _, err := e.c.Invoke(ctx, "exits", "fork", nil); !strings.Contains(fmt.Sprint(err), "code 7") {
			t.Fatalf("fork after a crash: %v", err)
		}
	}
	// Kill the template of "ok": the next forks fail clearly or use the
	// rebuilt template; soon fork works again.
	pids := templatePids(t, e.parent)
	if len(pids) == 0 {
		t.Fatal("no template processes found")
	}
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	deadline = time.Now().Add(30 * time.Second)
	for {
		inv, err := e.c.Invoke(ctx, "ok", "fork", nil)
		if err == nil && string(inv.Output) == `"ok"` {
			break
		}
		if s, _ := apiStatus(err); err != nil && s != 429 && s != 503 {
			t.Logf("while the template is rebuilt: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("fork never recovered after the template died: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// templatePids finds the processes of every template under parent.
func templatePids(t *testing.T, parent string) []int {
	var pids []int
	files, _ := filepath.Glob(testutil.CgroupFile(filepath.Join(parent, "tpl-*"), "pids", "cgroup.procs", "cgroup.procs"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// TestForkConcurrent boots forks from one template in parallel.
func TestForkConcurrent(t *testing.T) {
	e := newEnv(t, platform.Config{})
	e.deploy("hello", wire.DeployRequest{Runtime: "python", Handler: "main.handler", CodePath: filepath.Join(examples(t), "python", "hello"), MaxInstances: 20})
	e.requireTemplate(t, "hello")
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			inv, err := e.c.Invoke(context.Background(), "hello", "fork", []byte(`{"name":"c"}`))
			if err == nil && !strings.Contains(string(inv.Output), `"c"`) {
				err = fmt.Errorf("output %s", inv.Output)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

// TestForkNode: a Node function (7 threads; libuv's epolls, eventfds and
// self-pipes made at init) forks: each fork re-creates the threads and
// gets its own copies of the event objects, and answers as scratch does.
func TestForkNode(t *testing.T) {
	e := newEnv(t, platform.Config{})
	e.deploy("node", wire.DeployRequest{Runtime: "node", Handler: "main.handler", CodePath: filepath.Join(examples(t), "node", "hello")})
	e.requireTemplate(t, "node")
	want, err := e.c.Invoke(context.Background(), "node", "scratch", []byte(`{"name":"n"}`))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		inv, err := e.c.Invoke(context.Background(), "node", "fork", []byte(`{"name":"n"}`))
		if err != nil {
			t.Fatalf("fork %d: %v", i, err)
		}
		if inv.Boot != "fork" || !strings.Contains(string(inv.Output), `"hello":"n"`) || !strings.Contains(string(inv.Output), `"runtime":"node"`) {
			t.Fatalf("fork %d: %+v (scratch said %s)", i, inv, want.Output)
		}
	}
}

// TestBootNoLeaks: forked and restored instances, templates, images'
// pools and layers leave nothing once the platform is closed (images stay
// on disk by design).
func TestBootNoLeaks(t *testing.T) {
	testutil.RequiresRoot(t)
	parent := fmt.Sprintf("catalyzer-test-bootleak-%d", os.Getpid())
	before := testutil.Take(t, parent)
	e := newEnv(t, platform.Config{CgroupParent: parent})
	e.deploy("hello", wire.DeployRequest{Runtime: "python", Handler: "main.handler", CodePath: filepath.Join(examples(t), "python", "hello")})
	e.waitTemplate("hello")
	e.waitImage("hello")
	for _, m := range []string{"fork", "fork", "warm", "cold", "warm", "fork"} {
		if _, err := e.c.Invoke(context.Background(), "hello", m, nil); err != nil {
			t.Fatalf("%s: %v", m, err)
		}
	}
	// A multi-threaded template with event objects: its forks' threads
	// and copies go with them.
	e.deploy("threads", wire.DeployRequest{Runtime: "node", Handler: "main.handler", CodePath: filepath.Join(examples(t), "node", "threads")})
	e.requireTemplate(t, "threads")
	e.requireImage(t, "threads")
	for _, m := range []string{"fork", "warm", "scratch", "cold", "fork", "warm"} {
		if _, err := e.c.Invoke(context.Background(), "threads", m, nil); err != nil {
			t.Fatalf("threads %s: %v", m, err)
		}
	}
	e.srv.Close()
	e.p.Close()
	after := testutil.Take(t, parent)
	if after.Descendants != before.Descendants || after.Zombies != before.Zombies || after.Mounts != before.Mounts || after.Cgroups != before.Cgroups {
		t.Fatalf("leak: before %+v after %+v", before, after)
	}
	if ents, _ := os.ReadDir(filepath.Join("/run/catalyzer/sandbox", parent)); len(ents) != 0 {
		t.Fatalf("run dirs left: %d", len(ents))
	}
}

// TestColdPrefetchKnob: a cold boot reads the image's pages.img ahead
// (a readahead phase) before the plan copies it, and prefetch=false
// (catalyzer bench --no-prefetch) boots cold without it.
func TestColdPrefetchKnob(t *testing.T) {
	e := newEnv(t, platform.Config{})
	e.deploy("pf", wire.DeployRequest{Runtime: "python", Handler: "main.handler", CodePath: filepath.Join(examples(t), "python", "hello")})
	e.requireImage(t, "pf")
	ctx := context.Background()
	with, err := e.c.Invoke(ctx, "pf", "cold", nil)
	if err != nil {
		t.Fatal(err)
	}
	without, err := e.c.InvokeQuery(ctx, "pf", url.Values{"boot": {"cold"}, "prefetch": {"false"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := with.Phases["readahead"]; !ok || with.Boot != "cold" {
		t.Errorf("cold boot: boot %s, phases %v: no readahead", with.Boot, with.Phases)
	}
	if _, ok := without.Phases["readahead"]; ok || without.Boot != "cold" {
		t.Errorf("cold boot with prefetch=false: boot %s, phases %v", without.Boot, without.Phases)
	}
}

// threadedPy starts a thread at import that keeps counting: a threaded
// Python template. The handler reports the threads, the counter when it
// was called ("at", at least the ticks of init: state kept), and how far
// it moved during the call ("ticked": the thread runs), and the distinct
// privileges its threads have ("privs": capabilities, seccomp mode,
// no_new_privs; one entry when every thread has the main thread's).
const threadedPy = `
import threading, time, os
count = [0]
def tick():
    while True:
        count[0] += 1
        time.sleep(0.005)
threading.Thread(target=tick, daemon=True, name="ticker").start()
time.sleep(0.05)
def privs(tid):
    keep = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp")
    with open("/proc/self/task/%s/status" % tid) as f:
        return " ".join(l.strip() for l in f if l.split(":")[0] in keep)
def handler(event, context):
    a = count[0]
    time.sleep(0.1)
    tids = os.listdir("/proc/self/task")
    return {"threads": len(tids), "ticked": count[0] - a, "at": a,
            "names": sorted(t.name for t in threading.enumerate()),
            "privs": sorted(set(privs(t) for t in tids))}
`

// TestForkThreadedPython: a Python function that started a thread at
// import boots with that thread re-created in each instance, by fork and
// by warm and cold restore of its checkpoint, and the thread runs there
// (its counter, kept from init, moves during each of two invocations),
// with the instance's privileges and no more, as the main thread; each
// mode answers as a scratch boot does.
func TestForkThreadedPython(t *testing.T) {
	e := newEnv(t, platform.Config{})
	e.deploy("thr", wire.DeployRequest{Runtime: "python", Handler: "main.handler", CodePath: writeCode(t, map[string]string{"main.py": threadedPy})})
	e.requireTemplate(t, "thr")
	type out struct {
		Threads int      `json:"threads"`
		Ticked  int      `json:"ticked"`
		At      int      `json:"at"`
		Names   []string `json:"names"`
		Privs   []string `json:"privs"`
	}
	invoke := func(mode string) out {
		t.Helper()
		inv, err := e.c.Invoke(context.Background(), "thr", mode, nil)
		if err != nil {
			t.Fatalf("boot=%s: %v", mode, err)
		}
		if inv.Boot != mode {
			t.Fatalf("boot=%s served by a %s instance", mode, inv.Boot)
		}
		var o out
		if err := json.Unmarshal(inv.Output, &o); err != nil {
			t.Fatal(err)
		}
		if o.Ticked < 3 || o.At < 3 {
			t.Errorf("boot=%s: %s, want a counter kept from init that moves", mode, inv.Output)
		}
		if len(o.Privs) != 1 {
			t.Errorf("boot=%s: threads with different privileges: %q", mode, o.Privs)
		}
		return o
	}
	scratch := invoke("scratch")
	if scratch.Threads != 2 || len(scratch.Names) != 2 {
		t.Fatalf("scratch: %+v, want 2 threads", scratch)
	}
	e.waitImage("thr")
	for _, m := range []string{"fork", "fork", "warm", "warm", "cold", "cold"} {
		if o := invoke(m); o.Threads != scratch.Threads || !slices.Equal(o.Names, scratch.Names) || !slices.Equal(o.Privs, scratch.Privs) {
			t.Errorf("boot=%s: %+v, want what scratch answered: %+v", m, o, scratch)
		}
	}
}
