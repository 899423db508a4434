#!/bin/bash
# stress-ng's file system stressors, with their own --verify checks, through
# a real mount, while the mount is upgraded back and forth between xv6fs
# 1.0.0 and 2.0.0 every second or so: names, attributes and data the kernel
# caches across each swap (Docs/caching.md) must stay right for a suite we
# did not write. Then fsck.
# Usage: Tests/mount/stress-ng.sh BIN_DIR [SECONDS]
set -u
bin=$(cd "${1:?usage: $0 BIN_DIR [SECONDS]}" && pwd)
seconds=${2:-40}
work=$(mktemp -d /dev/shm/bento-stress.XXXXXX)
chmod 755 "$work"
mnt=$work/mnt sock=$work/control.sock log=$work/daemon.log
passed=0 failed=0 daemon=
ok()   { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; }
expect() { local name=$1; shift; if "$@" >/dev/null 2>&1; then ok "$name"; else fail "$name"; fi; }
cleanup() {
    [ -n "$daemon" ] && kill -TERM "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
    grep -q " $mnt " /proc/self/mountinfo && umount -l "$mnt"
    rm -rf "$work"
}
trap cleanup EXIT
command -v stress-ng >/dev/null || { echo "FAIL stress-ng is not installed (Debian package stress-ng)"; exit 1; }

"$bin/mkfs.xv6" --size 1G --inodes 65536 "$work/x.img" >/dev/null
mkdir "$mnt"
"$bin/bento-upgraded" --image "$work/x.img" --mountpoint "$mnt" --module "$bin/libXV6Module.so" --allow-other \
    --control-socket "$sock" --state-dir "$work/state" >"$log" 2>&1 &
daemon=$!
for _ in $(seq 100); do [ -S "$sock" ] && stat -f "$mnt" 2>/dev/null | grep -q fuse && break; sleep 0.1; done
mkdir "$mnt/s" && chmod 777 "$mnt/s"

# Stressors of names (dentry, dir, filename, rename, link, symlink),
# attributes (chmod, fstat) and data (hdd, seek), each checking its results.
stress-ng --dentry 2 --dir 2 --filename 1 --rename 2 --link 1 --symlink 1 --chmod 1 --fstat 1 \
    --hdd 1 --hdd-bytes 8M --seek 1 --seek-size 16M \
    --timeout "${seconds}s" --verify --metrics-brief --temp-path "$mnt/s" >"$work/stress.out" 2>&1 &
stress=$!
upgrades=0 refused=0
sleep 2
while kill -0 "$stress" 2>/dev/null; do
    target=$bin/libXV6Module2.so; [ $((upgrades % 2)) -eq 1 ] && target=$bin/libXV6Module.so
    if "$bin/bentoctl" --socket "$sock" upgrade "$mnt" "$target" --probation 0 >/dev/null; then
        upgrades=$((upgrades + 1))
    else
        refused=$((refused + 1))
    fi
    sleep 1
done
wait "$stress"; rc=$?
grep -E "successful run|unsuccessful|fail|error" "$work/stress.out" | head -5 | sed 's/^/     /'
expect "stress-ng ran and its --verify checks passed (exit $rc)" test "$rc" -eq 0
expect "no stressor failed" bash -c "! grep -qiE 'stressor.*failed|fail: |unsuccessful' '$work/stress.out'"
expect "$upgrades live upgrades under it, none refused" test "$upgrades" -ge $((seconds / 4)) -a "$refused" -eq 0
kill -TERM "$daemon"; wait "$daemon"; daemon=
expect "fsck: clean" "$bin/fsck.xv6" -n "$work/x.img"
echo "stress-ng: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
