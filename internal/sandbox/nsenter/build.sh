#!/bin/sh
# Rebuilds nsenter_amd64.elf (one directory up) from nsenter.c.
# Usage: build.sh [output]   (default ../nsenter_amd64.elf)
# TestNsenterRebuild runs this into a temp dir and compares the bytes.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../nsenter_amd64.elf}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
${CC:-gcc} -Os -nostdlib -static -fno-pie -no-pie -fno-asynchronous-unwind-tables \
	-fno-stack-protector -fno-jump-tables -fno-builtin -fcf-protection=none \
	-mgeneral-regs-only -ffreestanding -fno-tree-loop-distribute-patterns \
	-Wl,--build-id=none -Wl,-N -Wl,--no-warn-rwx-segments -Wl,-T,"$here/nsenter.ld" \
	-o "$tmp/nsenter.elf" "$here/nsenter.c"
strip --strip-all -R .comment "$tmp/nsenter.elf"
cp "$tmp/nsenter.elf" "$out"
