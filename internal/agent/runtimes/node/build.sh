#!/bin/sh
# Rebuilds reseed_amd64.node (the Node agent's OpenSSL reseed addon) from
# reseed.c.  Usage: build.sh [output]   (default ./reseed_amd64.node)
# TestReseedAddonRebuild runs this into a temp dir and compares the bytes.
# Node-API and OpenSSL symbols stay undefined: node provides them when it
# loads the addon.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/reseed_amd64.node}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
${CC:-gcc} -std=c11 -O2 -Wall -Wextra -Werror -shared -fPIC -fvisibility=default \
	-fno-asynchronous-unwind-tables -Wl,--build-id=none -Wl,-z,now -Wl,-z,relro -Wl,-z,noseparate-code -Wl,--hash-style=gnu \
	-o "$tmp/reseed.node" "$here/reseed.c"
strip --strip-all -R .comment "$tmp/reseed.node"
cp "$tmp/reseed.node" "$out"
