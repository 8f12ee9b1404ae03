package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/catalyzer/catalyzer/internal/api/wire"
	"github.com/catalyzer/catalyzer/internal/platform"
	"github.com/catalyzer/catalyzer/internal/testutil"
)

// leftoverPy is the audit's first attack: init leaves a process behind
// that holds the template's /proc/1/mem open (it may: same credentials,
// and the template is still dumpable during init), waiting to patch the
// executor page once the template is frozen, and to watch the forks
// nested in the template's PID namespace.
const leftoverPy = `
import os
pid = os.fork()
if pid == 0:
    os.execv("/usr/bin/python3", ["python3", "-c",
        "import os, time\n"
        "mem = os.open('/proc/1/mem', os.O_RDWR)\n"
        "while True:\n"
        "    time.sleep(0.01)\n"
        "    open('/tmp/leftover-alive', 'w').write(str(time.time()))\n",
        "catalyzer-leftover-attack"])
import time
for _ in range(500):
    try:
        open("/proc/%d/cmdline" % pid).read().index("catalyzer-leftover-attack")
        break
    except Exception:
        time.sleep(0.01)
def handler(event, context):
    pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    caps = [l.split()[1] for l in open("/proc/self/status") if l.startswith("CapEff")]
    return {"pids": pids, "uid_map": open("/proc/self/uid_map").read().split(), "cap_eff": caps[0]}
`

// TestTemplateLeftoverKilled: what a template's init leaves running is
// killed when the template is frozen (and counted), so no tenant code
// exists beside a frozen template while its batches run; its forks see
// only themselves, run as the function's unprivileged root, and hold
// Docker's capabilities only.
func TestTemplateLeftoverKilled(t *testing.T) {
	testutil.RequiresRoot(t)
	e := newEnv(t, platform.Config{})
	code := writeCode(t, map[string]string{"main.py": leftoverPy})
	e.deploy("left", wire.DeployRequest{Runtime: "python", Handler: "main.handler", CodePath: code})
	e.requireTemplate(t, "left")
	info, err := e.c.Instances(context.Background(), "left")
	if err != nil {
		t.Fatal(err)
	}
	if info.Template.KilledAtFreeze != 1 {
		t.Errorf("killed at freeze: %d, want the 1 process init left", info.Template.KilledAtFreeze)
	}
	if n := countCmdline(t, "catalyzer-leftover-attack"); n != 0 {
		t.Fatalf("%d leftover processes still alive after the template was frozen", n)
	}
	for range 3 {
		inv, err := e.c.Invoke(context.Background(), "left", "fork", nil)
		if err != nil {
			t.Fatal(err)
		}
		var o struct {
			Pids   []int    `json:"pids"`
			UIDMap []string `json:"uid_map"`
			CapEff string   `json:"cap_eff"`
		}
		if err := json.Unmarshal(inv.Output, &o); err != nil {
			t.Fatal(err)
		}
		if len(o.Pids) != 1 || o.Pids[0] != 1 {
			t.Errorf("fork instance sees pids %v, want only itself", o.Pids)
		}
		if len(o.UIDMap) != 3 || o.UIDMap[0] != "0" || o.UIDMap[1] == "0" {
			t.Errorf("fork instance uid_map %v, want root mapped to an unprivileged host uid", o.UIDMap)
		}
		if o.CapEff != "00000000a80425fb" {
			t.Errorf("fork instance CapEff %s, want Docker's set", o.CapEff)
		}
	}
	if n := countCmdline(t, "catalyzer-leftover-attack"); n != 0 {
		t.Fatalf("%d leftover processes alive after forks", n)
	}
}

// countCmdline counts live processes whose command line contains tag.
func countCmdline(t *testing.T, tag string) int {
	t.Helper()
	ms, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	n := 0
	for _, m := range ms {
		b, err := os.ReadFile(m)
		if err == nil && strings.Contains(string(b), tag) {
			n++
		}
	}
	return n
}

// TestForkRefusesSharedObjects: objects made at init that a fork would
// share with its siblings and that no fork can be given its own copy of
// (the audit's third path between tenants) are refused by name: fork
// answers 501 naming the object, and auto boots scratch, where the object
// is the instance's own.
func TestForkRefusesSharedObjects(t *testing.T) {
	testutil.RequiresRoot(t)
	e := newEnv(t, platform.Config{})
	inits := map[string]struct{ code, want string }{
		"memfd":  {"import os\nfd = os.memfd_create('tenant-state')\nos.write(fd, b'x')\n", "memfd:tenant-state"},
		"socket": {"import socket\nsock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)\nsock.bind(b'\\0tenant-inbox')\n", "socket:["},
	}
	for name, in := range inits {
		src := in.code + "import os\ndef handler(event, context):\n    return os.getpid()\n"
		e.deploy(name, wire.DeployRequest{Runtime: "python", Handler: "main.handler", CodePath: writeCode(t, map[string]string{"main.py": src})})
		st := e.waitTemplate(name)
		if !strings.Contains(st, "failed") || !strings.Contains(st, in.want) || !strings.Contains(st, "share") {
			t.Errorf("%s: template %q, want a refusal naming %q", name, st, in.want)
		}
		_, err := e.c.Invoke(context.Background(), name, "fork", nil)
		if !isStatus(err, 501) || !strings.Contains(err.Error(), in.want) {
			t.Errorf("%s: boot=fork: %v, want 501 naming %q", name, err, in.want)
		}
		// Warm and cold need a checkpoint of that template: the image says
		// why there is none, and they answer 501 too.
		if st := e.waitImage(name); !strings.Contains(st, "failed") || !strings.Contains(st, in.want) || strings.Contains(st, "\n") {
			t.Errorf("%s: image %q, want a one-line refusal naming %q", name, st, in.want)
		}
		for _, m := range []string{"warm", "cold"} {
			if _, err := e.c.Invoke(context.Background(), name, m, nil); !isStatus(err, 501) {
				t.Errorf("%s: boot=%s: %v, want 501", name, m, err)
			}
		}
		inv, err := e.c.Invoke(context.Background(), name, "", nil)
		if err != nil || inv.Boot != "scratch" {
			t.Errorf("%s: auto: %+v %v, want a scratch boot", name, inv, err)
		}
	}
}

// sharedPy makes, at init, the objects a fork would share with its
// siblings if it were not given its own copies: shared anonymous memory,
// a pipe and a socket pair holding bytes, an eventfd with a count, an
// epoll watching them.
// Each invocation reads them as it finds them, then writes its secret
// into each.
const sharedPy = `
import mmap, os, select, socket
shm = mmap.mmap(-1, 4096, mmap.MAP_SHARED)
shm[:4] = b"init"
r, w = os.pipe()
os.write(w, b"init")
os.set_blocking(r, False)
ev = os.eventfd(7, os.EFD_NONBLOCK)
ep = select.epoll()
ep.register(ev, select.EPOLLIN)
ep.register(r, select.EPOLLIN)
a, b = socket.socketpair()
a.send(b"init")
b.setblocking(False)
def handler(event, context):
    seen = {"shm": shm[:16].rstrip(b"\0").decode(), "ready": sorted(fd for fd, _ in ep.poll(0))}
    try:
        seen["pipe"] = os.read(r, 64).decode()
    except BlockingIOError:
        seen["pipe"] = ""
    try:
        seen["eventfd"] = os.eventfd_read(ev)
    except BlockingIOError:
        seen["eventfd"] = 0
    try:
        seen["socket"] = b.recv(64).decode()
    except BlockingIOError:
        seen["socket"] = ""
    secret = event["secret"].encode()
    shm[:16] = secret.ljust(16, b"\0")
    os.write(w, secret)
    a.send(secret)
    os.eventfd_write(ev, 1000)
    seen["fds"] = sorted([r, ev])
    return seen
`

// TestForkCopiesSharedObjects: what one fork writes into the objects its
// template made at init, no other fork reads: each fork finds the
// template's state (the attack would read the previous fork's secret).
func TestForkCopiesSharedObjects(t *testing.T) {
	testutil.RequiresRoot(t)
	e := newEnv(t, platform.Config{})
	e.deploy("shared", wire.DeployRequest{Runtime: "python", Handler: "main.handler", CodePath: writeCode(t, map[string]string{"main.py": sharedPy})})
	e.requireTemplate(t, "shared")
	seen := map[string]bool{}
	for i := range 4 {
		inv, err := e.c.Invoke(context.Background(), "shared", "fork", []byte(fmt.Sprintf(`{"secret":"secret-%d"}`, i)))
		if err != nil {
			t.Fatal(err)
		}
		if seen[inv.Instance] {
			t.Fatalf("fork %d reused instance %s", i, inv.Instance)
		}
		seen[inv.Instance] = true
		var o struct {
			Shm, Pipe, Socket string
			Eventfd           int
			Ready             []int
			FDs               []int `json:"fds"`
		}
		if err := json.Unmarshal(inv.Output, &o); err != nil {
			t.Fatal(err)
		}
		if o.Shm != "init" || o.Pipe != "init" || o.Socket != "init" || o.Eventfd != 7 || fmt.Sprint(o.Ready) != fmt.Sprint(o.FDs) {
			t.Errorf("fork %d found %s, want the template's state (shm, pipe and socket pair \"init\", eventfd 7, both ready), not another fork's secret", i, inv.Output)
		}
	}
}

// floorPy writes where a fork-floor child could reach the template: its
// root (the template's upper layer) and /tmp.
const floorPy = `
import os
def handler(event, context):
    if event.get("check"):
        return {"root": os.path.exists("/floor-marker"), "tmp": os.path.exists("/tmp/floor-marker")}
    errs = []
    for p in ("/floor-marker", "/tmp/floor-marker"):
        try:
            open(p, "w").write("floor")
        except OSError as e:
            errs.append(e.errno)
    caps = [l.split()[1] for l in open("/proc/self/status") if l.startswith("CapEff")]
    return {"errs": errs, "cap_eff": caps[0]}
`

// TestForkFloorCannotTouchTemplate: the fork-floor measurement runs the
// handler (tenant code) in forks of the template with no sandbox env:
// what it writes must reach neither the template's layer nor later
// forks (the audit's fourth item), and it holds Docker's capabilities.
func TestForkFloorCannotTouchTemplate(t *testing.T) {
	testutil.RequiresRoot(t)
	e := newEnv(t, platform.Config{})
	e.deploy("floor", wire.DeployRequest{Runtime: "python", Handler: "main.handler", CodePath: writeCode(t, map[string]string{"main.py": floorPy})})
	e.requireTemplate(t, "floor")
	samples, err := e.c.ForkFloor(context.Background(), "floor", []byte(`{}`), 3)
	if err != nil || len(samples) != 3 {
		t.Fatalf("fork floor: %v %v", samples, err)
	}
	ups, _ := filepath.Glob(filepath.Join("/run/catalyzer/sandbox", e.parent, "tpl-*", "upper", "floor-marker"))
	if len(ups) != 0 {
		t.Errorf("a fork-floor child wrote into the template's layer: %v", ups)
	}
	inv, err := e.c.Invoke(context.Background(), "floor", "fork", []byte(`{"check": true}`))
	if err != nil {
		t.Fatal(err)
	}
	var o struct{ Root, Tmp bool }
	if err := json.Unmarshal(inv.Output, &o); err != nil || o.Root || o.Tmp {
		t.Errorf("a fork instance sees what fork-floor children wrote: %s %v", inv.Output, err)
	}
}

const slowPy = `
import time
def handler(event, context):
    time.sleep(event.get("sleep", 0))
    return {"slept": event.get("sleep", 0), "v": VERSION}
`

// TestForkInstancesOutliveTemplate: a redeploy or a delete during a fork
// instance's invocation lets it finish (a fork instance dies with its
// template: its PID namespace is nested in the template's, so the
// template must outlive it), and the old template goes once it has.
func TestForkInstancesOutliveTemplate(t *testing.T) {
	testutil.RequiresRoot(t)
	e := newEnv(t, platform.Config{})
	deploy := func(v string) {
		e.deploy("slow", wire.DeployRequest{Runtime: "python", Handler: "main.handler",
			CodePath: writeCode(t, map[string]string{"main.py": "VERSION = " + v + "\n" + slowPy})})
		e.requireTemplate(t, "slow")
	}
	deploy("1")
	for _, change := range []string{"redeploy", "delete"} {
		done := make(chan error, 1)
		go func() {
			inv, err := e.c.Invoke(context.Background(), "slow", "fork", []byte(`{"sleep": 1}`))
			if err == nil && !strings.Contains(string(inv.Output), `"slept": 1`) {
				err = fmt.Errorf("output %s", inv.Output)
			}
			done <- err
		}()
		waitBusy(t, e, "slow")
		if change == "redeploy" {
			deploy("2")
		} else if err := e.c.Delete(context.Background(), "slow"); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Errorf("invocation during a %s: %v", change, err)
		}
		if change == "redeploy" {
			inv, err := e.c.Invoke(context.Background(), "slow", "fork", nil)
			if err != nil || !strings.Contains(string(inv.Output), `"v": 2`) {
				t.Errorf("after the redeploy: %s %v, want version 2", inv.Output, err)
			}
		}
	}
	// Both old templates are gone once their instances were (a loaded
	// 2-core machine took over 10 s once).
	deadline := time.Now().Add(30 * time.Second)
	for countTemplates(t, e.parent) != 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := countTemplates(t, e.parent); n != 0 {
		t.Errorf("%d templates left after delete", n)
	}
}

// waitBusy waits until function name has a busy instance.
func waitBusy(t *testing.T, e *env, name string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		v, err := e.c.Instances(context.Background(), name)
		if err == nil {
			for _, i := range v.Instances {
				if i.State == "busy" {
					return
				}
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no busy instance of %s", name)
}

// countTemplates counts the live template run dirs under parent.
func countTemplates(t *testing.T, parent string) int {
	ms, _ := filepath.Glob(filepath.Join("/run/catalyzer/sandbox", parent, "tpl-*"))
	return len(ms)
}

// TestTemplateMemoryNotLimited: once frozen, a template's cgroup has no
// memory limit: the kernel memory its forks take at clone is charged to
// it, and an OOM kill of the template (seen at 500 concurrent forks) ends
// every fork instance nested in its PID namespace. Its own memory cannot
// grow any more: it never runs again.
func TestTemplateMemoryNotLimited(t *testing.T) {
	testutil.RequiresRoot(t)
	e := newEnv(t, platform.Config{})
	e.deploy("mem", wire.DeployRequest{Runtime: "python", Handler: "main.handler", MemoryMB: 64,
		CodePath: writeCode(t, map[string]string{"main.py": "VERSION = 1\n" + slowPy})})
	e.requireTemplate(t, "mem")
	v, err := e.c.Instances(context.Background(), "mem")
	if err != nil {
		t.Fatal(err)
	}
	limit := memoryLimit(t, v.Template.Pid)
	if limit != "max" && limit != "9223372036854771712" {
		t.Errorf("template memory limit %q, want none", limit)
	}
	inv, err := e.c.Invoke(context.Background(), "mem", "fork", nil)
	if err != nil {
		t.Fatal(err)
	}
	v, _ = e.c.Instances(context.Background(), "mem")
	for _, i := range v.Instances {
		if i.ID == inv.Instance {
			if l := memoryLimit(t, i.Pid); l != strconv.Itoa(64<<20) {
				t.Errorf("fork instance memory limit %q, want the function's %d", l, 64<<20)
			}
		}
	}
}

// memoryLimit reads the memory limit of pid's cgroup.
func memoryLimit(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	_, err = os.Stat("/sys/fs/cgroup/cgroup.controllers")
	v2 := err == nil
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.SplitN(l, ":", 3)
		if len(f) == 3 && (v2 && f[0] == "0" || !v2 && strings.Contains(","+f[1]+",", ",memory,")) {
			return testutil.MemoryLimit(t, f[2])
		}
	}
	t.Fatalf("no memory cgroup for %d:\n%s", pid, b)
	return ""
}

// TestImageLayerChargedToItsCgroup: the tmpfs copy of an image's rootfs
// layer (what init wrote under /) is charged to a cgroup of its own,
// bounded by its size, not to the daemon's memory.
func TestImageLayerChargedToItsCgroup(t *testing.T) {
	testutil.RequiresRoot(t)
	e := newEnv(t, platform.Config{})
	src := "open('/big', 'wb').write(b'x' * (4 << 20))\ndef handler(event, context):\n    return 1\n"
	e.deploy("big", wire.DeployRequest{Runtime: "python", Handler: "main.handler", CodePath: writeCode(t, map[string]string{"main.py": src})})
	e.requireImage(t, "big")
	stats, _ := filepath.Glob(testutil.CgroupFile(filepath.Join(e.parent, "layer-*"), "memory", "memory.stat", "memory.stat"))
	if len(stats) != 1 {
		t.Fatalf("layer cgroups: %v, want one", stats)
	}
	b, err := os.ReadFile(stats[0])
	if err != nil {
		t.Fatal(err)
	}
	var shmem int64
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "shmem" {
			shmem, _ = strconv.ParseInt(f[1], 10, 64)
		}
	}
	if shmem < 4<<20 {
		t.Errorf("layer cgroup holds %d bytes of tmpfs, want the layer's 4 MiB:\n%s", shmem, b)
	}
	if _, err := e.c.Invoke(context.Background(), "big", "warm", nil); err != nil {
		t.Fatal(err)
	}
}

// TestHostNetworkEveryBootMode: a function allowed the host's network
// (serve --allow-host-network) boots in every mode, each instance in the
// host's network namespace, still in the function's user namespace.
func TestHostNetworkEveryBootMode(t *testing.T) {
	testutil.RequiresRoot(t)
	e := newEnv(t, platform.Config{AllowHostNet: true})
	src := "import os\ndef handler(event, context):\n    return {'net': os.readlink('/proc/self/ns/net'), 'uid_map': open('/proc/self/uid_map').read().split()}\n"
	e.deploy("hn", wire.DeployRequest{Runtime: "python", Handler: "main.handler", Network: "host",
		CodePath: writeCode(t, map[string]string{"main.py": src})})
	e.requireImage(t, "hn")
	hostNet, _ := os.Readlink("/proc/self/ns/net")
	for _, mode := range []string{"scratch", "fork", "warm", "cold"} {
		inv, err := e.c.Invoke(context.Background(), "hn", mode, nil)
		if err != nil {
			t.Errorf("%s: %v", mode, err)
			continue
		}
		var o struct {
			Net    string   `json:"net"`
			UIDMap []string `json:"uid_map"`
		}
		json.Unmarshal(inv.Output, &o)
		if o.Net != hostNet || len(o.UIDMap) != 3 || o.UIDMap[1] == "0" {
			t.Errorf("%s: net %s (host %s), uid_map %v", mode, o.Net, hostNet, o.UIDMap)
		}
	}
}

// threadCapsPy starts threads at init, while the template still holds
// CAP_SYS_ADMIN in its permitted set (for its forks' join); each fork
// re-creates them. Every thread reports its own credentials.
const threadCapsPy = `
import os, threading, time
def park():
    while True:
        time.sleep(1)
for _ in range(3):
    threading.Thread(target=park, daemon=True).start()
def handler(event, context):
    out = {}
    for tid in sorted(os.listdir("/proc/self/task")):
        st = {}
        for line in open("/proc/self/task/%s/status" % tid):
            k, _, v = line.partition(":")
            st[k] = v.strip()
        out[tid] = [st["CapInh"], st["CapPrm"], st["CapEff"], st["CapBnd"], st["CapAmb"], st["Seccomp"], st["NoNewPrivs"]]
    return out
`

// TestForkThreadsDropCapabilities: capabilities, seccomp and no_new_privs
// are per thread in Linux. Each re-created thread of a fork or a restore
// must end with the instance's set, not the template's: a thread left with
// CAP_SYS_ADMIN would let the tenant's code mount and unshare at will.
func TestForkThreadsDropCapabilities(t *testing.T) {
	testutil.RequiresRoot(t)
	e := newEnv(t, platform.Config{})
	e.deploy("tcaps", wire.DeployRequest{Runtime: "python", Handler: "main.handler", CodePath: writeCode(t, map[string]string{"main.py": threadCapsPy})})
	e.requireTemplate(t, "tcaps")
	const docker = "00000000a80425fb"
	want := []string{"0000000000000000", docker, docker, docker, "0000000000000000", "2", "1"}
	e.requireImage(t, "tcaps")
	for _, mode := range []string{"scratch", "fork", "warm", "cold"} {
		inv, err := e.c.Invoke(context.Background(), "tcaps", mode, nil)
		if err != nil {
			t.Fatal(err)
		}
		var threads map[string][]string
		if err := json.Unmarshal(inv.Output, &threads); err != nil {
			t.Fatal(err)
		}
		if len(threads) != 4 {
			t.Errorf("%s: %d threads, want 4: %s", mode, len(threads), inv.Output)
		}
		for tid, got := range threads {
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("%s: thread %s has CapInh/Prm/Eff/Bnd/Amb, Seccomp, NoNewPrivs %v, want %v", mode, tid, got, want)
			}
		}
	}
}
