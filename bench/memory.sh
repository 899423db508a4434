#!/bin/bash
# The daemon's memory under a small cache: xv6fs 2.0.0 (release build) on
# an image in RAM, the kernel holding many files open, and a working set
# far larger than the cache written and read back cold (O_DIRECT) three
# times. Peak resident memory of each of the daemon's processes (VmHWM),
# for cache sizes and open-file counts side by side, against the bound in
# Docs/systemd.md ("Memory").
# Usage: bench/memory.sh [OUTPUT.md]   (default Docs/benchmarks-memory.md)
# Environment: BENCH_TMP (default /dev/shm), WORKSET_MIB (default 256).
set -u -o pipefail
cd "$(dirname "$0")/.."
out=${1:-Docs/benchmarks-memory.md}
workset=${WORKSET_MIB:-256}
for p in bento-upgraded bentoctl XV6Module2 mkfs.xv6; do swift build -c release --product $p >/dev/null || exit 1; done
bin=.build/release
W=$(mktemp -d "${BENCH_TMP:-/dev/shm}/bento-memory.XXXXXX")
mnt=$W/mnt daemon= holder=
mkdir "$mnt"
cc -O2 -o "$W/hold" Tests/mount/hold.c || exit 1
cleanup() {
    [ -n "$holder" ] && kill "$holder" 2>/dev/null
    [ -n "$daemon" ] && kill -TERM "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
    grep -q " $mnt " /proc/self/mountinfo && umount -l "$mnt"
    rm -rf "$W"
}
trap cleanup EXIT
kib() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"; }

# run CACHE_MIB HELD: one row.
run() {
    local cache=$1 held=$2 i pass worker flusher
    "$bin/mkfs.xv6" --force --size 2G --inodes 131072 "$W/x.img" >/dev/null || exit 1
    "$bin/bento-upgraded" --image "$W/x.img" --mountpoint "$mnt" --module "$bin/libXV6Module2.so" --cache-mib "$cache" \
        --control-socket "$W/sock" --state-dir "$W/state" >>"$W/log" 2>&1 &
    daemon=$!
    for i in $(seq 100); do grep -q " $mnt " /proc/self/mountinfo && break; sleep 0.1; done
    mkfifo "$W/in" "$W/out"
    "$W/hold" "$mnt/held" "$held" open <"$W/in" >"$W/out" & holder=$!
    exec 5>"$W/in" 6<"$W/out"
    read -r -t 600 ready <&6 || { echo "hold did not answer"; exit 1; }
    mkdir "$mnt/ws"
    for pass in 1 2 3; do
        for i in $(seq $((workset / 4))); do
            dd if=/dev/urandom of="$mnt/ws/f$i" bs=1M count=4 conv=notrunc status=none || exit 1
        done
        sync -f "$mnt"
        for i in $(seq $((workset / 4))); do dd if="$mnt/ws/f$i" of=/dev/null bs=1M iflag=direct status=none || exit 1; done
    done
    worker=$(pgrep -P "$daemon" -f -- --worker | head -1)
    flusher=$(pgrep -P "$worker" | head -1)
    printf '| %s MiB | %s | %s MiB | %.1f | %.1f | %.1f | %.1f |\n' "$cache" "$held" "$workset" \
        "$(kib "$daemon" VmHWM | awk '{print $1 / 1024}')" "$(kib "$worker" VmHWM | awk '{print $1 / 1024}')" \
        "$(kib "$flusher" VmHWM | awk '{print $1 / 1024}')" \
        "$(awk -v c="$cache" -v h="$held" 'BEGIN { print 30 + c + 55 + h * 1.2 / 1024 }')" >>"$W/rows"
    echo quit >&5; exec 5>&- 6<&-; wait "$holder"; holder=
    rm -f "$W/in" "$W/out"
    kill -TERM "$daemon"; wait "$daemon"; daemon=
}

for cache in 8 64; do for held in 1 10000; do run "$cache" "$held"; done; done
{
    echo "# The daemon's memory under a small cache"
    echo
    echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC'); $(nproc) cores, kernel $(uname -r); commit $(git rev-parse --short HEAD)"
    echo "- Command: \`bench/memory.sh\`: xv6fs 2.0.0, release build, image in RAM; the kernel holds HELD files open (Tests/mount/hold.c), then a working set of ${workset} MiB (4 MiB files) is written and read back with O_DIRECT three times, so every read reaches the daemon."
    echo "- Peak resident memory (VmHWM) of each process, MiB. The flusher is a fork of the worker: most of its pages are the worker's, shared, and a cgroup counts them once."
    echo "- Bound: the one Docs/systemd.md (\"Memory\") gives for the whole daemon with one mount: 30 MiB + cache_mib + 55 MiB + 1.2 KiB per inode the kernel holds."
    echo
    echo "| cache_mib | held open | working set | supervisor | worker | flusher | bound (all) |"
    echo "|---|--:|--:|--:|--:|--:|--:|"
    cat "$W/rows"
} >"$out"
cat "$out"
