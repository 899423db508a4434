#!/bin/bash
# Power loss at every flush, with the real daemon: what fsync returned for
# is on the image in every state a crash can leave it in.
#
# A workload (appends, atomic replaces, fsyncs; workload.c) runs on a real
# mount while record.so logs every write and flush the daemon makes to the
# image. From the image as it was before the daemon started and that log,
# crashimages builds the image as a power loss could leave it at a cut: a
# flush returned, and any subset of the writes made after it, before the
# next. Each crash image is checked: fsck -n (which reads a committed log
# as replayed), a mount by the daemon (log recovery), every fsync that
# returned before the next flush started (check.c), unmount, fsck -n.
# Runs: xv6fs 1.0.0 and 2.0.0, each with and without the FUSE writeback
# cache; xv6fs 3.0.0 with it, its workload also setting and removing
# extended attributes (small and in blocks of their own), fallocating,
# punching holes, zeroing ranges and writing past 5 GiB and near 1 TiB
# (triple-indirect blocks), each step fsynced (v3ops.h).
#
# Usage: Tests/crash/crash.sh BIN_DIR [CUTS]
#   CUTS    cut points per run, spread over its flushes (default 30; "all":
#           every flush); also from the environment.
#   SUBSETS random subsets of the writes after each cut (default 1), beside
#           the empty and the full one.
#   SEED    the workload's seed (default random); OPS, PAUSE_MS its size.
#   RUNS    skip that many runs (RUNS=4: only v3).
# To see it fail: BENTO_RECORD_DROP_FLUSH=2 leaves every other flush out of
# the log, as if the daemon had not made it (record.c).
set -u
here=$(cd "$(dirname "$0")" && pwd)
bin=$(cd "${1:?usage: $0 BIN_DIR [CUTS]}" && pwd)
cuts=${2:-${CUTS:-30}}
[ "$cuts" = all ] || [ "$cuts" -ge 2 ] || cuts=2
subsets=${SUBSETS:-1}
seed=${SEED:-$(( (RANDOM << 15) | RANDOM ))}
ops=${OPS:-40} pause=${PAUSE_MS:-250}
work=$(mktemp -d /dev/shm/bento-crash.XXXXXX)
chmod 755 "$work"
mnt=$work/mnt
passed=0 failed=0 daemon= cutpoints=0 images=0 durable=0 replays=0 torn=0
ok()   { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; }
expect() { local name=$1; shift; if "$@" >/dev/null 2>&1; then ok "$name"; else fail "$name"; fi; }
mounted() { grep -q " $mnt " /proc/self/mountinfo; }

# Stops the daemon (SIGTERM: flush, unmount) and returns its exit status.
stop_daemon() {
    [ -n "$daemon" ] || return 0
    kill -TERM "$daemon" 2>/dev/null
    for _ in $(seq 1000); do kill -0 "$daemon" 2>/dev/null || break; sleep 0.01; done
    kill -KILL "$daemon" 2>/dev/null
    wait "$daemon"; local status=$?
    daemon=
    mounted && umount -l "$mnt"
    return $status
}
cleanup() {
    stop_daemon
    mounted && umount -l "$mnt"
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start_daemon MODULE IMAGE LOG [OPTION...]: mounts IMAGE at $mnt, with the
# environment in $preload; fails if it is not mounted within 10 s.
preload=()
start_daemon() {
    local module=$1 image=$2 log=$3; shift 3
    rm -rf "$work/state"
    env "${preload[@]}" "$bin/bento-upgraded" --image "$image" --mountpoint "$mnt" --module "$module" \
        --state-dir "$work/state" --control-socket "$work/control.sock" "$@" >>"$log" 2>&1 &
    daemon=$!
    for _ in $(seq 1000); do
        mounted && return 0
        kill -0 "$daemon" 2>/dev/null || break
        sleep 0.01
    done
    return 1
}

for tool in workload crashimages check; do
    cc -O2 -pthread -o "$work/$tool" "$here/$tool.c" || { echo "cannot build $tool"; exit 1; }
done
cc -shared -fPIC -O2 -o "$work/record.so" "$here/record.c" -ldl -lpthread || { echo "cannot build record.so"; exit 1; }
mkdir "$mnt"
echo "     seed $seed (SEED=$seed $0 $1 $cuts reruns these workloads)"

# record NAME MODULE SEED [OPTION...]: a workload on a fresh image, the
# daemon's writes and flushes recorded.
record() {
    local name=$1 module=$2 seed=$3; shift 3
    local img=$work/$name.img
    "$bin/mkfs.xv6" --size 32M "$img" >/dev/null
    cp "$img" "$work/$name.base"
    mkdir "$work/$name.model"
    preload=(LD_PRELOAD="$work/record.so" BENTO_RECORD_IMAGE="$img" BENTO_RECORD_LOG="$work/$name.rec")
    start_daemon "$module" "$img" "$work/$name.log" "$@"
    preload=()
    if ! mounted; then fail "$name: daemon mounts"; stop_daemon; tail -5 "$work/$name.log"; return 1; fi
    local t0=$SECONDS features=
    case $name in v3*) features=features;; esac   # 3.0.0's operations: v1 and v2 have none
    expect "$name: workload (seed $seed) succeeds" \
        "$work/workload" "$mnt" "$work/$name.model" "$work/$name.oplog" "$seed" "$ops" "$pause" $features
    local same=1
    for f in a0 a1 a2 a3; do cmp -s "$mnt/$f" "$work/$name.model/$f" || same=0; done
    for f in r0 r1; do cmp -s "$mnt/$f" "$work/$name.model/$f.$ops" || same=0; done
    expect "$name: files hold what was written" test $same = 1
    # Every fsync returned: check finds all of it (after the page cache is dropped).
    [ -n "$features" ] && echo 3 > /proc/sys/vm/drop_caches &&
        expect "$name: check passes on the live mount (every step durable)" \
            "$work/check" "$mnt" "$work/$name.model" "$work/$name.oplog" 9223372036854775807
    stop_daemon; expect "$name: daemon stops cleanly" test $? = 0
    expect "$name: fsck clean after the run" "$bin/fsck.xv6" -n "$img"
    # The log is complete: all its writes over the first image give the last.
    local last; last=$("$work/crashimages" info "$work/$name.rec" | awk '{ print $4 }')
    "$work/crashimages" build "$work/$name.base" "$work/$name.rec" "$last" all "$work/replayed.img" >/dev/null
    expect "$name: the record log replays to the final image" cmp "$work/replayed.img" "$img"
    echo "     $name: $("$work/crashimages" info "$work/$name.rec"), $(wc -l < "$work/$name.oplog") fsyncs returned, $((SECONDS - t0)) s"
}

# check_image NAME MODULE CUT SUBSET: builds one crash image and checks it.
check_image() {
    local name=$1 module=$2 cut=$3 subset=$4
    local img=$work/crash.img label="$name cut $cut/$flushes" problems="" out status
    window=
    out=$("$work/crashimages" build "$work/$name.base" "$work/$name.rec" "$cut" "$subset" "$img") \
        || { fail "$label: crashimages"; return; }
    images=$((images + 1))
    read -r _ deadline _ window _ applied <<<"$out"
    case $subset in none|all) label+=" $subset";; *) label+=" random $subset";; esac
    label+=" ($applied of $window later writes)"
    # fsck -n reads a committed, uninstalled log as replayed: clean even before the mount.
    cp "$img" "$work/before.img"
    out=$("$bin/fsck.xv6" -n "$work/before.img" 2>&1); status=$?
    grep -q "not yet installed" <<<"$out" && replays=$((replays + 1))
    grep -q "uncommitted transaction" <<<"$out" && torn=$((torn + 1))
    [ $status = 0 ] || problems+="fsck -n before mount: exit $status: $(grep -v ': clean' <<<"$out" | head -3)"$'\n'
    if start_daemon "$module" "$img" "$work/check.log"; then
        out=$(timeout 60 "$work/check" "$mnt" "$work/$name.model" "$work/$name.oplog" "$deadline"); status=$?
        local n; n=$(sed -n 's/^checked //p' <<<"$out")
        durable=$((durable + ${n:-0}))
        [ $status = 0 ] || problems+=$(grep -v '^checked ' <<<"$out")$'\n'
    else
        problems+="not mounted: $(tail -2 "$work/check.log")"$'\n'
    fi
    stop_daemon; status=$?
    [ $status = 0 ] || problems+="daemon exit status $status"$'\n'
    out=$("$bin/fsck.xv6" -n "$img" 2>&1); status=$?
    [ $status = 0 ] || problems+="fsck -n after unmount: exit $status: $(grep -v ': clean' <<<"$out" | head -3)"$'\n'
    if [ -z "$problems" ]; then ok "$label"; else fail "$label"; sed 's/^/     /' <<<"${problems%$'\n'}"; fi
}

# check_run NAME MODULE: crash images at cuts spread over the run's flushes.
check_run() {
    local name=$1 module=$2 list k s
    flushes=$("$work/crashimages" info "$work/$name.rec" | awk '{ print $4 }')
    if [ "$cuts" = all ] || [ "$cuts" -gt "$flushes" ]; then
        list=$(seq 0 "$flushes")
    else
        list=$(for ((j = 0; j < cuts; j++)); do echo $(( j * flushes / (cuts - 1) )); done | uniq)
    fi
    for k in $list; do
        cutpoints=$((cutpoints + 1))
        check_image "$name" "$module" "$k" none
        [ "$window" = 0 ] && continue  # nothing after this cut: one image is all there is
        check_image "$name" "$module" "$k" all
        for ((s = 1; s <= subsets; s++)); do check_image "$name" "$module" "$k" $((seed * 1000 + k * 10 + s)); done
    done
}

runs=("v1-writeback $bin/libXV6Module.so" "v1-nowriteback $bin/libXV6Module.so --no-writeback-cache"
      "v2-writeback $bin/libXV6Module2.so" "v2-nowriteback $bin/libXV6Module2.so --no-writeback-cache"
      "v3-writeback $bin/libXV6Module3.so")
first=${RUNS:-0}   # RUNS=4: only the runs from the fifth on (v3); their seeds stay the same
runs=("${runs[@]:$first}")
i=$first
for run in "${runs[@]}"; do
    set -- $run
    name=$1 module=$2; shift 2
    i=$((i + 1))
    record "$name" "$module" $((seed + i)) "$@" && check_run "$name" "$module"
done

echo "     $replays crash images held a committed log to replay, $torn a torn commit"
echo "     seed $seed; $cutpoints cut points, $images crash images built and checked, $durable durable files checked, $SECONDS s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
