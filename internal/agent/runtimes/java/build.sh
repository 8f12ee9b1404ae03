#!/bin/sh
# Builds the Java agent (src/) into OUT (default agent.jar next to this
# script), the file runtimes.go embeds. Reproducible: javac 17's class
# files depend only on the sources, and the jar is written with a fixed
# date, no manifest and its entries in sorted order, so a rebuild with the
# same javac gives the same bytes (TestJavaAgentRebuild).
set -eu
export TZ=UTC LC_ALL=C
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/agent.jar}
jdk=${JAVA_HOME_17:-/usr/lib/jvm/java-17-openjdk-amd64}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$here/src"
"$jdk/bin/javac" --release 17 -Xlint:all -Werror -encoding UTF-8 -d "$tmp/classes" $(find . -name '*.java' | LC_ALL=C sort)
cd "$tmp/classes"
"$jdk/bin/jar" --create --file "$tmp/agent.jar" --no-manifest --date 2000-01-01T00:00:00Z $(find . -type f | LC_ALL=C sort)
mv "$tmp/agent.jar" "$out"
