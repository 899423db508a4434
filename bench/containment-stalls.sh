#!/bin/bash
# Runs inside the container that Tests/systemd/e2e.sh boots (bench/
# containment.sh points it here): two mounts, /srv/a and /srv/b, each under
# a 4-thread load; ROUNDS each of: nothing (the floor), /srv/a upgraded to a
# version that traps on one create which is then called (the fault: EIO,
# auto-rollback to 1.0.0), and /srv/a's worker killed from outside. For
# each: the time from the fault until /srv/a serves again, and the longest
# system call each load saw. Prints `fault KIND MS_BACK MS_SLOWEST_A
# MS_SLOWEST_B` lines; exits 1 if a load saw a failed call or a wrong byte.
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
unit=bento-upgraded.service mods=/usr/local/lib/bento/modules fixtures=/usr/local/libexec/bento-test
load=$fixtures/load rounds=10
a=/srv/a b=/srv/b tmp=$(mktemp -d) failures=0

mkdir -p /var/lib/bento-test "$a" "$b" /etc/bento
for m in a b; do
    mkfs.xv6 --size 256M /var/lib/bento-test/$m.img >/dev/null
    printf '[[mount]]\nimage = "/var/lib/bento-test/%s.img"\nmountpoint = "/srv/%s"\nmodule = "%s/xv6fs-1.0.0.so"\n\n' $m $m "$mods"
done >/etc/bento/bento.toml
systemctl start "$unit" || { echo "bento-upgraded did not start"; exit 1; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
version_a() { bentoctl status | awk -v m="$a" '$0 == m { want = 1; next } want && $1 == "module" { print $3; exit }'; }
# The worker serving /srv/a: the one holding a.img at fd 5 (WorkerFD.image).
worker_a() { local p; for p in $(pgrep -f -- '--worker'); do [ "$(readlink /proc/$p/fd/5)" = /var/lib/bento-test/a.img ] && echo "$p"; done; }
slowest() { sed -n 's/.*slowest_us=\([0-9]*\).*/\1/p' "$1" | awk '{ printf "%.2f", $1 / 1000 }'; }

# event KIND N: fresh loads on both mounts, one second, the event, until
# /srv/a serves again, one more second.
event() {
    local kind=$1 t0 back=0
    mkdir "$a/$1-$2" "$b/$1-$2"
    "$load" "$a/$1-$2" 4 120 >"$tmp/a.out" 2>"$tmp/a.err" &
    local la=$!
    "$load" "$b/$1-$2" 4 120 >"$tmp/b.out" 2>"$tmp/b.err" &
    local lb=$!
    if [ "$kind" = trap ]; then bentoctl upgrade "$a" "$fixtures/trap.so" --force >/dev/null; fi
    local before; before=$(worker_a)
    sleep 1
    t0=$(now_ms)
    case $kind in
    none) ;;
    trap) touch "$a/poison" 2>/dev/null && echo "poison created?"
          until [ "$(version_a)" = 1.0.0 ]; do sleep 0.002; done ;;
    kill) kill -9 "$before"
          until [ -n "$(worker_a)" ] && [ "$(worker_a)" != "$before" ] && [ -n "$(version_a)" ]; do sleep 0.002; done ;;
    esac
    back=$(( $(now_ms) - t0 ))
    sleep 1
    touch "$a/$1-$2/STOP" "$b/$1-$2/STOP"
    wait "$la" || { failures=$((failures + 1)); echo "load on $a failed around $kind $2:"; head -5 "$tmp/a.err"; }
    wait "$lb" || { failures=$((failures + 1)); echo "load on $b failed around $kind $2:"; head -5 "$tmp/b.err"; }
    echo "fault $kind $back $(slowest "$tmp/a.out") $(slowest "$tmp/b.out")"
    rm -rf "$a/$1-$2" "$b/$1-$2"
}
for i in $(seq "$rounds"); do event none "$i"; event trap "$i"; event kill "$i"; done
systemctl stop "$unit"
for m in a b; do fsck.xv6 -n /var/lib/bento-test/$m.img >/dev/null || { echo "fsck.xv6 $m.img found errors"; failures=$((failures + 1)); }; done
echo "container: $((3 * rounds)) passed, $failures failed"
[ "$failures" -eq 0 ]
