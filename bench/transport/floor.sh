#!/bin/bash
# The floor under the metadata goals: what a FUSE server that does no work
# at all gets on this machine, beside ext4 and the xv6 mount, interleaved.
# Usage: floor.sh [ROUNDS] (default 3); needs root, /dev/fuse, a release
# build (swift build -c release) and, for the untar, linux-source-6.1 (as
# bench/run.sh). Env: NFILES (19000, as bench/run.sh); TARBALL (an
# uncompressed tar to use instead of the kernel's; NOTAR=1 skips the untar);
# SYSTEMS ("ext4 null xv6"; ext4 first, "noperm", "uring" and "xv6b" may be
# added); XV6B (the release directory of another build, for "xv6b").
#
#   ext4   data=journal on a loop device over a tmpfs file (as bench/run.sh)
#   null   probe.c -c -P -T 1: an in-memory server that answers every request
#          at once (it drops written data), from one thread that never
#          sleeps; the kernel caches and asks as it does for the xv6 mount
#          (day-long timeouts, default_permissions, READDIRPLUS, no FLUSH)
#   noperm the null server without default_permissions (probe.c -c -N -P
#          -T 1): it allows everything, and the kernel no longer asks a
#          directory's mode again after each change to it (README: "The
#          kernel's permission checks")
#   xv6    bento-upgraded serving xv6fs, default options
#   xv6b   the same from the build in XV6B (another commit's), to compare two
#          builds side by side in one run
#   uring  the null server over FUSE-over-io_uring instead (probe.c -c -t
#          uring: one queue per CPU, its thread on that CPU, waiting in
#          io_uring_enter); sets the fuse module's enable_uring for the run.
#          bento-upgraded cannot use it (README: "A dying server").
#
# Each round makes every file system fresh for each workload:
# bench/mdbench.c with 1 thread, then 8, then tar -xf of the kernel tree and
# rm -rf of it, each with a syncfs, as bench/run.sh times them. Prints every
# run with the load and the CPU time the hypervisor stole meanwhile (from
# /proc/stat: a run with much of it is the host's, not the file system's),
# then the medians and their ratios to ext4. A ratio the null server
# cannot reach, no server over /dev/fuse that the kernel asks the same
# requests of can reach on this machine.
set -eu
here=$(cd "$(dirname "$0")" && pwd); root=$(cd "$here/../.." && pwd)
rounds=${1:-3}; nfiles=${NFILES:-19000}
read -r -a systems <<< "${SYSTEMS:-ext4 null xv6}"
[ "${systems[0]}" = ext4 ] || { echo "floor.sh: SYSTEMS must start with ext4" >&2; exit 1; }
uring_param=/sys/module/fuse/parameters/enable_uring
bin=$root/.build/release
[ -x "$bin/bento-upgraded" ] || { echo "floor.sh: build first: swift build -c release" >&2; exit 1; }
W=$(mktemp -d /dev/shm/bento-floor.XXXXXX)
cleanup() {
    set +e
    for m in "$W"/*.mnt; do mountpoint -q "$m" && umount "$m"; done
    [ -n "${server:-}" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
    [ -n "${uring_was:-}" ] && echo "$uring_was" > $uring_param
    rm -rf "$W"
}
trap cleanup EXIT
cc -O2 -Wall -pthread -o "$W/probe" "$here/probe.c"
cc -O2 -pthread -o "$W/mdbench" "$root/bench/mdbench.c"
tarball=${TARBALL:-}
if [ -z "$tarball" ] && [ "${NOTAR:-0}" != 1 ]; then
    src=/usr/src/linux-source-6.1.tar.xz
    [ -r $src ] || { echo "floor.sh: missing $src (apt-get install linux-source-6.1), or set TARBALL or NOTAR=1" >&2; exit 1; }
    xz -T0 -dc $src > "$W/linux.tar"; tarball=$W/linux.tar
fi
case " ${systems[*]} " in *" xv6b "*)
    [ -x "${XV6B:-}/bento-upgraded" ] || { echo "floor.sh: xv6b needs XV6B, another release directory" >&2; exit 1; } ;;
esac
mkdir -p "$W/ext4.mnt" "$W/null.mnt" "$W/noperm.mnt" "$W/uring.mnt" "$W/xv6.mnt" "$W/xv6b.mnt" "$W/state"
case " ${systems[*]} " in *" uring "*) uring_was=$(cat $uring_param); echo Y > $uring_param ;; esac

wait_mounted() { # MOUNTPOINT
    for _ in $(seq 200); do
        case $(stat -f -c %T "$1") in fuse*) return 0 ;; esac
        sleep 0.05
    done
    echo "floor.sh: $1 did not mount" >&2; return 1
}
start() { # SYSTEM
    case $1 in
    ext4) rm -f "$W/ext4.img"; truncate -s 4G "$W/ext4.img"
          mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$W/ext4.img"
          mount -o loop,data=journal "$W/ext4.img" "$W/ext4.mnt" ;;
    null) "$W/probe" -t classic -c -P -T 1 -n 0 -m "$W/null.mnt" 2>>"$W/null.log" & server=$!
          wait_mounted "$W/null.mnt" ;;
    noperm) "$W/probe" -t classic -c -N -P -T 1 -n 0 -m "$W/noperm.mnt" 2>>"$W/noperm.log" & server=$!
          wait_mounted "$W/noperm.mnt" ;;
    uring) : > "$W/uring.log"; "$W/probe" -t uring -c -n 0 -m "$W/uring.mnt" 2>>"$W/uring.log" & server=$!
          wait_mounted "$W/uring.mnt"
          for _ in $(seq 100); do grep -q registered "$W/uring.log" && return 0; sleep 0.05; done
          echo "floor.sh: the io_uring queues did not register" >&2; return 1 ;;
    xv6|xv6b) b=$bin; [ $1 = xv6b ] && b=$XV6B
          rm -f "$W/$1.img"; "$b/mkfs.xv6" --size 4G --inodes 262144 "$W/$1.img" >/dev/null
          "$b/bento-upgraded" --image "$W/$1.img" --mountpoint "$W/$1.mnt" --module "$b/libXV6Module.so" \
              --control-socket "$W/control.sock" --state-dir "$W/state" >>"$W/$1.log" 2>&1 & server=$!
          wait_mounted "$W/$1.mnt" ;;
    esac
}
stop() { # SYSTEM
    case $1 in
    ext4) umount "$W/ext4.mnt"; rm -f "$W/ext4.img" ;;
    null|noperm|uring) umount "$W/$1.mnt"; wait "$server"; server= ;;
    xv6|xv6b) kill -TERM "$server"; wait "$server" || true; server= ;;
    esac
}

: > "$W/runs"
seconds() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b - a) / 1e9 }'; }
stolen() { awk '$1 == "cpu" { print $9 }' /proc/stat; }  # all CPUs, in 1/100 s
echo "round system: mdbench 1t and 8t: create stat unlink (files/s); untar, rm -rf (s); load, stolen CPU time"
for r in $(seq "$rounds"); do
    for s in "${systems[@]}"; do
        line= steal0=$(stolen)
        for t in 1 8; do
            start $s
            "$W/mdbench" "$W/$s.mnt" "$nfiles" $t > "$W/out"
            stop $s
            line="$line$(awk '{printf "%d ", $4}' "$W/out")"
        done
        if [ -n "$tarball" ]; then
            start $s
            t0=$(date +%s%N); tar -xf "$tarball" -C "$W/$s.mnt"; sync -f "$W/$s.mnt"
            t1=$(date +%s%N); rm -rf "${W:?}/$s.mnt/"*; sync -f "$W/$s.mnt"; t2=$(date +%s%N)
            stop $s
            line="$line$(seconds "$t0" "$t1") $(seconds "$t1" "$t2")"
        fi
        echo "$r $s: $line; $(cut -d' ' -f1 /proc/loadavg), stolen $(awk -v a="$steal0" -v b="$(stolen)" 'BEGIN { printf "%.1f s", (b - a) / 100 }')"
        echo "$s $line" >> "$W/runs"
    done
done
echo
awk -v systems="${systems[*]}" '
    { for (i = 2; i <= NF; i++) v[$1 " " i] = v[$1 " " i] " " $i; fields = NF }
    function median(list,   n, a, i, j, t) {
        n = split(list, a, " ")
        for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j] + 0 < a[j-1] + 0; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    function m(s, i) { return median(v[s " " i]) }
    END {
        n = split(systems, sys, " ")
        split("create,_1t stat,_1t unlink,_1t create,_8t stat,_8t unlink,_8t untar_(s) rm_-rf_(s)", name, " ")
        printf "%-16s", "median"
        for (k = 1; k <= n; k++) printf " %10s", sys[k]
        for (k = 2; k <= n; k++) printf " %12s", sys[k] " / ext4"
        printf "\n"
        for (i = 2; i <= fields; i++) {
            label = name[i - 1]; gsub("_", " ", label); printf "%-16s", label
            for (k = 1; k <= n; k++) printf (i <= 7 ? " %10d" : " %10.2f"), m(sys[k], i)
            for (k = 2; k <= n; k++) printf " %11.2fx", m(sys[k], i) / m("ext4", i)
            printf "\n"
        }
        printf "%-16s", "create 8t / 1t"
        for (k = 1; k <= n; k++) printf " %9.2fx", m(sys[k], 5) / m(sys[k], 2)
        printf "\n"
    }' "$W/runs"
