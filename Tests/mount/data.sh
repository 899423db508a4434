#!/bin/bash
# xv6fs 3.0.0's file data features through a real mount, with the tools
# users run: `fallocate -l`, `-n`, `-p`, `-z`; `cp --sparse=always` and
# `tar -S` keeping holes (du); SEEK_DATA/SEEK_HOLE; `truncate` cuts through
# a 16 MiB file's address tables and its `rm`, df and du; `truncate -s 2T`
# and a write near 1 TiB read back. Every content check reads what reached the
# disk (drop_caches, then a remount). Then a live upgrade from 2.0.0 to
# 3.0.0 under an 8-thread self-checking load, the features used, the way
# back refused with its reason (bentoctl and its history), fsck clean.
# Last, a worker killed -9 just after unsynced xattr, fallocate and far
# writes: the operation journal keeps every answered one.
# Usage: Tests/mount/data.sh BIN_DIR
set -u
bin=$(cd "${1:?usage: $0 BIN_DIR}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /dev/shm/bento-data.XXXXXX)
img=$work/x.img mnt=$work/m sock=$work/control.sock log=$work/daemon.log
v2=$bin/libXV6Module2.so v3=$bin/libXV6Module3.so
passed=0 failed=0 daemon= loadpid=
ok()   { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; }
expect() { local name=$1; shift; if "$@" >/dev/null 2>&1; then ok "$name"; else fail "$name"; fi; }
not() { ! "$@"; }
ctl() { "$bin/bentoctl" --socket "$sock" "$@"; }
start() {
    "$bin/bento-upgraded" --image "$img" --mountpoint "$mnt" --module "${1:-$v3}" \
        --control-socket "$sock" --state-dir "$work/state" >>"$log" 2>&1 &
    daemon=$!
    for _ in $(seq 100); do ctl status 2>/dev/null | grep -q serving && return 0; sleep 0.1; done
    return 1
}
stop() { umount "$mnt" && wait "$daemon"; daemon=; }
# What reached the disk: the page cache dropped, then the mount remade.
from_disk() { sync && echo 3 >/proc/sys/vm/drop_caches && stop && start; }
kib() { du -k "$1" | cut -f1; }
cleanup() {
    [ -n "$loadpid" ] && kill "$loadpid" 2>/dev/null
    grep -q " $mnt " /proc/self/mountinfo && umount -l "$mnt"
    [ -n "$daemon" ] && kill -TERM "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
chmod 755 "$work"
mkdir -p "$mnt"
cc -O2 -pthread -o "$work/load" "$here/load.c" || { echo "FAIL cannot build the load"; exit 1; }

"$bin/mkfs.xv6" -q --size 512M "$img"
expect "xv6fs 3.0.0 serves a 512 MiB image" start

# --- fallocate ---------------------------------------------------------------
expect "fallocate -l 64M" fallocate -l 64M "$mnt/pre"
expect "  the size is 64 MiB" test "$(stat -c %s "$mnt/pre")" = $((64 << 20))
expect "  and du counts it ($(kib "$mnt/pre") KiB)" test "$(kib "$mnt/pre")" -ge $((64 * 1024))
# (fallocate -n opens without O_CREAT: the file must exist.)
touch "$mnt/kept"
expect "fallocate -n -l 8M (keep size)" fallocate -n -l 8M "$mnt/kept"
expect "  the size stays 0, du counts 8 MiB" test "$(stat -c %s "$mnt/kept")" = 0 -a "$(kib "$mnt/kept")" -ge 8192
head -c 16M /dev/urandom >"$work/data"
cp "$work/data" "$mnt/punched" && sync "$mnt/punched"
before=$(kib "$mnt/punched")
expect "fallocate -p -o 4M -l 8M (punch a hole)" fallocate -p -o 4M -l 8M "$mnt/punched"
expect "  du drops by 8 MiB ($before -> $(kib "$mnt/punched") KiB)" test "$(kib "$mnt/punched")" -le $((before - 8192))
# An unaligned punch and zero range: partial blocks are zeroed in place.
cp "$work/data" "$mnt/zeroed" && sync "$mnt/zeroed"
expect "fallocate -z -o 1000 -l 100000 (zero a range)" fallocate -z -o 1000 -l 100000 "$mnt/zeroed"
expect "fallocate -p -o 5000000 -l 3333 (an unaligned hole)" fallocate -p -o 5000000 -l 3333 "$mnt/zeroed"
python3 - "$work/data" "$work/punched.want" "$work/zeroed.want" <<'EOF'
import sys
data = bytearray(open(sys.argv[1], "rb").read())
p = bytearray(data); p[4 << 20:12 << 20] = bytes(8 << 20); open(sys.argv[2], "wb").write(p)
z = bytearray(data); z[1000:101000] = bytes(100000); z[5000000:5003333] = bytes(3333); open(sys.argv[3], "wb").write(z)
EOF
expect "drop_caches and a remount" from_disk
expect "the preallocated file reads as zeros" cmp "$mnt/pre" <(head -c 64M /dev/zero)
expect "the punched file: zeros in the hole, the data around it" cmp "$mnt/punched" "$work/punched.want"
expect "the zeroed file: zeros in both ranges, the data around them" cmp "$mnt/zeroed" "$work/zeroed.want"
expect "a write into preallocated space reads back" bash -c "
    dd if='$work/data' of='$mnt/pre' bs=1M count=2 seek=10 conv=notrunc status=none && sync '$mnt/pre'"

# --- Sparse files: holes kept and found ----------------------------------------
truncate -s 100M "$mnt/sparse"
for at in 0 37 99; do dd if="$work/data" of="$mnt/sparse" bs=1M count=1 seek=$at conv=notrunc status=none; done
sync "$mnt/sparse"
expect "a 100 MiB file with 3 MiB of data takes about 3 MiB ($(kib "$mnt/sparse") KiB)" test "$(kib "$mnt/sparse")" -le 4096
expect "SEEK_DATA and SEEK_HOLE find the data and the holes" python3 - "$mnt/sparse" <<'EOF'
import os, sys
fd, M = os.open(sys.argv[1], os.O_RDONLY), 1 << 20
found = [(os.lseek(fd, 0, os.SEEK_HOLE)), os.lseek(fd, 2 * M, os.SEEK_DATA), os.lseek(fd, 37 * M, os.SEEK_HOLE),
         os.lseek(fd, 39 * M, os.SEEK_DATA), os.lseek(fd, 99 * M, os.SEEK_HOLE)]
want = [M, 37 * M, 38 * M, 99 * M, 100 * M]
print(found, want)
sys.exit(found != want)
EOF
expect "cp --sparse=always keeps the holes ($(cp --sparse=always "$mnt/sparse" "$mnt/sparse.cp"; kib "$mnt/sparse.cp") KiB)" \
    test "$(kib "$mnt/sparse.cp")" -le 4096
expect "tar -S keeps them too" bash -c "cd '$mnt' && tar -cSf '$work/s.tar' sparse && mkdir x && tar -xSf '$work/s.tar' -C x && [ \$(du -k x/sparse | cut -f1) -le 4096 ]"
expect "drop_caches and a remount" from_disk
expect "the copies read as the original" bash -c "cmp '$mnt/sparse' '$mnt/sparse.cp' && cmp '$mnt/sparse' '$mnt/x/sparse'"

# --- Cuts through the address tables ------------------------------------------
# 16 MiB maps blocks through the indirect table (past 152 KiB) and the
# double-indirect tree (past 4 MiB + 152 KiB). Each cut frees what lies
# above it: inside the tree, inside the table, among the direct blocks.
df_used() { sync -f "$mnt" && df -k --output=used "$mnt" | tail -1; }
before=$(df_used)
cp "$work/data" "$mnt/cut"
for size in 9000000 1000000 100000; do
    expect "truncate -s $size (of 16 MiB)" truncate -s $size "$mnt/cut"
    head -c $size "$work/data" >"$work/cut.want"
    expect "drop_caches and a remount" from_disk
    expect "  the first $size bytes read back, nothing after" cmp "$mnt/cut" "$work/cut.want"
done
expect "  du counts 25 blocks ($(kib "$mnt/cut") KiB)" test "$(kib "$mnt/cut")" -eq 100
rm "$mnt/cut"
# (64 KiB of slack: the directory keeps its entry's block, and 3.0.0 records
# provenance; fsck below finds any block leaked.)
expect "rm gives the space back ($before -> $(df_used) KiB used)" test "$(df_used)" -le $((before + 64))

# --- A file past 1 TiB ----------------------------------------------------------
expect "truncate -s 2T" truncate -s 2T "$mnt/huge"
expect "a write of 1 MiB ending at 1 TiB" dd if="$work/data" of="$mnt/huge" bs=1M count=1 seek=$(((1 << 20) - 1)) conv=notrunc,fsync status=none
expect "a write of 1 MiB at 1.5 TiB" dd if="$work/data" of="$mnt/huge" bs=1M count=1 skip=1 seek=$((3 << 19)) conv=notrunc,fsync status=none
expect "drop_caches and a remount" from_disk
expect "the size is 2 TiB" test "$(stat -c %s "$mnt/huge")" = $((2 << 40))
expect "the data near 1 TiB reads back" cmp <(dd if="$mnt/huge" bs=1M count=1 skip=$(((1 << 20) - 1)) status=none) <(head -c 1M "$work/data")
expect "the data at 1.5 TiB reads back" cmp <(dd if="$mnt/huge" bs=1M count=1 skip=$((3 << 19)) status=none) <(head -c 2M "$work/data" | tail -c 1M)
expect "a hole between them reads as zeros" cmp <(dd if="$mnt/huge" bs=1M count=1 skip=$((5 << 18)) status=none) <(head -c 1M /dev/zero)
expect "past 4 TiB is refused (EFBIG)" not dd if=/dev/zero of="$mnt/huge" bs=4k count=1 seek=$((5 << 28)) conv=notrunc status=none
expect "truncate back to 1 MiB" truncate -s 1M "$mnt/huge"
df_kib=$(df -k --output=used "$mnt" | tail -1)
expect "the daemon stops" stop
if "$bin/fsck.xv6" -n "$img" >"$work/fsck.out" 2>&1; then ok "fsck clean"; else fail "fsck clean"; tail -5 "$work/fsck.out"; fi
expect "fsck names the features in use" grep -qE "features: .*(bigfile|unwritten)" "$work/fsck.out"
expect "xv6fs 2.0.0 refuses the image" not timeout 30 "$bin/bento-upgraded" --image "$img" --mountpoint "$mnt" \
    --module "$v2" --control-socket "$work/other.sock" --state-dir "$work/other"

# --- 2.0.0 to 3.0.0 under an 8-thread load; the way back refused --------------------
img=$work/upgraded.img
"$bin/mkfs.xv6" -q --size 256M "$img"
rm -rf "$work/state"
expect "xv6fs 2.0.0 serves a new image" start "$v2"
expect "2.0.0 refuses fallocate" not fallocate -l 1M "$mnt/early"
mkdir "$mnt/load"
"$work/load" "$mnt/load" 8 600 >"$work/load.out" 2>&1 &
loadpid=$!
sleep 3
out=$(ctl upgrade "$mnt" "$v3" --probation 0 2>&1)
expect "live upgrade to 3.0.0 under the load ($out)" grep -q "2.0.0 -> 3.0.0" <<<"$out"
sleep 3
expect "fallocate works at once" fallocate -l 32M "$mnt/after"
expect "a file past 4 GiB" truncate -s 5G "$mnt/after-big"
expect "an extended attribute is set" setfattr -n user.v -v 3 "$mnt/after"
touch "$mnt/load/STOP"; wait "$loadpid"; load_rc=$?; loadpid=
sed 's/^/     /' "$work/load.out"
expect "the load saw no error and no wrong byte" test "$load_rc" -eq 0
out=$(ctl upgrade "$mnt" "$v2" --probation 0 2>&1); status=$?
echo "     $out"
expect "back to 2.0.0 is refused" test $status -ne 0
expect "  saying which features 2.0.0 does not know" grep -qE "does not know: .*(unwritten|bigfile)" <<<"$out"
expect "  and bentoctl history says so" bash -c "'$bin/bentoctl' --socket '$sock' history '$mnt' | grep -q 'does not know'"
expect "3.0.0 serves on" test "$(stat -c %s "$mnt/after")" = $((32 << 20))
expect "the daemon stops" stop
if "$bin/fsck.xv6" -n "$img" >"$work/fsck.out" 2>&1; then ok "fsck clean after the upgrade"; else fail "fsck clean after the upgrade"; tail -5 "$work/fsck.out"; fi

# --- A worker killed -9 after answered, unsynced changes: the operation journal ---
# Extended attributes (inline and in blocks), fallocate, a punched hole, a
# zeroed range and writes in the triple-indirect range, none fsynced: each
# was answered, so the journal the supervisor holds keeps it through the
# worker's death, and the next worker recovers it.
img=$work/journal.img
"$bin/mkfs.xv6" -q --size 64M "$img"
rm -rf "$work/state"
expect "3.0.0 serves a new image" start
worker() { pgrep -P "$daemon" -f -- --worker; }
state() { ctl status --json | python3 -c "import json, sys; print(json.load(sys.stdin)['mounts'][0].get('state'))"; }
# Each feature's first use commits at once (the superblock): used and
# synced first, so that only the journal can keep what follows.
touch "$mnt/warm" && setfattr -n user.w -v 1 "$mnt/warm" && fallocate -n -l 1M "$mnt/warm" &&
    truncate -s 6G "$mnt/warm" && echo x >>"$mnt/warm" && sync -f "$mnt/warm"
# 3000 bytes: blocks of their own. setfattr decodes a value that starts
# with 0x or 0s (about one random base64 string in 2,000), so it starts with v.
large=v$(head -c 2250 /dev/urandom | base64 -w0 | cut -c2-)
head -c 512K /dev/urandom >"$work/jdata"
old=$(worker)
cp "$work/jdata" "$mnt/j" &&   # the close sends every cached page (writeback cache)
setfattr -n user.small -v small-value "$mnt/j" && setfattr -n user.large -v "$large" "$mnt/j" &&
    setfattr -n user.gone -v soon "$mnt/j" && setfattr -x user.gone "$mnt/j" &&
    fallocate -o 512K -l 256K "$mnt/j" && fallocate -n -o 768K -l 256K "$mnt/j" &&
    fallocate -p -o 100000 -l 200000 "$mnt/j" && fallocate -z -o 400000 -l 50000 "$mnt/j" &&
    dd if="$work/jdata" of="$mnt/far" bs=4k count=2 seek=$((5 << 18)) conv=notrunc status=none &&
    dd if="$work/jdata" of="$mnt/far" bs=4k count=2 skip=2 seek=$(((1 << 28) - 2)) conv=notrunc status=none
expect "xattrs set and removed, fallocate, punch, zero range, far writes answered (no fsync)" test $? = 0
kill -KILL "$old"
for _ in $(seq 100); do w=$(worker); [ -n "$w" ] && [ "$w" != "$old" ] && [ "$(state)" = serving ] && break; sleep 0.1; done
expect "a new worker serves after the kill -9" test -n "$(worker)" -a "$(worker)" != "$old"
# What follows shows the journal at work only if nothing committed the
# changes before the kill (a commit every 5 s): the new worker says so.
recovered=$(grep -o "recovered [0-9]* blocks of [0-9]* operations from the operation journal" "$log" | tail -1)
expect "the new worker put back answered operations from the journal ($recovered)" test -n "$recovered"
echo 3 >/proc/sys/vm/drop_caches
python3 - "$work/jdata" "$work/j.want" <<'EOF2'
import sys
d = bytearray(open(sys.argv[1], "rb").read()) + bytes(256 << 10)
d[100000:300000] = bytes(200000); d[400000:450000] = bytes(50000)
open(sys.argv[2], "wb").write(d)
EOF2
expect "the file: size 768 KiB, the data, zeros in the preallocated, punched and zeroed ranges" cmp "$mnt/j" "$work/j.want"
expect "the KEEP_SIZE preallocation is there (du $(kib "$mnt/j") KiB >= 1 MiB - the 192 KiB hole)" test "$(kib "$mnt/j")" -ge $((1024 - 200))
expect "user.small is there" test "$(getfattr --only-values -n user.small "$mnt/j" 2>/dev/null)" = small-value
expect "user.large (3000 bytes) is there" test "$(getfattr --only-values -n user.large "$mnt/j" 2>/dev/null)" = "$large"
expect "user.gone stays removed" not getfattr -n user.gone "$mnt/j"
expect "the far file's size: just past 1 TiB" test "$(stat -c %s "$mnt/far")" = $((1 << 40))
expect "the write at 5 GiB is there" cmp <(dd if="$mnt/far" bs=4k count=2 skip=$((5 << 18)) status=none) <(head -c 8192 "$work/jdata")
expect "the write ending at 1 TiB is there" cmp <(dd if="$mnt/far" bs=4k count=2 skip=$(((1 << 28) - 2)) status=none) <(head -c 16384 "$work/jdata" | tail -c 8192)
expect "the daemon stops" stop
if "$bin/fsck.xv6" -n "$img" >"$work/fsck.out" 2>&1; then ok "fsck clean after the kill -9"; else fail "fsck clean after the kill -9"; tail -5 "$work/fsck.out"; fi

echo "data: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
