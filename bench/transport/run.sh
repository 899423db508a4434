#!/bin/bash
# Interleaved measurement of the transport probe.
# Usage: run.sh ROUNDS OUTFILE [CONFIGS...]
#   CONFIGS default: classic uring classic-pin0 uring-pin0
#   (also: uring-plain, uring-plain-pin0, classic1, classic1-pin0)
# Needs root, /dev/fuse, and (for uring*) writes Y to
# /sys/module/fuse/parameters/enable_uring, restoring the old value at the end.
# Env: STATN (200000) FSTATN (200000) CREATEN (20000) MNT (/tmp/uprobe/mnt)
#      LATN (0: off; N: also time N single fstat calls, percentiles)
set -u
here=$(cd "$(dirname "$0")" && pwd)
rounds=${1:-3}; out=${2:-/tmp/uprobe/results.tsv}; shift 2 || true
configs=("$@"); [ ${#configs[@]} -eq 0 ] && configs=(classic uring classic-pin0 uring-pin0)
STATN=${STATN:-200000}; FSTATN=${FSTATN:-200000}; CREATEN=${CREATEN:-20000}
LATN=${LATN:-0}
MNT=${MNT:-/tmp/uprobe/mnt}
bin=${BIN:-/tmp/uprobe/bin}
mkdir -p "$bin" "$MNT" "$(dirname "$out")"
gcc -O2 -Wall -pthread -o "$bin/probe" "$here/probe.c" || exit 1
gcc -O2 -Wall -o "$bin/client" "$here/client.c" || exit 1
param=/sys/module/fuse/parameters/enable_uring
old=$(cat $param)
trap 'echo $old > $param' EXIT
echo Y > $param
: > "$out"
for r in $(seq 1 "$rounds"); do
  for cfg in "${configs[@]}"; do
    t=classic; threads=2; flags=defer; pin=""
    case $cfg in
      uring*) t=uring ;;
      classic1*) threads=1 ;;
    esac
    case $cfg in *plain*) flags=plain ;; esac
    case $cfg in *pin0) pin="taskset -c 0" ;; esac
    log=/tmp/uprobe/server-$cfg-$r.log
    $pin "$bin/probe" -t $t -T $threads -f $flags -m "$MNT" -n 100 2>"$log" &
    spid=$!
    for i in $(seq 100); do grep -q " $MNT " /proc/mounts && break; sleep 0.05; done
    # wait until the uring queues are registered
    [ $t = uring ] && for i in $(seq 100); do grep -q registered "$log" && break; sleep 0.05; done
    { $pin "$bin/client" stat "$MNT/f1" "$STATN"
      $pin "$bin/client" fstat "$MNT/f1" "$FSTATN"
      $pin "$bin/client" create "$MNT" "$CREATEN"
      [ "$LATN" -gt 0 ] && $pin "$bin/client" fstatlat "$MNT/f1" "$LATN"; } | while read -r phase n s ops us; do
        printf '%s\t%s\t%s\t%s\t%s\n' "$r" "$cfg" "$phase" "$ops" "$us" >> "$out"
      done
    umount "$MNT"
    for i in $(seq 100); do kill -0 $spid 2>/dev/null || break; sleep 0.05; done
    if kill -0 $spid 2>/dev/null; then echo "server $spid did not exit; killing" >&2; kill -9 $spid; fi
    wait $spid 2>/dev/null
    printf '%s\t%s\t#counts\t%s loadavg=%s\n' "$r" "$cfg" "$(grep counts "$log" | sed 's/probe: counts //')" "$(cut -d' ' -f1 /proc/loadavg)" >> "$out"
  done
done
echo "enable_uring restored to $old"
