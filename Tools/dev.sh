#!/bin/bash
# The edit-to-live loop: builds a module package (one made by
# Tools/new-module.sh) as a fresh development version and upgrades a
# mount to it, printing how long each step took. A build error or a
# refused upgrade leaves the mount on the version it had.
# Usage: Tools/dev.sh MOUNTPOINT MODULE_DIR
# Environment: BENTOCTL (default: this tree's .build/release or .build/debug
# bentoctl, else bentoctl on PATH), SOCKET (bentoctl's --socket), UPGRADE_FLAGS (more
# options for `bentoctl upgrade`, e.g. "--probation 0").
set -u
usage() { echo "usage: $0 MOUNTPOINT MODULE_DIR" >&2; exit 2; }
[ $# -eq 2 ] || usage
mount=$(realpath -m "$1") dir=$(cd "$2" 2>/dev/null && pwd) || { echo "$0: no such directory: $2" >&2; exit 2; }
tree=$(cd "$(dirname "$0")/.." && pwd)
export PATH=/opt/swift/usr/bin:$PATH
bentoctl=${BENTOCTL:-}
for candidate in $tree/.build/release/bentoctl $tree/.build/debug/bentoctl; do
    [ -z "$bentoctl" ] && [ -x "$candidate" ] && bentoctl=$candidate
done
bentoctl=${bentoctl:-bentoctl}
ctl() { "$bentoctl" ${SOCKET:+--socket "$SOCKET"} "$@"; }
now() { date +%s%N; }
seconds() { awk -v ns=$(($2 - $1)) 'BEGIN { printf "%.2f s", ns / 1e9 }'; }

# What the package builds: its name, version and module product (Package.swift).
name=$(sed -n 's/^    name: "\(.*\)",$/\1/p' "$dir/Package.swift")
version=$(sed -n 's/^let version = "\(.*\)"$/\1/p' "$dir/Package.swift")
product=$(sed -n 's/.*\.library(name: "\([A-Za-z0-9]*\)", type: \.dynamic.*/\1/p' "$dir/Package.swift" | head -1)
[ -n "$name" ] && [ -n "$version" ] && [ -n "$product" ] || {
    echo "$0: $dir/Package.swift is not one Tools/new-module.sh made (no name, version or module product)" >&2; exit 2; }
serving=$(ctl status 2>/dev/null | awk -v m="$mount" '$1 == m { found = 1 } found && $1 == "module" { print $2, $3, $4; exit }')
[ -n "$serving" ] || { echo "$0: $mount is not served by bento-upgraded (bentoctl status)" >&2; exit 1; }

# A development version: the package's version under a build number of its
# own. Each gets its own Swift module name (BENTO_DEV_BUILD, Package.swift)
# and its own file: the daemon keeps every module file it loaded, and a
# file name it has seen would give it the old code again.
mkdir -p "$dir/.build/dev"
build=$(( $(cat "$dir/.build/dev/last-build" 2>/dev/null || echo 0) + 1 ))
echo $build > "$dir/.build/dev/last-build"
file=$dir/.build/dev/$name-$version-dev.$build.so

start=$(now)
BENTO_DEV_BUILD=$build swift build --package-path "$dir" --product "$product" > "$dir/.build/dev/build.log" 2>&1
status=$?
built=$(now)
if [ "$status" -ne 0 ]; then
    grep -E -A3 'error:' "$dir/.build/dev/build.log" || tail -20 "$dir/.build/dev/build.log"
    echo "build failed ($(seconds $start $built)): $mount stays on $serving"
    exit 1
fi
install -m 0644 "$dir/.build/debug/lib$product.so" "$file"
copied=$(now)

ctl upgrade "$mount" "$file" ${UPGRADE_FLAGS:-}
status=$?
upgraded=$(now)
echo "build   $(seconds $start $built)  ($name $version dev build $build)"
echo "install $(seconds $built $copied)  ($file)"
echo "upgrade $(seconds $copied $upgraded)"
echo "total   $(seconds $start $upgraded)"
if [ "$status" -ne 0 ]; then
    echo "upgrade not done: $mount stays on $serving"
    exit 1
fi
