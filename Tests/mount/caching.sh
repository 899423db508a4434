#!/bin/bash
# What the kernel caches stays true across versions (Docs/caching.md). The
# kernel keeps names, absent names and attributes for a day; an upgrade, a
# rollback and a worker's restart make it drop them, and xv6fs 2.x reports
# what it changes by itself (/.provenance). Every check looks at once, with
# no wait, after the change it is about.
# Usage: Tests/mount/caching.sh BIN_DIR
set -u
bin=$(cd "${1:?usage: $0 BIN_DIR}" && pwd)
work=$(mktemp -d /dev/shm/bento-caching.XXXXXX)
chmod 755 "$work"
mnt=$work/mnt sock=$work/control.sock log=$work/daemon.log
v1=$bin/libXV6Module.so v2=$bin/libXV6Module2.so view=$bin/libFixtureOtherView.so
passed=0 failed=0 daemon=
ok()   { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; }
expect() { local name=$1; shift; if "$@" >/dev/null 2>&1; then ok "$name"; else fail "$name"; fi; }
ctl() { "$bin/bentoctl" --socket "$sock" "$@"; }
field() { ctl status --json | python3 -c "import json, sys; print(json.load(sys.stdin)['mounts'][0].get('$1'))"; }
ops() { ctl status --json | python3 -c "import json, sys; o = json.load(sys.stdin)['mounts'][0]['operations']; print(o.get('lookup', 0) + o.get('getattr', 0))"; }
version() { ctl status --json | python3 -c "import json, sys; print(json.load(sys.stdin)['mounts'][0]['module']['version'])"; }
uid_of() { stat -c %u "$1" 2>/dev/null; }
fd_uid() { python3 -c 'import os; print(os.fstat(8).st_uid)'; }   # through the open descriptor, no path
worker() { pgrep -P "$daemon" -f -- --worker; }
cleanup() {
    exec 8<&- 2>/dev/null
    [ -n "$daemon" ] && kill -TERM "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
    grep -q " $mnt " /proc/self/mountinfo && umount -l "$mnt"
    rm -rf "$work"
}
trap cleanup EXIT

"$bin/mkfs.xv6" --size 256M "$work/x.img" >/dev/null
mkdir "$mnt"
"$bin/bento-upgraded" --image "$work/x.img" --mountpoint "$mnt" --module "$v1" \
    --control-socket "$sock" --state-dir "$work/state" >"$log" 2>&1 &
daemon=$!
for _ in $(seq 100); do [ -S "$sock" ] && stat -f "$mnt" 2>/dev/null | grep -q fuse && break; sleep 0.1; done
expect "serving 1.0.0" test "$(version)" = 1.0.0

# Without long caching the checks below would still be right, but the kernel
# would ask every second; the rest of this test is about the long kind.
cache=$(field kernelCacheSeconds)
echo "     the kernel caches names and attributes for $cache s"
if [ "${cache%.*}" -le 1 ] 2>/dev/null; then
    echo "skip the kernel here cannot drop every cached name at once (FUSE before 7.44): nothing is cached long"
    exit 0
fi

echo "== cached long"
echo data > "$mnt/f"
stat "$mnt/f" >/dev/null; stat "$mnt/absent" 2>/dev/null
before=$(ops); sleep 1.5
stat "$mnt/f" >/dev/null; stat "$mnt/absent" 2>/dev/null
expect "after 1.5 s, a name, an absent name and attributes are still cached (no lookup, no getattr)" test "$(ops)" = "$before"

echo "== a worker killed just after a create and an unlink"
echo gone > "$mnt/unlinked"
old=$(worker)
echo "made just before" > "$mnt/before-crash"; rm "$mnt/unlinked"; kill -KILL "$old"
for _ in $(seq 100); do w=$(worker); [ -n "$w" ] && [ "$w" != "$old" ] && [ "$(field state)" = serving ] && break; sleep 0.05; done
expect "a new worker serves" test "$(worker)" != "$old"
expect "the file made just before the kill is there, with its data" grep -qx "made just before" "$mnt/before-crash"
expect "the file removed just before the kill stays gone" test ! -e "$mnt/unlinked"
echo 2 > /proc/sys/vm/drop_caches   # what the kernel shows now comes from the new worker
expect "... also as the new worker answers" grep -qx "made just before" "$mnt/before-crash"

echo "== an upgrade and a rollback that change what is there"
echo hidden > "$mnt/hidden-in-2.0.5"
stat "$mnt/hidden-in-2.0.5" "$mnt/f" >/dev/null; stat "$mnt/absent" 2>/dev/null
exec 8<"$mnt/f"
expect "1.0.0: f belongs to root, also through an open descriptor" test "$(uid_of "$mnt/f")/$(fd_uid)" = 0/0
ctl upgrade "$mnt" "$view" --probation 0 >/dev/null
expect "upgraded to 2.0.5" test "$(version)" = 2.0.5
expect "2.0.5 at once: f belongs to uid 2005" test "$(uid_of "$mnt/f")" = 2005
expect "2.0.5 at once: also through the descriptor opened under 1.0.0" test "$(fd_uid)" = 2005
expect "2.0.5 at once: hidden-in-2.0.5 is not there" test ! -e "$mnt/hidden-in-2.0.5"
expect "2.0.5 at once: nor in a listing" bash -c "! ls -a '$mnt' | grep -qx hidden-in-2.0.5"
ctl rollback "$mnt" >/dev/null
expect "rolled back to 1.0.0" test "$(version)" = 1.0.0
expect "1.0.0 at once: f belongs to root again" test "$(uid_of "$mnt/f")/$(fd_uid)" = 0/0
expect "1.0.0 at once: hidden-in-2.0.5 is back, with its data" grep -qx hidden "$mnt/hidden-in-2.0.5"
expect "the absent name stays absent" test ! -e "$mnt/absent"
exec 8<&-

echo "== /.provenance, which xv6fs 2.0.0 writes by itself"
expect "1.0.0: no /.provenance yet (an absent name the kernel caches)" test ! -e "$mnt/.provenance"
ctl upgrade "$mnt" "$v2" --probation 0 >/dev/null
expect "upgraded to 2.0.0" test "$(version)" = 2.0.0
touch "$mnt/p1"
expect "2.0.0 at once: /.provenance appears after the first operation" test -f "$mnt/.provenance"
expect "... and records it" grep -q 'name="p1"' "$mnt/.provenance"
size=$(stat -c %s "$mnt/.provenance")
touch "$mnt/p2"
expect "at once: the next record is read too (the file grew behind the kernel's back)" grep -q 'name="p2"' "$mnt/.provenance"
expect "its size as stat shows it is what a read finds" test "$(stat -c %s "$mnt/.provenance")" = "$(wc -c < "$mnt/.provenance")"
expect "it grew" test "$(stat -c %s "$mnt/.provenance")" -gt "$size"
ctl rollback "$mnt" >/dev/null
expect "1.0.0 at once: /.provenance is a plain file it reads as it is" bash -c \
    "grep -q 'name=\"p2\"' '$mnt/.provenance' && test \$(stat -c %s '$mnt/.provenance') = \$(wc -c < '$mnt/.provenance')"

echo "== write-only handles write past the page cache (where the kernel then drops what they overwrite)"
resident() { fincore --bytes --noheadings --output RES "$1"; }
# A reader caches a file's pages; handles opened write-only write over them
# and append to the page it cached last: the reader sees each at once.
over_cached=$(cat <<'PY'
import os, sys
path = sys.argv[1]
with open(path, "wb") as f:
    f.write(b"a" * 10000)
reader = os.open(path, os.O_RDONLY)
assert os.pread(reader, 20000, 0) == b"a" * 10000
writer = os.open(path, os.O_WRONLY)
os.pwrite(writer, b"b" * 100, 4000)
expected = b"a" * 4000 + b"b" * 100 + b"a" * 5900
assert os.pread(reader, 20000, 0) == expected, "overwrite not seen"
appender = os.open(path, os.O_WRONLY | os.O_APPEND)
os.write(appender, b"c" * 50)
expected += b"c" * 50
assert os.pread(reader, 20000, 0) == expected, "append not seen"
assert os.fstat(reader).st_size == len(expected)
with open("/proc/sys/vm/drop_caches", "w") as f:
    f.write("3")
assert os.pread(reader, 20000, 0) == expected, "not what reached the module"
PY
)
dd if=/dev/urandom of="$work/wo.data" bs=64k count=16 status=none
dd if="$work/wo.data" of="$mnt/wo" bs=64k status=none   # dd opens its output write-only
if [ "$(field writeOnlyPastPageCache)" = True ]; then
    expect "dd's output is not in the page cache" test "$(resident "$mnt/wo")" -eq 0
else
    echo "     this kernel ($(uname -r)) keeps pages a direct write overwrites: write-only handles write through the page cache"
    expect "dd's output is in the page cache" test "$(resident "$mnt/wo")" -gt 0
fi
echo 3 > /proc/sys/vm/drop_caches
expect "... and reads back whole after the caches are dropped" cmp "$work/wo.data" "$mnt/wo"
expect "a reader sees at once what write-only handles write over its cached pages and append" \
    python3 -c "$over_cached" "$mnt/shared"

kill -TERM "$daemon"; wait "$daemon"; daemon=
expect "fsck: clean" "$bin/fsck.xv6" -n "$work/x.img"
echo "caching: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
