#!/bin/bash
# bento-upgraded as a daemon: the config file, refusals of bad module files
# while the other mounts keep serving, the control socket and bentoctl.
# Usage: Tests/mount/daemon.sh BIN_DIR
set -u
bin=$(cd "${1:?usage: $0 BIN_DIR}" && pwd)
work=$(mktemp -d /dev/shm/bento-daemon.XXXXXX)
chmod 755 "$work"
sock=$work/control.sock log=$work/daemon.log
passed=0 failed=0 daemon=
ok()   { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; }
expect() { local name=$1; shift; if "$@" >/dev/null 2>&1; then ok "$name"; else fail "$name"; fi; }
# logged NAME PATTERN: the daemon's log has a line matching PATTERN.
logged() { if grep -qE -- "$2" "$log"; then ok "$1"; else fail "$1"; echo "     not in the log: $2"; fi; }
cleanup() {
    [ -n "$daemon" ] && kill -TERM "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
    for m in "$work"/m* "$work/dev"; do grep -q " $m " /proc/self/mountinfo && umount -l "$m"; done
    losetup -j "$work/disk" 2>/dev/null | cut -d: -f1 | xargs -r -n1 losetup -d
    rm -rf "$work"
}
trap cleanup EXIT

for i in 1 2 3 4 5 6 7; do "$bin/mkfs.xv6" --size 32M "$work/x$i.img" >/dev/null; mkdir "$work/m$i"; done
good=$bin/libXV6Module.so
echo "not a module" > "$work/text.so"
cp "$good" "$work/untrusted.so" && chmod 666 "$work/untrusted.so"
# A module file built for another SDK ABI: the entry record says ABI 999.
printf 'struct e { unsigned long long m; unsigned int abi; void *p; };\n
static struct e r = { 0x444F4D4F544E4542ULL, 999, 0 };\n
const void *bento_module_entry(void) { return &r; }\n' > "$work/abi.c"
cc -shared -fPIC -o "$work/abi999.so" "$work/abi.c"

# A bad config: named by file, line and field; nothing is mounted.
cat > "$work/bad.toml" <<TOML
[[mount]]
image = "$work/x1.img"
mountpoint = "$work/m1"
module = "$good"
threads = "many"
TOML
out=$("$bin/bento-upgraded" --config "$work/bad.toml" --control-socket "$sock" --state-dir "$work/state" 2>&1); status=$?
expect "bad config: exit status 1" test $status -eq 1
expect "bad config: message names file, line and field" grep -q "bad.toml:5: mount\[1\].threads" <<<"$out"
expect "bad config: nothing mounted" bash -c "! grep -q '$work/m1 ' /proc/self/mountinfo"

# Two good mounts and four refused ones.
cat > "$work/bento.toml" <<TOML
control_socket = "$sock"
state_dir = "$work/state"
[[mount]]
image = "$work/x1.img"
mountpoint = "$work/m1"
module = "$good"
[[mount]]
image = "$work/x2.img"
mountpoint = "$work/m2"
module = "$good"
threads = 4
[[mount]]
image = "$work/x3.img"
mountpoint = "$work/m3"
module = "$work/missing.so"
[[mount]]
image = "$work/x4.img"
mountpoint = "$work/m4"
module = "$work/text.so"
[[mount]]
image = "$work/x5.img"
mountpoint = "$work/m5"
module = "$work/untrusted.so"
[[mount]]
image = "$work/x6.img"
mountpoint = "$work/m6"
module = "$bin/libBentoKit.so"
[[mount]]
image = "$work/x7.img"
mountpoint = "$work/m7"
module = "$work/abi999.so"
TOML
"$bin/bento-upgraded" --config "$work/bento.toml" >"$log" 2>&1 &
daemon=$!
# Mounts start in order: once the last one is refused, all have been tried.
for _ in $(seq 100); do [ -S "$sock" ] && stat -f "$work/m2" | grep -q fuse && grep -q "m7: not mounted" "$log" && break; sleep 0.1; done
logged "missing module refused"      "m3: not mounted: .*missing.so: no such module file"
logged "non-library refused"         "m4: not mounted: .*text.so: cannot be loaded"
logged "untrusted module refused"    "m5: not mounted: .*untrusted.so: refused, untrusted: writable by group or others"
logged "library without entry refused" "m6: not mounted: .*libBentoKit.so: not a Bento module"
logged "other SDK ABI refused"       "m7: not mounted: .*abi999.so: built for Bento SDK ABI 999, this host speaks ABI 2"
echo hello > "$work/m1/f" && echo world > "$work/m2/g"
expect "the good mounts serve" test "$(cat "$work/m1/f")$(cat "$work/m2/g")" = helloworld
expect "refused mounts are not mounted" bash -c "! grep -qE '$work/m[3-7] ' /proc/self/mountinfo"

# bentoctl status.
expect "bentoctl status" "$bin/bentoctl" --socket "$sock" status
json=$("$bin/bentoctl" --socket "$sock" status --json)
expect "status --json lists the two mounts" test "$(grep -c '"mountpoint"' <<<"$json")" = 2
expect "status --json names module and version" grep -q '"version" *: *"1.0.0"' <<<"$json"
expect "status --json shows state" grep -q '"state" *: *"serving"' <<<"$json"

# The control socket: root only, garbage answered, nothing changed.
expect "socket is mode 0600" test "$(stat -c %a "$sock")" = 600
out=$(setpriv --reuid=65534 --regid=65534 --clear-groups "$bin/bentoctl" --socket "$sock" status 2>&1)
expect "non-root bentoctl is refused" grep -qi "permission denied" <<<"$out"
chmod 666 "$sock"
out=$(printf '{"command":"status"}\n' | setpriv --reuid=65534 --regid=65534 --clear-groups socat -t 2 - "UNIX-CONNECT:$sock" 2>&1)
chmod 600 "$sock"
expect "non-root peer refused by its uid" grep -q "only root may control" <<<"$out"
out=$(printf 'garbage\n{"command":\n\x00\xff\n{"command":"status"}\n' | socat -t 2 - "UNIX-CONNECT:$sock" 2>&1)
expect "garbage gets error replies" test "$(grep -c '"ok" *: *false' <<<"$out")" -ge 3
expect "a good request after garbage is answered" grep -q '"mounts"' <<<"$out"
head -c 200000 /dev/zero | tr '\0' 'x' | socat -t 2 - "UNIX-CONNECT:$sock" > "$work/big.out" 2>&1
expect "an oversized request gets an error" grep -q '"ok" *: *false' "$work/big.out"
expect "the daemon still serves" test "$(cat "$work/m1/f")" = hello
expect "and still answers" "$bin/bentoctl" --socket "$sock" status

# SIGTERM: flush, unmount everything, exit 0.
kill -TERM "$daemon"; wait "$daemon"; status=$?; daemon=
expect "SIGTERM exits 0" test $status -eq 0
expect "no mount left behind" bash -c "! grep -q '$work/m' /proc/self/mountinfo"
expect "control socket removed" test ! -e "$sock"
expect "fsck clean (mount 1)" "$bin/fsck.xv6" -n "$work/x1.img"
expect "fsck clean (mount 2)" "$bin/fsck.xv6" -n "$work/x2.img"

# A block device (a loop device over a RAM file), used with O_DIRECT.
truncate -s 64M "$work/disk" && loop=$(losetup --find --show "$work/disk")
if [ -n "$loop" ]; then
    "$bin/mkfs.xv6" "$loop" >/dev/null
    mkdir -p "$work/dev"
    "$bin/bento-upgraded" --image "$loop" --mountpoint "$work/dev" --module "$good" --control-socket "$work/dev.sock" --state-dir "$work/dev-state" >"$work/dev.log" 2>&1 &
    daemon=$!
    for _ in $(seq 100); do stat -f "$work/dev" | grep -q fuse && break; sleep 0.1; done
    head -c 3000000 /dev/urandom > "$work/data" && cp "$work/data" "$work/dev/data"
    fd=$(ls -l /proc/$daemon/fd | awk -v d="$loop" '$NF == d { print $9 }' | head -1)
    expect "block device opened with O_DIRECT" test $(( 0$(awk '/^flags/ { print $2 }' /proc/$daemon/fdinfo/$fd) & 040000 )) -ne 0
    kill -TERM "$daemon"; wait "$daemon"; daemon=
    expect "fsck clean on the block device" "$bin/fsck.xv6" -n "$loop"
    "$bin/bento-upgraded" --image "$loop" --mountpoint "$work/dev" --module "$good" --control-socket "$work/dev.sock" --state-dir "$work/dev-state" >>"$work/dev.log" 2>&1 &
    daemon=$!
    for _ in $(seq 100); do stat -f "$work/dev" | grep -q fuse && break; sleep 0.1; done
    expect "data on the block device survives remount" cmp "$work/data" "$work/dev/data"
    kill -TERM "$daemon"; wait "$daemon"; daemon=
    losetup -d "$loop"
else
    fail "losetup"
fi

# A worker killed just as the daemon stops: another one recovers and
# flushes what it had answered (the operation journal), so nothing is lost.
"$bin/mkfs.xv6" --size 32M "$work/stop.img" >/dev/null && mkdir -p "$work/mstop"
for round in 1 2 3; do
    "$bin/bento-upgraded" --image "$work/stop.img" --mountpoint "$work/mstop" --module "$good" \
        --control-socket "$work/stop.sock" --state-dir "$work/stop-state" >>"$work/stop.log" 2>&1 &
    daemon=$!
    for _ in $(seq 100); do stat -f "$work/mstop" | grep -q fuse && break; sleep 0.1; done
    mkdir "$work/mstop/r$round" && for i in $(seq 100); do echo "$i" > "$work/mstop/r$round/f$i"; done
    worker=$(pgrep -P "$daemon" -f -- --worker)
    kill -TERM "$daemon"; kill -9 $worker
    wait "$daemon"; daemon=
done
expect "worker killed at stop: fsck clean" "$bin/fsck.xv6" -n "$work/stop.img"
"$bin/bento-upgraded" --image "$work/stop.img" --mountpoint "$work/mstop" --module "$good" \
    --control-socket "$work/stop.sock" --state-dir "$work/stop-state" >>"$work/stop.log" 2>&1 &
daemon=$!
for _ in $(seq 100); do stat -f "$work/mstop" | grep -q fuse && break; sleep 0.1; done
expect "worker killed at stop, three times: all 300 answered creates are there" \
    test "$(cat "$work"/mstop/r*/f* | wc -l)" -eq 300
kill -TERM "$daemon"; wait "$daemon"; daemon=

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
