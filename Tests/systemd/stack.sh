#!/bin/bash
# A stack under real systemd (run in the container like checks.sh, by
# Tests/systemd/e2e.sh with BENTO_E2E_CHECKS): the installed provenance
# layer over xv6fs 1.0.0, from bento.toml. The disk is filled and the
# layer's reserve used up, so that operations go unrecorded and a gap is
# pending; `systemctl restart` then hands both modules' state to the next
# process (bento-stack/1); once there is room again, the one gap line
# counts every operation not recorded, before the restart and after.
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
unit=bento-upgraded.service
mods=/usr/local/lib/bento/modules
images=/var/lib/bento-test config=/etc/bento/bento.toml
s=/srv/s
results=${RESULTS:-/results}
tmp=$(mktemp -d)
passed=0 failed=0 skipped=0
. "$(dirname "$0")/lib.sh"
adopted=76c628d37044406a9f7ef865b89e5ca2

finish() {
    [ "$failed" -eq 0 ] || { systemctl status --no-pager -l "$unit"; journalctl -q --no-pager -u "$unit" -n 60 -o short-precise; } \
        >"$results/diagnostics.txt" 2>&1
    echo "container: $passed passed, $failed failed, $skipped skipped"
    rm -rf "$tmp"
    [ "$failed" -eq 0 ] && [ "$skipped" -eq 0 ]
    exit
}
layers() { bentoctl status | awk '$1 == "layer" || $1 == "module" { printf "%s %s; ", $2, $3 }'; }

mkdir -p "$images" "$s" /etc/bento
check "mkfs.xv6 s.img (32 MiB)" mkfs.xv6 --size 32M "$images/s.img"
printf '[[mount]]\nimage = "%s"\nmountpoint = "%s"\nmodule = ["%s", "%s"]\n' \
    "$images/s.img" "$s" "$mods/provenance-1.0.0.so" "$mods/xv6fs-1.0.0.so" >"$config"
check "systemctl start bento-upgraded (the provenance layer over xv6fs 1.0.0)" timeout 60 systemctl start "$unit"
[ "$(systemctl is-active "$unit")" = active ] || finish
check "bentoctl status lists the layer and the module" test "$(layers)" = "provenance 1.0.0; xv6fs 1.0.0; "

touch "$s/f"
check "the layer records" grep -q 'op=create .*name="f"' "$s/.provenance"
# Data runs out first: the layer keeps its reserve.
head -c 40M /dev/zero >"$s/big" 2>/dev/null; sync
# The last blocks a 4 KiB write at a time (large writes stop earlier).
dd if=/dev/zero of="$s/rest" bs=4k oflag=direct status=none 2>/dev/null
# The kernel sends the files' times back now, not in the middle of what
# is counted below.
sync
avail=$(df --output=avail "$s" | tail -1)
check "the disk is full for data (df: $avail KiB available)" test "$avail" -le 1024
# Setattrs need no block: recorded from the reserve until it is gone, then
# counted in a gap, which a restart must carry. chmod until they are.
# The setattrs of f recorded (by inode: under the unit's hardening a
# record may not name the program).
ino=$(stat -c %i "$s/f")
setattrs() { grep -c "op=setattr ino=$ino\$" "$s/.provenance"; }
earlier=$(setattrs)
unrecorded() { bentoctl status | grep -q 'provenance not recorded (ENOSPC)'; }
# How many this process did not record (its pressure count).
unrecorded_count() { bentoctl status | sed -n 's/.*provenance not recorded (ENOSPC) \([0-9]*\),.*/\1/p' | tail -1; }
before=0 after=500
until unrecorded || [ $before -ge 30000 ]; do
    for i in $(seq 500); do chmod $((600 + i % 2)) "$s/f"; done
    before=$((before + 500))
done
check "records ran out after some of $before chmods: the rest go unrecorded (status counts them)" unrecorded
pid=$(prop MainPID) missed_before=$(unrecorded_count)
jmark
check "systemctl restart bento-upgraded" timeout 60 systemctl restart "$unit"
check "restart: a new process (MainPID $pid -> $(prop MainPID))" test "$(prop MainPID)" != "$pid"
check "restart: the stack's state was imported (journal: adopted, with its size)" jhas -u "$adopted" BENTO_STATE_BYTES
check "restart: the same stack serves" test "$(layers)" = "provenance 1.0.0; xv6fs 1.0.0; "
for i in $(seq $after); do chmod $((600 + i % 2)) "$s/f"; done
rm "$s/big" "$s/rest"; sync
missed_after=$(unrecorded_count)
touch "$s/g"
recorded=$(($(setattrs) - earlier))
missed=$(grep -o ' op=gap ops=[0-9]*' "$s/.provenance" | awk -F= '{ n += $3 } END { print n + 0 }')
check "one gap line, once there is room again" test "$(grep -c ' op=gap ' "$s/.provenance")" = 1
# Both processes counted what they missed: the one gap line has it all.
check "the gap line counts what both processes missed (${missed_before:-?} before the restart, ${missed_after:-?} after)" \
    test "$missed" = $((${missed_before:-0} + ${missed_after:-0})) -a "${missed_before:-0}" -gt 0 -a "${missed_after:-0}" -ge $after
# (The kernel may send a file's times back meanwhile: those are missed too.)
check "every chmod recorded or missed ($recorded recorded, $missed missed, $((before + after)) made)" \
    test "$((recorded + missed))" -ge $((before + after)) -a "$((recorded + missed))" -le $((before + after + 10))
check "the record after the gap" grep -q 'op=create .*name="g"' "$s/.provenance"
check "systemctl stop bento-upgraded" timeout 60 systemctl stop "$unit"
check "fsck.xv6 clean" fsck.xv6 -n "$images/s.img"
finish
