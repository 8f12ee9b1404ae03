#!/usr/bin/env bash
# `ctr run` start-to-exit latency of a busybox `true`, catalyzer-runc
# against runc (and crun when installed), interleaved in one run on a
# private containerd. Prints p50/p99 in ms per runtime.
#   scripts/oci-bench.sh [N]      (default N=50; needs root, make build)
set -euo pipefail
N=${1:-50}
here=$(cd "$(dirname "$0")/.." && pwd)
ours=$here/bin/catalyzer-runc
[ -x "$ours" ] || { echo "run make build first" >&2; exit 1; }
T=$(mktemp -d /tmp/catalyzer-oci-bench.XXXXXX)
cleanup() { [ -n "${cpid:-}" ] && kill "$cpid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$T"; }
trap cleanup EXIT
mkdir -p "$T/rootfs/bin"
cp /bin/busybox "$T/rootfs/bin/"; ln -s busybox "$T/rootfs/bin/true"
cat > "$T/config.toml" <<EOC
version = 2
root = "$T/root"
state = "$T/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$T/c.sock"
[ttrpc]
  address = "$T/c.sock.ttrpc"
EOC
containerd --config "$T/config.toml" >"$T/containerd.log" 2>&1 & cpid=$!
for _ in $(seq 100); do ctr -a "$T/c.sock" version >/dev/null 2>&1 && break; sleep 0.05; done
declare -A bins=([catalyzer-runc]=$ours [runc]=$(command -v runc))
command -v crun >/dev/null && bins[crun]=$(command -v crun)
for name in "${!bins[@]}"; do : >"$T/$name.ms"; done
for i in $(seq "$N"); do
  for name in "${!bins[@]}"; do
    t0=$(date +%s%N)
    ctr -a "$T/c.sock" -n bench run --rm --runc-binary "${bins[$name]}" --runc-root "$T/runc-root-$name" \
      --rootfs "$T/rootfs" "b-$name-$i" /bin/true
    t1=$(date +%s%N)
    echo $(( (t1 - t0) / 1000 )) >>"$T/$name.ms"
  done
done
printf '%-16s %5s %9s %9s\n' runtime n p50_ms p99_ms
for name in "${!bins[@]}"; do
  sort -n "$T/$name.ms" | awk -v name="$name" '{a[NR]=$1} END {
    p50=a[int((NR-1)*0.50)+1]; p99=a[int((NR-1)*0.99)+1];
    printf "%-16s %5d %9.1f %9.1f\n", name, NR, p50/1000, p99/1000 }'
done
