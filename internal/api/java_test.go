package api_test

import (
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/catalyzer/catalyzer/internal/agent/runtimes"
	"github.com/catalyzer/catalyzer/internal/api/wire"
	"github.com/catalyzer/catalyzer/internal/platform"
	"github.com/catalyzer/catalyzer/internal/testutil"
)

// javaFunction compiles examples/java/heavy, a Java function with what
// real ones do at init: a table built at class init, a few hundred JDK
// classes loaded through streams, lambdas, regex, java.time and text
// formatting, a daemon ticker thread, and every kind of generator drawn
// once (so each is seeded in the template). It needs nothing but the
// JDK.
func javaFunction(t *testing.T) string {
	t.Helper()
	javac := filepath.Join(filepath.Dir(runtimes.Java), "javac")
	if err := exec.Command(javac, "-version").Run(); err != nil {
		testutil.Missing(t, "%s: %v (openjdk-17-jdk-headless; scripts/install-deps.sh)", javac, err)
	}
	src := filepath.Join(examples(t), "java", "heavy", "src", "fn", "Heavy.java")
	out := t.TempDir()
	if b, err := exec.Command(javac, "--release", "17", "-d", out, src).CombinedOutput(); err != nil {
		t.Fatalf("javac: %v\n%s", err, b)
	}
	return out
}

// TestJavaBoot: a Java function with a heavy static init and a ticker
// thread boots by fork, warm and cold restore: its thread runs after the boot, it answers as
// scratch does, and its ThreadLocalRandom, Math.random, UUID and
// SecureRandom values differ across 100 instances.
func TestJavaBoot(t *testing.T) {
	testutil.RequiresRoot(t)
	code := javaFunction(t)
	e := newEnv(t, platform.Config{})
	n := 100
	if testing.Short() {
		n = 10
	}
	checkThreadedBoots(t, e, threadedFunction{"java-heavy",
		wire.DeployRequest{Runtime: "java", Handler: "fn.Heavy::handle", CodePath: code, MaxInstances: 4, MemoryMB: 256},
		[]string{"tlr", "math", "uuid", "secure"}}, n)
}
