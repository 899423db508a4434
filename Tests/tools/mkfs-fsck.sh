#!/bin/bash
# mkfs.xv6 and fsck.xv6 as a user runs them: exit codes and messages.
# Usage: Tests/tools/mkfs-fsck.sh BIN_DIR
set -u
bin=${1:?usage: $0 BIN_DIR}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
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

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
