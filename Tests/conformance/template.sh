#!/bin/bash
# The template's module through the conformance kit: a package made by
# `make new-module`, built at 0.1.0 and, with the version bumped, at 0.1.1
# (the next version).
# Usage: Tests/conformance/template.sh BIN_DIR [KIT OPTIONS...]
set -euo pipefail
tree=$(cd "$(dirname "$0")/../.." && pwd)
bin=$(cd "${1:?usage: $0 BIN_DIR [KIT OPTIONS...]}" && pwd); shift
export PATH=/opt/swift/usr/bin:$PATH
work=$(mktemp -d /tmp/bento-conformance-template.XXXXXX)
trap 'rm -rf "$work"' EXIT
pkg=$work/conffs
make -s -C "$tree" new-module NAME=conffs DIR="$pkg" MODULE_VERSION=0.1.0 >/dev/null
swift build --package-path "$pkg" --product ConffsModule 2>&1 | tail -1
cp "$pkg/.build/debug/libConffsModule.so" "$work/conffs-0.1.0.so"
sed -i 's|^let version = "0.1.0"|let version = "0.1.1"|' "$pkg/Package.swift"
swift build --package-path "$pkg" --product ConffsModule 2>&1 | tail -1
cp "$pkg/.build/debug/libConffsModule.so" "$work/conffs-0.1.1.so"
set +e
"$tree/Tests/conformance/conformance.sh" --bin "$bin" --next "$work/conffs-0.1.1.so" "$@" "$work/conffs-0.1.0.so"
