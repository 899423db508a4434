#!/bin/bash
# Runs inside the container that Tests/systemd/e2e.sh boots (bench/systemd.sh
# points it here): under a running 4-thread load, ROUNDS each of a live
# upgrade (bentoctl upgrade, alternating 1.0.0 and 2.0.0), `systemctl
# restart`, and `kill -9` of the daemon (systemd restarts it), and as a
# baseline none at all; then the same again with 100,000 more inodes held by
# the kernel (looked up, not open: kinds suffixed -100k). For each
# event: the longest system call the load saw around it, and the time the
# command took. Prints `stall KIND MS_SLOWEST MS_EVENT` lines and the load's
# failures; exits 1 if the load saw any failed call or wrong byte.
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
unit=bento-upgraded.service mods=/usr/local/lib/bento/modules
load=/usr/local/libexec/bento-test/load hold=/usr/local/libexec/bento-test/hold
rounds=10
a=/mnt/a tmp=$(mktemp -d) failures=0

mkdir -p /var/lib/bento-test "$a" /etc/bento
mkfs.xv6 --size 1G --inodes 150000 /var/lib/bento-test/a.img >/dev/null
printf '[[mount]]\nimage = "/var/lib/bento-test/a.img"\nmountpoint = "%s"\nmodule = "%s/xv6fs-1.0.0.so"\n' "$a" "$mods" >/etc/bento/bento.toml
systemctl start "$unit" || { echo "bento-upgraded did not start"; exit 1; }
pid() { systemctl show -p MainPID --value "$unit"; }
back() { [ "$(systemctl is-active "$unit")" = active ] && [ "$(pid)" != "$1" ] && [ "$(pid)" != 0 ]; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# event KIND NAME: a fresh load, one second of it, the event, one more
# second, then the load's slowest call.
event() {
    local kind=${1%-100k} dir=$a/$1-$2 t0 before
    mkdir "$dir"
    "$load" "$dir" 4 120 >"$tmp/out" 2>"$tmp/err" &
    local loadpid=$!
    sleep 1
    before=$(pid) t0=$(now_ms)
    case $kind in
    none) ;;
    upgrade) bentoctl upgrade "$a" "$mods/xv6fs-$([ $(($2 % 2)) -eq 1 ] && echo 2 || echo 1).0.0.so" >/dev/null ;;
    restart) systemctl restart "$unit" ;;
    crash) kill -9 "$before"; until back "$before"; do sleep 0.005; done ;;
    esac
    local took=$(( $(now_ms) - t0 ))
    sleep 1
    touch "$dir/STOP"
    wait "$loadpid" || { failures=$((failures + 1)); echo "load failed around $kind $2:"; head -5 "$tmp/err"; }
    echo "stall $1 $(sed -n 's/.*slowest_us=\([0-9]*\).*/\1/p' "$tmp/out" | awk '{ printf "%.2f", $1 / 1000 }') $took"
    rm -rf "$dir"
}
for i in $(seq "$rounds"); do
    event none "$i"; event upgrade "$i"; event restart "$i"; event crash "$i"
done
# The kernel keeps these inodes (and their lookup counts) in its caches
# through every restart and crash; the table of a restart carries them.
"$hold" "$a/held" 100000 stat </dev/null | grep -q "ready 100000" || { echo "could not hold 100,000 inodes"; exit 1; }
for i in $(seq "$rounds"); do
    event none-100k "$i"; event upgrade-100k "$i"; event restart-100k "$i"; event crash-100k "$i"
done
systemctl stop "$unit"
fsck.xv6 -n /var/lib/bento-test/a.img >/dev/null || { echo "fsck.xv6 found errors after the runs"; failures=$((failures + 1)); }
echo "load failures: $failures"
echo "container: $((8 * rounds)) passed, $failures failed"
[ "$failures" -eq 0 ]
