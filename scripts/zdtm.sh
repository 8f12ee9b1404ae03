#!/usr/bin/env bash
# zdtm.sh: run CRIU's zdtm static tests against our checkpoint/restore.
#
# CRIU's sources are never part of our tree (GPL): they are extracted into
# a scratch directory and built there, at test time. Give them as
#   CRIU_SRC=/path/to/criu/checkout    (a work tree holding test/zdtm), or
#   CRIU_GIT=/path/to/criu.git         (a git directory; HEAD is used)
# Without either, the run is skipped and says so.
#
# Each static test is run the way CRIU's test/zdtm.py runs its host
# flavour: started by its Makefile's NAME.pid rule (it daemonizes, calls
# setsid, and writes its pidfile when ready), checkpointed with
# `catalyzer checkpoint` (which kills it), restored with `catalyzer restore
# --detach` (host namespaces, the original pid), sent SIGTERM, and judged
# by its out file. Classes:
#   PASS     restored, and its own check passed
#   REFUSED  checkpoint or restore refused by name (exit status 69,
#            errdefs.ErrNotSupported): the reason is the message
#   FAIL     any other checkpoint or restore error, or restored and the
#            check failed, or it crashed or hung: restored wrong
#   ERROR    not ours: the test did not build or start, or it fails
#            without checkpoint/restore too (this machine lacks something)
#   SKIP     not run: a namespace-only test (it would change the host's
#            namespaces), or one zdtm.py runs only by hand (noauto)
#
# Environment: CATALYZER (binary, default bin/catalyzer), ZDTM_WORK (scratch
# directory, default a new one under /tmp), ZDTM_TESTS (space-separated
# test names, default the whole static suite), ZDTM_TIMEOUT (seconds per
# step, default 10), ZDTM_RESULTS (results table, default
# $ZDTM_WORK/results.tsv), ZDTM_MARKDOWN (also write the table there, as
# markdown).
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
catalyzer=${CATALYZER:-$root/bin/catalyzer}
timeout_s=${ZDTM_TIMEOUT:-10}

if [[ -z ${CRIU_SRC:-} && -z ${CRIU_GIT:-} ]]; then
	echo "zdtm: skipped: no CRIU source given (set CRIU_SRC to a checkout or CRIU_GIT to a git directory of checkpoint-restore/criu)"
	exit 0
fi
if [[ $(id -u) != 0 ]]; then
	echo "zdtm: needs root (checkpoint and restore use ptrace and /proc/PID/pagemap)" >&2
	exit 1
fi
[[ -x $catalyzer ]] || { echo "zdtm: $catalyzer not built (make build)" >&2; exit 1; }

work=${ZDTM_WORK:-$(mktemp -d /tmp/zdtm.XXXXXX)}
mkdir -p "$work"
chmod 755 "$work"
results=${ZDTM_RESULTS:-$work/results.tsv}

# 1. Extract test/zdtm.
if [[ -n ${CRIU_SRC:-} ]]; then
	[[ -d $CRIU_SRC/test/zdtm/static ]] || { echo "zdtm: $CRIU_SRC has no test/zdtm/static" >&2; exit 1; }
	rm -rf "$work/test"
	mkdir -p "$work/test"
	cp -a "$CRIU_SRC/test/zdtm" "$work/test/"
	criu_rev=$(git -C "$CRIU_SRC" rev-parse --short HEAD 2>/dev/null || echo unknown)
else
	rm -rf "$work/test"
	git -C "$CRIU_GIT" archive HEAD test/zdtm | tar -x -C "$work" || { echo "zdtm: cannot extract test/zdtm from $CRIU_GIT" >&2; exit 1; }
	criu_rev=$(git -C "$CRIU_GIT" rev-parse --short HEAD)
fi
static=$work/test/zdtm/static

# 2. Build the library and the static tests (make -k: a test that does not
# build, for want of a header or of protoc, is an ERROR, not the end).
echo "zdtm: building CRIU $criu_rev's test/zdtm in $work"
make -C "$work/test/zdtm/lib" -j"$(nproc)" >"$work/build-lib.log" 2>&1 || { echo "zdtm: test/zdtm/lib does not build, see $work/build-lib.log" >&2; exit 1; }
all=$(make -s -C "$static" --eval 'zdtm-list: ; @echo $(TST)' zdtm-list)
tests=${ZDTM_TESTS:-$all}
# shellcheck disable=SC2086
make -k -C "$static" -j"$(nproc)" $tests >"$work/build-static.log" 2>&1
# Tests not run as suid drop to these ids (zdtm.py's numbers) and must be
# able to write their pid and out files.
chmod -R a+rwX "$static"

# desc FIELD NAME: a field of the test's .desc (a Python dict literal).
desc() {
	[[ -f $static/$2.desc ]] || return 0
	tr '\n' ' ' <"$static/$2.desc" | sed -n "s/.*'$1': *'\([^']*\)'.*/\1/p"
}

# gone PID [zombie]: wait up to the timeout for PID to be reaped (the
# restore wants it free), or with "zombie" for it to exit (a child of
# ours, which wait reaps).
gone() {
	local i
	for ((i = 0; i < timeout_s * 20; i++)); do
		[[ -e /proc/$1 ]] || return 0
		[[ ${2:-} == zombie && $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) == Z ]] && return 0
		sleep 0.05
	done
	return 1
}

# closefds: close every fd above 2 of this (sub)shell.
closefds() {
	local fd
	for fd in $(ls /proc/$BASHPID/fd); do
		((fd > 2)) && eval "exec $fd>&-"
	done
	return 0
}

# lastline FILE: its last non-empty line, for the table.
lastline() { grep -v '^\s*$' "$1" | tail -n 1 | tr '\t' ' ' | cut -c1-300; }

# run NAME: one test; prints "CLASS<TAB>reason".
run() {
	local t=$1 img=$work/img/$1 pid rpid rc out reason flavor flags
	flavor=$(desc flavor "$t")
	flags=$(desc flags "$t")
	if [[ -n $flavor && " $flavor " != *" h "* ]]; then
		printf 'SKIP\tflavor %s only (needs its own namespaces)\n' "$flavor"
		return
	fi
	if [[ " $flags " == *" noauto "* ]]; then
		printf 'SKIP\tnoauto (zdtm.py runs it only by hand)\n'
		return
	fi
	if [[ ! -x $static/$t ]]; then
		printf 'ERROR\tdid not build: %s\n' "$(grep -m1 -E "$t\.c.*error|error:.*$t" "$work/build-static.log" | tr '\t' ' ' | cut -c1-200)"
		return
	fi
	rm -rf "$img" "$static/$t.pid" "$static/$t.out" "$static/$t.out.inprogress"
	mkdir -p "$work/img"
	local env=(TMPDIR=/tmp)
	if [[ " $flags " != *" suid "* ]]; then
		env+=(ZDTM_UID=18943 ZDTM_GID=58467 "ZDTM_GROUPS=27495 48244")
	fi
	# zdtm.py starts tests with close_fds: no fd of ours may leak in. The
	# start runs in a session of its own, so that a test that never gets
	# ready is killed whole (it handles SIGTERM; make waits for it).
	(cd "$static" && closefds && exec env "${env[@]}" setsid make --no-print-directory "$t.pid") >"$work/$t.start.log" 2>&1 &
	local mk=$!
	if ! gone "$mk" zombie; then
		kill -KILL -- "-$mk" 2>/dev/null
		wait "$mk"
		printf 'ERROR\tdid not start within %ss: %s\n' "$timeout_s" "$(lastline "$static/$t.out" 2>/dev/null)"
		return
	fi
	if ! wait "$mk" || [[ ! -s $static/$t.pid ]]; then
		reason=$(lastline "$static/$t.out" 2>/dev/null)
		printf 'ERROR\tdid not start: %s\n' "${reason:-$(grep -v '^make' "$work/$t.start.log" | tail -n 1 | tr '\t' ' ' | cut -c1-200)}"
		return
	fi
	pid=$(cat "$static/$t.pid")

	timeout "$timeout_s" "$catalyzer" checkpoint --pid "$pid" --image "$img" >"$work/$t.dump.log" 2>&1
	rc=$?
	# The test's own children, if any, stay behind: they are in its
	# process group (it called setsid).
	kill -KILL -- "-$pid" 2>/dev/null
	case $rc in
	0) gone "$pid" ;; # the restore wants its pid back
	69) printf 'REFUSED\t%s\n' "$(lastline "$work/$t.dump.log" | sed 's/^catalyzer: //')"; return ;;
	*) printf 'FAIL\tcheckpoint failed (status %d): %s\n' "$rc" "$(lastline "$work/$t.dump.log" | sed 's/^catalyzer: //')"; return ;;
	esac

	timeout "$timeout_s" "$catalyzer" restore --image "$img" --detach --pid-file "$work/$t.rpid" >"$work/$t.restore.log" 2>&1
	rc=$?
	case $rc in
	0) ;;
	69) printf 'REFUSED\trestore: %s\n' "$(lastline "$work/$t.restore.log" | sed 's/^catalyzer: //')"; return ;;
	*) printf 'FAIL\trestore failed (status %d): %s\n' "$rc" "$(lastline "$work/$t.restore.log" | sed 's/^catalyzer: //')"; return ;;
	esac
	rpid=$(cat "$work/$t.rpid")
	sleep 0.2
	if [[ ! -e /proc/$rpid ]] || [[ $(awk '{print $3}' "/proc/$rpid/stat" 2>/dev/null) == Z ]]; then
		printf 'FAIL\tdied after restore before SIGTERM: %s\n' "$(lastline "$static/$t.out" 2>/dev/null)"
		return
	fi
	kill -TERM "$rpid"
	if ! gone "$rpid"; then
		kill -KILL "$rpid" 2>/dev/null
		printf 'FAIL\tdid not exit within %ss of SIGTERM\n' "$timeout_s"
		return
	fi
	out=$static/$t.out
	if [[ -f $out ]] && tr -s ' \t' '\n\n' <"$out" | grep -qx PASS; then
		printf 'PASS\t\n'
		return
	fi
	reason=$(grep -E 'FAIL|ERR|rror' "$out" 2>/dev/null | tail -n 1 | tr '\t' ' ' | cut -c1-250)
	reason=${reason:-$(lastline "$out" 2>/dev/null)}
	# A test that fails without checkpoint/restore too fails for this
	# machine (a missing LSM, a kernel knob), not for us.
	if ! control "$t"; then
		printf 'ERROR\tfails without checkpoint/restore too: %s\n' "$reason"
		return
	fi
	printf 'FAIL\tcheck failed: %s\n' "$reason"
}

# control NAME: run the test without checkpoint/restore (start, SIGTERM,
# check); true if it passes.
control() {
	local t=$1 pid mk
	# What the checkpointed run left (its test file or directory, mounts
	# under it) would fail the control run for us: a FAIL hidden as an
	# ERROR. zdtm names a test's files after it.
	leftovers
	rm -rf "$static/$t.test" "$static/$t.test".*
	rm -f "$static/$t.pid" "$static/$t.out" "$static/$t.out.inprogress"
	(cd "$static" && closefds && exec env "${env[@]}" setsid make --no-print-directory "$t.pid") >/dev/null 2>&1 &
	mk=$!
	gone "$mk" zombie || { kill -KILL -- "-$mk" 2>/dev/null; wait "$mk"; return 1; }
	wait "$mk" && [[ -s $static/$t.pid ]] || return 1
	pid=$(cat "$static/$t.pid")
	kill -TERM "$pid"
	gone "$pid" || { kill -KILL -- "-$pid" 2>/dev/null; return 1; }
	[[ -f $static/$t.out ]] && tr -s ' \t' '\n\n' <"$static/$t.out" | grep -qx PASS
}

# leftovers: kill what a test left behind outside its process group
# (children that made sessions of their own, a refused test's children):
# every process running one of the scratch directory's test binaries;
# then unmount what a killed test mounted under its directory (cgroup and
# overmount tests), innermost first.
leftovers() {
	local p m
	for p in /proc/[0-9]*; do
		[[ $(readlink "$p/exe" 2>/dev/null) == "$static"/* ]] && kill -KILL "${p#/proc/}" 2>/dev/null
	done
	for m in $(awk -v d="$static/" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r); do
		umount -l "$m" 2>/dev/null
	done
	return 0
}

echo "zdtm: running $(wc -w <<<"$tests") tests, results in $results"
printf 'test\tclass\treason\n' >"$results"
for t in $tests; do
	line=$(run "$t")
	leftovers
	printf '%s\t%s\n' "$t" "$line" >>"$results"
	printf '%-28s %s\n' "$t" "$(cut -c1-120 <<<"$line" | tr '\t' ' ')"
done

summary=$(tail -n +2 "$results" | cut -f2 | sort | uniq -c)
stamp="$(date -u +%Y-%m-%d), kernel $(uname -r), CRIU $criu_rev, catalyzer $(git -C "$root" rev-parse --short HEAD)"
echo "zdtm: summary ($stamp)"
echo "$summary"

# The table as markdown (docs/ZDTM.md's), when ZDTM_MARKDOWN names a file.
if [[ -n ${ZDTM_MARKDOWN:-} ]]; then
	{
		echo "Run: $stamp."
		echo
		echo "| class | tests |"
		echo "|---|---|"
		awk '{print "| " $2 " | " $1 " |"}' <<<"$summary"
		echo
		echo "| test | class | reason |"
		echo "|---|---|---|"
		tail -n +2 "$results" | awk -F'\t' '{gsub(/\|/, "\\|", $3); print "| " $1 " | " $2 " | " $3 " |"}'
	} >"$ZDTM_MARKDOWN"
fi
