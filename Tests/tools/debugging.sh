#!/bin/bash
# The doc test of Docs/debugging.md: runs its ```sh blocks, in order, in one
# shell that stops at the first failing command (gdb attached to a mount's
# worker, a breakpoint in xv6fs hit by a touch, a live upgrade under gdb; an
# xv6fs test under gdb), then checks what gdb printed. Root; needs
# bento-upgraded, bentoctl, XV6Module, XV6Module2, mkfs.xv6 and fsck.xv6 in
# BIN_DIR, and gdb.
# Usage: Tests/tools/debugging.sh BIN_DIR
set -u
bin=$(cd "${1:?usage: $0 BIN_DIR}" && pwd)
tree=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /tmp/bento-debugging.XXXXXX)
chmod 755 "$work"
w=$work/w
passed=0 failed=0
ok()   { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; }
# expect NAME FILE REGEX: FILE has a line matching REGEX.
expect() { if grep -Eq "$3" "$2" 2>/dev/null; then ok "$1"; else fail "$1"; fi; }
cleanup() {
    [ -s "$w/daemon.pid" ] && kill -TERM "$(cat "$w/daemon.pid")" 2>/dev/null && sleep 1
    grep -q " $w/mnt " /proc/self/mountinfo && umount -l "$w/mnt"
    rm -rf "$work"
}
trap cleanup EXIT
[ -n "${KEEP:-}" ] && trap - EXIT
command -v gdb > /dev/null || { echo "FAIL no gdb (apt-get install gdb)"; exit 1; }

doc=$tree/Docs/debugging.md
# The guide keeps the daemon's pid in $daemon: leave it for cleanup.
echo 'trap '\''echo "${daemon:-}" > "$WORK/daemon.pid"'\'' EXIT' > "$work/guide.sh"
awk '/^```sh$/ { on = 1; next } /^```$/ { on = 0 } on' "$doc" >> "$work/guide.sh"
echo "     $(grep -c '^```sh$' "$doc") blocks, $(( $(wc -l < "$work/guide.sh") - 1 )) lines from Docs/debugging.md"
cd "$tree"
start=$(date +%s)
# A breakpoint that is never hit would leave gdb waiting: bound the run.
BIN=$bin WORK=$w timeout 300 bash -e -o pipefail "$work/guide.sh" > "$work/out" 2>&1
status=$?
if [ $status -eq 0 ]; then
    ok "the guide's commands all ran ($(( $(date +%s) - start )) s)"
else
    fail "the guide stopped (exit status $status); its output ends:"
    tail -20 "$work/out" | sed 's/^/     /'
fi

# In the running daemon: stopped in the module's source, called from the
# worker's FUSE operations, and let go.
src='kmod/xv6fs/Sources/XV6FS/Xv6FileSystem\.swift:[0-9]+'
expect "gdb attached to the worker stopped at the breakpoint in the module's source" \
    "$w/gdb.out" "hit Breakpoint 1, Xv6FileSystem\.create\(.* at .*$src"
expect "the backtrace goes through the module file" "$w/gdb.out" '^#[0-9]+ .* from .*/libXV6Module\.so$'
expect "the backtrace goes through the worker's FUSE operations" "$w/gdb.out" \
    '^#[0-9]+ .* at .*/Sources/BentoFUSE/Operations\.swift:[0-9]+'
expect "gdb shows the arguments' names" "$w/gdb.out" '^name = '
expect "gdb detached" "$w/gdb.out" '^\[Inferior 1 \(process [0-9]+\) detached\]'
expect "the touch completed" "$work/out" ' root +0 .*/mnt/hello$'
expect "the mount served on after the session" "$work/out" '^still serving$'
# A live upgrade: the breakpoint set again in the new module file, hit there.
expect "after an upgrade, gdb stopped in the new version's source" "$w/gdb-upgrade.out" \
    'hit Breakpoint 1\.[0-9]+, Xv6FileSystem\.create\(.* at .*/kmod/xv6fs/Sources/XV6FS2/Xv6FileSystem\.swift:[0-9]+'
expect "the backtrace goes through the new module file" "$w/gdb-upgrade.out" '^#[0-9]+ .* from .*/libXV6Module2\.so$'
expect "the upgrade to 2.0.0 went through with gdb attached" "$work/out" '^upgraded .*: 1\.0\.0 -> 2\.0\.0'
expect "the touch after the upgrade completed" "$work/out" ' root +0 .*/mnt/hello2$'
expect "fsck.xv6 found the image clean" "$work/out" ': clean$'
# In process: the same breakpoint under the package's own test harness.
expect "swift test --filter ran the test" "$work/out" 'Test run with 1 test .* passed'
expect "gdb stopped in the module's source under the test" \
    "$w/gdb-test.out" "hit Breakpoint 1, Xv6FileSystem\.create\(.* at .*$src"
expect "the backtrace goes through the harness" "$w/gdb-test.out" \
    '^#[0-9]+ .* at .*/Tests/XV6FSTests/Harness\.swift:[0-9]+'
expect "gdb detached from the test" "$w/gdb-test.out" '^\[Inferior 1 \(process [0-9]+\) detached\]'
expect "the test then passed on its own" "$w/gdb-test.err" 'Test run with 1 test .* passed'

if [ $failed -ne 0 ]; then
    echo "     gdb's output (the daemon's worker):"; grep -v '^\[New\|^\[Thread' "$w/gdb.out" 2>/dev/null | head -20 | cut -c1-200 | sed 's/^/     /'
    echo "     gdb's output (the test):"; grep -v '^\[New\|^\[Thread\|^#' "$w/gdb-test.out" 2>/dev/null | tail -8 | cut -c1-200 | sed 's/^/     /'
    [ -f "$w/daemon.log" ] && { echo "     daemon log:"; tail -10 "$w/daemon.log" | sed 's/^/     /'; }
fi
echo "$passed passed, $failed failed"
[ $failed -eq 0 ]
