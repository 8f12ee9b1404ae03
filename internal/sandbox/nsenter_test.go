package sandbox

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/catalyzer/catalyzer/internal/testutil"
)

// TestNsenterRebuild rebuilds nsenter from nsenter.c and compares it with
// the checked-in bytes (run nsenter/build.sh after editing it).
func TestNsenterRebuild(t *testing.T) {
	for _, tool := range []string{"gcc", "strip"} {
		if _, err := exec.LookPath(tool); err != nil {
			testutil.Missing(t, "needs %s to rebuild nsenter", tool)
		}
	}
	out := filepath.Join(t.TempDir(), "nsenter.elf")
	if b, err := exec.Command("sh", "nsenter/build.sh", out).CombinedOutput(); err != nil {
		t.Fatalf("build.sh: %v\n%s", err, b)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, nsenterELF) {
		t.Fatalf("nsenter.c builds to %d bytes that differ from nsenter_amd64.elf (%d bytes): run nsenter/build.sh (different gcc? then check the disassembly and commit)", len(got), len(nsenterELF))
	}
}

// TestNsenterRefusesBadArgs: nsenter exits with its step code, never
// execs anything, when its arguments are wrong.
func TestNsenterRefusesBadArgs(t *testing.T) {
	prog, err := nsenterProg()
	if err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"nsenter"}, {"nsenter", "x", "6", "0", "true"}, {"nsenter", "99", "98", "0", "true"}} {
		cmd := exec.Command(prog.path)
		cmd.Args = args
		err := cmd.Run()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() < 120 || ee.ExitCode() > 124 {
			t.Errorf("nsenter %q: %v, want an exit code 120-124", args, err)
		}
	}
}
