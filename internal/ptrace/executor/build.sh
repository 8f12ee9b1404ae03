#!/bin/sh
# Rebuilds executor_amd64.bin (one directory up) from executor.c.
# Usage: build.sh [output]   (default ../executor_amd64.bin)
# TestExecutorRebuild runs this into a temp dir and compares the bytes.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../executor_amd64.bin}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
${CC:-gcc} -Os -nostdlib -static -fPIC -fno-pie -fno-asynchronous-unwind-tables \
	-fno-stack-protector -fno-jump-tables -fno-builtin -fcf-protection=none \
	-mno-red-zone -mgeneral-regs-only -ffreestanding \
	-fno-tree-loop-distribute-patterns \
	-Wl,--build-id=none -Wl,-N -Wl,--no-warn-rwx-segments -Wl,-T,"$here/executor.ld" \
	-o "$tmp/executor.elf" "$here/executor.c"
# Refuse anything but code: no data, no relocations, .text.start first.
if [ "$(objdump -h "$tmp/executor.elf" | awk '$2 == ".data" { print $3 }')" != "" ] &&
	[ "$(objdump -h "$tmp/executor.elf" | awk '$2 == ".data" { print $3 }')" != "00000000" ]; then
	echo "executor: unexpected data section" >&2; exit 1
fi
objcopy -O binary -j .text "$tmp/executor.elf" "$tmp/executor.bin"
cp "$tmp/executor.bin" "$out"
