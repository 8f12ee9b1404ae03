#!/bin/sh
# Builds the native example functions next to their sources:
#   examples/native/hello/hello   (Go SDK, sdk/go/function)
#   examples/native/threads/threads (Go SDK, a goroutine ticker)
#   examples/native-c/hello       (C SDK, sdk/c/catalyzer.h)
#   examples/java/hello/fn        (classes of examples/java/hello/src, javac
#                                  17 against the agent's catalyzer.Context)
#   examples/java/heavy/fn        (examples/java/heavy/src, the JDK alone)
# Usage: examples/build.sh [GO] [CC]   (defaults: go, gcc; or $GO / $CC;
# $JAVA_HOME_17, default Debian's /usr/lib/jvm/java-17-openjdk-amd64)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
GO=${1:-${GO:-go}}
CC=${2:-${CC:-gcc}}
cd "$root"
CGO_ENABLED=0 "$GO" build -o examples/native/hello/hello ./examples/native/hello
CGO_ENABLED=0 "$GO" build -o examples/native/threads/threads ./examples/native/threads
"$CC" -std=c99 -O2 -Wall -Wextra -Werror -I sdk/c -o examples/native-c/hello examples/native-c/hello.c
jdk=${JAVA_HOME_17:-/usr/lib/jvm/java-17-openjdk-amd64}
rm -rf examples/java/hello/fn
"$jdk/bin/javac" --release 17 -Xlint:all -Werror -encoding UTF-8 -p internal/agent/runtimes/java/agent.jar --add-modules catalyzer \
	-d examples/java/hello/fn $(find examples/java/hello/src -name '*.java' | LC_ALL=C sort)
rm -rf examples/java/heavy/fn
"$jdk/bin/javac" --release 17 -Xlint:all -Werror -encoding UTF-8 -d examples/java/heavy/fn $(find examples/java/heavy/src -name '*.java' | LC_ALL=C sort)
echo "built examples/native/hello/hello examples/native/threads/threads examples/native-c/hello examples/java/hello/fn examples/java/heavy/fn"
