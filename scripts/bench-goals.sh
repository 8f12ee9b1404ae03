#!/usr/bin/env bash
# Measures every goal of issue 11 (boot at the floor) for the Python hello
# function, one daemon, one `catalyzer bench` run per goal, each goal's
# ratio between numbers of that one run. Prints the reports (text) to
# stdout; writes the JSON reports into OUTDIR (default ./bench-out/goals).
#   scripts/bench-goals.sh [OUTDIR] [N]
# GOALS="fork first" runs only those goals (fork first scratch cold
# concurrency evict density). KEEP_ALIVE (default 3s) is the daemon's
# keep-alive: the density goal needs its 50 instances alive at once, so
# give it more when boots are slow (GOALS=density KEEP_ALIVE=30s).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench-out/goals}
N=${2:-60}
GOALS=${GOALS:-fork first scratch cold concurrency evict density}
mkdir -p "$OUT"
BIN=${BIN:-$PWD/bin/catalyzer}
state=$(mktemp -d /tmp/catalyzer-goals.XXXXXX)
addr=127.0.0.1:$(( 20000 + RANDOM % 20000 ))
export CATALYZER_ADDR=$addr
export CATALYZER_STATE_DIR=$state/s
echo "machine: $(nproc) CPUs, $(uname -r), load: $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
"$BIN" serve --state-dir "$state/s" --listen "$addr" --cgroup-parent catalyzer-goals --keep-alive "${KEEP_ALIVE:-3s}" --log-level warn 2>"$OUT/daemon.log" &
daemon=$!
trap 'kill $daemon 2>/dev/null; wait $daemon 2>/dev/null; rm -rf "$state"' EXIT
for _ in $(seq 100); do "$BIN" fn ls >/dev/null 2>&1 && break; sleep 0.1; done
deploy() { "$BIN" fn deploy "$1" --runtime python --handler main.handler --code "$2" --max-instances "$3" >>"$OUT/deploy.log" 2>&1; }
deploy python examples/python/hello 300
deploy py-cache examples/python/cache 300
deploy py-full examples/python/hello 4 # a full pool: every boot past 4 evicts an idle instance
ready() { # wait for the template and the image
  for _ in $(seq 600); do
    s=$("$BIN" fn show "$1" 2>/dev/null)
    if grep -q '"template": *"ready' <<<"$s" && grep -q '"image": *"ready' <<<"$s"; then return 0; fi
    sleep 0.2
  done
  echo "$1: template or image not ready: $s"; return 1
}
for f in python py-cache py-full; do ready "$f"; done
bench() { # goal args...: one run, its JSON kept, its summary printed
  local g=$1; shift
  echo; echo "=== $g: catalyzer bench $* (load $(cut -d' ' -f1-3 /proc/loadavg))"
  "$BIN" bench "$@" --json >"$OUT/$g.json" 2>"$OUT/$g.err" || { echo "failed:"; cat "$OUT/$g.err"; }
  jq -r '(if type == "array" then .[] else . end) |
    "-- \(.function) \(.boot) c=\(.concurrency) n=\(.n) errors=\(.errors)",
    "accept-to-response p50/p99 \(.p50_us)/\(.p99_us) us; start-to-entry p50/p99 \(.start_to_entry.p50_us)/\(.start_to_entry.p99_us) us; first-invocation handler p50/p99 \(.first_invocation_handler.p50_us)/\(.first_invocation_handler.p99_us) us",
    "phases p50: " + ([.phase_order[] as $k | "\($k) \(.phases[$k])"] | join(", ")),
    (.compare // [] | .[] | "  \(.name): ours \(.ours_p50_us)/\(.ours_p99_us) base \(.base_p50_us)/\(.base_p99_us) ratio \(.ratio_p50*100|round/100)/\(.ratio_p99*100|round/100)" + (if .goal then " (goal \(.goal))" else "" end)),
    (.concurrency_sweep // [] | .[] | "  c=\(.concurrency): accept p50/p99 \(.accept_to_response.p50_us)/\(.accept_to_response.p99_us) us, \(.boots_per_sec*10|round/10) boots/s, p99/single-p50 \(.p99_over_single_p50*100|round/100), throughput/c1 \(.throughput_vs_c1*100|round/100), envs on demand \(.envs_on_demand)"),
    (if .pss_kb_per_instance then "  PSS KiB per instance: \(.pss_kb_per_instance)" else empty end),
    (if .template then "  template: \(.template)" else empty end),
    (if .first_invocation then "  first invocation: mode \(.first_invocation.mode_first.p50_us)/\(.first_invocation.mode_first.p99_us), scratch first \(.first_invocation.scratch_first.p50_us)/\(.first_invocation.scratch_first.p99_us), scratch second \(.first_invocation.scratch_second.p50_us)/\(.first_invocation.scratch_second.p99_us)" else empty end),
    (if .skipped_baselines then "  skipped: \(.skipped_baselines)" else empty end)' "$OUT/$g.json" 2>/dev/null
  sleep 4 # keep-alive drops the idle instances, pools refill
}
want() { [[ " $GOALS " == *" $1 "* ]]; }
want fork && bench fork --function python --boot fork -n "$N" --baselines zygote
want first && bench first-hello --function python --boot fork,warm,cold -n 30 --first-invocation --baselines none
want first && bench first-cache --function py-cache --boot fork,warm,cold -n 30 --first-invocation --baselines none
want scratch && bench scratch --function python --boot scratch -n "$N" --baselines direct
want cold && bench cold --function python --boot cold,scratch -n 40 --baselines none
want cold && bench cold-noprefetch --function python --boot cold -n 40 --no-prefetch --baselines none
want concurrency && bench concurrency --function python --boot fork -n "$N" --concurrency 1,2,4,8 --baselines none
# A function at max_instances 4 with a 3 s keep-alive: from the fifth boot
# on each one needs an idle instance evicted; set against the fork goal's
# run of the same code with room to spare.
want evict && bench evict --function py-full --boot fork -n "$N" --baselines none
want density && bench density --function python --boot fork -n 10 --pss 1,10,50 --baselines none
echo; echo "done $(date -u +%FT%TZ), load $(cut -d' ' -f1-3 /proc/loadavg)"
