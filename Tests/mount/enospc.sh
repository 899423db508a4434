#!/bin/bash
# A full file system fails the call that overfills it, and keeps what it
# accepted: 64 MiB images served with the writeback cache (not the
# default, but the harder case: the kernel accepts writes before the module
# sees them), filled by dd,
# Python write() (one writer, and eight at once), cp, an mmap writer, while
# an upgrade runs, and again after a delete. After each the daemon stops,
# fsck checks the image, and a new daemon reads every file back from it:
# each must hold its writer's data from the start, no zeros where data was
# written, and a single writer loses nothing it was told was written.
# Inode exhaustion, a full directory, truncate and fallocate on a full disk,
# and df while writes sit in the kernel's cache are checked too. The same
# Python writer runs on a 64 MiB ext4 for comparison (both must fail at
# write()); the bytes each accepted are printed.
# Usage: Tests/mount/enospc.sh BIN_DIR
set -u
bin=$(cd "${1:?usage: $0 BIN_DIR}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /dev/shm/bento-enospc.XXXXXX)
chmod 755 "$work"
mnt=$work/mnt sock=$work/control.sock log=$work/daemon.log img=$work/x.img
v1=$bin/libXV6Module.so v2=$bin/libXV6Module2.so
fill="python3 $here/fill.py"
MiB=1048576
passed=0 failed=0 daemon= loop= got= serve_options=--writeback-cache
ok()   { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; }
# check PYTHON-EXPRESSION JSON: whether the expression over d, the JSON, holds.
check() { python3 -c "import json, sys; d = json.loads(sys.argv[1]); sys.exit(0 if ($1) else 1)" "$2" 2>/dev/null; }
expect() { local name=$1; shift; if "$@" >/dev/null 2>&1; then ok "$name"; else fail "$name"; fi; }
ctl() { "$bin/bentoctl" --socket "$sock" "$@"; }
cleanup() {
    [ -n "$daemon" ] && kill -TERM "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
    grep -q " $mnt " /proc/self/mountinfo && umount -l "$mnt"
    grep -q " $work/ext4 " /proc/self/mountinfo && umount -l "$work/ext4"
    [ -n "$loop" ] && losetup -d "$loop"
    if [ -n "${KEEP:-}" ]; then echo "     kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
mkdir "$mnt" "$work/ext4"

serve() {
    "$bin/bento-upgraded" --image "$img" --mountpoint "$mnt" --module "$v1" $serve_options \
        --control-socket "$sock" --state-dir "$work/state" >>"$log" 2>&1 &
    daemon=$!
    for _ in $(seq 100); do [ -S "$sock" ] && stat -f "$mnt" 2>/dev/null | grep -q fuse && return 0; sleep 0.05; done
    echo "     the daemon did not come up:"; tail -5 "$log"; return 1
}
unserve() { [ -n "$daemon" ] || return 0; kill -TERM "$daemon"; wait "$daemon"; local status=$?; daemon=; return $status; }
# fresh [MKFS OPTIONS]: a new image of $image_size (64 MiB), served by 1.0.0.
image_size=64M
fresh() {
    unserve
    rm -rf "$work/state"
    "$bin/mkfs.xv6" --force --size "$image_size" "$@" "$img" >/dev/null && serve
}
free_bytes() { echo $(( $(stat -f -c '%a * %S' "$1") )); }
# reread NAME: stop, fsck, serve again: what follows reads the image.
reread() {
    local name=$1
    if unserve && "$bin/fsck.xv6" -n "$img" >"$work/fsck.out" 2>&1; then ok "$name: clean stop, fsck clean"
    else fail "$name: clean stop, fsck clean"; tail -3 "$work/fsck.out"; fi
    serve || fail "$name: serve again"
}
# stored NAME FILES...: each file holds its own data from its start and
# nothing else; the check's JSON is left in $got.
stored() {
    local name=$1; shift
    got=$(cd "$mnt" && $fill check . "$@")
    if check "all(v['prefix'] == v['size'] for v in d.values())" "$got"; then
        ok "$name: every file is its writer's data from the start, no zeros, nothing else"
    else
        fail "$name: every file is its writer's data from the start"; echo "     $got"
    fi
}

echo "== dd (no fsync), 1 MiB writes, 100 MiB into 64 MiB"
head -c $((100 * MiB)) /dev/urandom >"$work/src"
fresh || exit 1
out=$(dd if="$work/src" of="$mnt/dd" bs=1M 2>&1); status=$?
[ $status -ne 0 ] && grep -q "No space left on device" <<<"$out" && grep -q "error writing" <<<"$out" \
    && ok "dd: write() fails with ENOSPC" || { fail "dd: write() fails with ENOSPC"; echo "     $out"; }
accepted=$(sed -n 's/^\([0-9]*\) bytes.*copied.*/\1/p' <<<"$out")
reread dd
size=$(stat -c %s "$mnt/dd")
cmp -s -n "$size" "$work/src" "$mnt/dd" && [ "$size" -eq "$accepted" ] \
    && ok "dd: the file is the $accepted bytes dd was told were written" \
    || fail "dd: the file ($size bytes) is the $accepted bytes dd was told were written"

echo "== Python write(), 64 KiB, one writer; then fill, delete, fill again"
fresh || exit 1
initial=$(free_bytes "$mnt")
first=$(cd "$mnt" && $fill write . 65536 one)
check "d['one']['write_errno'] == 28 and d['one']['close_errno'] is None" "$first" \
    && ok "python: write() fails with ENOSPC, close() succeeds" || { fail "python: write() fails with ENOSPC"; echo "     $first"; }
[ "$(free_bytes "$mnt")" -lt $MiB ] && ok "python: the disk is full (less than 1 MiB free)" || fail "python: the disk is full"
rm "$mnt/one"
[ "$(free_bytes "$mnt")" -eq "$initial" ] && ok "delete: all the space is free again at once" \
    || fail "delete: $(free_bytes "$mnt") bytes free, $initial at first"
again=$(cd "$mnt" && $fill write . 65536 two)
check "d['two']['write_errno'] == 28 and d['two']['accepted'] * 100 >= $(python3 -c "import json,sys; print(json.loads(sys.argv[1])['one']['accepted'])" "$first") * 99" "$again" \
    && ok "fill again: as much is accepted as the first time" || { fail "fill again"; echo "     $first $again"; }
reread python
stored python two
check "d['two']['size'] == $(python3 -c "import json,sys; print(json.loads(sys.argv[1])['two']['accepted'])" "$again")" "$got" \
    && ok "python: a single writer loses nothing it was told was written" || { fail "python: single writer's bytes"; echo "     $again"; }
size=$(stat -c %s "$mnt/two")
truncate -s $((size / 2)) "$mnt/two"
free=$(free_bytes "$mnt")
[ "$free" -ge $((size / 2 - 2 * MiB)) ] && ok "truncate: the space of the cut half is free again at once" \
    || fail "truncate: $free bytes free after cutting $((size / 2))"
again=$(cd "$mnt" && $fill write . 65536 three)
check "d['three']['write_errno'] == 28 and d['three']['accepted'] >= $free - 2 * $MiB" "$again" \
    && ok "truncate: the freed space takes new writes, up to ENOSPC" || { fail "truncate: fill after"; echo "     $again"; }

# On 128 MiB, checking begins while they write (the reserve is 68 MiB on
# 24 GiB of memory); on 64 MiB every write is checked.
for image_size in 128M 64M; do
echo "== eight writers at once, 1 MiB writes, $image_size"
fresh || exit 1
written=$(cd "$mnt" && $fill write . $MiB t0 t1 t2 t3 t4 t5 t6 t7)
check "all(v['write_errno'] == 28 for v in d.values())" "$written" \
    && ok "8 writers: each write() loop ends in ENOSPC" || { fail "8 writers: ENOSPC at write()"; echo "     $written"; }
# A crash right after: the worker is killed, the next one recovers from
# the image and the operation journal.
worker=$(pgrep -P "$daemon" -f -- --worker)
kill -KILL $worker
for _ in $(seq 100); do w=$(pgrep -P "$daemon" -f -- --worker) && [ "$w" != "$worker" ] && ls "$mnt" >/dev/null 2>&1 && break; sleep 0.1; done
sync; echo 3 >/proc/sys/vm/drop_caches
stored "threads, after kill -9 of the worker" t0 t1 t2 t3 t4 t5 t6 t7
reread threads
stored threads t0 t1 t2 t3 t4 t5 t6 t7
threads_accepted=$(python3 -c "import json,sys; print(sum(v['accepted'] for v in json.loads(sys.argv[1]).values()))" "$written")
lost=$(python3 -c "import json,sys; w=json.loads(sys.argv[1]); s=json.loads(sys.argv[2]); print(sum(v['accepted'] for v in w.values()) - sum(v['size'] for v in s.values()))" "$written" "$got")
echo "     accepted but not stored: $lost bytes (bound: one write() per writer, $((8 * MiB)))"
[ "$lost" -le $((8 * MiB)) ] && ok "8 writers: what was lost stays within the bound" || fail "8 writers: $lost bytes lost"
done
image_size=64M

echo "== kill -9 of the worker, five times, while three writers are checked"
# The kernel writes dirty pages back for a check inside a call that waits
# unkillably for the WRITEs: a worker waiting there could never exit. The
# flusher child waits instead (Sources/CBentoFlusher).
fresh || exit 1
dd if=/dev/zero of="$mnt/pad" bs=1M count=30 status=none
(cd "$mnt" && timeout 300 $fill write . 4096 k1 k2 k3 >"$work/killed.json") &
filler=$!
back=0
for i in 1 2 3 4 5; do
    sleep 0.3
    worker=$(pgrep -P "$daemon" -f -- --worker) && kill -KILL $worker
    timeout 30 stat "$mnt/pad" >/dev/null && back=$((back + 1))
done
[ $back = 5 ] && ok "the mount serves again after each kill" || fail "the mount served again after $back of 5 kills"
wait $filler
written=$(cat "$work/killed.json")
check "all(v['write_errno'] == 28 for v in d.values())" "$written" \
    && ok "the writers go on through the kills, and end in ENOSPC at write()" || { fail "writers through the kills"; echo "     $written"; }
reread kills
stored kills k1 k2 k3

echo "== cp of a 100 MiB file"
fresh || exit 1
out=$(cp "$work/src" "$mnt/copy" 2>&1); status=$?
[ $status -ne 0 ] && grep -q "No space left on device" <<<"$out" && ok "cp: fails with ENOSPC" || { fail "cp: fails with ENOSPC"; echo "     $out"; }
reread cp
size=$(stat -c %s "$mnt/copy")
cmp -s -n "$size" "$work/src" "$mnt/copy" && [ "$size" -gt $((50 * MiB)) ] \
    && ok "cp: the copy is the source's first $size bytes" || fail "cp: the copy ($size bytes) is not a prefix of the source"

echo "== an mmap writer: ftruncate to 100 MiB, write through the mapping, msync"
fresh || exit 1
out=$($fill mmap "$mnt/mapped" $((100 * MiB)) 2>&1)
check "d['msync_errno'] in (28, 5)" "$out" && ok "mmap: msync reports the failure ($out)" || { fail "mmap: msync reports the failure"; echo "     $out"; }
reread mmap
got=$(cd "$mnt" && $fill check . mapped)
echo "     $got"
# Which pages got a block depends on the order the kernel writes them back
# in (more so with more request threads): the data need not be one prefix.
check "d['mapped']['size'] == 100 * $MiB and d['mapped']['prefix'] + 4096 * d['mapped']['data_after_hole'] > 40 * $MiB and d['mapped']['wrong_pages'] == 0" "$got" \
    && ok "mmap: the file keeps its size; more than 40 MiB of it stored; each page holds its data or, where writeback failed, zeros" || fail "mmap: what was stored"

echo "== a fill while the mount is upgraded and rolled back"
fresh || exit 1
(cd "$mnt" && $fill write . 16384 during >"$work/during.json") &
filler=$!
sleep 0.3
out=$(ctl upgrade "$mnt" "$v2" --json 2>&1)
grep -q '"result" *: *"upgraded"' <<<"$out" && ok "upgrade during the fill" || { fail "upgrade during the fill"; echo "     $out"; }
wait $filler
written=$(cat "$work/during.json")
check "d['during']['write_errno'] == 28" "$written" && ok "the fill across the upgrade ends in ENOSPC at write()" \
    || { fail "the fill across the upgrade ends in ENOSPC at write()"; echo "     $written"; }
out=$(dd if=/dev/zero of="$mnt/more" bs=64k count=100 2>&1)
grep -q "No space left on device" <<<"$out" && ok "after the upgrade, a full disk still fails write()" || fail "after the upgrade: $out"
rm -f "$mnt/more"
expect "rollback while full" ctl rollback "$mnt"
out=$(dd if=/dev/zero of="$mnt/more" bs=64k count=100 2>&1)
grep -q "No space left on device" <<<"$out" && ok "after the rollback, a full disk still fails write()" || fail "after the rollback: $out"
rm -f "$mnt/more"
reread upgrade
stored upgrade during
check "d['during']['size'] == $(python3 -c "import json,sys; print(json.loads(sys.argv[1])['during']['accepted'])" "$written")" "$got" \
    && ok "upgrade: the writer loses nothing it was told was written" || { fail "upgrade: the writer's bytes"; echo "     $written"; }

echo "== truncate, fallocate and df on a full disk"
before=$(free_bytes "$mnt")
expect "truncate -s 200M on a full disk succeeds (a hole)" truncate -s 200M "$mnt/sparse"
[ "$(free_bytes "$mnt")" -eq "$before" ] && ok "the hole takes no space" || fail "the hole took space"
out=$(fallocate -l 8M "$mnt/prealloc" 2>&1)
grep -q "Operation not supported" <<<"$out" && ok "fallocate: refused, not supported by xv6fs" || fail "fallocate: $out"
# (util-linux's fallocate --posix does not report posix_fallocate's error.)
out=$(python3 -c "import os, sys; os.posix_fallocate(os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT), 0, 8 << 20)" "$mnt/prealloc" 2>&1)
grep -q "No space left on device" <<<"$out" && ok "posix_fallocate (glibc writes the blocks): ENOSPC" || fail "posix_fallocate: $out"
rm -f "$mnt/sparse" "$mnt/prealloc"
fresh || exit 1
free=$(free_bytes "$mnt")
python3 - "$mnt/cached" "$free" <<'EOF' && ok "df counts what the kernel holds dirty as used" || fail "df while writes sit in the cache"
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o644)
os.write(fd, b"x" * (20 << 20))
st = os.statvfs(os.path.dirname(sys.argv[1]))
used = int(sys.argv[2]) - st.f_bavail * st.f_frsize
print(f"     df right after 20 MiB of write(): {used} bytes used")
os.close(fd)
sys.exit(0 if used >= 20 << 20 else 1)
EOF

echo "== without the writeback cache, the default (every write() reaches the module)"
serve_options=--no-writeback-cache
fresh || exit 1
written=$(cd "$mnt" && $fill write . 65536 direct)
check "d['direct']['write_errno'] == 28 and d['direct']['close_errno'] is None" "$written" \
    && ok "no writeback cache: write() fails with ENOSPC" || { fail "no writeback cache: ENOSPC at write()"; echo "     $written"; }
reread "no writeback cache"
stored "no writeback cache" direct
check "d['direct']['size'] == $(python3 -c "import json,sys; print(json.loads(sys.argv[1])['direct']['accepted'])" "$written")" "$got" \
    && ok "no writeback cache: nothing accepted is lost" || fail "no writeback cache: bytes lost"
serve_options=--writeback-cache

echo "== no inode left, a full directory"
fresh --inodes 64 || exit 1
made=0
while touch "$mnt/f$made" 2>"$work/touch.err"; do made=$((made + 1)); done
grep -q "No space left on device" "$work/touch.err" && ok "inodes: create fails with ENOSPC after $made files" || fail "inodes: $(cat "$work/touch.err")"
fresh || exit 1
mkdir "$mnt/dir"
(cd "$mnt" && $fill write . 65536 filler >/dev/null)
made=0
while touch "$mnt/dir/entry-with-a-long-name-$made" 2>"$work/touch.err"; do made=$((made + 1)); done
grep -q "No space left on device" "$work/touch.err" && ok "a full directory on a full disk: create fails with ENOSPC after $made names" \
    || fail "full directory: $(cat "$work/touch.err")"
reread directory

echo "== rm, then at once df and a fill (the daemon keeps FORGETs for later: DeferredForgets)"
serve_options=
fresh || exit 1
out=$(python3 - "$mnt" <<'EOF'
import os, sys, time
mnt = sys.argv[1]
def free():
    s = os.statvfs(mnt)
    return s.f_bavail * s.f_frsize
def fill(name):
    """Writes until the disk is full; the bytes accepted."""
    fd, n, chunk = os.open(f"{mnt}/{name}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), 0, b"x" * 65536
    try:
        while True:
            n += os.write(fd, chunk)
    except OSError as e:
        if e.errno != 28:
            raise
    finally:
        os.close(fd)
    return n
initial = free()
os.mkdir(f"{mnt}/tree")
data = os.urandom(40000)
for i in range(300):
    with open(f"{mnt}/tree/f{i}", "wb") as f:
        f.write(data)
# The kernel may hold a FORGET back behind the STATFS that follows (now
# and then it lets a request pass its queued FORGETs), which the daemon
# then lets another thread read for at most 10 ms (Docs/caching.md,
# "FORGETs after the reply"): all show at once on a quiet machine, but a
# busy one may keep that thread from running in time; at least half must.
# (Which requests run the FORGETs the daemon keeps: DeferredForgetsTests.)
at_once = 0
for i in range(300):
    before = free()
    os.unlink(f"{mnt}/tree/f{i}")
    at_once += free() - before >= len(data)
os.rmdir(f"{mnt}/tree")
time.sleep(0.05)
if at_once < 150 or free() != initial:
    sys.exit(f"df showed {at_once} of 300 unlinked files free at once; {free()} bytes free after, {initial} before")
first = fill("first")
os.unlink(f"{mnt}/first")
again = fill("again")
if again * 100 < first * 99:
    sys.exit(f"a fill right after the delete took {again} bytes, the first {first}")
print(f"df showed {at_once} of 300 unlinked files free at once; fills of {first} and {again} bytes")
EOF
) && ok "rm: df shows the space free at once, and a fill right after takes it all" \
    || fail "rm, then at once df and a fill: $out"
echo "     $out"
reread "rm, then at once"
serve_options=--writeback-cache

echo "== the same writers on a 64 MiB ext4"
truncate -s 64M "$work/ext4.img" && mkfs.ext4 -q -F "$work/ext4.img" && loop=$(losetup -f --show "$work/ext4.img") \
    && mount "$loop" "$work/ext4" || { fail "ext4: cannot mount"; loop=; }
if [ -n "$loop" ]; then
    ext4=$(cd "$work/ext4" && $fill write . 65536 one)
    check "d['one']['write_errno'] == 28" "$ext4" && ok "ext4: write() fails with ENOSPC" || fail "ext4: $ext4"
    echo "     one writer, accepted before ENOSPC: ext4 $(python3 -c "import json,sys; print(json.loads(sys.argv[1])['one']['accepted'])" "$ext4") bytes of 64 MiB, xv6fs $(python3 -c "import json,sys; print(json.loads(sys.argv[1])['one']['accepted'])" "$first") bytes"
    rm -f "$work/ext4/one"
    out=$(dd if="$work/src" of="$work/ext4/dd" bs=1M 2>&1)
    grep -q "error writing.*No space left on device" <<<"$out" && ok "ext4: dd's write() fails with ENOSPC" || fail "ext4: dd: $out"
    echo "     dd accepted: ext4 $(sed -n 's/^\([0-9]*\) bytes.*copied.*/\1/p' <<<"$out"), xv6fs $accepted bytes"
    rm -f "$work/ext4/dd"
    ext4=$(cd "$work/ext4" && $fill write . $MiB t0 t1 t2 t3 t4 t5 t6 t7)
    check "all(v['write_errno'] == 28 for v in d.values())" "$ext4" && ok "ext4: 8 writers, each ends in ENOSPC at write()" || fail "ext4: 8 writers: $ext4"
    echo "     8 writers accepted: ext4 $(python3 -c "import json,sys; print(sum(v['accepted'] for v in json.loads(sys.argv[1]).values()))" "$ext4") bytes, xv6fs $threads_accepted (of which $lost not stored)"
fi

unserve
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
