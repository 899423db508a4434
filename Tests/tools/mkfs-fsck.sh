#!/bin/bash
# mkfs.xv6 and fsck.xv6 as a user runs them: exit codes and messages, fsck(8)
# conventions (preen, progress, the fsck wrapper), and never touching an image
# that bento-upgraded serves (which needs bento-upgraded and libXV6Module.so
# in BIN_DIR, and root for the mounts).
# Usage: Tests/tools/mkfs-fsck.sh BIN_DIR
set -u
bin=$(cd "${1:?usage: $0 BIN_DIR}" && pwd)
work=$(mktemp -d)
chmod 755 "$work"
daemons=() helper=
cleanup() {
    for pid in "${daemons[@]}"; do kill -TERM "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
    [ -n "$helper" ] && kill "$helper" 2>/dev/null
    for m in "$work"/mnt*; do grep -q " $m " /proc/self/mountinfo && umount -l "$m"; done
    rm -rf "$work"
}
trap cleanup EXIT
passed=0 failed=0

check() {  # check NAME EXPECTED_STATUS PATTERN -- COMMAND...
    local name=$1 want=$2 pattern=$3; shift 4
    local out status
    out=$("$@" 2>&1); status=$?
    if [ "$status" -eq "$want" ] && grep -qE -- "$pattern" <<<"$out"; then
        passed=$((passed + 1)); echo "ok   $name"
    else
        failed=$((failed + 1)); echo "FAIL $name: status $status (want $want), output:"; sed 's/^/     /' <<<"$out"
    fi
}

# Little-endian u32 at a byte offset of a file.
u32() { od -An -t u4 -j "$2" -N 4 "$1" | tr -d ' '; }
# XORs one byte of a file with a mask.
flip() {
    local byte; byte=$(od -An -t u1 -j "$2" -N 1 "$1" | tr -d ' ')
    printf "$(printf '\\%03o' $((byte ^ $3)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

img=$work/a.img
check "mkfs creates a new image"        0 "blocks"              -- "$bin/mkfs.xv6" --size 32M "$img"
check "image has the asked size"        0 "^33554432$"          -- stat -c %s "$img"
check "fresh image is clean"            0 "clean"               -- "$bin/fsck.xv6" -n "$img"
check "mkfs refuses an xv6 image"       1 "$img.*--force"       -- "$bin/mkfs.xv6" "$img"
check "mkfs --force reformats"          0 "blocks"              -- "$bin/mkfs.xv6" --force --inodes 256 "$img"
check "mkfs rejects a bad size"         1 "size"                -- "$bin/mkfs.xv6" --size 12Q "$work/b.img"
check "mkfs rejects a tiny size"        1 "small"               -- "$bin/mkfs.xv6" --size 64K "$work/c.img"
check "mkfs names a missing directory"  1 "$work/no/such"       -- "$bin/mkfs.xv6" --size 8M "$work/no/such/d.img"

# A used block marked free in the bitmap: the root directory's block.
sb=4096
bitmap=$(u32 "$img" $((sb + 40))); data=$(u32 "$img" $((sb + 48)))
flip "$img" $((bitmap * 4096 + data / 8)) $((1 << (data % 8)))
check "fsck -n reports, changes nothing" 4 "bitmap"             -- "$bin/fsck.xv6" -n "$img"
check "fsck -n again: still there"      4 "bitmap"              -- "$bin/fsck.xv6" -n "$img"
check "fsck repairs it"                 1 "bitmap"              -- "$bin/fsck.xv6" "$img"
check "repaired image is clean"         0 "clean"               -- "$bin/fsck.xv6" -n "$img"

# Operational errors.
flip "$img" $((sb + 0)) 0xff
check "bad magic is operational error"  8 "not an xv6|magic"    -- "$bin/fsck.xv6" -n "$img"
head -c 1M /dev/urandom > "$work/random.img"
check "random bytes: operational error" 8 "xv6"                 -- "$bin/fsck.xv6" -n "$work/random.img"
check "missing image"                   8 "$work/missing.img"   -- "$bin/fsck.xv6" -n "$work/missing.img"
check "usage error"                     16 "Usage|usage"        -- "$bin/fsck.xv6"

check "unknown option: usage error"    16 "Usage"              -- "$bin/fsck.xv6" -Z "$work/random.img"
check "-n and -p together: usage error" 16 "only one of"        -- "$bin/fsck.xv6" -n -p "$work/random.img"

# Preen (-p, -a): repairs only what is safe, exit 1; anything else is left
# to a person, exit 4, and nothing changes. The root directory's block is
# the first data block.
img=$work/p.img
"$bin/mkfs.xv6" -q --size 32M "$img"
bitmap=$(u32 "$img" $((sb + 40))); data=$(u32 "$img" $((sb + 48)))
root_bit() { flip "$img" $((bitmap * 4096 + data / 8)) $((1 << (data % 8))); }
check "fsck -p on a clean image"        0 "clean"               -- "$bin/fsck.xv6" -p "$img"
root_bit
check "fsck -p fixes a bitmap bit"      1 "fixed.*bitmap"       -- "$bin/fsck.xv6" -p "$img"
check "after -p: clean"                 0 "clean"               -- "$bin/fsck.xv6" -n "$img"
root_bit
check "fsck -a fixes a bitmap bit"      1 "fixed.*bitmap"       -- "$bin/fsck.xv6" -a "$img"
root_bit
# The ".." record of the root directory made shorter than a record header.
printf '\006\000' | dd of="$img" bs=1 seek=$((data * 4096 + 16)) conv=notrunc status=none
cp "$img" "$work/before.img"
check "fsck -p: a bad directory record needs a person" 4 "UNEXPECTED INCONSISTENCY.*MANUALLY" -- "$bin/fsck.xv6" -p "$img"
check "fsck -p changed nothing, not even the safe fix" 0 "" -- cmp "$img" "$work/before.img"
check "fsck -y fixes the safe part, leaves the rest" 5 "bitmap" -- "$bin/fsck.xv6" -y "$img"

# Progress: e2fsck's "pass current total device" lines to an fd, or a bar.
"$bin/mkfs.xv6" -q --size 32M "$work/c.img"
"$bin/fsck.xv6" -C 3 "$work/c.img" 3>"$work/progress" >/dev/null
check "-C 3: every line is 'pass current total device'" 1 "" -- grep -vE "^[1-5] [0-9]+ [0-9]+ $work/c.img$" "$work/progress"
check "-C 3: passes 1 to 5, in order" 0 "^12345$" -- bash -c "cut -d' ' -f1 '$work/progress' | uniq | tr -d '\n'"
check "-C 3: the last line is pass 5 complete" 0 "^5 ([0-9]+) \1 " -- tail -1 "$work/progress"
check "-C 0: a bar on standard output"  0 "c.img: \|=+ *\| 100.0%" -- "$bin/fsck.xv6" -C 0 "$work/c.img"
check "-C alone: the bar"               0 "\| 100.0%"           -- "$bin/fsck.xv6" -C "$work/c.img"

# util-linux's fsck runs fsck.xv6: by type, and for every fstab entry (-A).
check "fsck -t xv6 IMAGE"               0 "c.img: .*clean"      -- env PATH="$bin:$PATH" fsck -t xv6 "$work/c.img"
printf '%s /mnt/none xv6 defaults 0 2\n' "$work/c.img" > "$work/fstab"
flip "$work/c.img" $((bitmap * 4096 + data / 8)) $((1 << (data % 8)))
check "fsck -A -a with an fstab: preens, exit 1" 1 "fsck.xv6 -a $work/c.img" -- \
    env LIBMOUNT_FSTAB="$work/fstab" PATH="$bin:$PATH" fsck -A -V -a
check "fsck -A: clean now"              0 "c.img: .*clean"      -- env LIBMOUNT_FSTAB="$work/fstab" PATH="$bin:$PATH" fsck -A -a

# mkfs.xv6: -q prints nothing; a size past the format's limit is refused;
# progress on a terminal only (MKFS_XV6_PROGRESS_DELAY=0 shows it at once).
check "mkfs -q prints nothing"          0 "^$"                  -- "$bin/mkfs.xv6" -q --size 16M "$work/q.img"
check "mkfs refuses more than 2^32-1 blocks" 1 "4294967295 blocks" -- "$bin/mkfs.xv6" --size 17T "$work/huge.img"
check "nothing created for a refused size" 1 "" -- test -e "$work/huge.img"
check "progress on a terminal"          0 "formatting .*100% \(" -- \
    env MKFS_XV6_PROGRESS_DELAY=0 script -qec "$bin/mkfs.xv6 --size 16M $work/t1.img" /dev/null
check "no progress into a pipe"         1 "^$"                  -- \
    bash -c "MKFS_XV6_PROGRESS_DELAY=0 '$bin/mkfs.xv6' --size 16M '$work/t2.img' | grep formatting"
check "no progress with -q"             0 "^$"                  -- \
    env MKFS_XV6_PROGRESS_DELAY=0 script -qec "$bin/mkfs.xv6 -q --size 16M $work/t3.img" /dev/null
check "no progress before a second"     1 "^$"                  -- \
    bash -c "script -qec '$bin/mkfs.xv6 --size 16M $work/t4.img' /dev/null | grep formatting"

# An image in use is never changed. Served by bento-upgraded (it holds the
# image's OFD lock), through a worker's death and up to the daemon's stop.
serve() {  # serve NAME: bento-upgraded serves $work/NAME.img at $work/mntNAME
    mkdir -p "$work/mnt$1"
    "$bin/bento-upgraded" --image "$work/$1.img" --mountpoint "$work/mnt$1" --module "$bin/libXV6Module.so" \
        --control-socket "$work/$1.sock" --state-dir "$work/$1-state" >"$work/$1.log" 2>&1 &
    daemons+=($!)
}
served() { stat -f "$work/mnt$1" 2>/dev/null | grep -q fuse; }
wait_served() { for _ in $(seq 100); do served "$1" && return 0; sleep 0.1; done; return 1; }
img=$work/s.img
"$bin/mkfs.xv6" -q --size 32M "$img"
serve s
check "bento-upgraded serves s.img"     0 "" -- wait_served s
daemon=${daemons[-1]}
check "mkfs --force refused on a served image" 1 "s.img is in use: bento-upgraded serves it at $work/mnts.*even with --force" -- \
    "$bin/mkfs.xv6" --force "$img"
check "fsck -y refused: exit 8"         8 "bento-upgraded serves it.*not repairing" -- "$bin/fsck.xv6" -y "$img"
check "fsck (repairing by default) refused" 8 "bento-upgraded serves it" -- "$bin/fsck.xv6" "$img"
check "fsck -p refused"                 8 "bento-upgraded serves it" -- "$bin/fsck.xv6" -p "$img"
check "fsck -n checks, warns the result may be stale" 0 "may be stale" -- "$bin/fsck.xv6" -n "$img"
echo hello > "$work/mnts/f"
worker=$(pgrep -P "$daemon" -f -- --worker)
kill -9 $worker
next_worker() { for _ in $(seq 100); do w=$(pgrep -P "$daemon" -f -- --worker) && [ "$w" != "$worker" ] && return 0; sleep 0.1; done; return 1; }
check "a killed worker is replaced"     0 "" -- next_worker
check "after a worker's death: mkfs --force still refused" 1 "bento-upgraded serves it" -- "$bin/mkfs.xv6" --force "$img"
check "after a worker's death: the mount serves" 0 "^hello$" -- cat "$work/mnts/f"

# A second daemon for the same image is refused; the first keeps serving.
ln -s "$img" "$work/s2.img"  # another path to the same image
serve s2
second=${daemons[-1]}
wait "$second"; status=$?
check "a second daemon refuses the served image" 0 "s2.img is in use: another program holds its lock" -- cat "$work/s2.log"
check "... and exits with an error ($status)" 1 "" -- test "$status" -eq 0
check "... and mounts nothing"          1 "" -- served s2
check "the first mount still serves"    0 "^hello$" -- cat "$work/mnts/f"

# A daemon refuses an image another process holds an OFD lock on.
"$bin/mkfs.xv6" -q --size 32M "$work/h.img"
python3 -c '
import fcntl, os, struct, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.fcntl(fd, 37, struct.pack("hhqqi4x", fcntl.F_WRLCK, 0, 0, 0, 0))  # F_OFD_SETLK, whole file
print("locked", flush=True)
time.sleep(60)' "$work/h.img" > "$work/helper.out" &
helper=$!
for _ in $(seq 50); do grep -q locked "$work/helper.out" && break; sleep 0.1; done
serve h
wait "${daemons[-1]}"
check "daemon refuses an image another process holds" 0 "h.img is in use: another program holds its lock" -- cat "$work/h.log"
check "fsck -y refuses it too"          8 "holds its lock"      -- "$bin/fsck.xv6" -y "$work/h.img"
kill "$helper"; wait "$helper" 2>/dev/null; helper=
check "the lock gone, fsck -y runs"     0 "clean"               -- "$bin/fsck.xv6" -y "$work/h.img"

# Mounted (the source in /proc/self/mountinfo), with no lock at all.
mkdir -p "$work/mntt"
mount -t tmpfs "$work/q.img" "$work/mntt"
check "mkfs --force refused on a mounted image" 1 "q.img is in use: it is mounted at $work/mntt" -- "$bin/mkfs.xv6" --force "$work/q.img"
check "fsck -y refused on a mounted image" 8 "mounted at $work/mntt" -- "$bin/fsck.xv6" -y "$work/q.img"
umount "$work/mntt"

# fsck.xv6 holds the lock while it repairs: here stopped on its progress fd,
# a FIFO nobody reads (long lines under a long path fill the pipe in pass 1).
long=$work/$(printf 'd%.0s' {1..150}); mkdir "$long"
"$bin/mkfs.xv6" -q --size 64M --inodes 16384 "$long/l.img"
mkfifo "$work/fifo"
"$bin/fsck.xv6" -y -C 3 "$long/l.img" 3<>"$work/fifo" >/dev/null &
repairing=$!
blocked() { for _ in $(seq 100); do [[ "$(cat /proc/$repairing/wchan 2>/dev/null)" == *pipe_write ]] && return 0; sleep 0.1; done; return 1; }
check "fsck -y -C 3 waits on a full pipe" 0 "" -- blocked
check "while fsck -y repairs: mkfs --force refused" 1 "l.img is in use: .*holds its lock" -- "$bin/mkfs.xv6" --force "$long/l.img"
timeout 30 cat "$work/fifo" >/dev/null
wait "$repairing"; status=$?
check "... and fsck -y then ends clean ($status)" 0 "" -- test "$status" -eq 0

# Stopped: the lock is gone with the daemon.
kill -TERM "$daemon"; wait "$daemon"
check "stopped: fsck -y runs on the image" 0 "clean"           -- "$bin/fsck.xv6" -y "$img"
check "stopped: mkfs --force formats it" 0 "blocks"            -- "$bin/mkfs.xv6" --force "$img"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
