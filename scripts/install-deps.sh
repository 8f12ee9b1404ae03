#!/usr/bin/env bash
# Installs what catalyzer needs to build, test and demo on Debian/Ubuntu,
# skipping what is already there. Run as root.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
[ -x /usr/bin/python3 ] || need+=(python3)
[ -x /usr/bin/node ] || need+=(nodejs)
# Java functions run on Debian's OpenJDK 17 (runtimes.Java names its
# path); its javac builds the Java agent and examples at make build.
[ -x /usr/lib/jvm/java-17-openjdk-amd64/bin/javac ] || need+=(openjdk-17-jdk-headless)
have gcc || need+=(gcc libc6-dev)
have make || need+=(make)
have bwrap || need+=(bubblewrap)   # baselines for `catalyzer bench`
have runc || need+=(runc)
have git || need+=(git)
# The OCI runtime's tests: containerd (and ctr) drive bin/catalyzer-runc
# on a root file system built from busybox.
have containerd || need+=(containerd)
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)
have go || need+=(golang-go)
# Threaded Python tests: numpy over OpenBLAS with its pthread pool.
/usr/bin/python3 -c 'import numpy' 2>/dev/null || need+=(python3-numpy)
dpkg -s libopenblas0-pthread >/dev/null 2>&1 || need+=(libopenblas0-pthread)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" ca-certificates >/dev/null
fi
# go.mod names the Go version; an older go (>= 1.21) fetches that
# toolchain from the module proxy by itself.
export GOTOOLCHAIN=auto
go version
