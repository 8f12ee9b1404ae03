package sandbox

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDefaultRootShowsNoSecrets builds the default root from a fake host
// and checks what its /etc keeps and drops, and which system dirs become
// binds or symlinks.
func TestDefaultRootShowsNoSecrets(t *testing.T) {
	requireRoot(t) // builds under RunDir
	host := t.TempDir()
	write := func(p, content string, mode os.FileMode) {
		t.Helper()
		full := filepath.Join(host, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(full, mode); err != nil {
			t.Fatal(err)
		}
	}
	write("etc/ld.so.cache", "cache", 0o644)
	write("etc/ssl/certs/ca.pem", "cert", 0o644)
	write("etc/ssl/private/key.pem", "key", 0o644) // even world-readable
	write("etc/shadow", "root:$6$secret", 0o640)
	write("etc/gshadow", "x", 0o644)
	write("etc/ssh/ssh_host_ed25519_key.pub", "pub", 0o644)
	write("etc/passwd", "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n", 0o644)
	write("etc/passwd-", "backup", 0o644)
	write("etc/app/secret.conf", "token", 0o600)
	write("etc/closed/inside.conf", "x", 0o644)
	os.Chmod(filepath.Join(host, "etc/closed"), 0o700)
	write("usr/bin/true", "", 0o755)
	os.Symlink("usr/bin", filepath.Join(host, "bin"))
	os.Symlink("/usr/share/zoneinfo/UTC", filepath.Join(host, "etc/localtime"))

	def, err := buildDefaultRoot(host)
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(def.dir)
	for _, p := range []string{"etc/ld.so.cache", "etc/ssl/certs/ca.pem", "etc/passwd", "etc/group", "etc/hosts", "proc", "tmp", "var/tmp"} {
		if _, err := os.Lstat(filepath.Join(def.dir, p)); err != nil {
			t.Errorf("%s missing: %v", p, err)
		}
	}
	for _, p := range []string{"etc/shadow", "etc/gshadow", "etc/ssh", "etc/ssl/private", "etc/passwd-", "etc/app/secret.conf", "etc/closed", "home", "var/lib"} {
		if _, err := os.Lstat(filepath.Join(def.dir, p)); err == nil {
			t.Errorf("%s is shown", p)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(def.dir, "etc/passwd")); strings.Contains(string(b), "alice") {
		t.Errorf("host users in /etc/passwd: %s", b)
	}
	if l, err := os.Readlink(filepath.Join(def.dir, "etc/localtime")); err != nil || l != "/usr/share/zoneinfo/UTC" {
		t.Errorf("etc/localtime: %q %v", l, err)
	}
	if l, err := os.Readlink(filepath.Join(def.dir, "bin")); err != nil || l != "usr/bin" {
		t.Errorf("bin: %q %v, want the host's symlink", l, err)
	}
	if len(def.binds) != 1 || def.binds[0].Target != "/usr" || def.binds[0].Writable {
		t.Errorf("binds %+v, want /usr read-only", def.binds)
	}
}
