#!/bin/bash
# Pressure under real systemd and journald (run in the container like
# checks.sh, by Tests/systemd/e2e.sh with BENTO_E2E_CHECKS). Two mounts
# with an 8 MiB cache each, under a unit MemoryMax= chosen from the bound
# in Docs/systemd.md ("Memory"):
# - /srv/m: 2,000 files held open, a self-checking load, and a working set
#   8 times the cache walked three times. The kernel kills nothing.
# - /srv/p: full, served by xv6fs 2.0.0 with the default summary interval
#   (60 s), four processes whose calls meet ENOSPC for 60 s, the mount
#   upgraded to 1.0.0 and back during the flood. The unit writes a handful
#   of journal entries whose counts add up to what bentoctl status shows;
#   journald suppresses nothing; `journalctl -u` shows the upgrades;
#   /.provenance marks what it could not record with gap lines.
set -u
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
unit=bento-upgraded.service
mods=/usr/local/lib/bento/modules
v1=$mods/xv6fs-1.0.0.so v2=$mods/xv6fs-2.0.0.so
fixtures=/usr/local/libexec/bento-test
images=/var/lib/bento-test config=/etc/bento/bento.toml
m=/srv/m a=/srv/p
results=${RESULTS:-/results}
tmp=$(mktemp -d)
passed=0 failed=0 skipped=0
. "$(dirname "$0")/lib.sh"

began=64822f04300e4fc4a282452ab88fad03 summary=c7312b3ca7bb497bb362a30397ad06f0 cleared=2221c04a903f457fa2a742e65b06fa98
upgraded=3af77a01a77f4df8a016022c80422c0d
# journald's own entry when it drops a service's messages (rate limit).
suppressed=a596d6fe7bfa4994828e72309e95d61e
seconds=60 cache=8 held=2000

diagnostics() {
    { systemctl status --no-pager -l "$unit"; journalctl -q --no-pager -u "$unit" -n 100 -o short-precise; } >"$results/diagnostics.txt" 2>&1
}
finish() {
    [ -n "${HOLD_PID:-}" ] && kill "$HOLD_PID" 2>/dev/null
    [ "$failed" -eq 0 ] || diagnostics
    echo "container: $passed passed, $failed failed, $skipped skipped"
    rm -rf "$tmp"
    [ "$failed" -eq 0 ] && [ "$skipped" -eq 0 ]
    exit
}
# The lines of bentoctl status about mount $1.
status_of() { bentoctl status | awk -v m="$1" '$0 == m { want = 1; next } /^\// { want = 0 } want'; }
# The unit's entries since the mark, in export format. (Filtered here:
# journalctl 252 skips the first match when --after-cursor has matches.)
unit_entries() {
    journalctl --sync
    journalctl -q --no-pager -o export --after-cursor "$cursor" |
        awk -v u="$unit" 'BEGIN { RS = "" } index("\n" $0 "\n", "\n_SYSTEMD_UNIT=" u "\n") { print $0 "\n" }'
}
# Per condition, the pressure entries since the mark: "CONDITION (ERROR)
# <TAB>their BENTO_COUNTs added up<TAB>began summaries cleared".
pressure_sums() {
    unit_entries | awk -v b=$began -v s=$summary -v c=$cleared 'BEGIN { RS = "" }
        function field(name) { return match(e, "\n" name "=[^\n]*") ? substr(e, RSTART + length(name) + 2, RLENGTH - length(name) - 2) : "" }
        { e = "\n" $0 "\n"; kind = 0
          if (index(e, "\nMESSAGE_ID=" b "\n")) kind = 1
          else if (index(e, "\nMESSAGE_ID=" s "\n")) kind = 2
          else if (index(e, "\nMESSAGE_ID=" c "\n")) kind = 3
          if (!kind) next
          key = field("BENTO_CONDITION") " (" field("BENTO_ERROR") ")"; sum[key] += field("BENTO_COUNT"); kinds[key, kind]++ }
        END { for (k in sum) printf "%s\t%d\t%d %d %d\n", k, sum[k], kinds[k, 1], kinds[k, 2], kinds[k, 3] }' | sort
}
# What bentoctl status counts for /srv/p: "CONDITION (ERROR)<TAB>COUNT".
status_counts() {
    status_of "$a" | sed -e 's/^  pressure  /            /' |
        sed -n 's/^            \(.*\) (\(E[A-Z0-9]*\)) \([0-9][0-9]*\), last .*/\1 (\2)\t\3/p' | sort
}

# --- The memory controller, as on a host -----------------------------------
# e2e.sh gives the container a memory cgroup of its own, which nspawn
# mounts read-only in here; made writable, and systemd re-executed to take
# it up, MemoryMax= is the kernel's limit on the unit, as on a host.
check "the memory controller is writable" mount -o remount,bind,rw /sys/fs/cgroup/memory
check "systemd re-executed, to take it up" systemctl daemon-reexec
hog() { systemd-run --wait -q -p MemoryMax=64M -p MemorySwapMax=0 sh -c 'head -c 256M /dev/zero | tail -n 1 >/dev/null'; }
check "without a limit, a process can hold 256 MiB" systemd-run --wait -q sh -c 'head -c 256M /dev/zero | tail -n 1 >/dev/null'
check "MemoryMax=64M is enforced: the same process is killed" bash -c "$(declare -f hog); ! hog"

# --- The unit under MemoryMax= -----------------------------------------------
# The bound for two mounts of a debug build (30 MiB, and per mount cache_mib
# + 55 MiB + 15 MiB + 1.2 KiB per held inode), plus a quarter: the room
# Docs/systemd.md says to leave.
limit_mib=$(awk -v c=$cache -v h=$held 'BEGIN { printf "%d", (30 + 2 * (c + 55 + 15) + h * 1.2 / 1024) * 1.25 }')
mkdir -p "$images" "$m" "$a" /etc/bento /etc/systemd/system/$unit.d
printf '[Service]\nMemoryMax=%dM\nMemorySwapMax=0\n' "$limit_mib" >/etc/systemd/system/$unit.d/memory.conf
check "journalctl --update-catalog" journalctl --update-catalog
# Images written in full now: their pages (the overlay is in RAM) are the
# test's, not the daemon's, as an image on disk would be nobody's.
check "mkfs.xv6 m.img (256 MiB) and p.img (64 MiB)" bash -c "
    head -c 256M /dev/zero >$images/m.img && mkfs.xv6 $images/m.img && head -c 64M /dev/zero >$images/p.img && mkfs.xv6 $images/p.img"
printf '[[mount]]\nimage = "%s"\nmountpoint = "%s"\nmodule = "%s"\ncache_mib = %d\n\n' \
    "$images/m.img" "$m" "$v1" $cache "$images/p.img" "$a" "$v2" $cache >"$config"
check "systemctl daemon-reload" systemctl daemon-reload
check "systemctl start bento-upgraded (/srv/m on 1.0.0, /srv/p on 2.0.0)" timeout 60 systemctl start "$unit"
[ "$(systemctl is-active "$unit")" = active ] || finish
pid=$(prop MainPID)
cg=/sys/fs/cgroup/memory/system.slice/$unit
check "MemoryMax=${limit_mib}M is the unit's limit in the kernel" test "$(cat $cg/memory.limit_in_bytes)" = $((limit_mib << 20))

# --- Memory: files held, a load, a working set 8 times the cache ----------------
coproc HOLD { "$fixtures/hold" "$m/held" "$held" open; }
read -r -t 300 ready <&"${HOLD[0]}"
check "$held files held open ($ready)" test "$ready" = "ready $held"
mkdir "$m/load"
"$fixtures/load" "$m/load" 4 900 >"$tmp/load.out" 2>&1 &
loadpid=$!
walk() {
    local pass i
    for pass in 1 2 3; do
        for i in $(seq 16); do dd if=/dev/urandom of="$m/ws$i" bs=1M count=4 conv=notrunc,fsync status=none || return 1; done
        for i in $(seq 16); do dd if="$m/ws$i" of=/dev/null bs=1M iflag=direct status=none || return 1; done
    done
}
check "a 64 MiB working set written and read back three times under an 8 MiB cache" walk
touch "$m/load/STOP"; wait "$loadpid"; load_rc=$?
note <"$tmp/load.out"
check "the self-checking load saw no error and no wrong byte" test "$load_rc" -eq 0
echo check >&"${HOLD[1]}" && read -r -t 300 answer <&"${HOLD[0]}"
check "each held file still reads and writes its own data ($answer)" test "$answer" = "ok $held"
echo quit >&"${HOLD[1]}"; wait "$HOLD_PID" 2>/dev/null; HOLD_PID=
status_of "$m" | grep -E '^  (kernel|cache) ' | note
peak=$(status_of "$m" | sed -n 's/.* peak \([0-9.]*\) MiB.*/\1/p')
worker_bound=$(awk -v c=$cache -v h=$held 'BEGIN { printf "%.1f", c + 55 + 15 + h * 1.2 / 1024 }')
check "the worker's peak, ${peak:-?} MiB, is within cache_mib + 55 + 15 (debug) MiB + 1.2 KiB per held file ($worker_bound MiB)" \
    awk -v p="${peak:-x}" -v b="$worker_bound" 'BEGIN { exit !(p != "x" && p + 0 <= b + 0) }'
echo "     the unit's cgroup peaked at $(awk '{ printf "%.1f", $1 / 1048576 }' $cg/memory.max_usage_in_bytes) MiB of $limit_mib MiB (page cache included), limit hit $(cat $cg/memory.failcnt) times"
ooms=$(awk '$1 == "oom_kill" { print $2 }' $cg/memory.oom_control)
check "the kernel killed nothing of the unit (oom_kill ${ooms:-?})" test "${ooms:-x}" = 0
check "the unit is the same process, never restarted" test "$(prop MainPID)" = "$pid" -a "$(prop NRestarts)" = 0

# --- Full: files to touch and append to, then the rest in one file ---------
# The journal from here on: the fill meets ENOSPC first.
jmark
start=$cursor
mkdir "$a/pre" && for i in $(seq 0 19); do echo "$i" >"$a/pre/f$i"; done
dd if=/dev/zero of="$a/big" bs=1M status=none 2>/dev/null
for i in 1 2 3; do dd if=/dev/zero of="$a/rest$i" bs=4k status=none 2>/dev/null; done
free=$(stat -f -c '%a * %S' "$a") free=$((free))
check "the disk is full ($free bytes free)" test "$free" -lt $((1 << 20))

# --- The flood: 60 s of calls that meet ENOSPC, two upgrades during it -----
# Each process touches (recorded by 2.0.0), appends (ENOSPC) and makes a
# directory (ENOSPC once the root's blocks are full), and counts failures.
flood() {
    local end=$((SECONDS + seconds)) i=0 failures=0 f
    while [ $SECONDS -lt $end ]; do
        f=$a/pre/f$((i % 20))
        touch "$f" 2>/dev/null || failures=$((failures + 1))
        { printf '%4096s' x >>"$f"; } 2>/dev/null || failures=$((failures + 1))
        mkdir "$a/d-$1-$i" 2>/dev/null || failures=$((failures + 1))
        i=$((i + 1))
    done
    echo "rounds=$i failures=$failures"
}
for p in 1 2 3 4; do flood $p >"$tmp/flood.$p" 2>&1 & done
sleep 20
check "upgrade to 1.0.0 during the flood" timeout 60 bentoctl upgrade "$a" "$v1"
sleep 20
check "upgrade back to 2.0.0 during the flood" timeout 60 bentoctl upgrade "$a" "$v2"
wait
cat "$tmp"/flood.* | note
failures=$(cat "$tmp"/flood.* | sed -n 's/.*failures=\([0-9]*\).*/\1/p' | awk '{ s += $1 } END { print s + 0 }')
check "the flood's calls failed thousands of times ($failures)" test "$failures" -ge 2000
status_counts >"$tmp/during"
note <"$tmp/during"
check "bentoctl status counts requests failed and provenance not recorded" \
    bash -c "grep -q '^requests failed (ENOSPC)' $tmp/during && grep -q '^provenance not recorded (ENOSPC)' $tmp/during"

# --- Space again: the conditions clear within an interval ---------------------
rm -f "$a/big"
check "after freeing space, touch works" touch "$a/pre/f1"
check "after freeing space, a write works" dd if=/dev/zero of="$a/after" bs=64k count=4 status=none
all_cleared() {
    local conds
    conds=$(cut -f1 "$tmp/during" | sort -u | wc -l)
    [ "$conds" -gt 0 ] && [ "$(pressure_sums | awk -F'\t' '{ split($3, k, " "); if (k[3] > 0) n++ } END { print n + 0 }')" -eq "$conds" ]
}
check "journal: every condition cleared within $((seconds + 15)) s" wait_until $((seconds + 15)) all_cleared

# --- The journal ---------------------------------------------------------------
pressure_sums >"$tmp/sums"
status_counts >"$tmp/after"
echo "     in the journal: condition, counts added up, entries began/summaries/cleared"; note <"$tmp/sums"
total=$(unit_entries | grep -c '^MESSAGE=')
entries=$(awk -F'\t' '{ split($3, k, " "); n += k[1] + k[2] + k[3] } END { print n + 0 }' "$tmp/sums")
echo "     the unit wrote $total journal entries in all since the fill began, $entries of them pressure entries"
unit_entries | sed -n 's/^MESSAGE=//p' | cut -c1-150 | note 40
check "a handful of pressure entries: at most 4 per condition ($entries)" \
    test "$entries" -gt 0 -a "$entries" -le $((4 * $(wc -l <"$tmp/sums")))
check "a handful of entries from the unit in all ($total, at most 25)" test "$total" -le 25
check "each condition's entries add up to what bentoctl status counts" \
    bash -c "diff <(cut -f1,2 $tmp/sums) $tmp/after"
check "journald suppressed none of the unit's messages" \
    bash -c "! journalctl -q --no-pager -o export --after-cursor '$start' | grep -qx 'MESSAGE_ID=$suppressed'"
# This container's unit upgraded /srv/p only during the flood.
check "journalctl -u shows the upgrade to 1.0.0 done during the flood" \
    bash -c "journalctl -q --no-pager -u $unit | grep -q '$a upgraded live from 2.0.0 to 1.0.0'"
cursor=$start
check "journal: the upgrade to 1.0.0, with its MESSAGE_ID and fields" jhas -u $upgraded BENTO_MOUNT=$a BENTO_TO_VERSION=1.0.0
check "journal: the upgrade back to 2.0.0" jhas -u $upgraded BENTO_MOUNT=$a BENTO_TO_VERSION=2.0.0
check "no line per operation ('recording provenance failed')" \
    bash -c "! journalctl -q --no-pager -u $unit | grep -q 'recording provenance failed'"

# --- /.provenance: what it could not record is a gap line ----------------------
grep ' op=gap ' "$a/.provenance" | tail -3 | note
gaps=$(grep -c ' op=gap ops=[1-9][0-9]* from=[0-9.]* to=[0-9.]* error=ENOSPC$' "$a/.provenance")
check "/.provenance has gap lines with counts and time ranges ($gaps)" test "$gaps" -ge 1
missed=$(sed -n 's/.* op=gap ops=\([0-9]*\) .*/\1/p' "$a/.provenance" | awk '{ s += $1 } END { print s + 0 }')
counted=$(sed -n 's/^provenance not recorded (ENOSPC)\t//p' "$tmp/after")
check "the gap lines count every operation the journal says was not recorded ($missed, $counted)" test "$missed" = "$counted"
check "/.provenance records again after the gap" bash -c "tail -n 5 '$a/.provenance' | grep -vq ' op=gap '"

ooms=$(awk '$1 == "oom_kill" { print $2 }' $cg/memory.oom_control)
check "the kernel killed nothing of the unit through the flood (oom_kill ${ooms:-?})" test "${ooms:-x}" = 0
check "the daemon never restarted" test "$(prop MainPID)" = "$pid" -a "$(prop NRestarts)" = 0
check "systemctl stop" timeout 60 systemctl stop "$unit"
check "fsck.xv6 -n m.img clean" fsck.xv6 -n "$images/m.img"
check "fsck.xv6 -n p.img clean" fsck.xv6 -n "$images/p.img"
finish
