#!/bin/bash
# What reaches the disk, not what the page cache shows: appends from the
# shell, and fsmodel's random operations, compared byte for byte with a
# model after the kernel's cache is gone: drop_caches, an upgrade and a
# rollback (each on a cold kernel cache), and a remount that reads the image
# again. xv6fs 1.0.0 and 2.0.0, with and without the writeback cache.
# (A restart through the fd store and kill -9 are in Tests/systemd/checks.sh.)
# Usage: Tests/mount/persistence.sh BIN_DIR [SEEDS [OPS]]
set -u
bin=$(cd "${1:?usage: $0 BIN_DIR [SEEDS [OPS]]}" && pwd)
seeds=${2:-20} ops=${3:-150}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /dev/shm/bento-persist.XXXXXX)
chmod 755 "$work"
mnt=$work/mnt sock=$work/control.sock log=$work/daemon.log
v1=$bin/libXV6Module.so v2=$bin/libXV6Module2.so
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

cc -O2 -Wall -pthread -o "$work/fsmodel" "$here/fsmodel.c" || { echo "cannot build fsmodel"; exit 1; }
mkdir "$mnt"

# serve MODULE CACHE_FLAG: starts the daemon on the image.
serve() {
    "$bin/bento-upgraded" --image "$work/x.img" --mountpoint "$mnt" --module "$1" $2 \
        --control-socket "$sock" --state-dir "$work/state" >>"$log" 2>&1 &
    daemon=$!
    for _ in $(seq 100); do [ -S "$sock" ] && stat -f "$mnt" 2>/dev/null | grep -q fuse && return 0; sleep 0.05; done
    echo "     the daemon did not come up:"; tail -5 "$log"; return 1
}
unserve() { kill -TERM "$daemon"; wait "$daemon"; local status=$?; daemon=; return $status; }
# Dirty pages go to the file system first: drop_caches drops only clean ones.
drop_caches() { sync && echo 3 > /proc/sys/vm/drop_caches; }

# check NAME: every model of this configuration against the mount.
check() {
    local name=$1 bad=0 model out
    for model in "$work"/model.*; do
        [ -d "$model" ] || continue
        out=$("$work/fsmodel" check "$mnt/${model##*/model.}" "$model") || { bad=1; echo "$out" | head -8; }
    done
    [ $bad -eq 0 ] && ok "$name" || fail "$name"
}

# Appends the way shells and log writers make them, checked after each event.
shell_appends() {
    local d=$mnt/shell i
    mkdir "$d"
    for i in $(seq 1 200); do echo "line $i" >> "$d/app.log"; done
    seq 1 200 | sed 's/^/line /' > "$work/expect.app.log"
    for i in $(seq 1 50); do printf 'cat %05d\n' $i | cat >> "$d/cat.log"; done
    for i in $(seq 1 50); do printf 'tee %05d\n' $i | tee -a "$d/tee.log" >/dev/null; done
    for i in $(seq 1 50); do printf 'cat %05d\n' $i; done > "$work/expect.cat.log"
    for i in $(seq 1 50); do printf 'tee %05d\n' $i; done > "$work/expect.tee.log"
    # A log writer keeps one O_APPEND fd open; another process appends too.
    exec 8>>"$d/shared.log"
    for i in $(seq 1 100); do echo "writer $i" >&8; echo "other $i" >> "$d/shared.log"; done
    exec 8>&-
    for i in $(seq 1 100); do echo "writer $i"; echo "other $i"; done > "$work/expect.shared.log"
    # Six appends of 20413, 5000, 100, 9000, 4096 and 1 bytes, one write and an fsync each.
    : > "$work/expect.fsync.bin"
    local n c=A
    for n in 20413 5000 100 9000 4096 1; do
        head -c "$n" /dev/zero | tr '\0' "$c" | tee -a "$work/expect.fsync.bin" \
            | dd of="$d/fsync.bin" bs="$n" iflag=fullblock oflag=append conv=notrunc,fsync status=none
        c=$(echo "$c" | tr 'A-E' 'B-F')
    done
}
check_shell() {
    local f bad=0
    for f in app.log cat.log tee.log shared.log fsync.bin; do
        cmp "$mnt/shell/$f" "$work/expect.$f" || bad=1
    done
    [ $bad -eq 0 ] && ok "$1" || fail "$1"
}

files_checked=0
for start in v1 v2; do
    for cache in --writeback-cache --no-writeback-cache; do
        from=$v1 to=$v2; [ $start = v2 ] && from=$v2 to=$v1
        config="xv6fs $([ $start = v1 ] && echo 1.0.0 || echo 2.0.0) $cache"
        rm -rf "$work"/model.* "$work/state" "$work/x.img"
        "$bin/mkfs.xv6" --size 256M "$work/x.img" >/dev/null
        serve "$from" "$cache" || { fail "$config: serve"; continue; }
        shell_appends
        check_shell "$config: shell appends through the cache"
        drop_caches
        check_shell "$config: shell appends after drop_caches"
        for seed in $(seq 1 "$seeds"); do
            mkdir "$mnt/$seed" "$work/model.$seed"
            "$work/fsmodel" run "$mnt/$seed" "$work/model.$seed" "$seed" "$ops" 4 >/dev/null \
                || fail "$config: seed $seed: fsmodel run"
        done
        echo "     $config: seeds 1-$seeds, $ops operations on each of 4 threads"
        check "$config: every file equals its model through the cache"
        drop_caches
        check "$config: every file equals its model after drop_caches"
        out=$(ctl upgrade "$mnt" "$to" --json)
        grep -q '"result" *: *"upgraded"' <<<"$out" || { fail "$config: upgrade"; echo "     $out"; }
        drop_caches
        check "$config: after an upgrade, on a cold cache"
        check_shell "$config: shell appends after the upgrade"
        # More operations on the new version, then back.
        for seed in $(seq 1 "$seeds"); do
            "$work/fsmodel" run "$mnt/$seed" "$work/model.$seed" $((seed + 1000)) "$ops" 4 >/dev/null \
                || fail "$config: seed $((seed + 1000)): fsmodel run on the new version"
        done
        expect "$config: rollback" ctl rollback "$mnt"
        drop_caches
        check "$config: after a rollback, on a cold cache"
        expect "$config: clean stop" unserve
        expect "$config: fsck clean" "$bin/fsck.xv6" -n "$work/x.img"
        serve "$from" "$cache" || { fail "$config: serve again"; continue; }
        check "$config: after a remount, read from the image"
        check_shell "$config: shell appends after a remount"
        files_checked=$((files_checked + $(cat "$work"/model.*/manifest | grep -vc threads)))
        unserve
    done
done
echo "     $files_checked file names compared after the remounts"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
