#!/usr/bin/env bash
# make demo: start the daemon on embedded defaults (a throw-away state dir,
# the host's / as every instance's read-only root), deploy the bundled
# examples, invoke each, print a latency table, stop — leaving nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$PWD/bin/catalyzer
[ "$(id -u)" = 0 ] || { echo "make demo needs root (namespaces, mounts, cgroups)" >&2; exit 1; }

state=$(mktemp -d /tmp/catalyzer-demo.XXXXXX)
port=$(( 20000 + RANDOM % 20000 ))
addr=127.0.0.1:$port
export CATALYZER_ADDR=$addr
log=$state/daemon.log
"$BIN" serve --state-dir "$state/state" --listen "$addr" --cgroup-parent catalyzer-demo >"$log" 2>&1 &
daemon=$!
cleanup() {
  kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null || true
  rm -rf "$state"
}
trap cleanup EXIT
for _ in $(seq 100); do
  "$BIN" fn ls >/dev/null 2>&1 && break
  kill -0 "$daemon" 2>/dev/null || { cat "$log"; exit 1; }
  sleep 0.1
done

echo "== deploy"
"$BIN" fn deploy hello-python --runtime python --handler main.handler --code examples/python/hello
"$BIN" fn deploy hello-node   --runtime node   --handler main.handler --code examples/node/hello
"$BIN" fn deploy hello-native --runtime native --handler hello        --code examples/native/hello
"$BIN" fn deploy hello-c      --runtime native --handler hello        --code examples/native-c
"$BIN" fn ls

echo; echo "== invoke (a scratch boot, then a reuse of the live instance)"
for f in hello-python hello-node hello-native hello-c; do
  printf '%-13s ' "$f"; "$BIN" fn invoke "$f" --boot scratch --data '{"name":"demo"}'
  printf '%-13s ' "$f"; "$BIN" fn invoke "$f" --data '{"name":"again"}'
done

echo; echo "== boot latency, scratch boot, 20 boots each (µs; this VM is slow at fork and page faults, compare ratios)"
printf '%-13s %10s %10s %10s %10s %12s %8s\n' function accept_p50 accept_p99 entry_p50 entry_p99 direct_p50 ratio
for f in hello-python hello-node hello-native hello-c; do
  "$BIN" bench --function "$f" --boot scratch -n 20 --baselines direct --json >"$state/$f.json"
  /usr/bin/python3 - "$state/$f.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
d = r.get("baselines", {}).get("direct", 0)
print(f'{r["function"]:<13} {r["p50_us"]:>10} {r["p99_us"]:>10} {r["start_to_entry"]["p50_us"]:>10} {r["start_to_entry"]["p99_us"]:>10} {d:>12} {d / max(r["start_to_entry"]["p50_us"], 1):>7.2f}x')
PY
done
echo "(ratio = unsandboxed fork+exec p50 / our start-to-entry p50)"
