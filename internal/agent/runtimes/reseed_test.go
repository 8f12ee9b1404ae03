package runtimes_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/catalyzer/catalyzer/internal/agent/runtimes"
	"github.com/catalyzer/catalyzer/internal/testutil"
)

// TestReseedAddonRebuild rebuilds the Node agent's reseed addon from
// node/reseed.c and compares it with the committed (and embedded) bytes
// (run node/build.sh after editing it).
func TestReseedAddonRebuild(t *testing.T) {
	for _, tool := range []string{"gcc", "strip"} {
		if _, err := exec.LookPath(tool); err != nil {
			testutil.Missing(t, "needs %s to rebuild node/reseed.c", tool)
		}
	}
	out := filepath.Join(t.TempDir(), "reseed.node")
	if b, err := exec.Command("sh", "node/build.sh", out).CombinedOutput(); err != nil {
		t.Fatalf("build.sh: %v\n%s", err, b)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	committed, err := os.ReadFile("node/reseed_amd64.node")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, committed) {
		t.Fatalf("node/reseed.c builds to %d bytes that differ from node/reseed_amd64.node (%d bytes): run node/build.sh (different gcc? then check the disassembly and commit)", len(got), len(committed))
	}
	dir := t.TempDir()
	if err := runtimes.InstallAgents(dir); err != nil {
		t.Fatal(err)
	}
	if installed, err := os.ReadFile(filepath.Join(dir, runtimes.NodeReseedAddon)); err != nil || !bytes.Equal(installed, committed) {
		t.Fatalf("installed addon differs from node/reseed_amd64.node (%v): rebuild the daemon", err)
	}
}

// TestReseedAddonLoads loads the installed addon into node the way the
// agent does: RAND_seed must be found in the OpenSSL node runs with (its
// own exported copy, or libcrypto.so.3), reseed must feed it 48 bytes, and
// OpenSSL must still serve every kind of draw afterwards.
func TestReseedAddonLoads(t *testing.T) {
	needFile(t, runtimes.Node)
	dir := t.TempDir()
	if err := runtimes.InstallAgents(dir); err != nil {
		t.Fatal(err)
	}
	script := `
const crypto = require('crypto');
const m = { exports: {} };
process.dlopen(m, process.argv[1]);
const before = crypto.randomBytes(16).toString('hex');
const n = m.exports.reseed();
const after = crypto.randomBytes(16).toString('hex');
const key = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
console.log(JSON.stringify({ openssl: m.exports.openssl, n, before, after,
  uuid: crypto.randomUUID(), web: crypto.webcrypto.getRandomValues(new Uint8Array(8)).length,
  key: key.publicKey.asymmetricKeyType }));
`
	out, err := exec.Command(runtimes.Node, "-e", script, filepath.Join(dir, runtimes.NodeReseedAddon)).CombinedOutput()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, out)
	}
	s := string(out)
	if !strings.Contains(s, `"n":48`) || !strings.Contains(s, `"web":8`) || !strings.Contains(s, `"key":"ec"`) {
		t.Fatalf("addon load: %s", s)
	}
	if !strings.Contains(s, `"openssl":"`+runtimes.Node+`"`) && !strings.Contains(s, "libcrypto.so") {
		t.Fatalf("RAND_seed found in neither node nor libcrypto: %s", s)
	}
}

// TestJavaAgentRebuild rebuilds the Java agent from java/src with
// java/build.sh and compares it with the committed (and embedded)
// java/agent.jar (run java/build.sh, or make build, after editing it).
func TestJavaAgentRebuild(t *testing.T) {
	needFile(t, filepath.Join(filepath.Dir(runtimes.Java), "javac"))
	out := filepath.Join(t.TempDir(), "agent.jar")
	if b, err := exec.Command("sh", "java/build.sh", out).CombinedOutput(); err != nil {
		t.Fatalf("build.sh: %v\n%s", err, b)
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	committed, err := os.ReadFile("java/agent.jar")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, committed) {
		t.Fatalf("java/src builds to %d bytes that differ from java/agent.jar (%d bytes): run java/build.sh (another javac? then check and commit)", len(got), len(committed))
	}
	if !bytes.Equal(runtimes.Agent("java"), committed) {
		t.Fatal("the embedded agent.jar differs from java/agent.jar: rebuild the daemon")
	}
}
