#!/usr/bin/env bash
# `ctr run` start-to-exit latency of a busybox `true`, catalyzer-runc
# against runc (and crun when installed), interleaved in one run on a
# private containerd. Prints p50/p99 in ms per runtime. One more row,
# catalyzer-restore: a container booted by annotation
# (dev.catalyzer.boot=restore) from an image of a busybox sh polling
# for a file (read -t, no child) that the script creates after the
# checkpoint: restored, it finds the file and exits.
# Fork from a template has no row: boot=fork is not built
# (docs/KUBERNETES.md, "Fork").
#   scripts/oci-bench.sh [N]      (default N=50; needs root, make build)
set -euo pipefail
N=${1:-50}
here=$(cd "$(dirname "$0")/.." && pwd)
ours=$here/bin/catalyzer-runc
[ -x "$ours" ] || { echo "run make build first" >&2; exit 1; }
T=$(mktemp -d /tmp/catalyzer-oci-bench.XXXXXX)
cleanup() {
  [ -n "${cpid:-}" ] && kill "$cpid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$T"
  # The runtimes leave the parent of cgroupsPath (/<namespace>/<id>), as runc does.
  for d in /sys/fs/cgroup/*/bench; do [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null; done
  true
}
trap cleanup EXIT
mkdir -p "$T/rootfs/bin"
cp /bin/busybox "$T/rootfs/bin/"; ln -s busybox "$T/rootfs/bin/true"; ln -s busybox "$T/rootfs/bin/sh"
mkdir -p "$T/rootfs/dev" "$T/rootfs/proc" "$T/rootfs/sys"
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
C() { ctr -a "$T/c.sock" -n bench "$@"; }
# The restore image: a sh polling for /go (read -t on a fifo we hold
# open: no child process), checkpointed by our checkpoint verb, then
# killed; /go is made after, so that each restored copy exits at once.
mkfifo "$T/in"; exec 7<>"$T/in"
C run --runc-binary "$ours" --runc-root "$T/runc-root-ckpt" --rootfs "$T/rootfs" ckpt \
  /bin/sh -c 'while [ ! -e /go ]; do read -t 0.001 x; done; exit 0' <"$T/in" >/dev/null 2>&1 & rpid=$!
for _ in $(seq 200); do C task ls 2>/dev/null | grep -q '^ckpt .*RUNNING' && break; sleep 0.05; done
sleep 0.3
C task checkpoint --image-path "$T/image" ckpt >/dev/null
C task kill -s KILL ckpt; wait "$rpid" || true; C container rm ckpt >/dev/null
exec 7>&-
touch "$T/rootfs/go"
declare -A bins=([catalyzer-runc]=$ours [runc]=$(command -v runc) [catalyzer-restore]=$ours)
command -v crun >/dev/null && bins[crun]=$(command -v crun)
for name in "${!bins[@]}"; do : >"$T/$name.ms"; done
for i in $(seq "$N"); do
  for name in "${!bins[@]}"; do
    ann=()
    [ "$name" = catalyzer-restore ] && ann=(--annotation dev.catalyzer.boot=restore --annotation "dev.catalyzer.image=$T/image")
    t0=$(date +%s%N)
    C run --rm --runc-binary "${bins[$name]}" --runc-root "$T/runc-root-$name" "${ann[@]}" \
      --rootfs "$T/rootfs" "b-$name-$i" /bin/true </dev/null
    t1=$(date +%s%N)
    echo $(( (t1 - t0) / 1000 )) >>"$T/$name.ms"
  done
done
printf '%-18s %5s %9s %9s\n' runtime n p50_ms p99_ms
for name in "${!bins[@]}"; do
  sort -n "$T/$name.ms" | awk -v name="$name" '{a[NR]=$1} END {
    p50=a[int((NR-1)*0.50)+1]; p99=a[int((NR-1)*0.99)+1];
    printf "%-18s %5d %9.1f %9.1f\n", name, NR, p50/1000, p99/1000 }'
done
