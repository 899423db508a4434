#!/bin/bash
# POSIX behaviour and real tools through a real FUSE mount served by
# bento-upgraded with the xv6fs module, on a RAM-backed image.
# Usage: Tests/mount/posix.sh BIN_DIR
set -u
bin=$(cd "${1:?usage: $0 BIN_DIR}" && pwd)
work=$(mktemp -d /dev/shm/bento-posix.XXXXXX)
img=$work/xv6.img mnt=$work/mnt log=$work/daemon.log
mkdir -p "$mnt"
passed=0 failed=0 daemon=

ok()   { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; }
# expect NAME COMMAND...: the command must succeed.
expect() { local name=$1; shift; if "$@" >/dev/null 2>&1; then ok "$name"; else fail "$name"; fi; }
# refuse NAME COMMAND...: the command must fail.
refuse() { local name=$1; shift; if "$@" >/dev/null 2>&1; then fail "$name"; else ok "$name"; fi; }

mounted() { grep -q " $mnt " /proc/self/mountinfo; }
# Served: mounted and answering (a dead mount answers ENOTCONN).
serving() { mounted && stat -f "$mnt" >/dev/null 2>&1; }
start() {
    "$bin/bento-upgraded" --image "$img" --mountpoint "$mnt" --module "$bin/libXV6Module.so" --allow-other \
        --control-socket "$work/control.sock" --state-dir "$work/state" >>"$log" 2>&1 &
    daemon=$!
    for _ in $(seq 100); do serving && return 0; sleep 0.1; done
    echo "daemon did not mount; its log:"; cat "$log"; return 1
}
stop() {
    kill -TERM "$daemon" && wait "$daemon"; local status=$?
    if [ $status -eq 0 ] && ! mounted; then ok "clean unmount"; else fail "clean unmount (status $status)"; fi
    if "$bin/fsck.xv6" -n "$img" >"$work/fsck.out" 2>&1; then ok "fsck clean after unmount"
    else fail "fsck clean after unmount"; cat "$work/fsck.out"; fi
}
cleanup() {
    [ -n "$daemon" ] && kill -TERM "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
    mounted && umount -l "$mnt"
    rm -rf "$work"
}
trap cleanup EXIT
[ -n "${KEEP:-}" ] && trap - EXIT

"$bin/mkfs.xv6" --size 1G --inodes 65536 "$img" >/dev/null || { echo "mkfs failed"; exit 1; }
start || exit 1
cd "$mnt"

# Files: create, read, write, append, truncate, sparse.
printf 'hello\n' > f && printf 'world\n' >> f
expect "create, write and append" test "$(cat f)" = "$(printf 'hello\nworld')"
head -c 300000 /dev/urandom > r && cp r "$work/r"
expect "300 KB read back" cmp r "$work/r"
truncate -s 1000 r && truncate -s 5000 r
expect "truncate shrinks" test "$(stat -c %s r)" = 5000
expect "regrown tail reads as zeroes" cmp <(head -c 1000 "$work/r"; head -c 4000 /dev/zero) r
dd if=/dev/urandom of=sparse bs=4096 count=1 seek=262144 status=none
expect "sparse file has its size" test "$(stat -c %s sparse)" = $((262145 * 4096))
expect "sparse file uses few blocks" test "$(stat -c %b sparse)" -lt 64
expect "hole reads as zeroes" cmp <(head -c 8192 /dev/zero) <(dd if=sparse bs=4096 skip=1000 count=2 status=none)

# Names: rename, links, directories.
mkdir -p a/b c && echo one > a/x && echo two > c/y
mv a/x c/y
expect "rename over an existing file" test "$(cat c/y)" = one
expect "renamed name is gone" test ! -e a/x
mv a/b c/b
expect "rename a directory across directories" test -d c/b -a ! -e a/b
expect "link counts follow" test "$(stat -c %h c)" = 3 -a "$(stat -c %h a)" = 2
ln c/y hard && ln -s c/y soft
expect "hard link shares the inode" test "$(stat -c %i hard)" = "$(stat -c %i c/y)" -a "$(stat -c %h c/y)" = 2
expect "symlink resolves" test "$(readlink soft)" = c/y -a "$(cat soft)" = one
refuse "rmdir of a non-empty directory" rmdir c
expect "rmdir of an empty directory" rmdir c/b
expect "O_EXCL refuses an existing file" bash -c 'set -C; ! { : > f; } 2>/dev/null'

# Unlinked while open: readable until the last close, then freed.
head -c 2000000 /dev/urandom > big && cp big "$work/big"
before=$(stat -f -c %a .)
exec 3<big
rm big
expect "unlinked file is gone from its directory" test ! -e big
expect "unlinked open file still reads" cmp "$work/big" /dev/fd/3
exec 3<&-
freed=no
for _ in $(seq 50); do [ "$(stat -f -c %a .)" -gt $((before + 400)) ] && { freed=yes; break; }; sleep 0.1; done
expect "space comes back after the last close" test $freed = yes

# Metadata kept across unmount and mount.
echo meta > m && chmod 0751 m && chown 1234:5678 m && touch -d '2001-02-03 04:05:06.789012345' m
stat -c '%a %u %g %y' m > "$work/meta"

# A directory of 20,000 entries.
mkdir many && (cd many && seq -f 'entry-%g' 20000 | xargs touch)
expect "20,000 entries listed" test "$(ls many | wc -l)" = 20000
expect "statfs reports the size" test "$(stat -f -c %b .)" = 262144

# Permissions for a non-root user (default_permissions).
echo secret > private && chmod 600 private && echo public > open && chmod 644 open
nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
refuse "non-root cannot read a 0600 file" nobody cat private
expect "non-root reads a 0644 file" nobody cat open
refuse "non-root cannot create in a root directory" nobody touch newfile

# Set-ID bits, as ext4 drops them: on chown (the set-group-ID bit only if
# the group may execute), and on a write, truncate or O_TRUNC open by a
# caller without CAP_FSETID. The host drops them (FUSE_HANDLE_KILLPRIV_V2).
setid() { rm -f "$1" && echo x > "$1" && chown 1000:1000 "$1" && chmod "$2" "$1"; }
setid s-chown 6755 && chown 1001:1001 s-chown
setid s-chown-nogx 2745 && chown 1001:1001 s-chown-nogx
setid s-write 6777 && nobody sh -c 'echo y >> s-write'
setid s-rootwrite 6777 && echo y >> s-rootwrite
setid s-truncate 6777 && nobody truncate -s 0 s-truncate
setid s-otrunc 6777 && nobody sh -c ': > s-otrunc'
setid_modes() { stat -c '%n %a' s-chown s-chown-nogx s-write s-rootwrite s-truncate s-otrunc | paste -sd' '; }
want_setid="s-chown 755 s-chown-nogx 2745 s-write 777 s-rootwrite 6777 s-truncate 777 s-otrunc 777"
echo "     set-ID modes: $(setid_modes)"
expect "set-ID bits dropped as on ext4, seen at once" test "$(setid_modes)" = "$want_setid"

# Real tools: tar, cp -a, git.
tar -C /usr -cf - include | tar -xf -
expect "tar of /usr/include matches" diff -r /usr/include include
cp -a /usr/share/doc/fuse3 copied 2>/dev/null || cp -a /etc/apt copied
src=$( [ -d /usr/share/doc/fuse3 ] && echo /usr/share/doc/fuse3 || echo /etc/apt )
expect "cp -a matches" diff -r "$src" copied
mkdir repo && cp -a /usr/include/linux repo/ && (cd repo && git init -q && git add -A \
    && git -c user.email=t@example.com -c user.name=t commit -qm import) >/dev/null 2>&1
expect "git commit" test -n "$(cd repo && git log --oneline 2>/dev/null)"
expect "git fsck" bash -c 'cd repo && git fsck --strict'
find include repo -type f -print0 | sort -z | xargs -0 sha256sum > "$work/sums"

cd /
stop
start || exit 1
cd "$mnt"
expect "metadata kept across remount" test "$(stat -c '%a %u %g %y' m)" = "$(cat "$work/meta")"
expect "set-ID bits as dropped, after remount" test "$(setid_modes)" = "$want_setid"
expect "checksums equal after remount" sha256sum --quiet -c "$work/sums"

# Durability: fsync, kill -9, start again (log replay).
head -c 1000000 /dev/urandom > durable && sync durable && cp durable "$work/durable"
cd /
kill -9 "$daemon"; wait "$daemon" 2>/dev/null
expect "a killed daemon leaves a dead mount" bash -c "! stat '$mnt/durable'"
start || exit 1
expect "fsynced data survives kill -9" cmp "$mnt/durable" "$work/durable"
stop

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
