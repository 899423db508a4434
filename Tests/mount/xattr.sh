#!/bin/bash
# Extended attributes and POSIX ACLs through a real mount of xv6fs 3.0.0:
# setfattr/getfattr in the user, trusted and security namespaces;
# setfacl/getfacl with access checked as another user; `cp -a` and
# `rsync -aAX` of a tree with attributes and ACLs, compared afterwards
# (getfattr dumps); the values read back after drop_caches and after the
# daemon is restarted; the image's `xattr` feature set; fsck clean.
# A live upgrade from 2.0.0 to 3.0.0 then sets attributes (read from the
# next mount on), and the way back is refused with its reason.
# Usage: Tests/mount/xattr.sh BIN_DIR
set -u
bin=$(cd "${1:?usage: $0 BIN_DIR}" && pwd)
work=$(mktemp -d /dev/shm/bento-xattr.XXXXXX)
img=$work/x.img mnt=$work/m sock=$work/control.sock log=$work/daemon.log
v3=$bin/libXV6Module3.so
passed=0 failed=0 daemon=
ok()   { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; }
expect() { local name=$1; shift; if "$@" >/dev/null 2>&1; then ok "$name"; else fail "$name"; fi; }
not() { ! "$@"; }
mounted() { grep -q " $1 " /proc/self/mountinfo; }
# as_user COMMAND...: runs it as uid/gid 1234, with no other groups.
as_user() { setpriv --reuid 1234 --regid 1234 --clear-groups "$@"; }
# dump DIR: every attribute of the tree below DIR, ACLs included, by
# relative path in sorted order (copies create in their own order).
dump() { (cd "$1" && find . -print0 | sort -z | xargs -0 getfattr -h -d -m - -e hex 2>/dev/null); }
start() {
    "$bin/bento-upgraded" --image "$img" --mountpoint "$mnt" --module "${1:-$v3}" --allow-other \
        --control-socket "$sock" --state-dir "$work/state" >>"$log" 2>&1 &
    daemon=$!
    for _ in $(seq 100); do "$bin/bentoctl" --socket "$sock" status 2>/dev/null | grep -q serving && return 0; sleep 0.1; done
    return 1
}
stop() { umount "$mnt" && wait "$daemon"; daemon=; }
cleanup() {
    mounted "$mnt" && umount -l "$mnt"
    [ -n "$daemon" ] && kill -TERM "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
chmod 755 "$work"
mkdir -p "$mnt"

"$bin/mkfs.xv6" -q --size 64M "$img"
expect "xv6fs 3.0.0 serves the image" start
chmod 755 "$mnt"
cd "$mnt" || exit 1

# setfattr and getfattr.
echo data > f
expect "setfattr user.color" setfattr -n user.color -v blue f
expect "getfattr reads it back" test "$(getfattr --only-values -n user.color f)" = blue
expect "setfattr security.label" setfattr -n security.label -v top f
expect "setfattr trusted.t as root" setfattr -n trusted.t -v 1 f
expect "trusted.t refused to another user" not as_user setfattr -n trusted.t -v 2 f
python3 -c 'import os; os.setxattr("f", "user.big", bytes(range(256)) * 160)'
expect "a 40 KiB value reads back" python3 -c 'import os, sys; sys.exit(os.getxattr("f", "user.big") != bytes(range(256)) * 160)'
expect "a value past 64 KiB is refused" not python3 -c 'import os; os.setxattr("f", "user.huge", bytes(65537))'
expect "XATTR_CREATE on an existing name fails" not python3 -c 'import os; os.setxattr("f", "user.color", b"x", os.XATTR_CREATE)'
expect "XATTR_REPLACE on a missing name fails" not python3 -c 'import os; os.setxattr("f", "user.none", b"x", os.XATTR_REPLACE)'
expect "getfattr -d lists the names" test "$(getfattr -d -m - f | grep -c '=')" -eq 4
expect "setfattr -x removes one" setfattr -x user.color f
expect "a removed name is gone" not getfattr -n user.color f
ln -s f link
expect "user.* is refused on a symlink" not setfattr -h -n user.x -v 1 link

# Linux drops a file's capabilities when someone without CAP_FSETID writes
# it: the kernel before a write through the page cache, the daemon after
# one through a write-only handle, which skips it (Docs/caching.md).
for how in "write-only:sh -c 'echo more >> capped'" "read-write:python3 -c 'f = open(\"capped\", \"r+b\"); f.seek(0, 2); f.write(b\"more\")'"; do
    echo data > capped && chmod 666 capped && setcap cap_net_raw+ep capped
    expect "${how%%:*}: setcap gives the file a capability" test -n "$(getcap capped)"
    expect "${how%%:*}: user 1234 writes to it" as_user bash -c "PATH=/usr/bin:/bin; ${how#*:}"
    expect "${how%%:*}: its capability is gone" test -z "$(getcap capped)"
    rm capped
done

# POSIX ACLs, enforced by the kernel: a file only root may read, then one
# named user may, then not again.
echo secret > private && chmod 600 private
expect "another user cannot read a 0600 file" not as_user cat private
expect "setfacl grants user 1234 read" setfacl -m u:1234:r private
expect "getfacl shows the entry" grep -q "^user:1234:r--" <(getfacl -p private)
expect "the ACL lets user 1234 read" as_user cat private
expect "but not write" not as_user sh -c 'echo x >> private'
expect "setfacl -x takes it back" setfacl -x u:1234 private
expect "user 1234 cannot read again" not as_user cat private
echo secret > masked && chmod 640 masked && setfacl -m u:1234:r masked
expect "an ACL entry on a 0640 file lets user 1234 read" as_user cat masked
chmod 600 masked
expect "chmod 600 sets the ACL's mask" grep -q "^mask::---" <(getfacl -p masked)
expect "and user 1234 is refused" not as_user cat masked
mkdir shared && chmod 700 shared
expect "a default ACL on a directory" setfacl -d -m u:1234:rx shared
expect "getfacl -d shows it" grep -q "^default:user:1234:r-x" <(getfacl -p shared)
expect "a 0700 directory is closed to user 1234" not as_user ls shared
expect "an ACL opens it" setfacl -m u:1234:rx shared
expect "user 1234 lists it" as_user ls shared
(umask 022 && echo x > shared/inherits && mkdir shared/sub)
expect "a new file inherits the default ACL" grep -q "^user:1234:r-x" <(getfacl -p shared/inherits)
expect "masked by its mode" grep -q "^mask::r--" <(getfacl -p shared/inherits)
expect "a new directory inherits it as its default too" grep -q "^default:user:1234:r-x" <(getfacl -p shared/sub)

# A tree with attributes and ACLs copied by cp -a and rsync -aAX.
mkdir -p src/a/b
for i in $(seq 20); do echo "file $i" > "src/a/f$i"; setfattr -n user.n -v "$i" "src/a/f$i"; done
echo deep > src/a/b/deep
setfattr -n user.deep -v "$(head -c 3000 /dev/zero | tr '\0' d)" src/a/b/deep
setfattr -n security.s -v x src/a/b
setfacl -m u:1234:rw,g:1234:r src/a/f3
setfacl -d -m u:1234:rwx src/a/b
expect "cp -a copies the tree" cp -a src cpcopy
expect "cp -a kept every attribute and ACL" cmp <(dump src) <(dump cpcopy)
expect "rsync -aAX copies the tree" rsync -aAX src/ rsynccopy/
expect "rsync -aAX kept every attribute and ACL" cmp <(dump src) <(dump rsynccopy)
expect "the copies carry attributes" test "$(dump cpcopy | grep -c '^user.n=')" -eq 20
dump "$mnt" > "$work/before"

sync
echo 3 > /proc/sys/vm/drop_caches
expect "after drop_caches the attributes read the same" cmp "$work/before" <(dump "$mnt")

cd / || exit 1
expect "the daemon stops (unmount)" stop
expect "fsck clean" "$bin/fsck.xv6" -n "$img"
expect "the image uses the xattr feature" grep -q "features: xattr" <("$bin/fsck.xv6" -n "$img" 2>&1)
expect "xv6fs 2.0.0 refuses it" not timeout 30 "$bin/bento-upgraded" --image "$img" --mountpoint "$mnt" \
    --module "$bin/libXV6Module2.so" --control-socket "$work/v2.sock" --state-dir "$work/v2-state"
mounted "$mnt" && umount "$mnt"
expect "the daemon starts again" start
expect "after a restart the attributes read the same" cmp "$work/before" <(dump "$mnt")
expect "after a restart the ACL still lets user 1234 read" as_user cat "$mnt/src/a/f3"
expect "and a plain 0600 file stays closed" not as_user cat "$mnt/private"

# Churn, then every file with attributes deleted.
for i in $(seq 200); do
    f=$mnt/churn$((i % 10))
    [ -e "$f" ] || echo x > "$f"
    setfattr -n "user.k$((i % 7))" -v "$(head -c $((i * 37 % 5000)) /dev/zero | tr '\0' v)" "$f" 2>/dev/null
    [ $((i % 5)) -eq 0 ] && setfattr -x "user.k$((i % 3))" "$f" 2>/dev/null
done
rm -rf "$mnt/src" "$mnt/cpcopy" "$mnt/rsynccopy" "$mnt"/churn*
expect "the daemon stops again" stop
expect "fsck clean after churn and deletion" "$bin/fsck.xv6" -n "$img"

# A live upgrade from 2.0.0 to 3.0.0: attributes set at once; after the
# first one, the way back to 2.0.0 is refused (the image uses the xattr
# feature).
img=$work/upgraded.img
"$bin/mkfs.xv6" -q --size 32M "$img"
rm -rf "$work/state"
expect "xv6fs 2.0.0 serves a new image" start "$bin/libXV6Module2.so"
echo kept > "$mnt/kept"
expect "2.0.0 keeps no attributes" not setfattr -n user.a -v 1 "$mnt/kept"
expect "2.0.0 reads none" not getfattr -n user.a "$mnt/kept"
expect "live upgrade to 3.0.0" "$bin/bentoctl" --socket "$sock" upgrade "$mnt" "$bin/libXV6Module3.so" --probation 0
expect "the file is still there" test "$(cat "$mnt/kept")" = kept
expect "3.0.0 sets an attribute" setfattr -n user.a -v after-upgrade "$mnt/kept"
# 2.0.0 answered getxattr ENOSYS (so that the kernel stops asking for
# security.capability before every write through the page cache), and the
# kernel keeps that for the whole mount: reads of attributes start with
# the next mount. (A write through a write-only handle, which skips the
# page cache, asks nothing: Docs/caching.md.)
expect "reads wait for the next mount" not getfattr -n user.a "$mnt/kept"
expect "the daemon stops" stop
expect "3.0.0 serves it again" start
expect "and reads the attribute back" test "$(getfattr --absolute-names --only-values -n user.a "$mnt/kept")" = after-upgrade
out=$("$bin/bentoctl" --socket "$sock" upgrade "$mnt" "$bin/libXV6Module2.so" --probation 0 2>&1); status=$?
expect "back to 2.0.0 is refused" test $status -ne 0
expect "saying why" grep -q "does not know: xattr" <<<"$out"
expect "3.0.0 serves on" test "$(getfattr --absolute-names --only-values -n user.a "$mnt/kept")" = after-upgrade
expect "the upgraded mount stops" stop
expect "fsck clean after the upgrade" "$bin/fsck.xv6" -n "$img"

# The way back offline: fsck.xv6 --downgrade xattr, refused while a file has
# an attribute, then done once none has; 2.0.0 serves the image again.
"$bin/fsck.xv6" --downgrade xattr "$img" >"$work/dg.out" 2>&1; status=$?
expect "--downgrade xattr is refused while a file has an attribute (status $status)" test $status -eq 8
expect "  saying so" grep -q "not removing xattr: files still use xattr" "$work/dg.out"
expect "  and the image still uses xattr" grep -q "features: xattr" <("$bin/fsck.xv6" -n "$img")
expect "3.0.0 serves it" start
expect "the attribute is removed" setfattr -x user.a "$mnt/kept"
expect "the mount stops" stop
"$bin/fsck.xv6" --downgrade xattr "$img" >"$work/dg.out" 2>&1; status=$?
expect "--downgrade xattr now removes it (status $status)" test $status -eq 0
expect "  saying so" grep -q "removed features: xattr; features now: none" "$work/dg.out"
expect "fsck -n finds it clean, with no features" bash -c "'$bin/fsck.xv6' -n '$img' | grep -q 'features: none'"
expect "xv6fs 2.0.0 serves it again" start "$bin/libXV6Module2.so"
expect "  with the file" test "$(cat "$mnt/kept")" = kept
expect "the 2.0.0 mount stops" stop

echo "xattr: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
