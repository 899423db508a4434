#!/bin/bash
# The memory bound of Docs/systemd.md ("Memory") as a kernel limit: the
# daemon runs in a memory cgroup of its own, limited to that bound for one
# mount with cache_mib = 8 (plus 15 MiB for a debug build, plus a quarter),
# while 2,000 files are held open, a self-checking load runs, and a working
# set 8 times the cache is written and read back with O_DIRECT three times.
# The kernel must never have to kill a process of it, and each process's
# peak stays within the documented bound. The image lives on
# the disk (/var/tmp), so that its page cache can be reclaimed, as under a
# unit's MemoryMax=.
# Usage: Tests/mount/memory.sh BIN_DIR
set -u
bin=$(cd "${1:?usage: $0 BIN_DIR}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /var/tmp/bento-memory.XXXXXX)
chmod 755 "$work"
mnt=$work/mnt sock=$work/control.sock log=$work/daemon.log
cache=8 held=2000
passed=0 failed=0 daemon= cg=
ok()   { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; }
expect() { local name=$1; shift; if "$@" >/dev/null 2>&1; then ok "$name"; else fail "$name"; fi; }
cleanup() {
    [ -n "${loadpid:-}" ] && kill "$loadpid" 2>/dev/null
    [ -n "${HOLD_PID:-}" ] && kill "$HOLD_PID" 2>/dev/null
    [ -n "$daemon" ] && kill -TERM "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
    grep -q " $mnt " /proc/self/mountinfo && umount -l "$mnt"
    if [ -n "$cg" ] && [ -d "$cg" ]; then
        for p in $(cat "$cg/cgroup.procs" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
        sleep 0.2; rmdir "$cg" 2>/dev/null
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# A memory cgroup: cgroup v2 with the memory controller, or v1's.
limit_mib=$(awk -v c=$cache -v h=$held 'BEGIN { printf "%d", (30 + c + 55 + 15 + h * 1.2 / 1024) * 1.25 }')
if grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
    cg=/sys/fs/cgroup/bento-memory-$$; mkdir "$cg" || exit 1
    echo $((limit_mib * 1048576)) >"$cg/memory.max"; echo 0 >"$cg/memory.swap.max" 2>/dev/null
    limit_file=$cg/memory.max peak_file=$cg/memory.peak
    ooms() { awk '$1 == "oom_kill" { print $2 }' "$cg/memory.events"; }
elif [ -d /sys/fs/cgroup/memory ]; then
    cg=/sys/fs/cgroup/memory/bento-memory-$$; mkdir "$cg" || exit 1
    echo $((limit_mib * 1048576)) >"$cg/memory.limit_in_bytes"
    limit_file=$cg/memory.limit_in_bytes peak_file=$cg/memory.max_usage_in_bytes
    ooms() { awk '$1 == "oom_kill" { print $2 }' "$cg/memory.oom_control"; }
else
    echo "FAIL no memory cgroup controller on this machine"; exit 1
fi
expect "a memory cgroup limited to ${limit_mib} MiB" test "$(cat "$limit_file")" = $((limit_mib * 1048576))

cc -O2 -pthread -o "$work/load" "$here/load.c" && cc -O2 -o "$work/hold" "$here/hold.c" || { echo "FAIL cannot build the helpers"; exit 1; }
"$bin/mkfs.xv6" --size 1G "$work/x.img" >/dev/null
mkdir "$mnt"
sh -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' _ "$cg" \
    "$bin/bento-upgraded" --image "$work/x.img" --mountpoint "$mnt" --module "$bin/libXV6Module2.so" --cache-mib "$cache" \
    --control-socket "$sock" --state-dir "$work/state" >"$log" 2>&1 &
daemon=$!
for _ in $(seq 100); do [ -S "$sock" ] && stat -f "$mnt" 2>/dev/null | grep -q fuse && break; sleep 0.1; done
expect "serving, inside the cgroup" grep -qx "$daemon" "$cg/cgroup.procs"

coproc HOLD { "$work/hold" "$mnt/held" "$held" open; }
read -r -t 300 ready <&"${HOLD[0]}"
expect "$held files held open ($ready)" test "$ready" = "ready $held"
mkdir "$mnt/load"
"$work/load" "$mnt/load" 4 900 >"$work/load.out" 2>&1 &
loadpid=$!
walk() {
    local pass i
    for pass in 1 2 3; do
        for i in $(seq 16); do dd if=/dev/urandom of="$mnt/ws$i" bs=1M count=4 conv=notrunc,fsync status=none || return 1; done
        for i in $(seq 16); do dd if="$mnt/ws$i" of=/dev/null bs=1M iflag=direct status=none || return 1; done
    done
}
expect "a 64 MiB working set written and read back three times under an 8 MiB cache" walk
touch "$mnt/load/STOP"; wait "$loadpid"; load_rc=$?; loadpid=
sed 's/^/     /' "$work/load.out"
expect "the self-checking load saw no error and no wrong byte" test "$load_rc" -eq 0
echo check >&"${HOLD[1]}" && read -r -t 300 answer <&"${HOLD[0]}"
expect "each held file still reads and writes its own data ($answer)" test "$answer" = "ok $held"
"$bin/bentoctl" --socket "$sock" status | grep -E '^  (kernel|cache) ' | sed 's/^/     /'
worker=$(pgrep -P "$daemon" -f -- --worker | head -1)
echo "     worker: $(grep -E '^(RssAnon|RssFile|RssShmem)' /proc/"$worker"/status | tr -s ' \t' ' ' | tr '\n' ' ')"
peak_kib() { awk '$1 == "VmHWM:" { print $2 }' "/proc/$1/status"; }
worker_bound=$(awk -v c=$cache -v h=$held 'BEGIN { printf "%d", (c + 55 + 15 + h * 1.2 / 1024) * 1024 }')
expect "the worker's peak, $(( $(peak_kib "$worker") / 1024 )) MiB, is within cache_mib + 55 MiB + 15 MiB (debug) + 1.2 KiB per held file" \
    test "$(peak_kib "$worker")" -le "$worker_bound"
expect "the supervisor's peak, $(( $(peak_kib "$daemon") / 1024 )) MiB, is within 30 MiB" test "$(peak_kib "$daemon")" -le $((30 * 1024))
echo "     the cgroup peaked at $(awk '{ printf "%.1f", $1 / 1048576 }' "$peak_file") MiB of $limit_mib MiB (page cache of the image included)"
expect "the kernel killed nothing in the cgroup (oom_kill $(ooms))" test "$(ooms)" = 0
expect "the daemon is the same process, and no worker died" bash -c "kill -0 $daemon && ! grep -q 'died' '$log'"
echo quit >&"${HOLD[1]}"; wait "$HOLD_PID" 2>/dev/null; HOLD_PID=
kill -TERM "$daemon"; wait "$daemon"; daemon=
expect "fsck: clean" "$bin/fsck.xv6" -n "$work/x.img"
echo "memory: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
