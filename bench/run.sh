#!/bin/bash
# Side-by-side file system benchmark, all on RAM-backed storage:
#   xv6   the xv6fs module served by bento-upgraded (image file on tmpfs)
#   pt    libfuse's passthrough_ll example over ext4 (data=journal) on a loop
#         device backed by a tmpfs file
#   ext4  ext4 with data=journal on a loop device backed by a tmpfs file
# Workloads: create/stat/unlink of many empty files (1 and 8 threads), 4 KiB
# random writes with fsync (fio), sequential 1 MiB write, cold read and rm, an
# untar of the Linux 6.1 source and its rm -rf. Each workload runs the three
# systems one after the other on fresh file systems, repeated and
# interleaved; the table shows medians and the ratios xv6/passthrough_ll and
# xv6/ext4, and the requests the xv6 mount served per file (bentoctl status).
#
# Usage: bench/run.sh [--quick] [--no-build] [--poll-idle] [OUTPUT.md]
#   OUTPUT.md   where the Markdown table goes (default Docs/benchmarks.md in
#               the repository; with --quick, /tmp/bento-bench-quick.md so a
#               smoke test never overwrites the real results)
#   --quick     reduced smoke test: 2,000 files, 3 s fio, 128 MiB sequential,
#               a ~256 MB part of the kernel tarball, one repeat
#   --no-build  do not build; use the binaries already in BENCH_BIN
#   --poll-idle hold /dev/cpu_dma_latency at 0 during the runs, so idle CPUs
#               poll instead of halting. By default idle states are left as
#               they are, as on users' machines. On a VM a halted vCPU takes
#               long to wake, which makes every FUSE request (two sleeps and
#               wake-ups) slower: about 2x on a guest with the haltpoll
#               cpuidle driver. A guest without a cpuidle driver halts
#               whatever the setting, and it changes nothing (the table's
#               "CPU idle" line names the driver).
# Environment:
#   BENCH_BIN        bento-upgraded, libXV6Module.so, libBentoKit.so, mkfs.xv6
#                    and fsck.xv6 (default: .build/release, built first)
#   BENCH_TMP        tmpfs directory for the work area (default /dev/shm)
#   BENTO_ARGS       extra bento-upgraded options (e.g. "--threads 8 --cache-mib 512")
#   PT_OPTS          extra passthrough_ll options (e.g. "-o writeback")
#   BENCH_WORKLOADS  run only these (of: meta1 meta8 randwrite seq untar), for diagnosis
#   BENCH_REPS       repeats instead of 3 (1 with --quick)
#   SWIFT            the swift driver (default: swift, /opt/swift/usr/bin first in PATH)
# After every xv6 run, once its daemon has stopped, `fsck.xv6 -n` checks the
# image; a finding fails the run (exit status 1), as a failed workload does.
# Needs root, /dev/fuse and loop devices. Installs missing Debian packages
# (fio, linux-source-6.1, e2fsprogs, libfuse3-dev, pkg-config, fuse3, gcc)
# with apt-get. Every mount, daemon and loop device it makes is removed on
# exit, also when interrupted.
set -u -o pipefail
export LC_ALL=C

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bench_dir=$repo/bench

quick=0 build=1 poll_idle=0 out=
while [ $# -gt 0 ]; do
    case $1 in
        --quick) quick=1 ;;
        --no-build) build=0 ;;
        --poll-idle) poll_idle=1 ;;
        -h|--help) sed -n '2,/^set -u/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        -*) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
        *) [ -z "$out" ] || { echo "run.sh: one output file only" >&2; exit 2; }; out=$1 ;;
    esac
    shift
done
if [ -z "$out" ]; then
    if [ $quick = 1 ]; then out=${TMPDIR:-/tmp}/bento-bench-quick.md; else out=$repo/Docs/benchmarks.md; fi
fi
case $out in /*) ;; *) out=$PWD/$out ;; esac

# Sizes.
if [ $quick = 1 ]; then
    nfiles=2000 reps=1 fio_runtime=3 fio_size=16M seq_mib=128 tar_prefix_mib=256
else
    nfiles=20000 reps=3 fio_runtime=15 fio_size=64M seq_mib=1024 tar_prefix_mib=
fi
threads_many=8
image_size=4G inodes=262144
tar_source=/usr/src/linux-source-6.1.tar.xz
pt_source=/usr/share/doc/libfuse3-dev/examples/passthrough_ll.c
# Bounds (seconds) so that nothing can hang the run.
limit_meta=300 limit_fio=$((fio_runtime + 180)) limit_seq=300 limit_untar=600 limit_stop=60

exec {log_fd}>&2                  # progress goes here even from inside a redirected call
say()  { echo "[bench $(date +%T)] $*" >&$log_fd; }
die()  { say "error: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "needs root (mounts, loop devices, drop_caches)"
[ -c /dev/fuse ] || die "no /dev/fuse"

# --- Dependencies -----------------------------------------------------------
packages="fio linux-source-6.1 e2fsprogs libfuse3-dev pkg-config fuse3 gcc libc6-dev xz-utils coreutils util-linux mount python3"
missing=$(for p in $packages; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
if [ -n "$missing" ]; then
    say "installing Debian packages: $(echo $missing)"
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing; } >&2 \
        || die "apt-get install failed"
fi
[ -r "$tar_source" ] || die "missing $tar_source (package linux-source-6.1)"
[ -r "$pt_source" ] || die "missing $pt_source (package libfuse3-dev)"

# --- The binaries under test ------------------------------------------------
bin=${BENCH_BIN:-$repo/.build/release}
if [ $build = 1 ] && [ -z "${BENCH_BIN:-}" ]; then
    export PATH=/opt/swift/usr/bin:$PATH
    for p in bento-upgraded XV6Module mkfs.xv6 fsck.xv6 bentoctl; do
        say "swift build -c release --product $p"
        (cd "$repo" && "${SWIFT:-swift}" build -c release --product "$p" >&2) || die "build of $p failed"
    done
fi
for f in bento-upgraded libXV6Module.so libBentoKit.so mkfs.xv6 fsck.xv6; do
    [ -e "$bin/$f" ] || die "missing $bin/$f (build it, or set BENCH_BIN)"
done
# The code under test, as of the build.
commit=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -n "$(git -C "$repo" status --porcelain -- Sources kmod Package.swift 2>/dev/null)" ] && commit="$commit (with uncommitted changes in Sources/kmod)"
[ -n "${BENCH_BIN:-}" ] || [ $build = 1 ] || commit="$commit (binaries not rebuilt: --no-build)"

# --- Work area and cleanup ----------------------------------------------------
tmp_root=${BENCH_TMP:-/dev/shm}
W=$(mktemp -d "$tmp_root/bento-bench.XXXXXX") || die "cannot make a work directory in $tmp_root"
child=                       # the running workload command
declare -A pid=()            # daemons by system: xv6, pt

alive() { local s; s=$(awk '/^State:/ {print $2}' "/proc/$1/status" 2>/dev/null); [ -n "$s" ] && [ "$s" != Z ]; }
# wait_gone PID SECONDS: waits for PID to end and reaps it (its status in
# gone_status); false if it did not end.
gone_status=
wait_gone() {
    local i
    for ((i = 0; i < $2 * 20; i++)); do alive "$1" || break; sleep 0.05; done
    alive "$1" && return 1
    wait "$1" 2>/dev/null; gone_status=$?
    return 0
}
mounted() { grep -q " $1 " /proc/self/mountinfo; }
mounts_under_w() { awk -v w="$W/" 'index($5, w) == 1 {print $5}' /proc/self/mountinfo | sort -r; }

cleanup() {
    local rc=$? m l f
    trap - EXIT INT TERM HUP
    set +e
    [ -n "${watchdog:-}" ] && kill -TERM "$watchdog" 2>/dev/null
    if [ -n "$child" ] && alive "$child"; then
        kill -TERM "$child" 2>/dev/null; wait_gone "$child" 5 || { kill -KILL "$child" 2>/dev/null; wait_gone "$child" 5; }
    fi
    for s in "${!pid[@]}"; do stop_daemon "$s" 2>/dev/null; done
    for m in $(mounts_under_w); do umount "$m" 2>/dev/null || umount -l "$m"; done
    for f in "$W"/*.img; do
        [ -e "$f" ] || continue
        for l in $(losetup -n -O NAME -j "$f" 2>/dev/null); do losetup -d "$l" 2>/dev/null; done
    done
    if [ -n "$(mounts_under_w)" ]; then
        say "warning: could not unmount: $(mounts_under_w | tr '\n' ' '); leaving $W"
    else
        rm -rf --one-file-system "$W"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'say "interrupted"; exit 130' INT
trap 'say "terminated"; exit 143' TERM
trap 'exit 129' HUP
# A last bound on the whole run, on top of the per-step ones.
limit_total=$([ $quick = 1 ] && echo 900 || echo 2700)
( trap 'kill $s 2>/dev/null; exit 0' TERM; sleep $limit_total & s=$!; wait $s
  echo "[bench] overall time limit of ${limit_total}s reached; stopping" >&2; kill -TERM $$ ) &
watchdog=$!

# bounded SECONDS COMMAND...: runs COMMAND with a time limit, in the
# background so that a signal reaches this script at once.
bounded() {
    local secs=$1 rc; shift
    timeout -k 10 "$secs" "$@" &
    child=$!
    wait "$child"; rc=$?
    child=
    [ $rc = 124 ] && say "timed out after ${secs}s: $*"
    return $rc
}
now_ns() { date +%s%N; }
# mbps BYTES NANOSECONDS -> MB (10^6 bytes) per second
mbps() { awk -v b="$1" -v ns="$2" 'BEGIN { printf "%.1f", b / 1e6 / (ns / 1e9) }'; }
secs() { awk -v ns="$1" 'BEGIN { printf "%.3f", ns / 1e9 }'; }

mkdir -p "$W/bin" "$W/build"
cp "$bin/bento-upgraded" "$bin/libXV6Module.so" "$bin/libBentoKit.so" "$bin/mkfs.xv6" "$bin/fsck.xv6" "$W/bin/" \
    || die "copying binaries"
[ -x "$bin/bentoctl" ] && cp "$bin/bentoctl" "$W/bin/"   # optional: request counts for the report
chmod 755 "$W/bin" "$W/bin"/*
say "compiling passthrough_ll and mdbench in $W/build"
cc -O2 -o "$W/build/passthrough_ll" "$pt_source" $(pkg-config --cflags --libs fuse3) 2>"$W/build/cc.log" \
    || { cat "$W/build/cc.log" >&2; die "compiling passthrough_ll failed"; }
cc -O2 -pthread -o "$W/build/mdbench" "$bench_dir/mdbench.c" || die "compiling mdbench failed"
[ "$(stat -f -c %T "$W")" = tmpfs ] || die "$W is not on tmpfs"
# A daemon with a control socket gets its own socket and state directory, so
# that it neither meets nor disturbs a bento-upgraded serving elsewhere.
bento_private=()
help=$("$W/bin/bento-upgraded" --help 2>&1)
control=
case $help in *--control-socket*) control=$W/control.sock; bento_private+=(--control-socket "$control") ;; esac
case $help in *--state-dir*) mkdir -p "$W/state"; bento_private+=(--state-dir "$W/state") ;; esac

# --- The three systems ----------------------------------------------------------
# Every system: sys_make (fresh file system, mounted), sys_cycle (unmount and
# drop caches and mount again: a cold start), sys_sync (syncfs of everything
# it stands on), sys_destroy (unmount, delete). dir[$s] is where workloads run.
declare -A dir=([xv6]=$W/xv6.mnt [pt]=$W/pt.mnt [ext4]=$W/ext4.mnt)
label_xv6="xv6 (bento)" label_pt=passthrough_ll label_ext4=ext4

wait_fuse() { # MOUNTPOINT PID
    local i
    for ((i = 0; i < 200; i++)); do
        if mounted "$1"; then case $(stat -f -c %T "$1" 2>/dev/null) in fuse*) return 0 ;; esac; fi
        alive "$2" || return 1
        sleep 0.05
    done
    return 1
}
drop_caches() { echo 3 > /proc/sys/vm/drop_caches; }

start_daemon() {
    case $1 in
    xv6)
        "$W/bin/bento-upgraded" --image "$W/xv6.img" --mountpoint "$W/xv6.mnt" \
            --module "$W/bin/libXV6Module.so" "${bento_private[@]}" ${BENTO_ARGS:-} >>"$W/xv6.log" 2>&1 &
        pid[xv6]=$! ;;
    pt)
        ( ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"
          exec "$W/build/passthrough_ll" -f -o source="$W/pt.ext4/data" ${PT_OPTS:-} "$W/pt.mnt" ) >>"$W/pt.log" 2>&1 &
        pid[pt]=$! ;;
    esac
    wait_fuse "${dir[$1]}" "${pid[$1]}" && return 0
    say "$1 daemon did not mount; its log:"; tail -n 20 "$W/$1.log" >&2
    return 1
}
# stop_daemon SYSTEM: bento-upgraded unmounts on SIGTERM; passthrough_ll ends
# when its mount goes away.
stop_daemon() {
    local s=$1 p=${pid[$1]:-} rc
    [ -n "$p" ] || return 0
    if alive "$p"; then
        case $s in
            xv6) kill -TERM "$p" ;;
            pt) umount "${dir[pt]}" 2>/dev/null || kill -TERM "$p" ;;
        esac
    fi
    if ! wait_gone "$p" "$limit_stop"; then
        say "warning: $s daemon did not stop in ${limit_stop}s; killing it"
        umount -l "${dir[$s]}" 2>/dev/null; kill -KILL "$p" 2>/dev/null; wait_gone "$p" 5
    fi
    rc=$gone_status
    unset "pid[$s]"
    mounted "${dir[$s]}" && umount -l "${dir[$s]}"
    [ "$s" = xv6 ] && [ $rc != 0 ] && [ $rc != 127 ] && say "warning: bento-upgraded exited with status $rc"
    return 0
}

make_ext4() { # IMAGE MOUNTPOINT
    rm -f "$1"; truncate -s "$image_size" "$1" || return 1
    mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$1" || return 1
    mkdir -p "$2" && mount -o loop,data=journal "$1" "$2"
}
umount_ext4() { umount "$1" || { sleep 1; umount "$1"; } || umount -l "$1"; }

sys_make() {
    case $1 in
    xv6)
        rm -f "$W/xv6.img"; mkdir -p "$W/xv6.mnt"
        "$W/bin/mkfs.xv6" --size "$image_size" --inodes "$inodes" "$W/xv6.img" >/dev/null || return 1
        start_daemon xv6 ;;
    pt)
        make_ext4 "$W/pt.img" "$W/pt.ext4" || return 1
        mkdir -p "$W/pt.ext4/data" "$W/pt.mnt"
        start_daemon pt ;;
    ext4)
        make_ext4 "$W/ext4.img" "$W/ext4.mnt" ;;
    esac
}
sys_cycle() {
    case $1 in
    xv6)  stop_daemon xv6; drop_caches; start_daemon xv6 ;;
    pt)   stop_daemon pt; umount_ext4 "$W/pt.ext4"; drop_caches
          mount -o loop,data=journal "$W/pt.img" "$W/pt.ext4" && start_daemon pt ;;
    ext4) umount_ext4 "$W/ext4.mnt"; drop_caches; mount -o loop,data=journal "$W/ext4.img" "$W/ext4.mnt" ;;
    esac
}
sys_sync() {
    case $1 in
    xv6)  sync -f "$W/xv6.mnt" ;;
    pt)   sync -f "$W/pt.mnt" && sync -f "$W/pt.ext4" ;;   # FUSE has no syncfs: sync what it stands on
    ext4) sync -f "$W/ext4.mnt" ;;
    esac
}
sys_destroy() {
    case $1 in
    xv6)  stop_daemon xv6; rm -f "$W/xv6.img" ;;
    pt)   stop_daemon pt; mounted "$W/pt.ext4" && umount_ext4 "$W/pt.ext4"; rm -f "$W/pt.img" ;;
    ext4) mounted "$W/ext4.mnt" && umount_ext4 "$W/ext4.mnt"; rm -f "$W/ext4.img" ;;
    esac
}

# fsck_xv6 WORKLOAD REP: checks the image of an xv6 run whose daemon has
# stopped. Every workload must leave a consistent file system behind.
fsck_checked=0 fsck_unclean=()
fsck_xv6() {
    local out=$W/fsck.out
    [ -e "$W/xv6.img" ] || return 0
    fsck_checked=$((fsck_checked + 1))
    if bounded $limit_stop "$W/bin/fsck.xv6" -n "$W/xv6.img" >"$out" 2>&1; then
        say "  xv6: fsck.xv6 -n: clean"
    else
        say "  xv6: fsck.xv6 -n found errors (status $?):"; head -n 20 "$out" >&2
        fsck_unclean+=("$1 run $2")
        failures=$((failures + 1))
    fi
}
fsck_summary() {
    if [ ${#fsck_unclean[@]} = 0 ]; then
        echo "fsck.xv6 -n after every xv6 run, once its daemon had stopped: $fsck_checked of $fsck_checked images clean."
    else
        echo "fsck.xv6 -n after every xv6 run, once its daemon had stopped: ${#fsck_unclean[@]} of $fsck_checked images NOT clean (${fsck_unclean[*]})."
    fi
}

# --- Workloads --------------------------------------------------------------------
results=$W/results
failures=0
record() { echo "$1|$2|$3|$4" >> "$results"; }   # KEY SYSTEM REP VALUE
failed() { # KEY... SYSTEM REP
    local s=${@: -2:1} r=${@: -1} k
    for k in "${@:1:$#-2}"; do record "$k" "$s" "$r" fail; done
    failures=$((failures + 1))
}

# bento_status SYSTEM NAME UNITS UNIT: keeps bentoctl's view of the xv6 mount
# (requests by operation since it was mounted) after a workload's first run,
# with how many of the workload's units (files, writes, MiB) that covered.
bento_status() {
    [ "$1" = xv6 ] && [ -n "$control" ] && [ -x "$W/bin/bentoctl" ] || return 0
    timeout 10 "$W/bin/bentoctl" --socket "$control" status --json >"$W/status.$2.json" 2>/dev/null \
        && echo "$3 $4" > "$W/status.$2.units" || rm -f "$W/status.$2.json"
    return 0
}

# Each workload function: SYSTEM REP; the system is fresh and mounted.
meta_run() { # THREADS SYSTEM REP
    local t=$1 s=$2 r=$3 out=$W/mdbench.out
    if bounded $limit_meta "$W/build/mdbench" "${dir[$s]}" "$nfiles" "$t" >"$out"; then
        local phase files sec rps
        while read -r phase files sec rps; do record "${phase}$t" "$s" "$r" "$rps"; done <"$out"
        say "  $s: $(awk '{printf "%s %.0f/s  ", $1, $4}' "$out")"
    else
        say "  $s: mdbench failed"; failed "create$t" "stat$t" "unlink$t" "$s" "$r"
    fi
}
w_meta1() { meta_run 1 "$@"; [ "$2" = 1 ] && bento_status "$1" meta1 "$nfiles" file; }
w_meta8() { meta_run $threads_many "$@"; [ "$2" = 1 ] && bento_status "$1" meta8 "$nfiles" file; }

w_randwrite() {
    local s=$1 r=$2 out=$W/fio.out iops
    if bounded $limit_fio fio --name=randwrite --filename="${dir[$s]}/randfile" --rw=randwrite --bs=4k --fsync=1 \
            --size=$fio_size --runtime=$fio_runtime --time_based --ioengine=psync \
            --output-format=terse --terse-version=3 >"$out" 2>"$W/fio.err" \
        && iops=$(awk -F';' '$1 == 3 && $5 == 0 {print $49}' "$out") && [ -n "$iops" ]; then
        record randwrite "$s" "$r" "$iops"; say "  $s: $iops IOPS"
        [ "$r" = 1 ] && bento_status "$s" randwrite "$(awk -F';' '$1 == 3 {print int($47 / 4)}' "$out")" "4 KiB write"
    else
        say "  $s: fio failed: $(tail -n 3 "$W/fio.err" | tr '\n' ' ')"; failed randwrite "$s" "$r"
    fi
}

w_seq() {
    local s=$1 r=$2 f=${dir[$1]}/seqfile t0 t1 wr rd bytes=$((seq_mib * 1048576))
    t0=$(now_ns)
    if ! bounded $limit_seq dd if=/dev/zero of="$f" bs=1M count="$seq_mib" conv=fsync status=none; then
        say "  $s: sequential write failed"; failed seqwrite seqread rmseq "$s" "$r"; return
    fi
    t1=$(now_ns); wr=$(mbps $bytes $((t1 - t0)))
    record seqwrite "$s" "$r" "$wr"
    if ! sys_cycle "$s" || [ "$(stat -c %s "$f" 2>/dev/null)" != $bytes ]; then
        say "  $s: remount for the cold read failed"; failed seqread rmseq "$s" "$r"; return
    fi
    t0=$(now_ns)
    if ! bounded $limit_seq dd if="$f" of=/dev/null bs=1M status=none; then
        say "  $s: sequential read failed"; failed seqread rmseq "$s" "$r"; return
    fi
    t1=$(now_ns); rd=$(mbps $bytes $((t1 - t0)))
    record seqread "$s" "$r" "$rd"
    # Removing it frees every block it had, through its address tables.
    local rm_took=failed
    t0=$(now_ns)
    if bounded $limit_seq rm "$f" && sys_sync "$s"; then
        t1=$(now_ns); record rmseq "$s" "$r" "$(secs $((t1 - t0)))"; rm_took="$(secs $((t1 - t0))) s"
    else
        failed rmseq "$s" "$r"
    fi
    say "  $s: write $wr MB/s, cold read $rd MB/s, rm $rm_took"
    [ "$r" = 1 ] && bento_status "$s" seqread "$seq_mib" "MiB read"
}

# The untar, then rm -rf of what it made, each with a sync in the timed part.
w_untar() {
    local s=$1 r=$2 t0 t1
    t0=$(now_ns)
    if bounded $limit_untar tar -xf "$W/linux.tar" -C "${dir[$s]}" 2>"$W/tar.err" && sys_sync "$s"; then
        t1=$(now_ns); record untar "$s" "$r" "$(secs $((t1 - t0)))"; say "  $s: untar $(secs $((t1 - t0))) s"
        [ "$r" = 1 ] && bento_status "$s" untar "$tar_files" entry
    else
        say "  $s: untar failed: $(head -n 3 "$W/tar.err" | tr '\n' ' ')"; failed untar rmrf "$s" "$r"; return
    fi
    t0=$(now_ns)
    if bounded $limit_untar find "${dir[$s]}" -mindepth 1 -maxdepth 1 -exec rm -rf {} + 2>"$W/rm.err" && sys_sync "$s"; then
        t1=$(now_ns); record rmrf "$s" "$r" "$(secs $((t1 - t0)))"; say "  $s: rm -rf $(secs $((t1 - t0))) s"
        [ "$r" = 1 ] && bento_status "$s" rmrf "$tar_files" entry
    else
        say "  $s: rm -rf failed: $(head -n 3 "$W/rm.err" | tr '\n' ' ')"; failed rmrf "$s" "$r"
    fi
}

# --- The kernel tarball, decompressed before any timing -----------------------------
if [ -n "$tar_prefix_mib" ]; then
    say "unpacking the first ${tar_prefix_mib} MiB of $tar_source (quick)"
    mkdir -p "$W/stage"
    { xz -dc "$tar_source" | head -c "${tar_prefix_mib}M" | tar -x -C "$W/stage" 2>/dev/null; } || true
    tar -cf "$W/linux.tar" -C "$W/stage" . || die "making the quick tarball failed"
    rm -rf "$W/stage"
else
    say "decompressing $tar_source to tmpfs"
    xz -T0 -dc "$tar_source" > "$W/linux.tar" || die "decompressing $tar_source failed"
fi
tar_files=$(tar -tf "$W/linux.tar" | wc -l)
tar_mb=$(( $(stat -c %s "$W/linux.tar") / 1000000 ))

# passthrough_ll keeps an open O_PATH descriptor for every inode the kernel
# has looked up, so it needs a descriptor limit above the number of files a
# workload keeps. Without CAP_SYS_RESOURCE (some containers and VMs) the hard
# limit cannot be raised: then the metadata workloads use fewer files (for
# all three systems alike) and passthrough_ll sits out an untar that cannot fit.
fd_limit=$( (ulimit -n 1048576 2>/dev/null || ulimit -n "$(ulimit -Hn)"; ulimit -n) )
[ "$fd_limit" = unlimited ] && fd_limit=1048576
notes=()
if [ $((nfiles + 100)) -gt "$fd_limit" ]; then
    wanted=$nfiles
    nfiles=$(( (fd_limit - 200) / 1000 * 1000 ))
    [ $nfiles -ge 1000 ] || die "open file limit $fd_limit is too low for passthrough_ll"
    notes+=("The open file limit is $fd_limit and cannot be raised here (no CAP_SYS_RESOURCE); passthrough_ll holds one descriptor per cached inode, so the metadata workloads use $nfiles files instead of $wanted, for all three systems.")
    say "warning: open file limit $fd_limit: metadata workloads use $nfiles files instead of $wanted"
fi
skip_pt_untar=0
if [ $((tar_files + 100)) -gt "$fd_limit" ]; then
    skip_pt_untar=1
    notes+=("passthrough_ll is not run on the untar: the tarball's $tar_files entries need that many descriptors in passthrough_ll, above the open file limit of $fd_limit, which cannot be raised here (no CAP_SYS_RESOURCE).")
    say "warning: open file limit $fd_limit < $tar_files tarball entries: passthrough_ll skips the untar"
fi

idle_note="default: idle CPUs halt, as on users' machines (bench/run.sh --poll-idle holds /dev/cpu_dma_latency at 0 instead)"
if [ $poll_idle = 1 ]; then
    if [ -w /dev/cpu_dma_latency ] && exec {qos_fd}>/dev/cpu_dma_latency && printf '\0\0\0\0' >&$qos_fd; then
        idle_note="polling: /dev/cpu_dma_latency held at 0 during the runs (--poll-idle), so idle CPUs do not halt; users' machines run with the default"
    else
        say "warning: cannot hold /dev/cpu_dma_latency at 0; CPU idle states stay as they are"
        idle_note="default (could not hold /dev/cpu_dma_latency at 0)"
    fi
fi

# --- Run -------------------------------------------------------------------------------
systems=(xv6 pt ext4)
workloads=(${BENCH_WORKLOADS:-meta1 meta8 randwrite seq untar})
reps=${BENCH_REPS:-$reps}
started=$(date +%s)
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
say "work area $W; $reps repeat(s); files=$nfiles, fio ${fio_runtime}s over $fio_size, sequential ${seq_mib} MiB, tarball ${tar_mb} MB / $tar_files entries"
for w in "${workloads[@]}"; do
    for ((r = 1; r <= reps; r++)); do
        say "$w, run $r/$reps"
        for ((i = 0; i < 3; i++)); do
            s=${systems[$(( (i + r - 1) % 3 ))]}      # rotate who goes first
            if [ $w = untar ] && [ $s = pt ] && [ $skip_pt_untar = 1 ]; then
                record untar pt "$r" skip; record rmrf pt "$r" skip; say "  pt: skipped (open file limit)"; continue
            fi
            if sys_make "$s"; then
                "w_$w" "$s" "$r"
            else
                say "  $s: could not make and mount the file system"
                case $w in
                    meta1) failed create1 stat1 unlink1 "$s" "$r" ;;
                    meta8) failed create8 stat8 unlink8 "$s" "$r" ;;
                    seq) failed seqwrite seqread rmseq "$s" "$r" ;;
                    untar) failed untar rmrf "$s" "$r" ;;
                    *) failed "$w" "$s" "$r" ;;
                esac
            fi
            [ "$s" = xv6 ] && { stop_daemon xv6; fsck_xv6 "$w" "$r"; }
            sys_destroy "$s"
        done
    done
done
elapsed=$(( $(date +%s) - started ))
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
module_version=$(grep -o 'with xv6fs [0-9][0-9.]*' "$W/xv6.log" 2>/dev/null | head -n 1 | sed 's/^with //')

# --- Report ---------------------------------------------------------------------------------
rows="create1;create, 1 thread;files/s;higher|stat1;stat, 1 thread;files/s;higher|unlink1;unlink, 1 thread;files/s;higher"
rows+="|create8;create, $threads_many threads;files/s;higher|stat8;stat, $threads_many threads;files/s;higher|unlink8;unlink, $threads_many threads;files/s;higher"
rows+="|randwrite;4 KiB random write + fsync;IOPS;higher|seqwrite;sequential write 1 MiB + fsync;MB/s;higher"
rows+="|seqread;sequential read 1 MiB, cold;MB/s;higher|rmseq;rm of that file + sync;s;lower"
rows+="|untar;untar linux-6.1 + sync;s;lower|rmrf;rm -rf of that tree + sync;s;lower"
report() { awk -v fmt="$1" -v reps="$reps" -v rows="$rows" -v meta="create1 stat1 unlink1 create8 stat8 unlink8" \
               -f "$bench_dir/report.awk" "$results"; }

cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
mem=$(awk '/^MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)
mode=$([ $quick = 1 ] && echo "QUICK smoke test (reduced sizes, one run) - not for comparison" || echo full)

echo
echo "Bento benchmark ($mode), $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, kernel $(uname -r), commit $commit"
echo "Medians of $reps run(s). Ratios are xv6 divided by the other system, in the row's unit."
echo
report text
echo
echo
fsck_summary
echo
echo "Requests the xv6 mount served per unit of each workload (bentoctl status):"
python3 "$bench_dir/requests.py" "$W" text
echo
echo "(took ${elapsed}s; load average $load_start at the start, $load_end at the end; Markdown in $out)"

mkdir -p "$(dirname "$out")"
{
    echo "# Benchmarks: xv6 through bento-upgraded vs passthrough_ll vs ext4"
    echo
    [ $quick = 1 ] && { echo "**$mode.**"; echo; }
    echo "- Date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- Machine: $(nproc) cores ($cpu), $mem RAM, kernel $(uname -r), $(. /etc/os-release && echo "$PRETTY_NAME")"
    echo "- Code: commit $commit${module_version:+, module $module_version}"
    echo "- CPU idle: $idle_note; cpuidle driver: $(cat /sys/devices/system/cpu/cpuidle/current_driver 2>/dev/null || echo unknown)."
    echo "- Load average (1, 5, 15 min) when the runs started: $load_start; when they ended: $load_end. The machine is shared: other work on its $(nproc) cores adds noise, most to the FUSE systems (every request is two context switches); compare the runs below."
    echo "- Command: \`bench/run.sh$([ $quick = 1 ] && echo ' --quick')$([ $poll_idle = 1 ] && echo ' --poll-idle')\` (took $((elapsed / 60)) min $((elapsed % 60)) s); every number is the median of $reps run(s), the three systems run one after the other on fresh file systems, repeats interleaved."
    echo
    echo "Everything lives in RAM (tmpfs), so the numbers measure the software, not a disk:"
    echo
    echo "- **xv6 (bento)**: \`bento-upgraded\` serving the xv6fs module (\`libXV6Module.so\`) from a $image_size image file on tmpfs (\`mkfs.xv6 --size $image_size --inodes $inodes\`), default options${BENTO_ARGS:+ plus \`$BENTO_ARGS\`} (defaults: 8 request threads, 256 MiB buffer cache, no writeback cache; the kernel caches names and attributes as [caching.md](caching.md) describes)."
    echo "- **passthrough_ll**: libfuse $(pkg-config --modversion fuse3)'s \`passthrough_ll\` example, compiled from Debian's libfuse3-dev, default options${PT_OPTS:+ plus \`$PT_OPTS\`} (no writeback cache, cache=auto, 1 s timeout), serving a directory of an ext4 (data=journal) on a loop device backed by a $image_size tmpfs file."
    echo "- **ext4**: ext4 mounted with data=journal on a loop device backed by a $image_size tmpfs file (\`mkfs.ext4 -E lazy_itable_init=0,lazy_journal_init=0\`)."
    echo
    echo "Columns: the median of each system in the row's unit, then **xv6 / passthrough_ll** and **xv6 / ext4**, the xv6 median divided by the other's. For rates (files/s, IOPS, MB/s) higher is better, so a ratio above 1 means xv6 is faster; for the rm, untar and rm -rf (seconds) lower is better, so a ratio below 1 means xv6 is faster."
    echo
    echo "Workloads:"
    echo
    echo "- create / stat / unlink: \`bench/mdbench.c\`, $nfiles empty files; with 1 thread all in one directory, with $threads_many threads each thread in its own directory ($((nfiles / threads_many)) files each). open(O_CREAT|O_EXCL)+close, fstatat, unlinkat; no sync. Files per second of each phase."
    echo "- 4 KiB random write + fsync: \`fio --rw=randwrite --bs=4k --fsync=1 --size=$fio_size --runtime=$fio_runtime --time_based --ioengine=psync\`, IOPS."
    echo "- sequential: \`dd bs=1M\` of a $seq_mib MiB file, written with \`conv=fsync\` (the fsync is timed), then the file system is unmounted (daemon stopped), caches dropped (\`echo 3 > /proc/sys/vm/drop_caches\`), mounted again (daemon restarted) and the file read cold. MB/s = 10^6 bytes/s. Then \`rm\` of the file plus the sync below, in seconds."
    echo "- untar: \`tar -xf\` of Debian's linux-source-6.1 tarball (${tar_mb} MB, $tar_files entries; decompressed to tmpfs beforehand), plus a sync in the timed part: \`sync -f\` (syncfs) of the mount and, for passthrough_ll, of the ext4 under it (rather than a global \`sync\` that would also wait on the machine's real disk). Seconds."
    echo "- rm -rf: right after the untar, on the same mount, \`rm -rf\` of what it made, plus the same sync. Seconds."
    echo
    echo "A caveat on the reference: passthrough_ll keeps its inodes in a linked list that every lookup and create searches under one mutex (\`lo_find\`), so it slows down as the kernel holds more of its inodes; with thousands of files it is far slower per file than with hundreds. Goal 1 is measured against that, at the file count above."
    echo
    if [ ${#notes[@]} -gt 0 ]; then
        echo "Limits of this machine:"
        echo
        for n in "${notes[@]}"; do echo "- $n"; done
        echo
    fi
    echo "## Results"
    echo
    echo "![xv6 speed divided by passthrough_ll's and ext4's for each workload (bench/plot.sh)](plots/side-by-side.svg)"
    echo
    report md
    echo
    fsck_summary
    if ls "$W"/status.*.json >/dev/null 2>&1; then
        echo
        echo "## Requests the xv6 mount served"
        echo
        echo "Each is a round trip through the kernel. From \`bentoctl status --json\` after the first run of each workload, on the mount it had to itself, divided by the workload's units: a file (created, statted and unlinked), a 4 KiB write, a MiB read back cold (the daemon restarts between the write and the read), an archive entry. Largest operations first, also per unit; [caching.md](caching.md) says which requests the kernel sends and why."
        echo
        python3 "$bench_dir/requests.py" "$W" md
    fi
} > "$out.tmp" && mv "$out.tmp" "$out" || die "writing $out failed"

[ $failures = 0 ] || { say "$failures run(s) failed (a workload, or the fsck after it); see the report"; exit 1; }
exit 0
