#!/bin/bash
# The floor under the metadata goals: what a FUSE server that does no work
# at all gets on this machine, beside ext4 and the xv6 mount, interleaved.
# Usage: floor.sh [ROUNDS] (default 3); needs root, /dev/fuse, a release
# build (swift build -c release) and, for the untar, linux-source-6.1 (as
# bench/run.sh). Env: NFILES (19000, as bench/run.sh); TARBALL (an
# uncompressed tar to use instead of the kernel's; NOTAR=1 skips the untar).
#
#   ext4   data=journal on a loop device over a tmpfs file (as bench/run.sh)
#   null   probe.c -c -P -T 1: an in-memory server that answers every request
#          at once (it drops written data), from one thread that never
#          sleeps; the kernel caches and asks as it does for the xv6 mount
#          (day-long timeouts, default_permissions, READDIRPLUS, no FLUSH)
#   xv6    bento-upgraded serving xv6fs, default options
#
# Each round makes every file system fresh for each workload:
# bench/mdbench.c with 1 thread, then 8, then tar -xf of the kernel tree and
# rm -rf of it, each with a syncfs, as bench/run.sh times them. Prints every
# run, then the medians and their ratios to ext4. A ratio the null server
# cannot reach, no server over /dev/fuse that the kernel asks the same
# requests of can reach on this machine.
set -eu
here=$(cd "$(dirname "$0")" && pwd); root=$(cd "$here/../.." && pwd)
rounds=${1:-3}; nfiles=${NFILES:-19000}
bin=$root/.build/release
[ -x "$bin/bento-upgraded" ] || { echo "floor.sh: build first: swift build -c release" >&2; exit 1; }
W=$(mktemp -d /dev/shm/bento-floor.XXXXXX)
cleanup() {
    set +e
    for m in "$W"/*.mnt; do mountpoint -q "$m" && umount "$m"; done
    [ -n "${server:-}" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
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
mkdir -p "$W/ext4.mnt" "$W/null.mnt" "$W/xv6.mnt" "$W/state"

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
    xv6)  rm -f "$W/xv6.img"; "$bin/mkfs.xv6" --size 4G --inodes 262144 "$W/xv6.img" >/dev/null
          "$bin/bento-upgraded" --image "$W/xv6.img" --mountpoint "$W/xv6.mnt" --module "$bin/libXV6Module.so" \
              --control-socket "$W/control.sock" --state-dir "$W/state" >>"$W/xv6.log" 2>&1 & server=$!
          wait_mounted "$W/xv6.mnt" ;;
    esac
}
stop() { # SYSTEM
    case $1 in
    ext4) umount "$W/ext4.mnt"; rm -f "$W/ext4.img" ;;
    null) umount "$W/null.mnt"; wait "$server"; server= ;;
    xv6)  kill -TERM "$server"; wait "$server" || true; server= ;;
    esac
}

: > "$W/runs"
seconds() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b - a) / 1e9 }'; }
echo "round system: mdbench 1t and 8t: create stat unlink (files/s); untar, rm -rf (s); load"
for r in $(seq "$rounds"); do
    for s in ext4 null xv6; do
        line=
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
        echo "$r $s: $line; $(cut -d' ' -f1 /proc/loadavg)"
        echo "$s $line" >> "$W/runs"
    done
done
echo
awk '
    { for (i = 2; i <= NF; i++) v[$1 " " i] = v[$1 " " i] " " $i; fields = NF }
    function median(list,   n, a, i, j, t) {
        n = split(list, a, " ")
        for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j] + 0 < a[j-1] + 0; j--) { t = a[j]; a[j] = a[j-1]; a[j-1] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    function m(s, i) { return median(v[s " " i]) }
    END {
        split("create,_1t stat,_1t unlink,_1t create,_8t stat,_8t unlink,_8t untar_(s) rm_-rf_(s)", name, " ")
        printf "%-16s %10s %10s %10s %12s %12s\n", "median", "ext4", "null", "xv6", "null / ext4", "xv6 / ext4"
        for (i = 2; i <= fields; i++) {
            e = m("ext4", i); n = m("null", i); x = m("xv6", i); label = name[i - 1]; gsub("_", " ", label)
            printf (i <= 7 ? "%-16s %10d %10d %10d %11.2fx %11.2fx\n" : "%-16s %10.2f %10.2f %10.2f %11.2fx %11.2fx\n"), label, e, n, x, n / e, x / e
        }
        printf "%-16s %9.2fx %9.2fx %9.2fx\n", "create 8t / 1t", m("ext4", 5) / m("ext4", 2), m("null", 5) / m("null", 2), m("xv6", 5) / m("xv6", 2)
    }' "$W/runs"
