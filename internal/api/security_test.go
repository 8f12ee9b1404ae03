package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/catalyzer/catalyzer/internal/api"
	"github.com/catalyzer/catalyzer/internal/api/wire"
	"github.com/catalyzer/catalyzer/internal/client"
	"github.com/catalyzer/catalyzer/internal/platform"
)

// The attacks on the daemon's edge (issue 7, docs/SECURITY.md "API
// edge"): each is tried as a caller would, and must fail.

const helloPy = "def handler(event, context):\n    return {'ok': True}\n"

// TestAuthRequired is the attack "anyone who reaches the port drives the
// daemon": every route, without a token, with a wrong one of the right
// length, or with another scheme, is answered 401 with a message that says
// where the token is; nothing is deployed; only GET /healthz is open.
func TestAuthRequired(t *testing.T) {
	e := newEnv(t, platform.Config{})
	e.deploy("victim", wire.DeployRequest{Runtime: "python", Handler: "main.handler", CodeTgzB64: tgzOf(t, map[string]string{"main.py": helloPy}), Env: map[string]string{"SECRET": "s3cr3t"}})
	code, err := client.TarGzBase64(writeCode(t, map[string]string{"main.py": helloPy}))
	if err != nil {
		t.Fatal(err)
	}
	deployBody := `{"runtime": "python", "handler": "main.handler", "code_tgz_b64": "` + code + `"}`
	wrong := strings.Repeat("0", len(e.token))
	routes := []struct{ method, path, body string }{
		{"GET", "/v1/functions", ""},
		{"GET", "/v1/functions/victim", ""},
		{"PUT", "/v1/functions/evil", deployBody},
		{"PUT", "/v1/functions/victim", deployBody},
		{"DELETE", "/v1/functions/victim", ""},
		{"POST", "/v1/functions/victim/invoke", "{}"},
		{"GET", "/v1/functions/victim/instances", ""},
		{"DELETE", "/v1/functions/victim/instances", ""},
		{"POST", "/v1/functions/victim/fork-floor?n=1", "{}"},
		{"GET", "/metrics", ""},
		{"GET", "/no/such/route", ""},
		{"POST", "/healthz", ""},
	}
	for _, r := range routes {
		for _, auth := range []string{"", "Bearer " + wrong, "Bearer " + e.token[:len(e.token)-1], "Basic " + e.token, e.token, "Bearer"} {
			req, _ := http.NewRequest(r.method, e.srv.URL+r.path, strings.NewReader(r.body))
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			var eb wire.ErrorBody
			json.NewDecoder(resp.Body).Decode(&eb)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized || eb.Error.Type != "Unauthorized" || !strings.Contains(eb.Error.Message, filepath.Join(e.p.StateDir(), "api.token")) || resp.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s %s with Authorization %q: %d %+v, want 401 naming the token file", r.method, r.path, auth, resp.StatusCode, eb.Error)
			}
			if strings.Contains(eb.Error.Message, "s3cr3t") {
				t.Errorf("%s %s leaked the victim's env", r.method, r.path)
			}
		}
	}
	// The client without a token, or with a wrong one.
	for _, tok := range []string{"", wrong} {
		var ae *client.APIError
		if _, err := client.New(e.srv.URL, tok).List(context.Background()); !errors.As(err, &ae) || ae.Status != 401 {
			t.Errorf("client with token %q: %v, want 401", tok, err)
		}
	}
	// Nothing changed: the victim is still there, as it was; no "evil".
	fns, err := e.c.List(context.Background())
	if err != nil || len(fns) != 1 || fns[0].Name != "victim" {
		t.Fatalf("functions after the unauthenticated requests: %+v %v", fns, err)
	}
	// Liveness needs no token; everything else works with it.
	for _, m := range []string{http.MethodGet, http.MethodHead} {
		resp, err := e.raw(m, "/healthz", "", nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s /healthz without a token: %v %v", m, resp.Status, err)
		}
		resp.Body.Close()
	}
	resp, err := e.raw(http.MethodGet, "/metrics", e.token, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/metrics with the token: %v %v", resp.Status, err)
	}
	resp.Body.Close()
}

// TestTokenFile: made once, 0600, 64 hex digits, reused; a file that is
// not a token stops the daemon instead of being replaced.
func TestTokenFile(t *testing.T) {
	dir := t.TempDir()
	tok, err := api.LoadOrCreateToken(dir)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, wire.TokenFile))
	if err != nil || st.Mode().Perm() != 0o600 || len(tok) != 64 {
		t.Fatalf("token %q, file %v %v", tok, st.Mode(), err)
	}
	os.Chmod(filepath.Join(dir, wire.TokenFile), 0o644)
	again, err := api.LoadOrCreateToken(dir)
	if err != nil || again != tok {
		t.Fatalf("token not reused: %q %v", again, err)
	}
	if st, _ := os.Stat(filepath.Join(dir, wire.TokenFile)); st.Mode().Perm() != 0o600 {
		t.Errorf("a widened token file was not tightened: %v", st.Mode())
	}
	if other, _ := api.LoadOrCreateToken(t.TempDir()); other == tok {
		t.Errorf("two state dirs got the same token")
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("temp files left beside the token: %d entries", len(ents))
	}
	os.WriteFile(filepath.Join(dir, wire.TokenFile), []byte("guessable\n"), 0o600)
	if _, err := api.LoadOrCreateToken(dir); err == nil {
		t.Errorf("a file that is not a token was accepted")
	}
}

// TestHostNetworkRefused is the attack "a tenant takes the host's network
// (and this API on loopback)": refused with 403 unless the daemon allows
// it, also for a function deployed under a daemon that did allow it.
func TestHostNetworkRefused(t *testing.T) {
	state := t.TempDir()
	code := tgzOf(t, map[string]string{"main.py": helloPy})
	e := newEnv(t, platform.Config{StateDir: state})
	_, err := e.c.Deploy(context.Background(), "h", wire.DeployRequest{Runtime: "python", Handler: "main.handler", CodeTgzB64: code, Network: "host"})
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != 403 || ae.Type != "Forbidden" || !strings.Contains(ae.Message, "--allow-host-network") {
		t.Fatalf("deploy network host: %v, want 403 naming --allow-host-network", err)
	}
	if fns, _ := e.c.List(context.Background()); len(fns) != 0 {
		t.Fatalf("a refused deploy left %+v", fns)
	}
	e.srv.Close()
	e.p.Close()

	// An operator allows it...
	allow := newEnv(t, platform.Config{StateDir: state, AllowHostNet: true, NoTemplates: true})
	allow.deploy("h", wire.DeployRequest{Runtime: "python", Handler: "main.handler", CodeTgzB64: code, Network: "host"})
	allow.srv.Close()
	allow.p.Close()
	// ...and a daemon restarted without the flag does not run it.
	again := newEnv(t, platform.Config{StateDir: state})
	if _, err := again.c.Invoke(context.Background(), "h", "scratch", nil); !errors.As(err, &ae) || ae.Status != 403 {
		t.Fatalf("invoke of a host-network function under a daemon that refuses it: %v, want 403", err)
	}
}

// TestCodePathRefused is the attack "code_path hands a tenant other
// tenants' code (STATE/code) or memory (STATE/images)": refused by
// default (403, saying to upload or use --code-root), and refused (400)
// even under a code root that contains the state dir, by path or through
// a link.
func TestCodePathRefused(t *testing.T) {
	ctx := context.Background()
	def := newEnv(t, platform.Config{CodeRoots: []string{}})
	good := writeCode(t, map[string]string{"main.py": helloPy})
	_, err := def.c.Deploy(ctx, "f", wire.DeployRequest{Runtime: "python", Handler: "main.handler", CodePath: good})
	var ae *client.APIError
	if !errors.As(err, &ae) || ae.Status != 403 || !strings.Contains(ae.Message, "--code-root") || !strings.Contains(ae.Message, "upload") {
		t.Fatalf("code_path on a default daemon: %v, want 403 saying to upload or use --code-root", err)
	}

	// newEnv's code roots hold the temp dir, and so the state dir.
	e := newEnv(t, platform.Config{})
	e.deploy("victim", wire.DeployRequest{Runtime: "python", Handler: "main.handler", CodeTgzB64: tgzOf(t, map[string]string{"main.py": "SECRET = 'victim code'\n" + helloPy})})
	v, err := e.c.Get(ctx, "victim")
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "innocent")
	if err := os.Symlink(filepath.Join(e.state, "code"), link); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{
		filepath.Join(e.state, "code"),
		filepath.Join(e.state, "code", v.CodeDigest),
		filepath.Join(e.state, "images"),
		e.state,
		link,
		filepath.Join(e.state, "code", "..", "code"),
	} {
		_, err := e.c.Deploy(ctx, "thief", wire.DeployRequest{Runtime: "python", Handler: "main.handler", CodePath: p})
		if !errors.As(err, &ae) || ae.Status != 400 || !strings.Contains(ae.Message, "never") {
			t.Errorf("code_path %s: %v, want 400", p, err)
		}
	}
	if _, err := e.c.Get(ctx, "thief"); err == nil {
		t.Errorf("the thief was deployed")
	}
}

// tgzOf is a code_tgz_b64 of files.
func tgzOf(t *testing.T, files map[string]string) string {
	t.Helper()
	b64, err := client.TarGzBase64(writeCode(t, files))
	if err != nil {
		t.Fatal(err)
	}
	return b64
}
