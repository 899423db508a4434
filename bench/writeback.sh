#!/bin/bash
# The writeback cache on and off, with the tools users run: dd with 4 KiB
# and 1 MiB writes, cp of a 400 MB file, and on a part of the Linux source
# tree: untar, `git add -A -f && git commit` (-f: Debian's tree ignores
# itself; no gc in the background), `git status`, `du -s`, rm -rf.
# Each round serves a fresh 4 GiB image on tmpfs twice, with
# `--writeback-cache` and without (the default), one after the other.
# Seconds, each with a sync of the mount where it writes; Docs/caching.md
# ("The writeback cache, on and off") has a run's figures.
# Usage: bench/writeback.sh [ROUNDS]   (default 2; needs root, /dev/fuse,
# git and Debian's linux-source-6.1; uses the release build in .build/release)
set -u -o pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
rounds=${1:-2}
bin=$repo/.build/release
source=/usr/src/linux-source-6.1.tar.xz
for p in bento-upgraded XV6Module mkfs.xv6; do (cd "$repo" && swift build -c release --product $p >/dev/null) || exit 1; done
[ -r "$source" ] || { echo "bench/writeback.sh: missing $source (apt-get install linux-source-6.1)"; exit 1; }
command -v git >/dev/null || { echo "bench/writeback.sh: needs git"; exit 1; }
W=$(mktemp -d /dev/shm/bento-writeback.XXXXXX)
mnt=$W/mnt daemon=
cleanup() {
    [ -n "$daemon" ] && kill -TERM "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
    grep -q " $mnt " /proc/self/mountinfo && umount -l "$mnt"
    rm -rf "$W"
}
trap cleanup EXIT
mkdir "$mnt"
# The first 90 MB of the source tree, and a file of random bytes.
mkdir "$W/stage"
{ xz -dc "$source" | head -c 90M | tar -x -C "$W/stage" 2>/dev/null; } || true
tar -cf "$W/part.tar" -C "$W/stage" . && rm -rf "$W/stage"
head -c 400M /dev/urandom > "$W/big"
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@localhost GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@localhost

# seconds CMD...: how long CMD and a sync of the mount took.
seconds() {
    local t0 t1
    t0=$(date +%s.%N)
    "$@" >/dev/null 2>"$W/err" || { echo "bench/writeback.sh: failed: $*" >&2; head -n 3 "$W/err" >&2; }
    sync -f "$mnt"
    t1=$(date +%s.%N)
    awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }'
}
# in_tree CMD...: CMD in the unpacked tree (its one top folder).
in_tree() { cd "$mnt/tree"/* && "$@"; }
rows=("dd bs=4k, 200 MB" "dd bs=1M, 200 MB" "cp of a 400 MB file" "untar ($(tar -tf "$W/part.tar" | wc -l) entries, $(( $(stat -c %s "$W/part.tar") / 1000000 )) MB)"
      "git add -A -f && git commit" "git status" "du -s" "rm -rf")
declare -A results
for r in $(seq "$rounds"); do
    for way in on off; do
        "$bin/mkfs.xv6" --size 4G --inodes 262144 "$W/x.img" >/dev/null
        flag=--no-writeback-cache; [ $way = on ] && flag=--writeback-cache
        "$bin/bento-upgraded" --image "$W/x.img" --mountpoint "$mnt" --module "$bin/libXV6Module.so" $flag \
            --control-socket "$W/control.sock" --state-dir "$W/state" >>"$W/daemon.log" 2>&1 &
        daemon=$!
        for _ in $(seq 100); do stat -f "$mnt" 2>/dev/null | grep -q fuse && break; sleep 0.05; done
        times=("$(seconds dd if=/dev/zero of="$mnt/a" bs=4k count=50000)"
               "$(seconds dd if=/dev/zero of="$mnt/b" bs=1M count=200)"
               "$(seconds cp "$W/big" "$mnt/c")"
               "$(mkdir "$mnt/tree" && seconds tar -xf "$W/part.tar" -C "$mnt/tree")"
               "$(seconds in_tree sh -c 'git init -q && git add -A -f && git -c gc.auto=0 commit -qm tree')"
               "$(seconds in_tree git status --porcelain)"
               "$(seconds in_tree du -s .)"
               "$(seconds rm -rf "$mnt/tree")")
        for i in "${!rows[@]}"; do results[$way,$i]="${results[$way,$i]:+${results[$way,$i]} }${times[$i]}"; done
        kill -TERM "$daemon"; wait "$daemon"; daemon=
        rm -rf "$W/state" "$W/x.img"
    done
    echo "round $r of $rounds done" >&2
done
echo "| seconds, each round | writeback cache | none (the default) |"
echo "|---|--:|--:|"
for i in "${!rows[@]}"; do echo "| ${rows[$i]} | ${results[on,$i]} | ${results[off,$i]} |"; done
