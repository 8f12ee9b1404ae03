package sfork

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/ptrace"
	"github.com/catalyzer/catalyzer/internal/testutil"
)

// TestForkNode: Node.js, as a plain process that knows nothing of us: 7
// threads, libuv's epolls, eventfds and signal pipes, and a V8 heap marked
// MADV_DONTFORK. Each fork answers on its own stdin through libuv, with a
// timer that keeps running, and the forks' loops are their own.
func TestForkNode(t *testing.T) {
	testutil.RequiresRoot(t)
	if _, err := os.Stat("/usr/bin/node"); err != nil {
		testutil.Missing(t, "/usr/bin/node")
	}
	dir := t.TempDir()
	js := filepath.Join(dir, "echo.js")
	os.WriteFile(js, []byte(`let ticks = 0;
setInterval(() => ticks++, 5);
// Answer once the timer has ticked: a fork whose timers do not run
// never answers.
process.stdin.on('data', d => {
  const t0 = ticks;
  const reply = () => ticks > t0 ? process.stdout.write('echo ' + String(d).trim() + ' ticking\n') : setTimeout(reply, 1);
  reply();
});
console.log('ready');
`), 0o644)
	// bash, not sh: close whatever the test's environment leaked beyond
	// the fork channel (fd 3), which the template would be refused for.
	sh := filepath.Join(dir, "node.sh")
	os.WriteFile(sh, []byte("#!/bin/bash\nfor f in /proc/self/fd/*; do n=${f##*/}; [ \"$n\" -gt 3 ] && eval \"exec $n>&-\"; done 2>/dev/null\nexec env UV_USE_IO_URING=0 /usr/bin/node "+js+"\n"), 0o755)
	v := startVictim(t, sh)
	if line, _ := v.out.ReadString('\n'); line != "ready\n" {
		t.Fatalf("node said %q", line)
	}
	tr := ptrace.NewTracer()
	defer tr.Close()
	tpl, err := FreezeWith(tr, v.cmd.Process.Pid, v.conn, 3, FreezeOptions{Threads: true, CopyObjects: true, Skip: []int{0, 1, 2, 3}})
	if err != nil {
		t.Fatal(err)
	}
	defer tpl.Close()
	t.Logf("template: %d threads, objects %s", len(tpl.states)+1, tpl.Objects().Summary())
	var ios []forkedIO
	for range 2 {
		f, io := forkOne(t, tpl)
		defer unix.Kill(f.Pid, unix.SIGKILL)
		t.Logf("fork phases %v", f.Phases)
		ios = append(ios, io)
	}
	for i, io := range ios {
		word := []string{"alpha", "beta"}[i]
		io.in.Write([]byte(word + "\n"))
		got, err := io.out.ReadString('\n')
		if want := "echo " + word + " ticking\n"; err != nil || got != want {
			t.Fatalf("fork %d said %q, %v; want %q", i, got, err, want)
		}
	}
}
