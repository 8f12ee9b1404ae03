#!/usr/bin/env bash
# Runs every boot-latency benchmark the issues ask for, in one daemon, on
# one machine, and writes one JSON report per run into OUTDIR (default
# ./bench-out). Needs a built bin/catalyzer and examples (make examples);
# runtimes that are missing are skipped and said so.
#   scripts/bench-all.sh [OUTDIR] [N]
# ONLY="node-threads go-threads" limits the run to those functions.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench-out}
N=${2:-100}
mkdir -p "$OUT"
BIN=$PWD/bin/catalyzer
state=$(mktemp -d /tmp/catalyzer-bench.XXXXXX)
addr=127.0.0.1:$(( 20000 + RANDOM % 20000 ))
export CATALYZER_ADDR=$addr
export CATALYZER_STATE_DIR=$state/s # where serve writes api.token, which the CLI reads
{ nproc; uname -r; cat /proc/cpuinfo | grep -m1 "model name"; free -g | head -2; } >"$OUT/machine.txt" 2>&1
"$BIN" serve --state-dir "$state/s" --listen "$addr" --cgroup-parent catalyzer-bench --keep-alive 3s --env-pool "${ENV_POOL:-8}" --log-level warn 2>"$OUT/daemon.log" &
daemon=$!
trap 'kill $daemon 2>/dev/null; wait $daemon 2>/dev/null; rm -rf "$state"' EXIT
for _ in $(seq 100); do "$BIN" fn ls >/dev/null 2>&1 && break; sleep 0.1; done

fns=()
deploy() { # name runtime handler dir
  if [ -n "${ONLY:-}" ] && ! [[ " $ONLY " == *" $1 "* ]]; then return; fi
  if "$BIN" fn deploy "$1" --runtime "$2" --handler "$3" --code "$4" --max-instances 300 >>"$OUT/deploy.log" 2>&1; then fns+=("$1"); else echo "skip $1: deploy failed" >>"$OUT/skipped.txt"; fi
}
[ -x /usr/bin/python3 ] && deploy python python main.handler examples/python/hello || echo "skip python: no /usr/bin/python3" >>"$OUT/skipped.txt"
[ -x /usr/bin/node ] && deploy node node main.handler examples/node/hello || echo "skip node: no /usr/bin/node" >>"$OUT/skipped.txt"
deploy native-c native hello examples/native-c
deploy native-go native hello examples/native/hello
# Multi-threaded functions (threads and event loops alive at init).
[ -x /usr/bin/node ] && deploy node-threads node main.handler examples/node/threads
[ -x /usr/bin/python3 ] && deploy py-threads python main.handler examples/python/threads
deploy go-threads native threads examples/native/threads
# Let templates build.
for f in "${fns[@]}"; do
  for _ in $(seq 300); do
    st=$("$BIN" fn show "$f" 2>/dev/null | sed -n 's/.*"template": *"\(.*\)",*$/\1/p')
    st=${st:-unknown}
    case "$st" in building|none|unknown) sleep 0.1;; *) break;; esac
  done
  echo "$f template: $st" >>"$OUT/templates.txt"
done

run() { # name boot concurrency extra...
  local f=$1 b=$2 c=$3; shift 3
  echo "bench $f boot=$b c=$c" >&2
  "$BIN" bench --function "$f" --boot "$b" -n "$N" --concurrency "$c" --json "$@" >"$OUT/$f-$b-c$c.json" 2>"$OUT/$f-$b-c$c.err" || true
  sleep 3 # let keep-alive drop the idle instances, pools refill
}
for f in "${fns[@]}"; do
  # Scratch boot from a cold page cache too: the fair reference of cold boot.
  run "$f" scratch 1 --baselines none --drop-caches
  mv "$OUT/$f-scratch-c1.json" "$OUT/$f-scratch-dropcaches-c1.json"; mv "$OUT/$f-scratch-c1.err" "$OUT/$f-scratch-dropcaches-c1.err"
  run "$f" scratch 1 --baselines direct,bwrap,runc
done
for f in "${fns[@]}"; do
  grep -q "^$f template: ready" "$OUT/templates.txt" || continue
  for c in 1 2 8; do run "$f" fork "$c" --baselines none; done
  run "$f" warm 1 --baselines none --pss 1,10,50
  # Cold: the image from disk (evicted, no live instance mapping it), with
  # and without the working-set prefetch; then everything cold.
  run "$f" cold 1 --baselines none --drop-caches
  mv "$OUT/$f-cold-c1.json" "$OUT/$f-cold-dropcaches-c1.json"; mv "$OUT/$f-cold-c1.err" "$OUT/$f-cold-dropcaches-c1.err"
  run "$f" cold 1 --baselines none
  mv "$OUT/$f-cold-c1.json" "$OUT/$f-cold-prefetch-c1.json"; mv "$OUT/$f-cold-c1.err" "$OUT/$f-cold-prefetch-c1.err"
  run "$f" cold 1 --baselines none --no-prefetch
done
"$BIN" fn ls >"$OUT/functions.txt" 2>&1
echo done >&2
