#!/bin/bash
# mount -t xv6, fstab lines and umount through util-linux's real mount(8):
# mount.xv6 asks a running bento-upgraded to serve the mount, umount makes
# it stop cleanly, and the daemon keeps config mounts and added ones apart.
# Usage: Tests/mount/fstab.sh BIN_DIR
# mount(8) runs helpers from /sbin only: the test links /sbin/mount.xv6 to
# the build's for its run, and removes the link at the end.
set -u
bin=$(cd "${1:?usage: $0 BIN_DIR}" && pwd)
work=$(mktemp -d /dev/shm/bento-fstab.XXXXXX)
chmod 755 "$work"
sock=$work/control.sock log=$work/daemon.log helper=/sbin/mount.xv6
good=$bin/libXV6Module.so
passed=0 failed=0 daemon= linked=
ok()   { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; }
expect() { local name=$1; shift; if "$@" >/dev/null 2>&1; then ok "$name"; else fail "$name"; fi; }
mounted() { grep -q " $1 " /proc/self/mountinfo; }
# says STATUS WANTED PATTERN: the last command exited WANTED and $out matches PATTERN.
not() { ! "$@"; }
says() { test "$1" -eq "$2" && grep -q -- "$3" <<<"$out"; }
# listed DIR: bentoctl status names the mount.
listed() { "$bin/bentoctl" --socket "$sock" status --json | grep -q "\"mountpoint\" *: *\"$1\""; }
# gone DIR: within 10 s, the daemon no longer lists it.
gone() { for _ in $(seq 100); do listed "$1" || return 0; sleep 0.1; done; return 1; }
# mount_field MOUNTPOINT EXPR: a Python expression of m, the mount's bentoctl status --json.
mount_field() {
    "$bin/bentoctl" --socket "$sock" status --json | python3 -c "import json, sys
m = next(m for m in json.load(sys.stdin)['mounts'] if m['mountpoint'] == sys.argv[1])
print($2)" "$1"
}
# requests_for_new_files DIR: the GETATTRs and SETATTRs the daemon served for
# a stat(2) by name (as git and make call it; a listing would bring the
# attributes with READDIRPLUS) of each of 20 files just created empty, then
# for their unlink.
requests_for_new_files() {
    local counts="' '.join(str(m['operations'].get(op, 0)) for op in ('getattr', 'setattr'))" g0 s0 g1 s1 g2 s2
    mkdir "$1/new" && for i in $(seq 20); do : > "$1/new/f$i"; done
    read -r g0 s0 <<<"$(mount_field "$1" "$counts")"
    python3 -c "import os, sys; [os.stat(f'{sys.argv[1]}/new/f{i}') for i in range(1, 21)]" "$1"
    read -r g1 s1 <<<"$(mount_field "$1" "$counts")"
    rm "$1"/new/f*
    read -r g2 s2 <<<"$(mount_field "$1" "$counts")"
    echo "$((g1 - g0)) $((s2 - s1))"
}
start_daemon() {
    "$bin/bento-upgraded" --config "$work/bento.toml" >>"$log" 2>&1 &
    daemon=$!
    for _ in $(seq 100); do [ -S "$sock" ] && "$bin/bentoctl" --socket "$sock" status >/dev/null 2>&1 && return; sleep 0.1; done
}
stop_daemon() { kill -TERM "$daemon"; wait "$daemon"; local status=$?; daemon=; return $status; }
cleanup() {
    [ -n "$daemon" ] && kill -TERM "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
    for m in "$work"/m*; do mounted "$m" && umount -l "$m"; done
    [ -n "$linked" ] && [ "$(readlink "$helper")" = "$linked" ] && rm -f "$helper"
    rm -rf "$work"
}
trap cleanup EXIT

# The helper where mount(8) looks; never over someone else's file.
if [ -e "$helper" ] || [ -L "$helper" ]; then
    case $(readlink "$helper") in
        */mount.xv6) rm -f "$helper" ;;  # a link left by an earlier run
        *) echo "FAIL $helper exists and is not a link to a build's mount.xv6: not touching it"; exit 1 ;;
    esac
fi
ln -s "$bin/mount.xv6" "$helper" && linked=$bin/mount.xv6

for i in 1 2 3; do "$bin/mkfs.xv6" --size 32M "$work/x$i.img" >/dev/null; mkdir "$work/m$i"; done
opts="module=$good,socket=$sock"

# No daemon: mount fails as mount(8) fails, with a message.
out=$(mount -t xv6 "$work/x1.img" "$work/m1" -o "$opts" 2>&1); status=$?
expect "no daemon: exit status 32, says the daemon is not running" says $status 32 "is the daemon running"
expect "no daemon: nothing mounted" not mounted "$work/m1"

# A daemon whose config lists no mount: it waits for mount -t xv6.
cat > "$work/bento.toml" <<TOML
control_socket = "$sock"
state_dir = "$work/state"
TOML
start_daemon
expect "a config without mounts: the daemon runs" kill -0 "$daemon"

out=$(mount -t xv6 "$work/x1.img" "$work/m1" -o "$opts,threads=4,cache_mib=64" 2>&1); status=$?
expect "mount -t xv6: exit status 0" test $status -eq 0 || echo "     $out"
expect "findmnt: type fuse.xv6" test "$(findmnt -n -o FSTYPE "$work/m1")" = fuse.xv6
expect "findmnt: source is the image" test "$(findmnt -n -o SOURCE "$work/m1")" = "$work/x1.img"
expect "bentoctl status lists it" listed "$work/m1"
head -c 3000000 /dev/urandom > "$work/data"
cp "$work/data" "$work/m1/data" && mkdir "$work/m1/d" && for i in $(seq 50); do echo "$i" > "$work/m1/d/f$i"; done
expect "the mount serves" cmp "$work/data" "$work/m1/data"

# Refusals: each exit status as mount(8)'s, nothing else changes.
out=$(mount -t xv6 "$work/x2.img" "$work/m2" -o "$opts,bogus" 2>&1); status=$?
expect "unknown option: exit status 1, named" says $status 1 "unknown option 'bogus'"
out=$(mount -t xv6 "$work/x2.img" "$work/m2" -o "$opts,threads=0" 2>&1); status=$?
expect "threads=0 refused by the daemon: exit status 32" says $status 32 "threads=0"
out=$(mount -t xv6 -r "$work/x2.img" "$work/m2" -o "$opts" 2>&1); status=$?
expect "mount -r: exit status 0" test $status -eq 0 || echo "     $out"
expect "mount -r: the kernel mount is read-only" test "$(findmnt -n -o OPTIONS "$work/m2" | cut -d, -f1)" = ro
expect "mount -r: writes fail" not touch "$work/m2/f"
umount "$work/m2"; gone "$work/m2"
# The writeback cache: off by default, on with writeback_cache. With it the
# kernel forgets a file's block count at close, so a stat asks the daemon.
out=$(mount -t xv6 "$work/x2.img" "$work/m2" -o "$opts,writeback_cache" 2>&1); status=$?
expect "writeback_cache: exit status 0" test $status -eq 0 || echo "     $out"
expect "writeback_cache: the kernel caches writes (bentoctl status)" test "$(mount_field "$work/m2" "m.get('kernelCachesWrites')")" = True
expect "by default it does not" test "$(mount_field "$work/m1" "m.get('kernelCachesWrites')")" = False
read -r with_get with_set <<<"$(requests_for_new_files "$work/m2")"
read -r without_get without_set <<<"$(requests_for_new_files "$work/m1")"
echo "     20 files created empty: GETATTRs for their stat $with_get with the writeback cache, $without_get without; SETATTRs for their unlink $with_set, $without_set"
expect "without the writeback cache, a stat of files just created asks the daemon at most once" test "$without_get" -le 1
expect "with it, once a file (the kernel drops the block count at close)" test "$with_get" -ge 20
expect "without the writeback cache, an unlink sends no SETATTR" test "$without_set" -eq 0
expect "with it, one per file (the kernel keeps ctime)" test "$with_set" -ge 20
umount "$work/m2"; gone "$work/m2"
out=$(mount -t xv6 "$work/x2.img" "$work/m1" -o "$opts" 2>&1); status=$?
expect "a mountpoint served already: refused" says $status 32 "m1 is served already"
out=$(mount -t xv6 "$work/x1.img" "$work/m2" -o "$opts" 2>&1); status=$?
expect "an image served already: refused" says $status 32 "x1.img is served already"
out=$(mount -t xv6 "$work/x2.img" "$work/m2" -o "socket=$sock" 2>&1); status=$?
expect "no module= and none installed: exit 32, says so" says $status 32 "no module= given"
expect "refusals mounted nothing" not mounted "$work/m2"
expect "the first mount still serves" cmp "$work/data" "$work/m1/data"

# module= left out: the newest module installed beside mount.xv6.
mkdir -p "$work/prefix/sbin" "$work/prefix/lib/bento/modules"
cp "$bin/mount.xv6" "$work/prefix/sbin/"
install -m 0644 "$bin/libXV6Module.so" "$work/prefix/lib/bento/modules/xv6fs-1.0.0.so"
install -m 0644 "$bin/libXV6Module2.so" "$work/prefix/lib/bento/modules/xv6fs-2.0.0.so"
out=$("$work/prefix/sbin/mount.xv6" "$work/x2.img" "$work/m2" -v -o "socket=$sock" 2>&1); status=$?
expect "no module=: the newest installed (2.0.0) serves" says $status 0 "serves .*x2.img with xv6fs 2.0.0" || echo "     $out"
umount "$work/m2"; gone "$work/m2"

# umount: the daemon flushes, stops the worker and forgets the mount.
workers=$(pgrep -P "$daemon" -c -f -- --worker)
out=$(umount "$work/m1" 2>&1); status=$?
expect "umount: exit status 0" test $status -eq 0 || echo "     $out"
expect "umount: bentoctl status no longer lists it" gone "$work/m1"
expect "umount: its worker ended" test "$(pgrep -P "$daemon" -c -f -- --worker)" -eq $((workers - 1))
expect "umount: logged" grep -q "m1: unmounted (umount): no longer served" "$log"
expect "umount: the daemon runs on" kill -0 "$daemon"
expect "umount: fsck clean" "$bin/fsck.xv6" -n "$work/x1.img"
expect "umount: the state dir forgot it" not grep -q "$work/m1" "$work/state/mounts.json"

# An fstab line (a private fstab: LIBMOUNT_FSTAB), mounted by its directory.
echo "$work/x1.img $work/m1 xv6 $opts,_netdev,nofail,x-systemd.requires=bento-upgraded.service 0 0" > "$work/fstab"
out=$(LIBMOUNT_FSTAB=$work/fstab mount "$work/m1" 2>&1); status=$?
expect "fstab line: mount DIR, exit status 0" test $status -eq 0 || echo "     $out"
expect "fstab line: served" listed "$work/m1"
expect "remounted: the data is there" cmp "$work/data" "$work/m1/data"
expect "remounted: the 50 files are there" test "$(cat "$work"/m1/d/f* | wc -l)" -eq 50
# umount and mount again at once: the mount waits for the flush.
umount "$work/m1" && LIBMOUNT_FSTAB=$work/fstab mount "$work/m1"
expect "umount and mount at once" cmp "$work/data" "$work/m1/data"

# Config mounts and added ones side by side: a reload leaves added mounts
# alone; umount of a config mount lasts until the next reload.
cat >> "$work/bento.toml" <<TOML
[[mount]]
image = "$work/x3.img"
mountpoint = "$work/m3"
module = "$good"
TOML
expect "reload: the config's mount starts" "$bin/bentoctl" --socket "$sock" reload
expect "reload: the added mount is left alone" listed "$work/m1"
expect "reload: the added mount serves on" cmp "$work/data" "$work/m1/data"
echo config > "$work/m3/f"
umount "$work/m3"
expect "umount of a config mount: no longer listed" gone "$work/m3"
expect "umount of a config mount: fsck clean" "$bin/fsck.xv6" -n "$work/x3.img"
"$bin/bentoctl" --socket "$sock" reload >/dev/null
expect "umount of a config mount: back at the next reload" test "$(cat "$work/m3/f" 2>/dev/null)" = config

# A stop unmounts everything; the next start serves the config's mounts
# and not the added one (its kernel mount is gone: no fd store here).
expect "SIGTERM: exit status 0" stop_daemon
expect "SIGTERM: nothing left mounted" not grep -q " $work/m" /proc/self/mountinfo
expect "SIGTERM: fsck clean" "$bin/fsck.xv6" -n "$work/x1.img"
start_daemon
expect "restart: the config mount serves" listed "$work/m3"
expect "restart: the added mount is not served again" not mounted "$work/m1"
expect "restart: nor remembered" not grep -q "$work/m1" "$work/state/mounts.json"
stop_daemon

# The one mount of the command line: umount ends the daemon, as before.
"$bin/bento-upgraded" --image "$work/x2.img" --mountpoint "$work/m2" --module "$good" \
    --control-socket "$work/one.sock" --state-dir "$work/one-state" >>"$log" 2>&1 &
daemon=$!
for _ in $(seq 100); do "$bin/bentoctl" --socket "$work/one.sock" status 2>/dev/null | grep -q serving && break; sleep 0.1; done
umount "$work/m2"
for _ in $(seq 100); do kill -0 "$daemon" 2>/dev/null || break; sleep 0.1; done
expect "command-line mount: umount ends the daemon" not kill -0 "$daemon"
wait "$daemon"; status=$?; daemon=
expect "command-line mount: exit status 0" test $status -eq 0

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
