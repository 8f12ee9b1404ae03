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
# The client verbs find the daemon's API token (api.token, written by serve
# at first start) in its state dir.
export CATALYZER_STATE_DIR=$state/state
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
"$BIN" fn deploy hello-java   --runtime java   --handler example.Hello::handler --code examples/java/hello/fn
"$BIN" fn ls

echo; echo "== invoke (a scratch boot, then a reuse of the live instance)"
for f in hello-python hello-node hello-native hello-c hello-java; do
  printf '%-13s ' "$f"; "$BIN" fn invoke "$f" --boot scratch --data '{"name":"demo"}'
  printf '%-13s ' "$f"; "$BIN" fn invoke "$f" --data '{"name":"again"}'
done

echo; echo "== waiting for fork templates and checkpoint images (built in the background after deploy)"
for f in hello-python hello-node hello-native hello-c hello-java; do
  for _ in $(seq 300); do
    st=$("$BIN" fn show "$f" | sed -n 's/.*"image": *"\(.*\)",*$/\1/p')
    case "$st" in building|none|"") sleep 0.1;; *) break;; esac
  done
  printf '%-13s template: %s\n%-13s image:    %s\n' "$f" "$("$BIN" fn show "$f" | sed -n 's/.*"template": *"\(.*\)",*$/\1/p' | cut -c1-90)" "" "$(echo "$st" | cut -c1-90)"
done

echo; echo "== boot latency per boot mode, 20 fresh boots each (µs, p50 / p99 of boot start to handler entry)"
echo "   (this VM is slow at fork and page faults: compare ratios; cold evicts the image from the page cache before each boot)"
printf '%-13s %15s %15s %15s %15s %12s\n' function scratch fork warm cold direct-exec
for f in hello-python hello-node hello-native hello-c hello-java; do
  row=$(printf '%-13s' "$f")
  for m in scratch fork warm cold; do
    if "$BIN" bench --function "$f" --boot "$m" -n 20 --baselines none --json >"$state/$f-$m.json" 2>/dev/null; then
      row+=$(/usr/bin/python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); e=r["start_to_entry"]; print("%15s" % ("%d / %d" % (e["p50_us"], e["p99_us"])))' "$state/$f-$m.json")
    else
      row+=$(printf '%15s' "n/a")
    fi
  done
  d=$("$BIN" bench --function "$f" --boot scratch -n 5 --baselines direct --json 2>/dev/null | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["baselines"].get("direct", 0))' 2>/dev/null || echo n/a)
  printf '%s %12s\n' "$row" "$d"
done
echo "(n/a: node and Go runtimes are multi-threaded; fork and checkpoint refuse them for now)"
