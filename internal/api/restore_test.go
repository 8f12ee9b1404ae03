package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/catalyzer/catalyzer/internal/platform"
	"github.com/catalyzer/catalyzer/internal/testutil"
)

// TestRestoreIsolation: cold and warm boots restore the template's
// image into a sandbox with every isolation property of a scratch boot,
// the template's rootfs changes, its own layer and fresh entropy.
func TestRestoreIsolation(t *testing.T) {
	e := newEnv(t, platform.Config{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	code := writeCode(t, map[string]string{"main.py": isoPy})
	e.deploy("iso", platform.DeployRequest{Runtime: "python", Handler: "main.handler", CodePath: code, MemoryMB: 96})
	if st := e.waitImage("iso"); st != "ready" {
		t.Fatalf("image: %s", st)
	}
	const docker = "00000000a80425fb"
	host, _ := os.Hostname()
	seen := map[string]bool{}
	for i, mode := range []string{"warm", "cold", "warm", "cold"} {
		inv, err := e.c.Invoke(context.Background(), "iso", mode, []byte(fmt.Sprintf(`{"tag": "%d", "port": %d}`, i, port)))
		if err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		if inv.Boot != mode || inv.Reused || inv.BootUs <= 0 || inv.Phases["restore-plan"] <= 0 {
			t.Fatalf("%s headers: %+v", mode, inv)
		}
		var o isoOut
		if err := json.Unmarshal(inv.Output, &o); err != nil {
			t.Fatal(err)
		}
		if o.Pid != 1 || len(o.Pids) != 1 || o.Pids[0] != 1 {
			t.Errorf("%s %d: pid %d sees %v, want only itself as 1", mode, i, o.Pid, o.Pids)
		}
		if o.Connected || len(o.Ifaces) != 1 || o.Ifaces[0] != "lo" {
			t.Errorf("%s %d: network: connected=%v ifaces=%v", mode, i, o.Connected, o.Ifaces)
		}
		if o.CapEff != docker || o.CapPrm != docker || o.CapBnd != docker || o.Seccomp != "2" || o.NoNewPrivs != "1" || o.Unshare {
			t.Errorf("%s %d: security: eff=%s prm=%s bnd=%s seccomp=%s nnp=%s unshare=%v", mode, i, o.CapEff, o.CapPrm, o.CapBnd, o.Seccomp, o.NoNewPrivs, o.Unshare)
		}
		if o.Hostname == host || o.Kcore != "" {
			t.Errorf("%s %d: hostname %q, kcore %q", mode, i, o.Hostname, o.Kcore)
		}
		want := "x-" + strconv.Itoa(i) + ",x-" + strconv.Itoa(i)
		if strings.Join(o.Seen, ",") != want || o.WriteErr != "" || !o.InitFile {
			t.Errorf("%s %d: sees %v (write err %q, init file %v), want %s", mode, i, o.Seen, o.WriteErr, o.InitFile, want)
		}
		for _, v := range []string{fmt.Sprint(o.Random), o.Urandom, o.UUID} {
			if seen[v] {
				t.Errorf("%s %d repeats random output %s", mode, i, v)
			}
			seen[v] = true
		}
		limit, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/memory", e.parent, inv.Instance, "memory.limit_in_bytes"))
		if err == nil && strings.TrimSpace(string(limit)) != strconv.Itoa(96<<20) {
			t.Errorf("%s %d: memory limit %s", mode, i, limit)
		}
	}
}

// TestRestoreFidelity: instances restored from an image answer exactly
// as a scratch-booted one, over many invocations.
func TestRestoreFidelity(t *testing.T) {
	e := newEnv(t, platform.Config{})
	ex := examples(t)
	n := 1000
	if testing.Short() {
		n = 100
	}
	for _, c := range []struct{ name, runtime, handler, dir string }{
		{"py", "python", "main.handler", filepath.Join(ex, "python", "hello")},
		{"c", "native", "hello", filepath.Join(ex, "native-c")},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := os.Stat(filepath.Join(c.dir, c.handler)); c.runtime == "native" && err != nil {
				t.Skipf("example not built (make examples): %v", err)
			}
			e.deploy(c.name, platform.DeployRequest{Runtime: c.runtime, Handler: c.handler, CodePath: c.dir, MaxInstances: 4})
			if st := e.waitImage(c.name); st != "ready" {
				t.Fatalf("image: %s", st)
			}
			norm := func(b []byte) string {
				var m map[string]any
				if err := json.Unmarshal(b, &m); err != nil {
					t.Fatalf("output %s: %v", b, err)
				}
				delete(m, "invocation")
				delete(m, "remaining_ms")
				return fmt.Sprint(m)
			}
			ctx := context.Background()
			ref, err := e.c.Invoke(ctx, c.name, "scratch", []byte(`{"name":"f"}`))
			if err != nil {
				t.Fatal(err)
			}
			want := norm(ref.Output)
			for _, mode := range []string{"cold", "warm"} {
				inv, err := e.c.Invoke(ctx, c.name, mode, []byte(`{"name":"f"}`))
				if err != nil {
					t.Fatalf("%s: %v", mode, err)
				}
				if got := norm(inv.Output); got != want {
					t.Fatalf("%s boot answered %s, scratch %s", mode, got, want)
				}
			}
			// Many invocations of live restored instances (auto reuses
			// them; the most recent is the warm one).
			for i := 0; i < n; i++ {
				inv, err := e.c.Invoke(ctx, c.name, "", []byte(`{"name":"f"}`))
				if err != nil {
					t.Fatalf("invocation %d: %v", i, err)
				}
				if got := norm(inv.Output); got != want {
					t.Fatalf("invocation %d (%s, reused %v) answered %s, want %s", i, inv.Boot, inv.Reused, got, want)
				}
			}
		})
	}
}

// TestRestoreNoLeaks: restored instances, images' pools and layers leave
// nothing once the platform is closed (images stay on disk by design).
func TestRestoreNoLeaks(t *testing.T) {
	testutil.RequiresRoot(t)
	parent := fmt.Sprintf("catalyzer-test-rsleak-%d", os.Getpid())
	before := testutil.Take(t, parent)
	e := newEnv(t, platform.Config{CgroupParent: parent})
	e.deploy("hello", platform.DeployRequest{Runtime: "python", Handler: "main.handler", CodePath: filepath.Join(examples(t), "python", "hello")})
	e.waitImage("hello")
	for _, m := range []string{"warm", "cold", "warm"} {
		if _, err := e.c.Invoke(context.Background(), "hello", m, nil); err != nil {
			t.Fatal(err)
		}
	}
	e.srv.Close()
	e.p.Close()
	after := testutil.Take(t, parent)
	if after.Descendants != before.Descendants || after.Mounts != before.Mounts || after.Cgroups != before.Cgroups {
		t.Fatalf("leak: before %+v after %+v", before, after)
	}
}
