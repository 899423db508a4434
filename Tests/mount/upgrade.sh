#!/bin/bash
# Live upgrade through a real mount: 100 upgrades alternating xv6fs 1.0.0
# and 2.0.0 under an 8-thread self-checking load, provenance, rollback,
# history, and refusals that leave the mount serving the old version;
# then 40 upgrades of xv6fs 3.0.0 to itself under the load with xattrs and
# fallocate (UPGRADES3 sets how many).
# Usage: Tests/mount/upgrade.sh BIN_DIR [UPGRADES]
set -u
bin=$(cd "${1:?usage: $0 BIN_DIR [UPGRADES]}" && pwd)
rounds=${2:-100}
work=$(mktemp -d /dev/shm/bento-upgrade.XXXXXX)
chmod 755 "$work"
mnt=$work/mnt sock=$work/control.sock log=$work/daemon.log
v1=$bin/libXV6Module.so v2=$bin/libXV6Module2.so
passed=0 failed=0 daemon=
ok()   { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; }
expect() { local name=$1; shift; if "$@" >/dev/null 2>&1; then ok "$name"; else fail "$name"; fi; }
ctl() { "$bin/bentoctl" --socket "$sock" "$@"; }
version() { ctl status --json | grep -o '"version" *: *"[0-9.]*"' | grep -o '[0-9][0-9.]*'; }
cleanup() {
    [ -n "$daemon" ] && kill -TERM "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
    grep -q " $mnt " /proc/self/mountinfo && umount -l "$mnt"
    [ -n "${ptpid:-}" ] && kill -CONT $ptpid 2>/dev/null && kill -TERM $ptpid 2>/dev/null
    grep -q " $work/pt " /proc/self/mountinfo && umount -l "$work/pt"
    rm -rf "$work"
}
trap cleanup EXIT
[ -n "${KEEP:-}" ] && trap - EXIT

cc -O2 -pthread -o "$work/load" "$(dirname "$0")/load.c" || { echo "cannot build the load"; exit 1; }
cc -O2 -o "$work/hold" "$(dirname "$0")/hold.c" || { echo "cannot build hold"; exit 1; }
"$bin/mkfs.xv6" --size 2G --inodes 131072 "$work/x.img" >/dev/null
mkdir "$mnt"
"$bin/bento-upgraded" --image "$work/x.img" --mountpoint "$mnt" --module "$v1" \
    --control-socket "$sock" --state-dir "$work/state" >"$log" 2>&1 &
daemon=$!
for _ in $(seq 100); do [ -S "$sock" ] && stat -f "$mnt" 2>/dev/null | grep -q fuse && break; sleep 0.1; done
expect "serving 1.0.0" test "$(version)" = 1.0.0

# Names and inode numbers before, to compare after.
mkdir "$mnt/fixed" && for i in $(seq 50); do echo "$i" > "$mnt/fixed/$i"; done
ls -i "$mnt/fixed" | sort > "$work/inodes.before"
exec 7<>"$mnt/fixed/1"

# 15,000 files held open through every upgrade: the host's table keeps
# their handles and lookup counts in place (Docs/upgrade.md).
held=15000
coproc HOLD { "$work/hold" "$mnt/held" "$held" open; }
read -r -t 300 ready <&"${HOLD[0]}"
expect "$held files held open ($ready)" test "$ready" = "ready $held"
hold_check() { echo check >&"${HOLD[1]}" && read -r -t 300 answer <&"${HOLD[0]}" && echo "$answer" && [ "$answer" = "ok $held" ]; }

# Upgrades under load.
mkdir "$mnt/load"
"$work/load" "$mnt/load" 8 600 > "$work/load.out" 2> "$work/load.err" &
loadpid=$!
sleep 1
upgraded=0
: > "$work/pauses"
for i in $(seq "$rounds"); do
    target=$v2; [ $((i % 2)) -eq 0 ] && target=$v1
    out=$(ctl upgrade "$mnt" "$target" --json)
    if grep -q '"result" *: *"upgraded"' <<<"$out"; then
        upgraded=$((upgraded + 1))
        grep -o '"pauseMicros" *: *[0-9]*' <<<"$out" | grep -o '[0-9]*$' >> "$work/pauses"
    else
        echo "     upgrade $i: $out"
    fi
done
touch "$mnt/load/STOP"
wait $loadpid; loadstatus=$?
expect "$rounds upgrades under load, all upgraded" test "$upgraded" -eq "$rounds"
cat "$work/load.out"
head -5 "$work/load.err"
expect "the load saw no failed system call and no wrong byte" test $loadstatus -eq 0
expect "the load did work" test "$(grep -o 'ops=[0-9]*' "$work/load.out" | cut -d= -f2)" -gt 1000
sort -n "$work/pauses" | awk '{ a[NR] = $1 } END { if (NR) printf "     pause over %d upgrades: median %d us, p99 %d us, max %d us\n", NR, a[int((NR + 1) / 2)], a[int(NR * 0.99 + 0.5)], a[NR] }'
expect "a file held open across all upgrades still works" bash -c "echo again >&7 && grep -q again '$mnt/fixed/1'"
expect "each of the $held held fds still reads and writes its own file, each path finds its inode" hold_check
out=$(ctl upgrade "$mnt" "$v2" --json); [ "$(version)" = 2.0.0 ] || out=$(ctl upgrade "$mnt" "$v1" --json)
expect "the report: $held handles kept in place, not copied" \
    bash -c "grep -qE '\"heldHandles\" *: *1[0-9]{4}' <<<'$out' && grep -qE '\"tableCopied\" *: *false' <<<'$out'"
# A version that speaks only the formats of earlier builds: the table
# travels through the state, slower, and says so.
out=$(ctl upgrade "$mnt" "$bin/libFixtureCopiedTable.so" --json)
expect "to a version that copies the table: upgraded" grep -qE '"result" *: *"upgraded"' <<<"$out"
expect "  the report says the table was copied" grep -qE '"tableCopied" *: *true' <<<"$out"
expect "  the state carries the $held handles" test "$(grep -o '"stateBytes" *: *[0-9]*' <<<"$out" | grep -o '[0-9]*$')" -gt $((held * 29))
expect "  the held fds still work" hold_check
expect "  and back to 1.0.0 the same way" bash -c "$bin/bentoctl --socket $sock upgrade $mnt $v1 --force --json | grep -qE '\"tableCopied\" *: *true'"
expect "  the held fds still work" hold_check
echo quit >&"${HOLD[1]}"; wait "$HOLD_PID"
exec 7>&-
ls -i "$mnt/fixed" | sort > "$work/inodes.after"
expect "inode numbers unchanged" cmp "$work/inodes.before" "$work/inodes.after"

# Provenance under 2.0.0, readable after rolling back to 1.0.0.
[ "$(version)" = 2.0.0 ] || ctl upgrade "$mnt" "$v2" >/dev/null
expect "serving 2.0.0" test "$(version)" = 2.0.0
sh -c 'echo $$ > "$1/pid"; exec touch "$2/made-by-touch"' sh "$work" "$mnt"
touchpid=$(cat "$work/pid")
expect "provenance names pid and executable" \
    grep -qE "pid=$touchpid uid=0 exe=\"/usr/bin/touch\" op=create parent=1 name=\"made-by-touch\"" "$mnt/.provenance"
expect "provenance file is root's alone" test "$(stat -c '%a %u' "$mnt/.provenance")" = "600 0"
expect "rollback" ctl rollback "$mnt"
expect "serving 1.0.0 after rollback" test "$(version)" = 1.0.0
expect "the rollback ended 2.0.0's probation" bash -c "! $bin/bentoctl --socket $sock status --json | grep -q '\"probation\"'"
expect "provenance still readable under 1.0.0" grep -q "made-by-touch" "$mnt/.provenance"
expect "history lists the upgrades" test "$(ctl history "$mnt" | wc -l)" -ge "$rounds"

# Worker deaths under load: a version that traps on one create, forced in
# without probation, dies three times in a row per round; each poison create
# fails alone. Requests other threads were reading as a worker died must be
# resent to the next one, not lost (seen as EIO from close or fsync).
mkdir "$mnt/deaths"
"$work/load" "$mnt/deaths" 4 600 > "$work/deaths.out" 2> "$work/deaths.err" &
loadpid=$!
sleep 1
created=0 deaths_before=$(grep -c 'died: SIGILL' "$log")
for i in $(seq 10); do
    ctl upgrade "$mnt" "$bin/libFixtureFaultyTrap.so" --force --probation 0 >/dev/null || echo "     round $i: upgrade to 2.0.1 failed"
    for _ in 1 2 3; do touch "$mnt/poison" 2>/dev/null && created=$((created + 1)); done
    ctl rollback "$mnt" >/dev/null || echo "     round $i: rollback failed"
done
touch "$mnt/deaths/STOP"
wait $loadpid; loadstatus=$?
cat "$work/deaths.out"; head -5 "$work/deaths.err"
expect "30 poison creates: each failed" test "$created" -eq 0
expect "30 worker deaths" test $(($(grep -c 'died: SIGILL' "$log") - deaths_before)) -eq 30
expect "through 30 worker deaths the load saw no failed system call and no wrong byte" test $loadstatus -eq 0
expect "serving 1.0.0 after the deaths" test "$(version)" = 1.0.0 -a "$(cat "$mnt/fixed/2")" = 2

# Refusals: each leaves 1.0.0 serving, I/O never paused.
echo "not a module" > "$work/text.so"
cp "$v2" "$work/untrusted.so" && chmod 666 "$work/untrusted.so"
printf 'struct e { unsigned long long m; unsigned int abi; void *p; };\nstatic struct e r = { 0x444F4D4F544E4542ULL, 999, 0 };\nconst void *bento_module_entry(void) { return &r; }\n' > "$work/abi.c"
cc -shared -fPIC -o "$work/abi999.so" "$work/abi.c"
refused() {  # refused NAME MODULE PATTERN
    local out; out=$(ctl upgrade "$mnt" "$2" --json); local status=$?
    if [ $status -ne 0 ] && grep -q '"result" *: *"refused"' <<<"$out" && grep -qE -- "$3" <<<"$out" \
        && ! grep -q pauseMicros <<<"$out" && [ "$(version)" = 1.0.0 ] && [ "$(cat "$mnt/fixed/2")" = 2 ]; then
        ok "$1"
    else
        fail "$1"; echo "     $out"
    fi
}
refused "missing module file refused"   "$work/missing.so"   "no such module file"
refused "non-module refused"            "$work/text.so"      "cannot be loaded"
refused "other SDK ABI refused"         "$work/abi999.so"    "built for Bento SDK ABI 999"
refused "untrusted module refused"      "$work/untrusted.so" "untrusted: writable by group or others"
refused "library without entry refused" "$bin/libBentoKit.so" "not a Bento module"

refused "module for another file system refused" "$bin/libFixtureOtherFileSystem.so" 'serves file system \\"otherfs\\", not \\"xv6fs\\"'
refused "no common state format refused" "$bin/libFixtureNoCommonFormat.so" "no common state format"

# The new version fails to import the state: the old one serves on.
out=$(ctl upgrade "$mnt" "$bin/libFixtureImportFails.so" --json); status=$?
expect "failed import: rolled back" grep -q '"result" *: *"rolled-back"' <<<"$out"
expect "failed import: exit status non-zero" test $status -ne 0
expect "failed import: says why" grep -q "failed to import the state" <<<"$out"
expect "failed import: 1.0.0 serves on" test "$(version)" = 1.0.0 -a "$(cat "$mnt/fixed/3")" = 3

# One upgrade at a time; and a daemon killed mid-upgrade comes back on the
# version it was upgrading from.
ctl upgrade "$mnt" "$v2" >/dev/null
echo durable > "$mnt/before-crash" && sync "$mnt/before-crash"
ctl upgrade "$mnt" "$bin/libFixtureSlowImport.so" >/dev/null 2>&1 &
slow=$!
# Wait until the slow upgrade is under way (its mark is in the state dir).
for _ in $(seq 200); do grep -q upgradingFrom "$work/state/mounts.json" && break; sleep 0.05; done
out=$(ctl upgrade "$mnt" "$v1" --json)
expect "a second upgrade meanwhile is refused" grep -q "already running" <<<"$out"
kill -9 "$daemon"; wait "$daemon" 2>/dev/null; wait $slow 2>/dev/null
"$bin/bento-upgraded" --image "$work/x.img" --mountpoint "$mnt" --module "$v1" \
    --control-socket "$sock" --state-dir "$work/state" >>"$log" 2>&1 &
daemon=$!
for _ in $(seq 100); do [ -S "$sock" ] && stat -f "$mnt" 2>/dev/null | grep -q fuse && break; sleep 0.1; done
expect "after a crash mid-upgrade: back on 2.0.0, the version it left" test "$(version)" = 2.0.0
expect "the interrupted upgrade is logged" grep -q "upgrade from .*libXV6Module2.so was interrupted" "$log"
expect "fsynced data survived" test "$(cat "$mnt/before-crash")" = durable
expect "history survives the restart" test "$(ctl history "$mnt" | wc -l)" -ge "$rounds"

kill -TERM "$daemon"; wait "$daemon"; status=$?; daemon=
expect "clean stop" test $status -eq 0
expect "fsck clean" "$bin/fsck.xv6" -n "$work/x.img"

# The quiesce deadline: a request that cannot finish. The image lives on a
# passthrough_ll mount (libfuse's example); stopping that server blocks the
# device under bento, so an fsync stays in flight inside the gate.
pt=$work/pt ptsrc=$work/ptsrc
mkdir "$pt" "$ptsrc"
cc -O2 -o "$work/passthrough_ll" /usr/share/doc/libfuse3-dev/examples/passthrough_ll.c \
    -I/usr/share/doc/libfuse3-dev/examples $(pkg-config --cflags --libs fuse3)
"$work/passthrough_ll" -f -o source="$ptsrc" "$pt" &
ptpid=$!
for _ in $(seq 100); do stat -f "$pt" 2>/dev/null | grep -q fuse && break; sleep 0.1; done
"$bin/mkfs.xv6" --size 32M "$pt/x.img" >/dev/null
"$bin/bento-upgraded" --image "$pt/x.img" --mountpoint "$mnt" --module "$v1" --control-socket "$sock" \
    --state-dir "$work/state2" --quiesce-timeout-ms 300 >>"$log" 2>&1 &
daemon=$!
for _ in $(seq 100); do [ -S "$sock" ] && stat -f "$mnt" 2>/dev/null | grep -q fuse && break; sleep 0.1; done
echo stuck > "$mnt/f"
kill -STOP $ptpid
sync "$mnt/f" &
syncer=$!
sleep 0.5
out=$(ctl upgrade "$mnt" "$v2" --json)
expect "quiesce deadline: refused" grep -q '"result" *: *"refused"' <<<"$out"
expect "quiesce deadline: says so" grep -q "quiesce deadline" <<<"$out"
kill -CONT $ptpid
wait $syncer
expect "quiesce deadline: the stuck request then completes" test $? -eq 0
expect "quiesce deadline: still 1.0.0, serving" test "$(version)" = 1.0.0 -a "$(cat "$mnt/f")" = stuck
expect "and the upgrade goes through once it can" ctl upgrade "$mnt" "$v2"
kill -TERM "$daemon"; wait "$daemon"; daemon=
expect "fsck clean (image on passthrough)" "$bin/fsck.xv6" -n "$pt/x.img"
kill -TERM $ptpid; wait $ptpid 2>/dev/null
grep -q " $pt " /proc/self/mountinfo && umount -l "$pt"

# xv6fs 3.0.0 upgraded to itself under the load with extended attributes,
# fallocate, punched holes and zeroed ranges (LOAD_XATTRS=1): every upgrade
# hands over a mount whose attribute blocks and preallocated or punched
# files are changing. (2.0.0 to 3.0.0 under load is in data.sh.)
v3=$bin/libXV6Module3.so rounds3=${UPGRADES3:-40}
"$bin/mkfs.xv6" --size 256M "$work/x3.img" >/dev/null
"$bin/bento-upgraded" --image "$work/x3.img" --mountpoint "$mnt" --module "$v3" \
    --control-socket "$sock" --state-dir "$work/state3" >>"$log" 2>&1 &
daemon=$!
for _ in $(seq 100); do [ -S "$sock" ] && stat -f "$mnt" 2>/dev/null | grep -q fuse && break; sleep 0.1; done
expect "serving 3.0.0" test "$(version)" = 3.0.0
mkdir "$mnt/load3"
LOAD_XATTRS=1 "$work/load" "$mnt/load3" 8 600 > "$work/load3.out" 2> "$work/load3.err" &
loadpid=$!
sleep 1
upgraded=0
for i in $(seq "$rounds3"); do
    out=$(ctl upgrade "$mnt" "$v3" --json)
    if grep -q '"result" *: *"upgraded"' <<<"$out"; then upgraded=$((upgraded + 1)); else echo "     3.0.0 upgrade $i: $out"; fi
done
touch "$mnt/load3/STOP"
wait $loadpid; loadstatus=$?
expect "$rounds3 upgrades of 3.0.0 to itself under the xattr and fallocate load, all upgraded" test "$upgraded" -eq "$rounds3"
cat "$work/load3.out"; head -5 "$work/load3.err"
expect "the load saw no failed system call and no wrong byte or attribute" test $loadstatus -eq 0
expect "the load did work" test "$(grep -o 'ops=[0-9]*' "$work/load3.out" | cut -d= -f2)" -gt 1000
expect "the load's attributes are there after the upgrades" bash -c "getfattr -d -m user. -R '$mnt/load3' 2>/dev/null | grep -q '^user.k'"
kill -TERM "$daemon"; wait "$daemon"; status=$?; daemon=
expect "clean stop (3.0.0)" test $status -eq 0
expect "fsck clean (3.0.0 under the xattr and fallocate load)" "$bin/fsck.xv6" -n "$work/x3.img"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
