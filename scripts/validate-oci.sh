#!/usr/bin/env bash
# The opencontainers runtime-tools validation suite (v0.9.0, from the Go
# module proxy), run against bin/catalyzer-runc and runc on this machine,
# same run: each of its 58 programs under a private mount namespace
# (failed tests leave mounts behind), TAP lines counted per runtime.
#   scripts/validate-oci.sh        (root; make build first)
# Exits non-zero when catalyzer-runc passes fewer tests than runc.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
ours=$here/bin/catalyzer-runc
[ -x "$ours" ] || { echo "run make build first" >&2; exit 1; }
work=${VALIDATE_DIR:-/tmp/catalyzer-validate-oci}
src=$work/runtime-tools
if [ ! -x "$src/runtimetest" ]; then
  mkdir -p "$work"
  mod=$(cd "$work" && GOFLAGS=-mod=mod go mod download -json github.com/opencontainers/runtime-tools@v0.9.0 | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  rm -rf "$src"; cp -r "$mod" "$src"; chmod -R u+w "$src"
  # v0.9.0 predates modules: pin what its Godeps named, roughly.
  cat >"$src/go.mod" <<'EOM'
module github.com/opencontainers/runtime-tools

go 1.21

require (
	github.com/opencontainers/runtime-spec v1.0.2-0.20190207185410-29686dbc5559
	github.com/satori/go.uuid v1.2.0
	github.com/urfave/cli v1.22.14
	github.com/syndtr/gocapability v0.0.0-20200815063812-42c35b437635
	github.com/opencontainers/selinux v1.0.0
	github.com/mndrix/tap-go v0.0.0-20171203230836-629fa407e90b
)
EOM
  (cd "$src" && GOFLAGS=-mod=mod go mod tidy >/dev/null 2>&1)
  # Static, or it silently reports nothing inside a busybox root.
  (cd "$src" && CGO_ENABLED=0 go build -o runtimetest ./cmd/runtimetest)
  for f in $(cd "$src" && find validation -name '*.go' | grep -v util); do
    (cd "$src" && go build -o "${f%.go}.t" "./$f")
  done
fi
run() { # runtime outdir
  local t prog
  rm -rf "$2"; mkdir -p "$2"
  for t in "$src"/validation/*/*.t; do
    prog=$(basename "$t" .t)
    (cd "$src" && RUNTIME=$1 timeout 120 unshare -m --propagation private "$t" >"$2/$prog.tap" 2>"$2/$prog.err") || true
  done
  # Containers without a cgroupsPath go under the runtime's default parent,
  # which it leaves (as runc does): remove it once empty.
  for c in /sys/fs/cgroup/catalyzer-oci /sys/fs/cgroup/*/catalyzer-oci; do
    [ -d "$c" ] && find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null
  done
  true
}
declare -A bins=([catalyzer-runc]=$ours)
command -v runc >/dev/null && bins[runc]=$(command -v runc)
printf '%-16s %8s %8s %9s\n' runtime programs passed failed
declare -A passed
for name in "${!bins[@]}"; do
  run "${bins[$name]}" "$work/out/$name"
  p=$(cat "$work/out/$name"/*.tap | grep -c '^ok' || true)
  f=$(cat "$work/out/$name"/*.tap | grep -c '^not ok' || true)
  passed[$name]=$p
  printf '%-16s %8d %8d %9d\n' "$name" "$(ls "$work/out/$name"/*.tap | wc -l)" "$p" "$f"
done
echo "TAP output per program: $work/out/<runtime>/<program>.tap"
if [ -n "${passed[runc]:-}" ] && [ "${passed[catalyzer-runc]}" -lt "${passed[runc]}" ]; then
  echo "catalyzer-runc passes fewer tests than runc" >&2; exit 1
fi
