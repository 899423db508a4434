#!/bin/bash
# The upgrade pause against what the kernel holds: at each point (files held
# open, inodes looked up), UPGRADES live upgrades alternating xv6fs 1.0.0 and
# 2.0.0 under an 8-thread self-checking load (the host's table stays in
# place), and, side by side in the same run, upgrades through xv6fs 2.0.4
# (Tests/Fixtures, FixtureCopiedTable), which speaks only the state formats
# of earlier builds and so copies the table through the state, as every
# upgrade did before. Prints a Markdown section. Release build, image on
# tmpfs. Usage: bench/upgrade-scaling.sh [UPGRADES] [MAX_INODES]
set -u
cd "$(dirname "$0")/.."
per=${1:-20} most=${2:-1000000}
bin=$(pwd)/.build/release
for p in bento-upgraded bentoctl XV6Module XV6Module2 mkfs.xv6 FixtureCopiedTable; do
    swift build -c release --product $p >/dev/null || exit 1
done
work=$(mktemp -d /dev/shm/bento-scaling.XXXXXX)
chmod 755 "$work"
mnt=$work/mnt sock=$work/control.sock daemon= v1=$bin/libXV6Module.so v2=$bin/libXV6Module2.so
copies=$bin/libFixtureCopiedTable.so
cleanup() {
    [ -n "${HOLD_PID:-}" ] && kill "$HOLD_PID" 2>/dev/null
    [ -n "$daemon" ] && kill -TERM "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
    grep -q " $mnt " /proc/self/mountinfo && umount -l "$mnt"
    rm -rf "$work"
}
trap cleanup EXIT
cc -O2 -pthread -o "$work/load" Tests/mount/load.c && cc -O2 -o "$work/hold" Tests/mount/hold.c || exit 1
"$bin/mkfs.xv6" --size 4G --inodes $((most + 100000)) "$work/x.img" >/dev/null
mkdir "$mnt"
"$bin/bento-upgraded" --image "$work/x.img" --mountpoint "$mnt" --module "$v1" --control-socket "$sock" \
    --state-dir "$work/state" --cache-mib 2048 >"$work/daemon.log" 2>&1 &
daemon=$!
for _ in $(seq 100); do [ -S "$sock" ] && stat -f "$mnt" 2>/dev/null | grep -q fuse && break; sleep 0.1; done
ctl() { "$bin/bentoctl" --socket "$sock" "$@"; }
field() { grep -o "\"$1\" *: *[a-z0-9]*" | head -1 | sed 's/.*: *//'; }

# upgrades KIND COUNT TARGETS...: COUNT upgrades cycling through TARGETS;
# one line per upgrade: KIND pause_us state_bytes held_inodes held_handles copied
upgrades() {
    local kind=$1 count=$2 i out; shift 2
    local targets=("$@")
    for i in $(seq 0 $((count - 1))); do
        out=$(ctl upgrade "$mnt" "${targets[$((i % ${#targets[@]}))]}" --force --probation 0 --json)
        grep -q '"result" *: *"upgraded"' <<<"$out" || { echo "upgrade failed: $out" >&2; continue; }
        echo "$kind $(field pauseMicros <<<"$out") $(field stateBytes <<<"$out") $(field heldInodes <<<"$out")" \
             "$(field heldHandles <<<"$out") $(field tableCopied <<<"$out")"
    done
}

# loaded LABEL KIND COUNT TARGETS...: the upgrades under a fresh 8-thread load.
loaded() {
    local label=$1 kind=$2 dir=$mnt/load-$RANDOM; shift 2
    mkdir -p "$dir"
    "$work/load" "$dir" 8 3600 >"$work/load.out" 2>&1 &
    local load=$!
    sleep 1
    upgrades "$label $kind" "$@" >>"$work/rows"
    touch "$dir/STOP"
    wait $load || { echo "the load failed at $label, $kind: $(cat "$work/load.out")" >&2; exit 1; }
    echo "$label, $kind: load $(cat "$work/load.out")" >>"$work/rows"
}

# point LABEL MODE N: the kernel holds N files (MODE open or stat; the files of
# earlier points of that mode are among them, so the inodes held only grow), an
# 8-thread load runs, then the upgrades of both kinds.
: >"$work/rows"
point() {
    local label=$1 mode=$2 n=$3 ready
    if [ "$n" -gt 0 ]; then
        coproc HOLD { "$work/hold" "$mnt/$mode" "$n" "$mode"; }
        read -r -t 1800 ready <&"${HOLD[0]}"
        [ "$ready" = "ready $n" ] || { echo "hold $mode $n: $ready" >&2; exit 1; }
    fi
    loaded "$label" fast "$per" "$v2" "$v1"
    loaded "$label" copied "$((per / 4 * 2))" "$copies" "$v1"
    if [ "$n" -gt 0 ] && [ "$mode" = open ]; then
        echo check >&"${HOLD[1]}"; read -r -t 600 ready <&"${HOLD[0]}"
        [ "$ready" = "ok $n" ] || { echo "hold $mode $n after the upgrades: $ready" >&2; exit 1; }
        echo quit >&"${HOLD[1]}"; wait "$HOLD_PID"
    elif [ "$n" -gt 0 ]; then
        echo quit >&"${HOLD[1]}"; wait "$HOLD_PID"
    fi
}
point "0" open 0
point "1,000 open" open 1000
point "15,000 open" open 15000
point "100,000 looked up" stat 100000
commas() { rev <<<"$1" | sed 's/[0-9]\{3\}/&,/g; s/,$//' | rev; }
[ "$most" -gt 100000 ] && point "$(commas "$most") looked up" stat "$most"

# The table: per point and kind, pause median and max, state size, what the
# kernel held; then the slope of each kind's median against held inodes.
awk '
$NF != "true" && $NF != "false" { next }
{
    kind = $(NF - 5); label = $0; sub(" " kind " .*", "", label)
    key = label SUBSEP kind
    if (!(key in n)) { order[++keys] = key }
    p[key, ++n[key]] = $(NF - 4); state[key] = $(NF - 3); inodes[key] = $(NF - 2); handles[key] = $(NF - 1)
}
function median(key,   i, j, t, m) {
    m = n[key]
    for (i = 1; i <= m; i++) v[i] = p[key, i]
    for (i = 2; i <= m; i++) { t = v[i]; for (j = i - 1; j > 0 && v[j] > t; j--) v[j + 1] = v[j]; v[j + 1] = t }
    return v[int((m + 1) / 2)]
}
function maximum(key,   i, x) { x = 0; for (i = 1; i <= n[key]; i++) if (p[key, i] > x) x = p[key, i]; return x }
END {
    print "| held by the kernel | table in the host (inodes / handles) | path | upgrades | pause median (µs) | pause max (µs) | state (bytes) |"
    print "|---|--:|---|--:|--:|--:|--:|"
    for (k = 1; k <= keys; k++) {
        split(order[k], part, SUBSEP)
        path = part[2] == "fast" ? "kept in place" : "copied (2.0.4)"
        printf "| %s | %d / %d | %s | %d | %d | %d | %d |\n", part[1], inodes[order[k]], handles[order[k]], path, n[order[k]], median(order[k]), maximum(order[k]), state[order[k]]
        m = median(order[k]); x = inodes[order[k]]
        sx[part[2]] += x; sy[part[2]] += m; sxx[part[2]] += x * x; sxy[part[2]] += x * m; c[part[2]]++
    }
    print ""
    for (kind in c) {
        d = c[kind] * sxx[kind] - sx[kind] * sx[kind]
        slope = d ? (c[kind] * sxy[kind] - sx[kind] * sy[kind]) / d : 0
        printf "- slope of the median pause, %s: %.4f µs per inode held\n", kind == "fast" ? "table kept in place" : "table copied", slope
    }
}' "$work/rows"
echo
echo "The loads (8 threads, one per point and path; slowest_us is the longest system call it saw;"
echo "no failed call and no wrong byte is the pass condition):"
echo
echo '```'
grep ': load ' "$work/rows"
echo '```'
