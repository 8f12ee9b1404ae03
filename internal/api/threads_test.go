package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/catalyzer/catalyzer/internal/api/wire"
	"github.com/catalyzer/catalyzer/internal/platform"
	"github.com/catalyzer/catalyzer/internal/testutil"
)

// threadsJS is a Node function with what real ones do at init: crypto,
// fs and net loaded, a large heap, a ticker, randomness drawn (so that
// the caches of randomUUID and randomInt are filled in the template).
const threadsJS = `'use strict';
const crypto = require('crypto');
const fs = require('fs');
const net = require('net');
const cache = Buffer.alloc(32 << 20, 7);
let ticks = 0;
setInterval(() => ticks++, 2);
crypto.randomBytes(16); crypto.randomUUID(); crypto.randomInt(1000);
const self = fs.readFileSync(__filename, 'utf8').length;
function echo() {
  return new Promise((resolve) => {
    const srv = net.createServer(s => s.pipe(s));
    srv.on('error', e => resolve('error ' + e.code));
    srv.listen(0, '127.0.0.1', () => {
      let got = '';
      const c = net.connect(srv.address().port, '127.0.0.1', () => c.end('ping'));
      c.on('data', d => got += d);
      c.on('end', () => { srv.close(); resolve(got); });
      c.on('error', e => { srv.close(); resolve('error ' + e.code); });
    });
  });
}
exports.handler = async (event) => {
  const t0 = ticks;
  await new Promise(r => setTimeout(r, 30));
  return {
    ticking: ticks > t0, self, cache: cache[12345], net: await echo(),
    bytes: crypto.randomBytes(16).toString('hex'), uuid: crypto.randomUUID(),
    int: crypto.randomInt(2 ** 47), math: Math.random(),
    key: crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ type: 'spki', format: 'der' }).toString('hex'),
  };
};
`

// threadsPy is a Python function with threads alive at init: a ticker, a
// thread pool with its workers started, and numpy's OpenBLAS pool.
const threadsPy = `
import os, random, threading, time, uuid
from concurrent.futures import ThreadPoolExecutor
ticks = 0
def tick():
    global ticks
    while True:
        ticks += 1
        time.sleep(0.002)
threading.Thread(target=tick, daemon=True).start()
pool = ThreadPoolExecutor(max_workers=3)
list(pool.map(lambda x: x * x, range(30)))
try:
    import numpy
    a = numpy.random.rand(200, 200)
    float((a @ a).sum())
except ImportError:
    numpy = None
random.random()
def handler(event, context):
    t0 = ticks
    time.sleep(0.03)
    out = {"ticking": ticks > t0, "pool": sum(pool.map(lambda x: x * x, range(10))),
           "random": random.random(), "urandom": os.urandom(8).hex(), "uuid": str(uuid.uuid4())}
    if numpy is not None:
        b = numpy.arange(40000, dtype=float).reshape(200, 200)
        out["blas"] = float((b @ b).trace())
        out["np_random"] = float(numpy.random.rand())
    return out
`

// threadedFunction is one runtime's multi-threaded function and the
// fields of its answer that must differ in every instance.
type threadedFunction struct {
	name   string
	req    wire.DeployRequest
	random []string
}

func threadedFunctions(t *testing.T) []threadedFunction {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "gothreads")
	if out, err := exec.Command("go", "build", "-o", bin, "./testdata/gothreads").CombinedOutput(); err != nil {
		t.Fatalf("build the Go function: %v\n%s", err, out)
	}
	pyRandom := []string{"random", "urandom", "uuid"}
	if exec.Command("/usr/bin/python3", "-c", "import numpy").Run() != nil {
		testutil.Missing(t, "numpy for /usr/bin/python3 (python3-numpy; scripts/install-deps.sh)")
	} else {
		pyRandom = append(pyRandom, "np_random")
	}
	return []threadedFunction{
		{"node-threads", wire.DeployRequest{Runtime: "node", Handler: "main.handler", CodePath: writeCode(t, map[string]string{"main.js": threadsJS})},
			[]string{"bytes", "uuid", "int", "math", "key"}},
		{"go-threads", wire.DeployRequest{Runtime: "native", Handler: "gothreads", CodePath: filepath.Dir(bin)},
			[]string{"rand", "crypto"}},
		{"py-threads", wire.DeployRequest{Runtime: "python", Handler: "main.handler", CodePath: writeCode(t, map[string]string{"main.py": threadsPy})},
			pyRandom},
	}
}

// TestThreadedRuntimesBoot: Node, a Go function with a goroutine ticker
// and Python with a ticker thread, a thread pool and OpenBLAS boot by
// fork: their threads run after the boot, they answer as scratch does,
// and every random value differs across 100 instances.
func TestThreadedRuntimesBoot(t *testing.T) {
	testutil.RequiresRoot(t)
	e := newEnv(t, platform.Config{})
	n := 100
	if testing.Short() {
		n = 10
	}
	for _, f := range threadedFunctions(t) {
		t.Run(f.name, func(t *testing.T) {
			f.req.MaxInstances = 4
			e.deploy(f.name, f.req)
			if st := e.waitTemplate(f.name); st != "ready" {
				t.Fatalf("template: %s", st)
			}
			split := func(out []byte) (fixed string, random []string) {
				var m map[string]any
				if err := json.Unmarshal(out, &m); err != nil {
					t.Fatalf("output %s: %v", out, err)
				}
				for _, k := range f.random {
					v, ok := m[k]
					if !ok {
						t.Fatalf("output %s has no %q", out, k)
					}
					random = append(random, fmt.Sprint(v))
					delete(m, k)
				}
				return fmt.Sprint(m), random
			}
			ref, err := e.c.Invoke(context.Background(), f.name, "scratch", nil)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := split(ref.Output)
			if !strings.Contains(want, "ticking:true") {
				t.Fatalf("scratch: %s, want its ticker running", ref.Output)
			}
			for _, mode := range []string{"fork"} {
				seen := make([]map[string]bool, len(f.random))
				for i := range seen {
					seen[i] = map[string]bool{}
				}
				for i := range n {
					inv, err := e.c.Invoke(context.Background(), f.name, mode, nil)
					if err != nil {
						t.Fatalf("%s %d: %v", mode, i, err)
					}
					got, random := split(inv.Output)
					if inv.Boot != mode || got != want {
						t.Fatalf("%s %d (boot %s) answered %s, scratch %s", mode, i, inv.Boot, got, want)
					}
					for k, v := range random {
						if seen[k][v] {
							t.Fatalf("%s %d: %s %s repeats an earlier instance's", mode, i, f.random[k], v)
						}
						seen[k][v] = true
					}
				}
			}
		})
	}
}
