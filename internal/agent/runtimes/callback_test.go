package runtimes_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/catalyzer/catalyzer/internal/agent"
	"github.com/catalyzer/catalyzer/internal/agent/runtimes"
)

// Node handlers in Lambda's callback style (a third parameter), and ones
// that draw from every OpenSSL-backed source a clone must reseed.
const nodeCallbackCode = `'use strict';
const crypto = require('crypto');
exports.sync = (event, context, callback) => { callback(null, { got: event }); };
exports.timer = (event, context, callback) => { setTimeout(() => callback(null, 'later'), 10); };
exports.fail = (event, context, callback) => { callback(new TypeError('bad callback')); };
exports.failString = (event, context, callback) => { callback('plain'); };
exports.twice = (event, context, callback) => {
  callback(null, 1);
  callback(null, 2);
  callback(new Error('ignored'));
  setTimeout(() => callback(null, 3), 5);
};
exports.throws = (event, context, callback) => { throw new RangeError('before the callback'); };
exports.promiseFirst = async (event, context, callback) => { setTimeout(() => callback(null, 'callback'), 20); return 'promise'; };
exports.callbackFirst = (event, context, callback) => { callback(null, 'callback'); return Promise.resolve('promise'); };
exports.asyncTwo = async (event, context) => { await new Promise((r) => setTimeout(r, 5)); return context.invocationId; };
exports.draw = (event, context, callback) => {
  crypto.randomInt(1000, (err, n) => callback(err, {
    bytes: crypto.randomBytes(16).toString('hex'),
    uuid: crypto.randomUUID(),
    web: crypto.webcrypto.randomUUID(),
    values: Buffer.from(crypto.webcrypto.getRandomValues(new Uint8Array(8))).toString('hex'),
    int: crypto.randomInt(10, 20),
    asyncInt: n,
    math: Math.random(),
  }));
};
`

func nodeCallbackInit(t *testing.T, handler string) *instance {
	t.Helper()
	in, _, err := initHandler(t, "node", writeCode(t, map[string]string{"main.js": nodeCallbackCode}), handler, 0)
	if err != nil {
		t.Fatalf("init %s: %v", handler, err)
	}
	return in
}

func TestNodeCallbackHandlers(t *testing.T) {
	ok := []struct{ handler, event, want string }{
		{"main.sync", `{"a":1}`, `{"got":{"a":1}}`},
		{"main.timer", `{}`, `"later"`},
		{"main.twice", `{}`, `1`},
		{"main.promiseFirst", `{}`, `"promise"`},
		{"main.callbackFirst", `{}`, `"callback"`},
		{"main.asyncTwo", `{}`, `"i1"`}, // two declared parameters: no callback
	}
	for _, tc := range ok {
		t.Run(tc.handler, func(t *testing.T) {
			in := nodeCallbackInit(t, tc.handler)
			for i := 0; i < 2; i++ { // a late or second callback does not leak into the next call
				res, err := in.conn.Invoke(ctx(t), agent.Invoke{ID: "i1", Event: json.RawMessage(tc.event)})
				if err != nil || string(res.Output) != tc.want || len(res.Logs) != 0 {
					t.Fatalf("invoke %d: %s %v logs %+v, want %s", i, res.Output, err, res.Logs, tc.want)
				}
			}
			if code := in.exit(); code != 0 || in.stdout.Len() != 0 || in.stderr.Len() != 0 {
				t.Fatalf("exit %d, leaked %q %q", code, in.stdout.String(), in.stderr.String())
			}
		})
	}
	failing := []struct{ handler, typ, message string }{
		{"main.fail", "TypeError", "bad callback"},
		{"main.failString", "string", "plain"},
		{"main.throws", "RangeError", "before the callback"},
	}
	for _, tc := range failing {
		t.Run(tc.handler, func(t *testing.T) {
			in := nodeCallbackInit(t, tc.handler)
			_, err := in.conn.Invoke(ctx(t), agent.Invoke{ID: "e"})
			var fe *agent.FunctionError
			if !errors.As(err, &fe) || fe.Type != tc.typ || fe.Message != tc.message {
				t.Fatalf("invoke: %#v, want a %s %q", err, tc.typ, tc.message)
			}
			if tc.typ != "string" && !strings.Contains(fe.Trace, "main.js") {
				t.Fatalf("trace %q does not name the handler's file", fe.Trace)
			}
		})
	}
}

var (
	hex32   = regexp.MustCompile(`^[0-9a-f]{32}$`)
	uuid4RE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)
)

type nodeDraw struct {
	Bytes, UUID, Web, Values string
	Int, AsyncInt            int
	Math                     float64
}

func draw(t *testing.T, in *instance) nodeDraw {
	t.Helper()
	res, err := in.conn.Invoke(ctx(t), agent.Invoke{ID: "d"})
	if err != nil {
		t.Fatal(err)
	}
	var d nodeDraw
	if err := json.Unmarshal(res.Output, &d); err != nil || !hex32.MatchString(d.Bytes) || !uuid4RE.MatchString(d.UUID) ||
		!uuid4RE.MatchString(d.Web) || len(d.Values) != 16 || d.Int < 10 || d.Int >= 20 || d.AsyncInt < 0 || d.AsyncInt >= 1000 || d.Math < 0 || d.Math >= 1 {
		t.Fatalf("draw: %s %v", res.Output, err)
	}
	return d
}

// TestNodeForkedCrypto: after forked (OpenSSL reseeded, the UUID and
// randomInt caches marked for draining) every OpenSSL-backed source still
// works, the drained caches included, and repeatedly. That clones of one
// template draw apart needs a real fork boot: see the boot tests.
func TestNodeForkedCrypto(t *testing.T) {
	in := nodeCallbackInit(t, "main.draw")
	seen := map[string]bool{}
	for i := 0; i < 3; i++ {
		d := draw(t, in) // fills the caches, as a template's init may
		if r, err := in.conn.Forked(ctx(t)); err != nil || r.PID != in.cmd.Process.Pid {
			t.Fatalf("forked: %+v %v", r, err)
		}
		e := draw(t, in)
		for _, v := range []string{d.Bytes, d.UUID, d.Web, e.Bytes, e.UUID, e.Web} {
			if seen[v] {
				t.Fatalf("%s drawn twice", v)
			}
			seen[v] = true
		}
	}
	if code := in.exit(); code != 0 || in.stderr.Len() != 0 {
		t.Fatalf("exit %d, stderr %q", code, in.stderr.String())
	}
}

// TestNodeForkedWithoutAddon: a Node agent that could not load its reseed
// addon refuses forked (a clone that shares its template's OpenSSL state
// must not serve) but serves as a scratch instance.
func TestNodeForkedWithoutAddon(t *testing.T) {
	needFile(t, runtimes.Node)
	agentDir := t.TempDir()
	if err := runtimes.InstallAgents(agentDir); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(agentDir, runtimes.NodeReseedAddon)); err != nil {
		t.Fatal(err)
	}
	r, _ := runtimes.Lookup("node")
	codeDir := writeCode(t, map[string]string{"main.js": nodeCallbackCode})
	in := startArgv(t, r.Command(codeDir, agentDir, "main.sync"))
	if _, err := in.conn.Init(ctx(t), agent.Init{Function: "f", Runtime: "node", Handler: "main.sync", CodeDir: codeDir}); err != nil {
		t.Fatal(err)
	}
	if res, err := in.conn.Invoke(ctx(t), agent.Invoke{ID: "1"}); err != nil || string(res.Output) != `{"got":null}` {
		t.Fatalf("invoke: %s %v", res.Output, err)
	}
	_, err := in.conn.Forked(ctx(t))
	var fe *agent.FunctionError
	if !errors.As(err, &fe) || fe.Type != "ReseedError" || !strings.Contains(fe.Message, runtimes.NodeReseedAddon) {
		t.Fatalf("forked without the addon: %v, want a ReseedError naming it", err)
	}
}

// TestPythonForkedOpenSSL: where OpenSSL is loaded (here only through
// hashlib, so the agent imports _ssl at init, off the fork path) forked
// feeds it 32 bytes with RAND_add; where it is not, forked loads nothing.
func TestPythonForkedOpenSSL(t *testing.T) {
	code := map[string]string{
		"withssl.py": `import hashlib, sys
calls = []
def handler(event, context):
    ssl = sys.modules.get("_ssl")  # the agent's import, at init
    if ssl is None:
        return "_ssl not imported at init"
    if ssl.RAND_add.__name__ != "recording":
        rand_add = ssl.RAND_add
        def recording(b, entropy):
            calls.append([len(b), entropy])
            rand_add(b, entropy)
        ssl.RAND_add = recording
    return calls
`,
		"nossl.py": `import sys
def handler(event, context): return "_ssl" in sys.modules or "_hashlib" in sys.modules
`,
	}
	cases := []struct{ handler, before, after string }{
		{"withssl.handler", `[]`, `[[32, 32.0]]`},
		{"nossl.handler", `false`, `false`},
	}
	for _, tc := range cases {
		t.Run(tc.handler, func(t *testing.T) {
			in, _, err := initHandler(t, "python", writeCode(t, code), tc.handler, 0)
			if err != nil {
				t.Fatal(err)
			}
			for i, want := range []string{tc.before, tc.after} {
				if i == 1 {
					if _, err := in.conn.Forked(ctx(t)); err != nil {
						t.Fatal(err)
					}
				}
				res, err := in.conn.Invoke(ctx(t), agent.Invoke{ID: "r"})
				if err != nil || string(res.Output) != want {
					t.Fatalf("invoke %d: %s %v, want %s", i, res.Output, err, want)
				}
			}
		})
	}
}
