#!/bin/bash
# Stacked modules through a real mount: the provenance layer over xv6fs
# 1.0.0 (which records nothing itself) writes the /.provenance that xv6fs
# 2.0.0 writes, operation for operation; each module of the stack is
# upgraded live, one at a time, under an 8-thread self-checking load while
# the other serves on; a new major version goes in below the layer and a
# rollback takes it out again; refusals leave the stack as it was; a
# worker's kill -9 brings the whole stack back.
# Usage: Tests/mount/stack.sh BIN_DIR [UPGRADES]
set -u
bin=$(cd "${1:?usage: $0 BIN_DIR [UPGRADES]}" && pwd)
rounds=${2:-30}
work=$(mktemp -d /dev/shm/bento-stack.XXXXXX)
chmod 755 "$work"
mnt=$work/mnt sock=$work/control.sock log=$work/daemon.log
v1=$bin/libXV6Module.so v2=$bin/libXV6Module2.so v3=$bin/libXV6Module3.so
layer=$bin/libProvenanceModule.so next=$bin/libFixtureProvenanceNext.so
passed=0 failed=0 daemon=
ok()   { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; }
expect() { local name=$1; shift; if "$@" >/dev/null 2>&1; then ok "$name"; else fail "$name"; fi; }
ctl() { "$bin/bentoctl" --socket "$sock" "$@"; }
# "provenance 1.0.0 over xv6fs 1.0.0", from status --json.
serving() {
    ctl status --json | python3 -c 'import json,sys
m = json.load(sys.stdin)["mounts"][0]
print(" over ".join(x["name"] + " " + x["version"] for x in m.get("layers", []) + [m["module"]]))'
}
cleanup() {
    [ -n "$daemon" ] && kill -TERM "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
    grep -q " $mnt " /proc/self/mountinfo && umount -l "$mnt"
    rm -rf "$work"
}
trap cleanup EXIT
[ -n "${KEEP:-}" ] && trap - EXIT

# serve IMAGE MODULE...: the daemon on IMAGE with a stack, top first,
# and the options in $options.
options=()
serve() {
    local image=$1; shift
    local modules=()
    for m in "$@"; do modules+=(--module "$m"); done
    "$bin/bento-upgraded" --image "$image" --mountpoint "$mnt" "${modules[@]}" "${options[@]}" \
        --allow-other --control-socket "$sock" --state-dir "$work/state" >>"$log" 2>&1 &
    daemon=$!
    for _ in $(seq 100); do [ -S "$sock" ] && stat -f "$mnt" 2>/dev/null | grep -q fuse && return 0; sleep 0.1; done
    echo "     the daemon did not come up:"; tail -5 "$log"; return 1
}
unserve() { kill -TERM "$daemon"; wait "$daemon"; local status=$?; daemon=; return $status; }

nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
# The same operations, by a user, on any mount: what provenance records.
operations() {
    local m=$1
    nobody sh -c "cd $m/u && touch a && echo one > b && echo two >> b && mkdir d && mv b d/c \
        && ln d/c e && ln -s a s && chmod 600 a && truncate -s 10 a && rm e d/c && rmdir d"
}
# The op= words of /.provenance, in order.
ops() { grep -o ' op=[a-z-]*' "$1" | tr -d ' ' | tr '\n' ' '; }

cc -O2 -pthread -o "$work/load" "$(dirname "$0")/load.c" || { echo "cannot build the load"; exit 1; }
mkdir "$mnt"

# 1. The layer records what xv6fs 2.0.0 records. Without the kernel's
#    writeback cache: with it, when the kernel sends a file's times back
#    (a setattr) depends on timing, and the two lists could differ there.
options=(--no-writeback-cache)
"$bin/mkfs.xv6" --size 64M "$work/v2.img" >/dev/null
serve "$work/v2.img" "$v2"
mkdir -m 777 "$mnt/u" && operations "$mnt"
cp "$mnt/.provenance" "$work/v2.provenance"
unserve
"$bin/mkfs.xv6" --size 64M "$work/x.img" >/dev/null
serve "$work/x.img" "$layer" "$v1"
expect "serving provenance 1.0.0 over xv6fs 1.0.0" test "$(serving)" = "provenance 1.0.0 over xv6fs 1.0.0"
ctl status | grep -q "layer     provenance 1.0.0" && ok "status shows the layer" || fail "status shows the layer"
mkdir -m 777 "$mnt/u" && operations "$mnt"
cp "$mnt/.provenance" "$work/layer.provenance"
echo "     xv6fs 2.0.0: $(ops "$work/v2.provenance")"
echo "     layer:       $(ops "$work/layer.provenance")"
expect "the same operations recorded in the same order as by xv6fs 2.0.0" \
    test "$(ops "$work/layer.provenance")" = "$(ops "$work/v2.provenance")"
expect "records name the user and the program" grep -q "uid=65534 exe=\"/usr/bin/touch\" op=create" "$work/layer.provenance"
expect "/.provenance is root's, mode 0600" test "$(stat -c %U:%a "$mnt/.provenance")" = root:600
expect "a user cannot read it" nobody sh -c "! cat $mnt/.provenance"
sed 's/[0-9]*\.[0-9]* pid=[0-9]* //; s/ino=[0-9]*//g; s/parent=[0-9]*//g' "$work/v2.provenance" > "$work/v2.words"
sed 's/[0-9]*\.[0-9]* pid=[0-9]* //; s/ino=[0-9]*//g; s/parent=[0-9]*//g' "$work/layer.provenance" > "$work/layer.words"
expect "every record the same but for times, pids and inode numbers" cmp "$work/v2.words" "$work/layer.words"
# The rest with the writeback cache, as mounts run by default.
unserve
options=()
serve "$work/x.img" "$layer" "$v1"

# 2. Each module of the stack upgraded live, one at a time, again and
#    again, under load: the layer (1.0.0 and 1.1.0 in turn) and the file
#    system below it (xv6fs 1.0.0 to itself); the other serves on.
mkdir "$mnt/load"
"$work/load" "$mnt/load" 8 600 > "$work/load.out" 2> "$work/load.err" &
loadpid=$!
sleep 1
before=$(wc -l < "$mnt/.provenance")
upgraded=0 named=0 target=$layer
for i in $(seq "$rounds"); do
    if [ $((i % 3)) -eq 0 ]; then
        out=$(ctl upgrade "$mnt" "$v1" --json) name=xv6fs
    else
        target=$([ "$target" = "$layer" ] && echo "$next" || echo "$layer")
        out=$(ctl upgrade "$mnt" "$target" --json) name=provenance
    fi
    grep -q '"result" *: *"upgraded"' <<<"$out" && upgraded=$((upgraded + 1)) || echo "     upgrade $i: $out"
    grep -q "\"layer\" *: *\"$name\"" <<<"$out" && named=$((named + 1))
done
sleep 1
touch "$mnt/load/STOP"
wait $loadpid; loadstatus=$?
cat "$work/load.out"; head -5 "$work/load.err"
expect "$rounds upgrades of one module of the stack under load, all upgraded" test "$upgraded" -eq "$rounds"
expect "each report names the module it replaced" test "$named" -eq "$rounds"
expect "the load saw no failed system call and no wrong byte" test $loadstatus -eq 0
expect "the load did work" test "$(grep -o 'ops=[0-9]*' "$work/load.out" | cut -d= -f2)" -gt 1000
after=$(wc -l < "$mnt/.provenance")
expect "provenance recorded the load throughout ($before then $after lines)" test "$after" -gt $((before + 1000))
expect "no gap in the records" test "$(grep -c 'op=gap' "$mnt/.provenance")" = 0
torn=$(grep -Ev '^[0-9]+\.[0-9]{9} pid=-?[0-9]+ uid=[0-9]+ exe="[^"]*" op=' "$mnt/.provenance")
expect "every record whole" test -z "$torn"
[ -z "$torn" ] || head -3 <<<"$torn"
layer_now=$(serving | cut -d' ' -f2)
out=$(ctl upgrade "$mnt" "$([ "$layer_now" = 1.0.0 ] && echo "$next" || echo "$layer")")
expect "the text report names the layer" grep -q "upgraded $mnt (layer provenance): $layer_now -> " <<<"$out"
[ "$layer_now" = 1.0.0 ] || ctl upgrade "$mnt" "$next" >/dev/null
expect "serving provenance 1.1.0 over xv6fs 1.0.0" test "$(serving)" = "provenance 1.1.0 over xv6fs 1.0.0"

# 3. A new major version below the layer: 1.0.0 to 3.0.0. (3.0.0 records
#    provenance itself: over it, the layer's records come twice.)
out=$(ctl upgrade "$mnt" "$v3" --json)
expect "xv6fs upgraded to 3.0.0 under the layer" grep -q '"result" *: *"upgraded"' <<<"$out"
expect "serving provenance 1.1.0 over xv6fs 3.0.0" test "$(serving)" = "provenance 1.1.0 over xv6fs 3.0.0"
touch "$mnt/u/after-v3"
expect "the layer records over the new instance below" grep -q 'op=create .*name="after-v3"' "$mnt/.provenance"
# 4. A rollback goes back one module: 3.0.0 to 1.0.0, the layer stays.
out=$(ctl rollback "$mnt" --json)
expect "rollback: xv6fs back to 1.0.0" grep -q '"result" *: *"rolled-back"' <<<"$out"
expect "serving provenance 1.1.0 over xv6fs 1.0.0" test "$(serving)" = "provenance 1.1.0 over xv6fs 1.0.0"

# 5. Refusals leave the stack as it was.
refused() {
    local out; out=$(ctl upgrade "$mnt" "$2" --json)
    if grep -q '"result" *: *"refused"' <<<"$out" && grep -q "$3" <<<"$out" \
        && [ "$(serving)" = "provenance 1.1.0 over xv6fs 1.0.0" ]; then ok "$1"; else fail "$1"; echo "     $out"; fi
}
refused "a module of neither name refused" "$bin/libFixtureOtherFileSystem.so" 'none of the stack'
refused "a missing module file refused" "$work/missing.so" "no such module file"

# 6. kill -9 of the worker: the next one mounts the whole stack again.
worker=$(pgrep -P "$daemon" -f -- --worker | head -1)
echo after-kill > "$mnt/u/before-kill"
kill -9 "$worker"
for _ in $(seq 100); do new=$(pgrep -P "$daemon" -f -- --worker | head -1); [ -n "$new" ] && [ "$new" != "$worker" ] && break; sleep 0.1; done
touch "$mnt/u/after-kill"
expect "after kill -9: the stack serves again" test "$(serving)" = "provenance 1.1.0 over xv6fs 1.0.0"
expect "after kill -9: the file written before is there" grep -qx after-kill "$mnt/u/before-kill"
expect "after kill -9: the layer records again" grep -q 'op=create .*name="after-kill"' "$mnt/.provenance"

expect "daemon stops cleanly" unserve
expect "fsck clean" "$bin/fsck.xv6" -n "$work/x.img"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
