#!/bin/sh
# Builds the native example functions next to their sources:
#   examples/native/hello/hello   (Go SDK, sdk/go/function)
#   examples/native/threads/threads (Go SDK, a goroutine ticker)
#   examples/native-c/hello       (C SDK, sdk/c/catalyzer.h)
# Usage: examples/build.sh [GO] [CC]   (defaults: go, gcc; or $GO / $CC)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
GO=${1:-${GO:-go}}
CC=${2:-${CC:-gcc}}
cd "$root"
CGO_ENABLED=0 "$GO" build -o examples/native/hello/hello ./examples/native/hello
CGO_ENABLED=0 "$GO" build -o examples/native/threads/threads ./examples/native/threads
"$CC" -std=c99 -O2 -Wall -Wextra -Werror -I sdk/c -o examples/native-c/hello examples/native-c/hello.c
echo "built examples/native/hello/hello examples/native/threads/threads examples/native-c/hello"
