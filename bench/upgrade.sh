#!/bin/bash
# The upgrade benchmark: under an 8-thread load, the pause (gate closed to
# reopened) over 100 upgrades alternating xv6fs 1.0.0 and 2.0.0, and the
# longest system call the load saw; then the warm handover: the read rate of
# a working set right after an upgrade, next to before it and next to a cold
# unmount-and-mount; then the pause against what the kernel holds
# (bench/upgrade-scaling.sh). Release build, RAM-backed image.
# Usage: bench/upgrade.sh [OUTPUT.md] [UPGRADES]
set -u
cd "$(dirname "$0")/.."
out=${1:-Docs/benchmarks-upgrade.md} rounds=${2:-100}
bin=$(pwd)/.build/release
for p in bento-upgraded bentoctl XV6Module XV6Module2 mkfs.xv6; do swift build -c release --product $p >/dev/null || exit 1; done
work=$(mktemp -d /dev/shm/bento-upbench.XXXXXX)
chmod 755 "$work"
mnt=$work/mnt sock=$work/control.sock daemon=
cleanup() {
    [ -n "$daemon" ] && kill -TERM "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
    grep -q " $mnt " /proc/self/mountinfo && umount -l "$mnt"
    rm -rf "$work"
}
trap cleanup EXIT
cc -O2 -pthread -o "$work/load" Tests/mount/load.c && cc -O2 -o "$work/readset" bench/readset.c || exit 1
start() {
    "$bin/bento-upgraded" --image "$work/x.img" --mountpoint "$mnt" --module "$1" --control-socket "$sock" \
        --state-dir "$work/state" --cache-mib 1024 >>"$work/daemon.log" 2>&1 &
    daemon=$!
    for _ in $(seq 100); do [ -S "$sock" ] && stat -f "$mnt" 2>/dev/null | grep -q fuse && break; sleep 0.1; done
}
stop() { kill -TERM "$daemon"; wait "$daemon"; daemon=; }
ctl() { "$bin/bentoctl" --socket "$sock" "$@"; }

"$bin/mkfs.xv6" --size 4G --inodes 262144 "$work/x.img" >/dev/null
mkdir "$mnt"
start "$bin/libXV6Module.so"

# Pauses under load.
mkdir "$mnt/load"
"$work/load" "$mnt/load" 8 600 > "$work/load.out" 2>&1 &
load=$!
sleep 1
: > "$work/pauses"
for i in $(seq "$rounds"); do
    target=$bin/libXV6Module2.so; [ $((i % 2)) -eq 0 ] && target=$bin/libXV6Module.so
    ctl upgrade "$mnt" "$target" --json | grep -o '"pauseMicros" *: *[0-9]*' | grep -o '[0-9]*$' >> "$work/pauses"
done
touch "$mnt/load/STOP"
wait $load
slowest=$(grep -o 'slowest_us=[0-9]*' "$work/load.out" | cut -d= -f2)
loadline=$(cat "$work/load.out")

# Warm handover: a 64 MiB working set of 4,000 files.
mkdir "$mnt/set" && for i in $(seq 0 3999); do head -c 16384 /dev/urandom > "$mnt/set/f$i"; done
"$work/readset" "$mnt/set" 4000 >/dev/null     # into the host's cache
before=$("$work/readset" "$mnt/set" 4000)
version=$(ctl status --json | grep -o '"version" *: *"[0-9.]*"' | grep -o '[0-9][0-9.]*')
other=$bin/libXV6Module2.so; [ "$version" = 2.0.0 ] && other=$bin/libXV6Module.so
ctl upgrade "$mnt" "$other" >/dev/null
after=$("$work/readset" "$mnt/set" 4000)
stop
start "$other"
cold=$("$work/readset" "$mnt/set" 4000)
stop

bench/upgrade-scaling.sh > "$work/scaling.md" || { echo "bench/upgrade-scaling.sh failed"; exit 1; }

sort -n "$work/pauses" > "$work/sorted"
n=$(wc -l < "$work/sorted")
pct() { sed -n "$(( ($1 * n + 99) / 100 ))p" "$work/sorted"; }
{
    echo "# Upgrade benchmark"
    echo
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, kernel $(uname -r), release build, image on tmpfs."
    echo "Made by \`bench/upgrade.sh\` (\`make bench\`)."
    echo
    echo "## Pause under load"
    echo
    echo "$n upgrades alternating xv6fs 1.0.0 and 2.0.0 while 8 threads create, write, fsync, read back and check,"
    echo "rename and unlink files, and write and check a file each holds open (\`Tests/mount/load.c\`)."
    echo "The pause is from closing the request gate to reopening it."
    echo
    echo "| | median | p90 | p99 | max | goal |"
    echo "|---|--:|--:|--:|--:|---|"
    echo "| pause (µs) | $(pct 50) | $(pct 90) | $(pct 99) | $(pct 100) | median < 1,000, p99 < 5,000 |"
    echo
    echo "Longest single system call the load saw over the whole run: **$slowest µs** (goal < 20,000)."
    echo "The load: \`$loadline\` (no failed call and no wrong byte is the pass condition)."
    echo "The Bento paper reports 10-15 ms of service interruption per upgrade."
    echo
    echo "![The share of upgrades that paused at most a given time (bench/plot.sh)](plots/upgrade-pauses.svg)"
    echo
    echo "## Warm handover"
    echo
    echo "Reading a 4,000-file, 64 MiB working set once, with the kernel's page cache dropped first, so that"
    echo "every read goes to the file system (files per second; higher is better):"
    echo
    echo "| before the upgrade | right after it | after unmount and mount (cold) |"
    echo "|--:|--:|--:|"
    echo "| $before | $after ($(awk -v a="$after" -v b="$before" 'BEGIN { printf "%.2f", a / b }')x) | $cold ($(awk -v a="$cold" -v b="$before" 'BEGIN { printf "%.2f", a / b }')x) |"
    echo
    echo "Goal: right after an upgrade within 10% of before. The image is on tmpfs, so even a cold mount"
    echo "reads it at memory speed and the cold column is no slower here; on a disk it would be."
    echo
    echo "Every pause, in µs, sorted:"
    echo
    echo '```'
    tr '\n' ' ' < "$work/sorted" | fold -s -w 100
    echo
    echo '```'
    echo
    echo "## The pause against what the kernel holds"
    echo
    echo "At each point a process holds files open or has looked them up (\`Tests/mount/hold.c\`), so the"
    echo "kernel holds their inodes; a fresh 8-thread load runs meanwhile. **kept in place**: upgrades"
    echo "alternating xv6fs 1.0.0 and 2.0.0, whose formats leave the host's table of lookups and handles"
    echo "where it is. **copied (2.0.4)**: in the same run, upgrades to and from a build that speaks only"
    echo "the formats of earlier builds, which copy that table through the state, as every upgrade did"
    echo "before (\`Tests/Fixtures\`, FixtureCopiedTable). The table column is what the report said the"
    echo "host's table held at the swap (the load's own files and directories included)."
    echo
    cat "$work/scaling.md"
    echo
    echo "![Median pause against the inodes the kernel holds, table kept in place or copied (bench/plot.sh)](plots/upgrade-pause-vs-held.svg)"
} > "$out"
cat "$out"
