#!/bin/bash
# bento-upgraded under real systemd, end to end: a fresh minbase Debian 12
# root gets `make install` and the self-checking load, and boots in
# systemd-nspawn with systemd as PID 1; bento-e2e.service runs checks.sh
# in there (start/ready, status text, live upgrade, journald fields and
# catalog, restart and kill -9 under load keeping the mount, a hung device
# costing only its own mount, reload, stop; or, with BENTO_E2E_CHECKS,
# containment.sh: versions that trap and hang; pressure.sh: a full file
# system's journal entries, and MemoryMax=)
# and its exit status becomes the container's.
# Usage (from anywhere, after the debug build): Tests/systemd/e2e.sh
# Environment:
#   BENTO_E2E_ROOT_CACHE=FILE.tar  reuse a debootstrapped root (written there if missing)
#   BENTO_E2E_TIMEOUT=300          seconds the container may run
#   BENTO_E2E_MIRROR=URL           Debian mirror for debootstrap (default: its own)
#   KEEP=1                         leave the work dir (the root, the logs) for a look
#   BENTO_E2E_CHECKS=FILE          run FILE in the container instead of checks.sh
#                                  (bench/systemd.sh: restart and crash stalls)
#   CONFIG=release                 install the release build (default: debug)
#   BENTO_E2E_DEB=FILE.deb         no make install: the checks (BENTO_E2E_CHECKS,
#                                  Tests/systemd/package.sh) install this package
set -u
cd "$(dirname "$0")/../.."
here=Tests/systemd
limit=${BENTO_E2E_TIMEOUT:-300}
mirror=${BENTO_E2E_MIRROR:-}
passed=0 failed=0
ok()   { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; }
note() { sed 's/^/     /' | tail -"${1:-20}"; }
summary() { echo "$passed passed, $failed failed"; [ "$failed" -eq 0 ]; }

[ "$(id -u)" -eq 0 ] || { echo "FAIL e2e.sh must run as root"; exit 1; }
missing=$(for p in debootstrap systemd-container libfuse3-dev pkg-config; do dpkg -s $p >/dev/null 2>&1 || echo $p; done)
if [ -n "$missing" ]; then
    echo "     installing Debian packages: $missing"
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing; } >/dev/null \
        || { fail "apt-get install $missing"; summary; exit; }
fi

# The work dir: RAM if there is room for the root, the images and the
# overlay (about 1 GB), else disk.
base=/var/tmp
[ "$(df --output=avail -B1M /dev/shm 2>/dev/null | tail -1)" -ge 2048 ] 2>/dev/null && base=/dev/shm
[ "$(df --output=avail -B1M "$base" | tail -1)" -ge 1024 ] || { fail "1 GB free in $base for the root"; summary; exit; }
work=$(mktemp -d "$base/bento-e2e.XXXXXX")
chmod 755 "$work"
root=$work/root name=bento-e2e-${work##*.}
nspawn= cgroups=()

# Each run has its own cgroup (nspawn --keep-unit puts its supervisor and
# payload cgroups under ours; without systemd on the host nobody else
# would), which is also how cleanup finds every process of the container.
# On a v1 host, a memory cgroup too: it is the container's memory root,
# which Tests/systemd/pressure.sh hands to systemd for MemoryMax=.
make_cgroups() {
    local d
    if [ -e /sys/fs/cgroup/cgroup.procs ]; then cgroups=(/sys/fs/cgroup/$name)   # unified
    else for h in systemd unified memory; do [ -d /sys/fs/cgroup/$h ] && cgroups+=(/sys/fs/cgroup/$h/$name); done; fi
    for d in "${cgroups[@]}"; do mkdir "$d" || return 1; done
}
cgroup_pids() { local d; for d in "${cgroups[@]}"; do find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null; done | sort -u; }
# The container's PID 1 as the host sees it.
container_init() {
    local p
    for p in $(cgroup_pids); do awk '/^NSpid:/ && NF > 2 && $NF == 1 { found = 1 } END { exit !found }' /proc/$p/status 2>/dev/null && echo $p && return; done
}
cleanup() {
    local d p i
    trap - EXIT INT TERM
    if [ -n "$nspawn" ] && kill -0 "$nspawn" 2>/dev/null; then
        kill -TERM "$nspawn"
        for i in $(seq 50); do kill -0 "$nspawn" 2>/dev/null || break; sleep 0.2; done
    fi
    # Whatever of the container is left: killed by process ID, from our cgroups.
    for i in $(seq 50); do
        [ -z "$(cgroup_pids)" ] && break
        for p in $(cgroup_pids); do kill -KILL "$p" 2>/dev/null; done
        sleep 0.1
    done
    [ -n "$nspawn" ] && wait "$nspawn" 2>/dev/null
    for d in "${cgroups[@]}"; do [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null; done
    rm -rf "/run/systemd/nspawn/propagate/$name"
    # Mounts left under the work dir (an interrupted debootstrap leaves /proc and /sys).
    awk -v w="$work/" 'index($5, w) == 1 { print $5 }' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l
    if [ -n "${KEEP:-}" ]; then echo "     kept $work"; else rm -rf --one-file-system "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- The root: minbase Debian 12 with systemd, fuse3 and nothing of Swift ---
t0=$SECONDS
cache=${BENTO_E2E_ROOT_CACHE:-}
mkdir "$root"
if [ -n "$cache" ] && [ -s "$cache" ]; then
    tar -C "$root" -xpf "$cache" && ok "root from $cache" || { fail "unpacking $cache"; summary; exit; }
else
    if debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,fuse3,util-linux,procps \
        bookworm "$root" ${mirror:+"$mirror"} >"$work/debootstrap.log" 2>&1; then
        ok "debootstrap minbase bookworm ($((SECONDS - t0)) s, $(du -sm "$root" | cut -f1) MB)"
        # Written aside and renamed: an interrupted run leaves no half cache.
        [ -n "$cache" ] && tar -C "$root" -cpf "$cache.new" . && mv "$cache.new" "$cache" && echo "     cached the root in $cache"
    else
        fail "debootstrap minbase bookworm"; note <"$work/debootstrap.log"; summary; exit
    fi
fi

# --- What the project installs, and the test's own files --------------------
config=${CONFIG:-debug}
deb=${BENTO_E2E_DEB:-}
if [ -n "$deb" ]; then
    mkdir -p "$root/usr/local/libexec/bento-test"
    if cp "$deb" "$root/usr/local/libexec/bento-test/"; then ok "the package ${deb##*/} is in the root"
    else fail "the package $deb is in the root"; summary; exit; fi
elif make -s install CONFIG=$config DESTDIR="$root" PREFIX=/usr/local >"$work/install.log" 2>&1; then
    ok "make install CONFIG=$config DESTDIR=root PREFIX=/usr/local"
else
    fail "make install CONFIG=$config DESTDIR=root PREFIX=/usr/local"; note 30 <"$work/install.log"; summary; exit
fi
p=$root/usr/local
[ -n "$deb" ] || for f in sbin/bento-upgraded sbin/mkfs.xv6 sbin/fsck.xv6 sbin/mount.xv6 bin/bentoctl \
    lib/bento/modules/xv6fs-1.0.0.so lib/bento/modules/xv6fs-2.0.0.so lib/bento/modules/xv6fs-3.0.0.so \
    lib/systemd/system/bento-upgraded.service lib/systemd/catalog/bento.catalog \
    lib/tmpfiles.d/bento.conf lib/modules-load.d/bento.conf; do
    if [ -e "$p/$f" ]; then ok "installed $f"; else fail "installed $f"; fi
done
[ -n "$deb" ] || [ -e "$p/lib/systemd/system/bento-upgraded.service" ] || { echo "     no unit installed: nothing to boot for"; summary; exit; }

libexec=$p/libexec/bento-test
mkdir -p "$libexec" "$work/results"
if cc -O2 -pthread -o "$libexec/load" Tests/mount/load.c 2>"$work/cc.log"; then ok "build the load"
else fail "build the load"; note <"$work/cc.log"; summary; exit; fi
if cc -O2 -pthread -o "$libexec/fsmodel" Tests/mount/fsmodel.c 2>"$work/cc.log"; then ok "build fsmodel"
else fail "build fsmodel"; note <"$work/cc.log"; summary; exit; fi
if cc -O2 -o "$libexec/hold" Tests/mount/hold.c 2>"$work/cc.log"; then ok "build hold"
else fail "build hold"; note <"$work/cc.log"; summary; exit; fi
# libfuse's passthrough_ll: the image of the watchdog check lives on it, and
# stopping it makes the module's block I/O hang.
ex=/usr/share/doc/libfuse3-dev/examples
if cc -O2 -o "$libexec/passthrough_ll" "$ex/passthrough_ll.c" -I"$ex" $(pkg-config --cflags --libs fuse3) 2>"$work/cc.log"; then
    ok "build libfuse's passthrough_ll"
else fail "build libfuse's passthrough_ll"; note <"$work/cc.log"; fi
install -m 0755 "${BENTO_E2E_CHECKS:-$here/checks.sh}" "$libexec/checks.sh"
install -m 0644 "$here/lib.sh" "$libexec/lib.sh"
# A module whose import takes 5 s (then fails): a crash in mid-upgrade.
# Versions that trap, hang or fail reads: the containment checks.
[ -n "$deb" ] || for f in SlowImport:slow-import FaultyTrap:trap FaultyHang:hang FaultyReads:reads; do
    if install -m 0644 .build/$config/libFixture${f%%:*}.so "$libexec/${f#*:}.so" \
        && patchelf --set-rpath /usr/local/lib/bento "$libexec/${f#*:}.so"; then ok "install the ${f#*:} fixture module"
    else fail "install the ${f#*:} fixture module"; fi
done
install -m 0644 $here/bento-e2e.service "$root/etc/systemd/system/bento-e2e.service"
ln -sf /etc/systemd/system/bento-e2e.service "$root/etc/systemd/system/multi-user.target.wants/bento-e2e.service"
# A login prompt on the console is noise here.
ln -sf /dev/null "$root/etc/systemd/system/console-getty.service"
# The container's own /dev/fuse node: it would chmod the host's.
mknod -m 0666 "$work/fuse" c 10 229

# --- Boot, and follow the checks as they run ----------------------------
make_cgroups || { fail "cgroups for the container"; summary; exit; }
echo "     booting $name (at most $limit s)"
t0=$SECONDS
(
    for d in "${cgroups[@]}"; do echo $BASHPID >"$d/cgroup.procs"; done
    exec systemd-nspawn --quiet -D "$root" -b --machine="$name" --register=no --keep-unit \
        --volatile=overlay --console=read-only --private-network \
        --bind="$work/fuse:/dev/fuse" --bind="$work/results:/results"
) >"$work/console.log" 2>&1 </dev/null &
nspawn=$!
tail -n +1 -F --pid=$nspawn "$work/results/checks.log" 2>/dev/null &
follower=$!
while kill -0 $nspawn 2>/dev/null && [ $((SECONDS - t0)) -lt "$limit" ]; do sleep 0.5; done
if kill -0 $nspawn 2>/dev/null; then
    fail "the container finished within $limit s"
    init=$(container_init)
    if [ -n "$init" ]; then
        echo "     what the container says:"
        { nsenter -t "$init" -a systemctl --no-pager list-jobs; nsenter -t "$init" -a systemctl --no-pager status bento-upgraded.service
          nsenter -t "$init" -a journalctl -q --no-pager -n 60 -o short-precise; } 2>&1 | note 100
    fi
    timed_out=timeout
    kill -TERM $nspawn
    for i in $(seq 50); do kill -0 "$nspawn" 2>/dev/null || break; sleep 0.2; done
    for p in $(cgroup_pids); do kill -KILL "$p" 2>/dev/null; done
fi
wait $nspawn; status=$?
[ -n "${timed_out:-}" ] && status=124
sleep 1; kill $follower 2>/dev/null; wait $follower 2>/dev/null
nspawn=
echo "     the container ran $((SECONDS - t0)) s and exited with status $status"

if [ -z "${timed_out:-}" ]; then
    if grep -qE '^container: [0-9]+ passed' "$work/results/checks.log" 2>/dev/null; then ok "the checks ran to the end"
    else fail "the checks ran to the end"; fi
    if [ $status -eq 0 ]; then ok "every check in the container passed"; else fail "every check in the container passed (exit status $status)"; fi
fi
if [ $status -ne 0 ]; then
    [ -s "$work/results/diagnostics.txt" ] && { echo "     diagnostics from the container:"; note 200 <"$work/results/diagnostics.txt"; }
    echo "     the container's console (last lines):"
    sed 's/\x1b\[[0-9;]*m//g' "$work/console.log" | note 25
fi

# The container's own checks count in the total.
read -r cp cf < <(sed -n 's/^container: \([0-9]*\) passed, \([0-9]*\) failed.*/\1 \2/p' "$work/results/checks.log" 2>/dev/null)
passed=$((passed + ${cp:-0})) failed=$((failed + ${cf:-0}))
# Nothing of the run mounted on the host: under the work dir, or the
# container's FUSE mounts leaked out.
leaked=$(awk -v w="$work/" 'index($5, w) == 1 || ($5 ~ /\/(mnt\/([abw]|pt)|srv\/[abpqx])$/ && / - fuse/) { print $5 }' /proc/self/mountinfo)
if [ -z "$leaked" ]; then ok "no mount of the run left on the host"; else fail "no mount of the run left on the host"; echo "$leaked" | note; fi
summary
