#!/bin/bash
# `make install DESTDIR=...` gives programs that run on a host without the
# Swift toolchain: /opt/swift is hidden in a private mount namespace while
# the installed tools format, check and serve an image.
set -u
cd "$(dirname "$0")/../.."
root=$(mktemp -d /dev/shm/bento-install.XXXXXX)
trap 'rm -rf "$root"' EXIT
passed=0 failed=0
check() { local name=$1; shift; if "$@"; then passed=$((passed + 1)); echo "ok   $name"; else failed=$((failed + 1)); echo "FAIL $name"; fi; }

make -s install CONFIG=debug DESTDIR="$root/dest" PREFIX=/usr/local >"$root/install.log" 2>&1
check "make install" test $? -eq 0 || cat "$root/install.log"
p=$root/dest/usr/local
for f in sbin/bento-upgraded sbin/mkfs.xv6 sbin/fsck.xv6 sbin/mount.xv6 bin/bentoctl lib/bento/libBentoKit.so lib/bento/modules/xv6fs-1.0.0.so lib/bento/modules/xv6fs-2.0.0.so; do
    check "installed $f" test -e "$p/$f"
done
check "runtime libraries shipped" test -e "$p/lib/bento/libswiftCore.so"
# mount(8) runs helpers from /sbin only.
check "mount.xv6 linked into /sbin" test "$(readlink "$root/dest/sbin/mount.xv6")" = /usr/local/sbin/mount.xv6

# In a namespace without /opt/swift: format, check, serve, write, unmount.
unshare -m bash -s "$p" "$root" >"$root/run.log" 2>&1 <<'INNER'
set -eu
p=$1 root=$2
mount -t tmpfs none /opt/swift
test ! -e /opt/swift/usr/lib/swift/linux/libswiftCore.so
"$p/sbin/mkfs.xv6" --size 32M "$root/x.img"
"$p/sbin/fsck.xv6" -n "$root/x.img"
"$p/bin/bentoctl" --help >/dev/null
"$p/sbin/mount.xv6" --help >/dev/null
mkdir -p "$root/mnt"
"$p/sbin/bento-upgraded" --image "$root/x.img" --mountpoint "$root/mnt" --module "$p/lib/bento/modules/xv6fs-1.0.0.so" \
    --control-socket "$root/control.sock" --state-dir "$root/state" &
daemon=$!
for _ in $(seq 100); do stat -f "$root/mnt" | grep -q fuse && break; sleep 0.1; done
echo installed > "$root/mnt/file"
test "$(cat "$root/mnt/file")" = installed
kill -TERM $daemon; wait $daemon
"$p/sbin/fsck.xv6" -n "$root/x.img"
echo ALL-RAN
INNER
check "installed programs run without the toolchain" grep -q ALL-RAN "$root/run.log" || cat "$root/run.log"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
