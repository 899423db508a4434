#!/bin/bash
# Containment under real systemd (run in the container like checks.sh, by
# Tests/systemd/e2e.sh with BENTO_E2E_CHECKS): two mounts, /srv/a and
# /srv/b, each under a self-checking load, while /srv/a is upgraded to
# versions that trap, hang, or are killed from outside. A bad version costs
# the one request that triggered it; /srv/a rolls back to 1.0.0 on its own;
# /srv/b and the unit never notice.
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
unit=bento-upgraded.service
mods=/usr/local/lib/bento/modules
v1=$mods/xv6fs-1.0.0.so v2=$mods/xv6fs-2.0.0.so
fixtures=/usr/local/libexec/bento-test
trap_so=$fixtures/trap.so hang_so=$fixtures/hang.so
load=$fixtures/load fsmodel=$fixtures/fsmodel
images=/var/lib/bento-test config=/etc/bento/bento.toml
a=/srv/a b=/srv/b
results=${RESULTS:-/results}
tmp=$(mktemp -d)
passed=0 failed=0 skipped=0
. "$(dirname "$0")/lib.sh"

# The version serving mount $1, from bentoctl status's text.
version_of() { bentoctl status | awk -v m="$1" '$0 == m { want = 1; next } want && $1 == "module" { print $3; exit }'; }
serves() { [ "$(version_of "$1")" = "$2" ]; }
# start_load DIR: the self-checking load in DIR, 4 threads; stop_load DIR.
start_load() { mkdir -p "$1" && { "$load" "$1" 4 900 >"$tmp/load${1//\//_}.out" 2>&1 & }; }
stop_load() {
    local out=$tmp/load${1//\//_}.out
    touch "$1/STOP"
    wait_until 60 grep -q 'ops=' "$out"
    cat "$out"
    grep -q 'failures=0 mismatches=0 ' "$out"
}
diagnostics() {
    { systemctl status --no-pager -l "$unit"; journalctl -q --no-pager -u "$unit" -n 200 -o short-precise; } >"$results/diagnostics.txt" 2>&1
}
finish() {
    echo "measured fault_to_serving_ms=${fault_ms:-none} hang_to_serving_ms=${hang_ms:-none} b_slowest_ms=${b_slowest:-none}"
    [ "$failed" -eq 0 ] || diagnostics
    echo "container: $passed passed, $failed failed, $skipped skipped"
    rm -rf "$tmp"
    [ "$failed" -eq 0 ] && [ "$skipped" -eq 0 ]
    exit
}

mkdir -p "$images" "$a" "$b" /etc/bento
check "journalctl --update-catalog" journalctl --update-catalog
check "mkfs.xv6 a.img and b.img" bash -c "mkfs.xv6 --size 256M $images/a.img && mkfs.xv6 --size 256M $images/b.img"
for m in a b; do
    printf '[[mount]]\nimage = "%s/%s.img"\nmountpoint = "/srv/%s"\nmodule = "%s"\nhang_limit_seconds = 3\n\n' "$images" $m $m "$v1"
done >"$config"
check "systemctl start bento-upgraded (two mounts)" timeout 60 systemctl start "$unit"
pid=$(prop MainPID) restarts=$(prop NRestarts)
check "both mounts serve 1.0.0" bash -c "$(declare -f version_of serves); serves $a 1.0.0 && serves $b 1.0.0"
[ "$(systemctl is-active "$unit")" = active ] || finish
# The daemon's children (each worker has a flusher child of its own).
workers() { pgrep -P "$(prop MainPID)" -f -- 'bento-upgraded --worker'; }
confined() {
    local w n=0
    for w in $(workers); do
        n=$((n + 1))
        grep -q '^NoNewPrivs:.*1$' /proc/$w/status && grep -q '^Seccomp:.*2$' /proc/$w/status || { grep -E 'NoNewPrivs|Seccomp' /proc/$w/status; return 1; }
    done
    echo "$n workers"; [ $n -eq 2 ]
}
check "one worker per mount, each with no new privileges and a seccomp filter" confined
echo "written before anything" >"$a/before" && sync "$a/before"
start_load "$a/load"
start_load "$b/load"
# fsmodel keeps a model of what /srv/a answered: checked after the last stop.
mkdir -p "$a/model" "$tmp/model"
"$fsmodel" run "$a/model" "$tmp/model" 1 200 4 >/dev/null 2>"$tmp/model.err" &
model=$!
sleep 2

# --- A version that traps on one create, on probation -----------------------
jmark
check "upgrade /srv/a to 2.0.1 (traps on create of 'poison')" timeout 60 bentoctl upgrade "$a" "$trap_so"
probation=$(bentoctl status --json | tr -d '\n ' | grep -o '"probation":{[^}]*}' | head -1)
check "status shows the probation ($probation)" test -n "$probation"
t0=$(date +%s%N)
touch "$a/poison" 2>"$tmp/touch.err"; rc=$?
touch_ms=$(ms_since "$t0")
check "the triggering create fails with EIO ($touch_ms ms)" grep -q "Input/output error" "$tmp/touch.err"
check "  within 2 s" test "$touch_ms" -lt 2000 -a "$rc" -ne 0
check "/srv/a serves 1.0.0 again, rolled back on its own" wait_until 10 serves "$a" 1.0.0
fault_ms=$(ms_since "$t0")
check "/srv/a serves: write and read" write_read "$a/after-trap" after-trap
check "/srv/b still on 1.0.0" serves "$b" 1.0.0
check "history: auto-rollback with its cause" bash -c "bentoctl history $a | grep -q 'auto-rollback: rolled back automatically .*2.0.1 -> 1.0.0 .*SIGILL in create of \"poison\"'"
check "journal: the worker died of a fault" jhas -u 5b0e8b3f6c1d4a7e9f2d8c4b1a6e3f70 "BENTO_MOUNT=$a" BENTO_FAULT=true
check "journal: the create was quarantined (operation, name, module)" \
    jhas -u a3c9e1f4b7d24e0c8a6f5b2d9e1c7a48 "BENTO_MOUNT=$a" BENTO_OPERATION=create BENTO_NAME=poison BENTO_MODULE
check "journal: auto-rollback from 2.0.1 to 1.0.0" \
    jhas -u e7d2b5a1c9f34d68b0a4e3c2f1d9b857 "BENTO_MOUNT=$a" BENTO_FROM_VERSION=2.0.1 BENTO_TO_VERSION=1.0.0 BENTO_CAUSE
catalog() { journalctl -q --no-pager -x -u "$unit" | grep -qE -- "^(-- |░░ )Subject: $1"; }
check "journalctl -x: the quarantine's catalog text" catalog "Request quarantined after it crashed or hung a worker"
check "journalctl -x: the auto-rollback's catalog text" catalog "Version on probation failed: rolled back automatically"
check "the unit stays active, same MainPID, no restart" \
    test "$(systemctl is-active "$unit")" = active -a "$(prop MainPID)" = "$pid" -a "$(prop NRestarts)" = "$restarts"
refused() { bentoctl upgrade "$a" "$trap_so" --json | grep -qE '"result" *: *"refused"' && ! serves "$a" 2.0.1; }
check "2.0.1 is refused from now on" refused
check "  saying it failed on probation" bash -c "bentoctl upgrade $a $trap_so 2>&1 | grep -q 'failed on probation'"

# --- A version that hangs on one create -----------------------------------
jmark
check "upgrade /srv/a to 2.0.2 (hangs on create of 'poison')" timeout 60 bentoctl upgrade "$a" "$hang_so"
t0=$(date +%s%N)
touch "$a/poison" 2>"$tmp/touch.err"; rc=$?
touch_ms=$(ms_since "$t0")
check "the hung create fails with EIO past the 3 s hang limit ($touch_ms ms)" \
    bash -c "grep -q 'Input/output error' $tmp/touch.err && [ $touch_ms -ge 3000 ] && [ $touch_ms -lt 8000 ]"
check "/srv/a serves 1.0.0 again" wait_until 10 serves "$a" 1.0.0
hang_ms=$(ms_since "$t0")
check "journal: stuck past the hang limit" jhas -u cc16aa27839b45838a4f7a1b21d71ef3 "BENTO_MOUNT=$a"
check "journal: auto-rollback from 2.0.2" jhas -u e7d2b5a1c9f34d68b0a4e3c2f1d9b857 "BENTO_MOUNT=$a" BENTO_FROM_VERSION=2.0.2

# The load and the model on /srv/a end here: the next version fails one
# read in ten on purpose, which they would see.
wait "$model"; model_rc=$?
check "fsmodel ran through the trap and the hang without an error" bash -c "cat $tmp/model.err; exit $model_rc"
stop_load "$a/load" >"$tmp/a.out" 2>&1; a_rc=$?
note <"$tmp/a.out"
check "the load on /srv/a saw no error and no wrong byte through the trap and the hang" test $a_rc -eq 0

# --- A version that fails one read in ten: the health gate -----------------
jmark
head -c 4M /dev/urandom >"$tmp/data" && cp "$tmp/data" "$a/data" && sync "$a/data"
( for i in $(seq 600); do dd if="$a/data" of=/dev/null iflag=direct bs=64k status=none 2>/dev/null; done ) &
reader=$!
out=$(timeout 120 bentoctl upgrade "$a" "$fixtures/reads.so" --wait --json)
kill $reader 2>/dev/null; wait $reader 2>/dev/null
gated() { grep -qE '"result" *: *"rolled-back"' <<<"$out" && grep -q 'health gate' <<<"$out"; }
check "upgrade --wait to 2.0.3 (EIO on 10% of reads): rolled back by the health gate" gated
echo "$out" | grep '"error"' | note
check "/srv/a serves 1.0.0 again" serves "$a" 1.0.0
check "journal: auto-rollback from 2.0.3, cause the health gate" \
    jhas -u e7d2b5a1c9f34d68b0a4e3c2f1d9b857 "BENTO_MOUNT=$a" BENTO_FROM_VERSION=2.0.3
check "the data reads back whole under 1.0.0" cmp "$a/data" "$tmp/data"
start_load "$a/load2"

# --- kill -9 of the daemon during a probation, no fault: stays on 2.0.0 ----
check "upgrade /srv/a to 2.0.0 (probation 60 s)" timeout 60 bentoctl upgrade "$a" "$v2" --probation 60s
pid=$(prop MainPID)
kill -9 "$pid"
back() { [ "$(systemctl is-active "$unit")" = active ] && [ "$(prop MainPID)" != "$pid" ] && [ "$(prop MainPID)" != 0 ]; }
check "kill -9: systemd restarts the daemon" wait_until 60 back
check "kill -9 during probation, no fault: /srv/a stays on 2.0.0" wait_until 10 serves "$a" 2.0.0
pid=$(prop MainPID) restarts=$(prop NRestarts)
stop_load "$a/load2" >"$tmp/a2.out" 2>&1; a_rc=$?
note <"$tmp/a2.out"
check "kill -9 during probation: the load on /srv/a saw no error and no wrong byte" test $a_rc -eq 0
start_load "$a/load3"

# --- A poison that traps in every version: one request fails, no loop ------
jmark
check "upgrade /srv/a to 2.0.1 again, forced, without probation" \
    timeout 60 bentoctl upgrade "$a" "$trap_so" --force --probation 0
for i in 1 2 3; do touch "$a/poison" 2>/dev/null && echo "poison $i: created?"; done
check "each poison create failed, and /srv/a still serves 2.0.1" serves "$a" 2.0.1
check "/srv/a serves everything else" write_read "$a/after-poison" after-poison
deaths=$(jentries -u 5b0e8b3f6c1d4a7e9f2d8c4b1a6e3f70 | grep -c '^MESSAGE=')
check "three poison calls, three worker deaths: none rerun (got $deaths)" test "$deaths" -eq 3
check "the unit never restarted" test "$(prop MainPID)" = "$pid" -a "$(prop NRestarts)" = "$restarts"
check "back to 1.0.0 by bentoctl rollback" timeout 60 bentoctl rollback "$a"

# --- The loads, the model, the disk -----------------------------------------
stop_load "$a/load3" >"$tmp/a.out" 2>&1; a_rc=$?
stop_load "$b/load" >"$tmp/b.out" 2>&1; b_rc=$?
note <"$tmp/a.out"; note <"$tmp/b.out"
b_slowest=$(sed -n 's/.*slowest_us=\([0-9]*\).*/\1/p' "$tmp/b.out" | awk '{ printf "%.1f", $1 / 1000 }')
check "the load on /srv/a saw no error and no wrong byte through the poison" test $a_rc -eq 0
check "the load on /srv/b saw no error and no wrong byte through everything" test $b_rc -eq 0
check "systemctl stop" timeout 60 systemctl stop "$unit"
check "fsck.xv6 -n a.img clean" fsck.xv6 -n "$images/a.img"
check "fsck.xv6 -n b.img clean" fsck.xv6 -n "$images/b.img"
check "start again" timeout 60 systemctl start "$unit"
# O_DIRECT reads: from the daemon, which read the image at start (the
# container's /proc/sys is read-only: no drop_caches).
check "every answered write of fsmodel is on /srv/a's disk" "$fsmodel" check "$a/model" "$tmp/model" direct
check "the first file is there" test "$(cat "$a/before")" = "written before anything"
check "final stop" timeout 60 systemctl stop "$unit"
finish
