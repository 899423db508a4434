#!/bin/bash
# The template's module through the conformance kit: a package made by
# `make new-module`, built at 0.1.0 and, with the version bumped, at 0.1.1
# (the next version); then the provenance layer stacked over it.
# Usage: Tests/conformance/template.sh BIN_DIR [KIT OPTIONS...]
set -euo pipefail
tree=$(cd "$(dirname "$0")/../.." && pwd)
bin=$(cd "${1:?usage: $0 BIN_DIR [KIT OPTIONS...]}" && pwd); shift
export PATH=/opt/swift/usr/bin:$PATH
work=$(mktemp -d /tmp/bento-conformance-template.XXXXXX)
trap 'kill ${daemon:-} 2>/dev/null; umount -l "$work/mnt" 2>/dev/null; rm -rf "$work"' EXIT
pkg=$work/conffs
make -s -C "$tree" new-module NAME=conffs DIR="$pkg" MODULE_VERSION=0.1.0 >/dev/null
swift build --package-path "$pkg" --product ConffsModule 2>&1 | tail -1
cp "$pkg/.build/debug/libConffsModule.so" "$work/conffs-0.1.0.so"
sed -i 's|^let version = "0.1.0"|let version = "0.1.1"|' "$pkg/Package.swift"
swift build --package-path "$pkg" --product ConffsModule 2>&1 | tail -1
cp "$pkg/.build/debug/libConffsModule.so" "$work/conffs-0.1.1.so"
set +e
"$tree/Tests/conformance/conformance.sh" --bin "$bin" --next "$work/conffs-0.1.1.so" "$@" "$work/conffs-0.1.0.so"
kit=$?

# The provenance layer over the template's file system, which knows
# nothing of it: records of what a user does, an upgrade of each module of
# the stack live, records after each.
mnt=$work/mnt sock=$work/control.sock passed=0 failed=0
ok()   { passed=$((passed + 1)); echo "ok   stack: $1"; }
fail() { failed=$((failed + 1)); echo "FAIL stack: $1"; }
expect() { local name=$1; shift; if "$@" >/dev/null 2>&1; then ok "$name"; else fail "$name"; fi; }
mkdir "$mnt" && truncate -s 64M "$work/stack.img"
"$bin/bento-upgraded" --image "$work/stack.img" --mountpoint "$mnt" --module "$bin/libProvenanceModule.so" \
    --module "$work/conffs-0.1.0.so" --control-socket "$sock" --state-dir "$work/state" >"$work/stack.log" 2>&1 &
daemon=$!
for _ in $(seq 100); do [ -S "$sock" ] && stat -f "$mnt" 2>/dev/null | grep -q fuse && break; sleep 0.1; done
mkdir "$mnt/d" && echo one > "$mnt/d/f" && mv "$mnt/d/f" "$mnt/d/g"
expect "provenance recorded over conffs 0.1.0" grep -q 'op=rename .*name="f" .*newname="g"' "$mnt/.provenance"
for module in "$bin/libFixtureProvenanceNext.so" "$work/conffs-0.1.1.so"; do
    expect "upgraded to $(basename "$module") live" "$bin/bentoctl" --socket "$sock" upgrade "$mnt" "$module"
done
rm "$mnt/d/g"
expect "provenance 1.1.0 records over conffs 0.1.1" grep -q 'op=unlink .*name="g"' "$mnt/.provenance"
expect "the records before the upgrades are still there" grep -q 'op=create .*name="d"' "$mnt/.provenance"
kill -TERM $daemon; wait $daemon
expect "the daemon stopped cleanly" test $? = 0
echo "stack over the template: $passed passed, $failed failed"
[ "$kit" = 0 ] && [ "$failed" = 0 ]
