#!/bin/bash
# The doc test of Docs/first-module.md: runs its ```sh blocks, in order, in
# one shell that stops at the first failing command, against a real mount
# (root; needs bento-upgraded and bentoctl in BIN_DIR).
# Usage: Tests/tools/tutorial.sh BIN_DIR
set -u
bin=$(cd "${1:?usage: $0 BIN_DIR}" && pwd)
tree=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /tmp/bento-tutorial.XXXXXX)
chmod 755 "$work"   # module files must sit in directories only root can write
cleanup() {
    [ -f "$work/w/daemon.pid" ] && kill -TERM "$(cat "$work/w/daemon.pid")" 2>/dev/null && sleep 1
    grep -q " $work/w/mnt " /proc/self/mountinfo && umount -l "$work/w/mnt"
    rm -rf "$work"
}
trap cleanup EXIT
[ -n "${KEEP:-}" ] && trap - EXIT

awk '/^```sh$/ { on = 1; next } /^```$/ { on = 0 } on' "$tree/Docs/first-module.md" > "$work/tutorial.sh"
blocks=$(grep -c '^```sh$' "$tree/Docs/first-module.md")
echo "     $blocks blocks, $(wc -l < "$work/tutorial.sh") lines from Docs/first-module.md"
cd "$tree"
start=$(date +%s)
BIN=$bin WORK=$work/w bash -e -o pipefail "$work/tutorial.sh" > "$work/out" 2>&1
status=$?
if [ $status -eq 0 ]; then
    echo "ok   the tutorial's commands all ran ($(( $(date +%s) - start )) s)"
    grep -E '^(build|install|upgrade|total) ' "$work/out" | sed 's/^/     /'
    exit 0
fi
echo "FAIL the tutorial stopped (exit status $status); its output ends:"
tail -30 "$work/out" | sed 's/^/     /'
[ -f "$work/w/daemon.log" ] && { echo "     daemon log:"; tail -10 "$work/w/daemon.log" | sed 's/^/     /'; }
exit 1
