#!/bin/bash
# Read-only serving and format features through a real mount: an image on
# read-only storage (a read-only bind mount) served with read_only = true
# reads right, refuses every change with EROFS and keeps its bytes (sha256
# before and after), an upgrade of it carries on read-only; an image with
# an unknown incompat feature is refused with the reason while the daemon
# serves its other mounts; an unknown ro_compat feature is served
# read-only; an image whose log needs replay is served from the replayed
# state in memory (Docs/on-disk-format.md, "Read-only mounts").
# Usage: Tests/mount/readonly.sh BIN_DIR
set -u
bin=$(cd "${1:?usage: $0 BIN_DIR}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /dev/shm/bento-readonly.XXXXXX)
store=$work/store ro=$work/ro sock=$work/control.sock log=$work/daemon.log
v1=$bin/libXV6Module.so v2=$bin/libXV6Module2.so v3=$bin/libXV6Module3.so
passed=0 failed=0 daemon=
ok()   { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; }
expect() { local name=$1; shift; if "$@" >/dev/null 2>&1; then ok "$name"; else fail "$name"; fi; }
not() { ! "$@"; }
mounted() { grep -q " $1 " /proc/self/mountinfo; }
ctl() { "$bin/bentoctl" --socket "$sock" "$@"; }
# erofs COMMAND...: the command fails, saying "Read-only file system".
erofs() { local out; out=$("$@" 2>&1) && return 1; grep -q "Read-only file system" <<<"$out"; }
hashes() { (cd "$store" && sha256sum ./*.img); }
cleanup() {
    [ -n "$daemon" ] && kill -TERM "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
    for m in "$work"/m*; do mounted "$m" && umount -l "$m"; done
    mounted "$ro" && umount -l "$ro"
    rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$store" "$ro" "$work"/m{0,1,2,3,4,5}

# Content written through a writable mount (the one-mount command line:
# umount ends that daemon).
"$bin/mkfs.xv6" -q --size 32M "$store/a.img"
"$bin/bento-upgraded" --image "$store/a.img" --mountpoint "$work/m0" --module "$v1" \
    --control-socket "$work/one.sock" --state-dir "$work/one-state" >>"$log" 2>&1 &
one=$!
for _ in $(seq 100); do "$bin/bentoctl" --socket "$work/one.sock" status 2>/dev/null | grep -q serving && break; sleep 0.1; done
head -c 3000000 /dev/urandom > "$work/data"
cp "$work/data" "$work/m0/data" && mkdir "$work/m0/d" && for i in $(seq 20); do echo "$i" > "$work/m0/d/f$i"; done
echo last > "$work/m0/last"
umount "$work/m0"; wait "$one"
expect "written through a writable mount, fsck clean" "$bin/fsck.xv6" -n "$store/a.img"

# dirty.img: the log's last transaction committed but not installed (what
# a crash after the commit point leaves): its home blocks zeroed.
cp "$store/a.img" "$store/dirty.img"
homes=$(python3 - "$store/dirty.img" <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(2 * 4096); header = f.read(4096)
    count = int.from_bytes(header[4:8], "little")
    homes = [int.from_bytes(header[24 + 4 * i:28 + 4 * i], "little") for i in range(count)]
    for home in homes:
        f.seek(home * 4096); f.write(bytes(4096))
print(len(homes))
PY
)
expect "dirty.img: $homes home blocks of the log's last transaction zeroed" test "${homes:-0}" -gt 0
expect "dirty.img differs from a.img" not cmp -s "$store/a.img" "$store/dirty.img"
# An unknown incompat bit, an unknown ro_compat bit (bits no version defines).
cp "$store/a.img" "$store/incompat.img" && python3 "$here/features.py" "$store/incompat.img" 0 0 0x100000
cp "$store/a.img" "$store/rocompat.img" && python3 "$here/features.py" "$store/rocompat.img" 0 0x100000 0
expect "fsck refuses the unknown incompat bit (exit 8)" test "$("$bin/fsck.xv6" -n "$store/incompat.img" >/dev/null 2>&1; echo $?)" -eq 8

# The images on read-only storage.
mount --bind -o ro "$store" "$ro"
expect "the bind mount is read-only" erofs touch "$ro/x"
before=$(hashes)

cat > "$work/bento.toml" <<TOML
control_socket = "$sock"
state_dir = "$work/state"

[[mount]]
image = "$ro/a.img"
mountpoint = "$work/m1"
module = "$v1"
read_only = true

[[mount]]
image = "$ro/dirty.img"
mountpoint = "$work/m2"
module = "$v1"
read_only = true

[[mount]]
image = "$store/rocompat.img"
mountpoint = "$work/m3"
module = "$v2"
TOML
"$bin/bento-upgraded" --config "$work/bento.toml" >>"$log" 2>&1 &
daemon=$!
for _ in $(seq 100); do ctl status 2>/dev/null | grep -c serving | grep -q 3 && break; sleep 0.1; done

# read_only = true on read-only storage.
expect "read-only: the kernel mount is ro" test "$(findmnt -n -o OPTIONS "$work/m1" | cut -d, -f1)" = ro
expect "read-only: data reads back" cmp "$work/data" "$work/m1/data"
expect "read-only: the 20 files read back" test "$(cat "$work"/m1/d/f* | wc -l)" -eq 20
expect "read-only: create fails with EROFS" erofs sh -c "echo x > '$work/m1/new'"
expect "read-only: append fails with EROFS" erofs sh -c "echo x >> '$work/m1/data'"
expect "read-only: unlink fails with EROFS" erofs rm "$work/m1/d/f1"
expect "read-only: truncate fails with EROFS" erofs truncate -s 0 "$work/m1/data"
expect "read-only: mkdir fails with EROFS" erofs mkdir "$work/m1/x"
expect "read-only: rename fails with EROFS" erofs mv "$work/m1/last" "$work/m1/moved"
expect "read-only: chmod fails with EROFS" erofs chmod 600 "$work/m1/last"
expect "read-only: nothing changed" cmp "$work/data" "$work/m1/data"
expect "status: read-only" sh -c "'$bin/bentoctl' --socket '$sock' status | grep -q '$ro/a.img (read-only)'"
expect "status --json: readOnly" sh -c "'$bin/bentoctl' --socket '$sock' status --json | grep -q '\"readOnly\" *: *true'"

# An upgrade hands the state over; the new version serves read-only too.
out=$(ctl upgrade "$work/m1" "$v2" --json 2>&1)
expect "read-only: upgrade to 2.0.0" grep -q '"result" *: *"upgraded"' <<<"$out" || echo "     $out"
expect "after the upgrade: data reads back" cmp "$work/data" "$work/m1/data"
expect "after the upgrade: create fails with EROFS" erofs sh -c "echo x > '$work/m1/new2'"
expect "after the upgrade: no provenance file written" not test -e "$work/m1/.provenance"

# The log's last transaction, replayed in memory only.
expect "dirty log: served" mounted "$work/m2"
expect "dirty log: data reads back" cmp "$work/data" "$work/m2/data"
expect "dirty log: the last file reads back" test "$(cat "$work/m2/last")" = last
expect "dirty log: the 20 files read back" test "$(cat "$work"/m2/d/f* | wc -l)" -eq 20
expect "dirty log: logged as served from memory" grep -q "served from memory, not written to the image" "$log"

# An unknown ro_compat bit: served read-only although the storage and the
# config are writable.
expect "ro_compat: served" cmp "$work/data" "$work/m3/data"
expect "ro_compat: create fails with EROFS" erofs sh -c "echo x > '$work/m3/new'"
expect "ro_compat: unlink fails with EROFS" erofs rm "$work/m3/last"
expect "ro_compat: open for writing fails with EROFS" erofs sh -c "echo x >> '$work/m3/data'"
expect "ro_compat: logged" grep -q "serving read-only: the image uses ro_compat features xv6fs 2.0.0 does not know (ro_compat_bit_20)" "$log"

# An unknown incompat bit: refused with the reason; the others serve on.
out=$("$bin/mount.xv6" "$ro/incompat.img" "$work/m4" -o "ro,module=$v1,socket=$sock" 2>&1); status=$?
expect "incompat: mount refused (exit 32)" test $status -eq 32
expect "incompat: the reason is given" grep -q "incompat features xv6fs 1.0.0 does not know: incompat_bit_20" <<<"$out" || echo "     $out"
expect "incompat: nothing mounted" not mounted "$work/m4"
expect "incompat: the daemon runs on" kill -0 "$daemon"
expect "incompat: the other mounts serve on" cmp "$work/data" "$work/m1/data"

# mount.xv6 -o ro (mount -r): read-only too.
out=$("$bin/mount.xv6" "$ro/a.img" "$work/m5" -o "ro,module=$v1,socket=$sock" 2>&1)
expect "mount.xv6 -o ro: refused while another mount serves the image" grep -q "served already" <<<"$out"
cp "$store/a.img" "$work/b.img"
out=$("$bin/mount.xv6" "$work/b.img" "$work/m5" -o "ro,module=$v1,socket=$sock" 2>&1); status=$?
expect "mount.xv6 -o ro: mounted" test $status -eq 0 || echo "     $out"
expect "mount.xv6 -o ro: the kernel mount is ro" test "$(findmnt -n -o OPTIONS "$work/m5" | cut -d, -f1)" = ro
expect "mount.xv6 -o ro: writes fail with EROFS" erofs sh -c "echo x > '$work/m5/new'"
expect "mount.xv6 -o ro: the image is unchanged" cmp "$store/a.img" "$work/b.img"
umount "$work/m5"

# The upgrade preflight refuses a version that does not know a feature the
# image has, before any pause: 3.0.0 serves an image made with the xattr
# feature, and 1.0.0 does not know it.
"$bin/mkfs.xv6" -q -O xattr --size 32M "$work/c.img"
out=$("$bin/mount.xv6" "$work/c.img" "$work/m4" -o "module=$v3,socket=$sock" 2>&1)
expect "preflight: a writable mount under 3.0.0" mounted "$work/m4" || echo "     $out"
cp "$work/data" "$work/m4/data"
out=$(ctl upgrade "$work/m4" "$v1" --json 2>&1)
expect "preflight: upgrade refused" grep -q '"result" *: *"refused"' <<<"$out" || echo "     $out"
expect "preflight: says why" grep -q "xv6fs 1.0.0 cannot serve .*does not know: xattr" <<<"$out" || echo "     $out"
expect "preflight: ended in the preflight" grep -q '"phase" *: *"preflight"' <<<"$out"
expect "preflight: no pause (no quiesce phase)" not grep -q '"phase" *: *"quiesce"' <<<"$out"
expect "preflight: 3.0.0 serves on" sh -c "'$bin/bentoctl' --socket '$sock' status --json | grep -q '\"version\" *: *\"3.0.0\"'"
expect "preflight: the mount still works" cmp "$work/data" "$work/m4/data"
umount "$work/m4"

kill -TERM "$daemon"; wait "$daemon"; status=$?; daemon=
expect "SIGTERM: exit status 0" test $status -eq 0
expect "the images on read-only storage are unchanged (sha256)" test "$(hashes)" = "$before"
expect "the ro_compat image is unchanged (sha256)" grep -q "$(sha256sum < "$store/rocompat.img" | cut -d' ' -f1)" <<<"$before"
umount "$ro"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
