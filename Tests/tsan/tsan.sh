#!/bin/bash
# The daemon under ThreadSanitizer: a build with -sanitize=thread serves a
# mount under a self-checking load through live upgrades, a worker killed
# and replaced, and a stop; any report from the supervisor or a worker fails.
# (The unit tests run under it too: `make test` calls `swift test
# --sanitize=thread` for each package.)
# Usage: Tests/tsan/tsan.sh BIN_DIR      (a --sanitize=thread build)
set -u
bin=$(cd "${1:?usage: $0 BIN_DIR}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /dev/shm/bento-tsan.XXXXXX)
chmod 755 "$work"
mnt=$work/mnt sock=$work/control.sock log=$work/daemon.log reports=$work/reports
passed=0 failed=0 daemon=
ok()   { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; }
expect() { local name=$1; shift; if "$@" >/dev/null 2>&1; then ok "$name"; else fail "$name"; fi; }
ctl() { "$bin/bentoctl" --socket "$sock" "$@"; }
cleanup() {
    [ -n "$daemon" ] && kill -TERM "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
    grep -q " $mnt " /proc/self/mountinfo && umount -l "$mnt"
    if [ -n "${KEEP:-}" ]; then echo "     kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

cc -O2 -pthread -o "$work/load" "$here/../mount/load.c" || { echo "cannot build the load"; exit 1; }
"$bin/mkfs.xv6" --size 256M "$work/x.img" >/dev/null
mkdir "$mnt" "$reports"
# Every process writes its reports to reports/tsan.PID; the workers inherit
# the setting. The suppressions name what is not ours to fix (tsan.supp).
export TSAN_OPTIONS="log_path=$reports/tsan suppressions=$here/tsan.supp history_size=4 symbolize=0"
"$bin/bento-upgraded" --image "$work/x.img" --mountpoint "$mnt" --module "$bin/libXV6Module.so" \
    --control-socket "$sock" --state-dir "$work/state" >"$log" 2>&1 &
daemon=$!
for _ in $(seq 300); do [ -S "$sock" ] && stat -f "$mnt" 2>/dev/null | grep -q fuse && break; sleep 0.1; done
expect "serving under ThreadSanitizer" stat -f "$mnt"

mkdir "$mnt/load"
"$work/load" "$mnt/load" 4 300 >"$work/load.out" 2>"$work/load.err" &
loadpid=$!
sleep 2
upgraded=0
for i in 1 2 3 4 5 6; do
    target=$bin/libXV6Module2.so; [ $((i % 2)) -eq 0 ] && target=$bin/libXV6Module.so
    ctl upgrade "$mnt" "$target" >/dev/null && upgraded=$((upgraded + 1))
    sleep 0.5
done
expect "6 live upgrades under load" test $upgraded -eq 6
# A worker killed from outside: the supervisor starts the next one.
before=$(pgrep -P "$daemon" -f -- '--worker')
kill -9 $before
for _ in $(seq 300); do now=$(pgrep -P "$daemon" -f -- '--worker'); [ -n "$now" ] && [ "$now" != "$before" ] && break; sleep 0.1; done
expect "a new worker after kill -9 of the worker" test -n "$now" -a "$now" != "$before"
sleep 3
touch "$mnt/load/STOP"
wait $loadpid; loadstatus=$?
cat "$work/load.out"; head -5 "$work/load.err"
expect "the load saw no failed call and no wrong byte" test $loadstatus -eq 0
kill -TERM "$daemon"; wait "$daemon"; status=$?; daemon=
expect "clean stop" test $status -eq 0
expect "fsck clean" "$bin/fsck.xv6" -n "$work/x.img"

found=$(cat "$reports"/tsan.* 2>/dev/null | grep -c '^WARNING: ThreadSanitizer\|^ThreadSanitizer:')
if [ "$found" -eq 0 ]; then ok "no ThreadSanitizer report from the supervisor or any worker"
else
    fail "no ThreadSanitizer report from the supervisor or any worker ($found found)"
    for f in "$reports"/tsan.*; do echo "     == $f"; grep -A24 -m3 '^WARNING\|^ThreadSanitizer' "$f" | sed 's/^/     /'; done | head -120
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
