#!/bin/bash
# Under pressure the log stays readable (Docs/pressure.md): a 64 MiB image
# served by xv6fs 2.0.0 (provenance on) is filled, then four processes keep
# touching, appending and making directories on it for 15 s, every one of
# which meets ENOSPC, while the mount is upgraded to 1.0.0 and back, with
# a summary interval of 1.5 s. The daemon's log must hold a handful of
# pressure entries (the first of each condition, a summary per interval,
# the all-clear), not one per request; each condition's entries must add
# up to the count `bentoctl status` shows; the upgrades must be in the log;
# after space is freed every condition is cleared; fsck finds the image
# clean after the daemon stops.
# Usage: Tests/mount/pressure.sh BIN_DIR
set -u
bin=$(cd "${1:?usage: $0 BIN_DIR}" && pwd)
work=$(mktemp -d /dev/shm/bento-pressure.XXXXXX)
chmod 755 "$work"
mnt=$work/mnt sock=$work/control.sock log=$work/daemon.log img=$work/x.img
v1=$bin/libXV6Module.so v2=$bin/libXV6Module2.so
interval=1.5 seconds=15
passed=0 failed=0 daemon=
ok()   { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; }
expect() { local name=$1; shift; if "$@" >/dev/null 2>&1; then ok "$name"; else fail "$name"; fi; }
ctl() { "$bin/bentoctl" --socket "$sock" "$@"; }
cleanup() {
    [ -n "$daemon" ] && kill -TERM "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
    grep -q " $mnt " /proc/self/mountinfo && umount -l "$mnt"
    if [ -n "${KEEP:-}" ]; then echo "     kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
mkdir "$mnt"

"$bin/mkfs.xv6" --size 64M "$img" >/dev/null || { echo "mkfs.xv6 failed"; exit 1; }
BENTO_PRESSURE_INTERVAL=$interval "$bin/bento-upgraded" --image "$img" --mountpoint "$mnt" --module "$v2" \
    --control-socket "$sock" --state-dir "$work/state" >"$log" 2>&1 &
daemon=$!
for _ in $(seq 100); do [ -S "$sock" ] && stat -f "$mnt" 2>/dev/null | grep -q fuse && break; sleep 0.05; done
stat -f "$mnt" 2>/dev/null | grep -q fuse || { echo "the daemon did not come up:"; tail -5 "$log"; exit 1; }

# Files to touch and append to, then the rest of the disk in one file.
mkdir "$mnt/pre" && for i in $(seq 0 19); do echo "$i" >"$mnt/pre/f$i"; done
dd if=/dev/zero of="$mnt/big" bs=1M status=none 2>/dev/null
for i in 1 2 3; do dd if=/dev/zero of="$mnt/rest$i" bs=4k status=none 2>/dev/null; done
free=$(( $(stat -f -c '%a * %S' "$mnt") ))
[ "$free" -lt $((1 << 20)) ] && ok "the disk is full ($free bytes free)" || fail "the disk is full ($free bytes free)"

# The load: each process loops for SECONDS; prints what its calls met.
cat >"$work/load.py" <<'EOF'
import errno, json, os, sys, time
root, seconds, tag = sys.argv[1], float(sys.argv[2]), sys.argv[3]
files = [os.path.join(root, "pre", f"f{i}") for i in range(20)]
met, ops, end = {}, 0, time.monotonic() + seconds
def call(f, *args):
    global ops
    ops += 1
    try:
        return f(*args)
    except OSError as e:
        name = errno.errorcode.get(e.errno, str(e.errno))
        met[name] = met.get(name, 0) + 1
while time.monotonic() < end:
    f = files[ops % len(files)]
    call(os.utime, f)                                   # recorded by 2.0.0
    fd = call(os.open, f, os.O_WRONLY | os.O_APPEND)    # recorded too
    if fd is not None:
        call(os.write, fd, b"x" * 4096)                 # ENOSPC
        call(os.close, fd)
    call(os.mkdir, os.path.join(root, f"d-{tag}-{ops}"))  # ENOSPC once the root is full
print(json.dumps({"ops": ops, "met": met}))
EOF
loads=()
for p in 1 2 3 4; do
    python3 "$work/load.py" "$mnt" "$seconds" "$p" >"$work/load.$p" 2>&1 &
    loads+=($!)
done
sleep 5
out=$(ctl upgrade "$mnt" "$v1" --json 2>&1)
grep -q '"result" *: *"upgraded"' <<<"$out" && ok "upgrade to 1.0.0 during the flood" || { fail "upgrade to 1.0.0 during the flood"; echo "     $out"; }
sleep 5
out=$(ctl upgrade "$mnt" "$v2" --json 2>&1)
grep -q '"result" *: *"upgraded"' <<<"$out" && ok "upgrade back to 2.0.0 during the flood" || { fail "upgrade back to 2.0.0"; echo "     $out"; }
during=$(ctl status)
for pid in "${loads[@]}"; do wait "$pid"; done
enospc=$(cat "$work"/load.[1-4] | python3 -c '
import json, sys
print(sum(json.loads(l)["met"].get("ENOSPC", 0) for l in sys.stdin if l.startswith("{")))')
echo "     the load met ENOSPC $enospc times"
expect "the load met ENOSPC thousands of times" test "${enospc:-0}" -ge 2000

echo "$during" | sed -n '/pressure/,$p' | sed 's/^/     /'
grep -q "^  pressure  " <<<"$during" && grep -q " requests failed (ENOSPC) [0-9]*, last " <<<"$during" \
    && grep -q " provenance not recorded (ENOSPC) [0-9]*, last " <<<"$during" \
    && ok "bentoctl status shows the pressure counters" || { fail "bentoctl status shows the pressure counters"; echo "$during"; }

# Space freed: what failed works again, provenance is recorded again, and
# every condition is cleared within two intervals.
rm -f "$mnt/big"
provenance_before=$(stat -c %s "$mnt/.provenance")
expect "after freeing space, touch works" touch "$mnt/pre/f1"
expect "after freeing space, a write works" dd if=/dev/zero of="$mnt/after" bs=64k count=4 status=none
grown() { for _ in $(seq 20); do [ "$(stat -c %s "$mnt/.provenance")" -gt "$provenance_before" ] && return 0; sleep 0.1; done; return 1; }
expect "provenance is recorded again" grown
status=
for _ in $(seq 50); do
    status=$(ctl status --json)
    python3 -c 'import json, sys; m = json.loads(sys.argv[1])["mounts"][0]; sys.exit(0 if m.get("pressure") and not any(c["ongoing"] for c in m["pressure"]) else 1)' "$status" && break
    sleep 0.2
done
cp "$log" "$work/log.snapshot"
again=$(ctl status --json)

# The log: entries by kind and condition, from their MESSAGE_IDs.
python3 - "$work/log.snapshot" "$status" "$again" "$interval" "$enospc" >"$work/verdict" <<'EOF'
import json, re, sys
log, status, again, interval, enospc = open(sys.argv[1]).read().splitlines(), json.loads(sys.argv[2]), json.loads(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
ids = {"64822f04300e4fc4a282452ab88fad03": "began", "c7312b3ca7bb497bb362a30397ad06f0": "summary",
       "2221c04a903f457fa2a742e65b06fa98": "cleared"}
entries, stray, gaps = [], [], 0
for line in log:
    kind = next((k for i, k in ids.items() if f"message_id={i}" in line), None)
    if kind is None and "xv6fs: provenance recorded again" in line:
        gaps += 1  # xv6fs's own line when a gap in /.provenance ends: one per gap
        continue
    if kind is None:
        if "provenance" in line or "ENOSPC" in line:
            stray.append(line)
        continue
    m = re.search(r"\] (.+?) \((E[A-Z0-9]+)\)(?:: (\d+) in the last|[,:;])", line)
    if not m:
        stray.append(line)
        continue
    entries.append((kind, (m.group(1), m.group(2)), int(m.group(3) or (1 if kind == "began" else 0))))
counted = {(c["condition"], c["error"]): c["count"] for c in status["mounts"][0].get("pressure", [])}
later = {(c["condition"], c["error"]): c["count"] for c in again["mounts"][0].get("pressure", [])}
conditions = sorted({e[1] for e in entries} | set(counted))
print(f"     {len(entries)} pressure entries for {len(conditions)} conditions, the load met ENOSPC {enospc} times")
for c in conditions:
    mine = [e for e in entries if e[1] == c]
    kinds = [e[0] for e in mine]
    print(f"     {c[0]} ({c[1]}): began {kinds.count('began')}, summaries {kinds.count('summary')}, "
          f"cleared {kinds.count('cleared')}; the log adds up to {sum(e[2] for e in mine)}, status says {counted.get(c)}")
print("stray", len(stray))
print(f"     xv6fs's gap-ended lines: {gaps}")
print("gaps", gaps <= [e[0] for e in entries if e[1] == ("provenance not recorded", "ENOSPC")].count("began"))
for line in stray[:5]:
    print("     stray: " + line)
# A handful: per condition, a began and a cleared per episode and a summary
# per interval of the run (about 25 s from the fill to the all-clear).
bound = len(conditions) * (int(30 / interval) + 6)
print("bounded", len(entries) <= bound, bound)
print("fewer", len(entries) * 20 <= enospc)
print("adds-up", bool(counted) and all(sum(e[2] for e in entries if e[1] == c) == counted.get(c) for c in conditions))
print("steady", counted == later)
print("cleared-last", bool(conditions) and all([e[0] for e in entries if e[1] == c][-1:] == ["cleared"] for c in conditions))
print("each-begins-once-per-episode", all(
    [e[0] for e in entries if e[1] == c and e[0] != "summary"] == ["began", "cleared"] * [e[0] for e in entries if e[1] == c].count("began")
    for c in conditions))
print("provenance-twice", [e[0] for e in entries if e[1] == ("provenance not recorded", "ENOSPC")].count("began") >= 2)
print("kinds", " ".join(sorted({f"{c[0]}/{c[1]}" for c in conditions})))
EOF
grep '^     ' "$work/verdict"
verdict() { grep -q "^$1 True" "$work/verdict"; }
expect "no per-request lines: every line about ENOSPC or provenance is a pressure entry" grep -q "^stray 0$" "$work/verdict"
expect "xv6fs logs at most one line per gap in /.provenance" verdict gaps
expect "a handful of pressure entries: each condition's first, a summary per interval, the all-clear" verdict bounded
expect "the pressure entries are fewer than a twentieth of the failures" verdict fewer
expect "each condition's entries add up to the count bentoctl status shows" verdict adds-up
expect "the counts stay put once cleared" verdict steady
expect "every condition's last entry is its all-clear, after the space was freed" verdict cleared-last
expect "each condition begins once per episode, and each episode ends cleared" verdict each-begins-once-per-episode
expect "provenance failures began again after the upgrade back to 2.0.0 (the 1.0.0 stretch cleared them)" verdict provenance-twice
expect "both conditions counted: requests failed and provenance not recorded" \
    bash -c "grep '^kinds' '$work/verdict' | grep -q 'provenance not recorded/ENOSPC' && grep '^kinds' '$work/verdict' | grep -q 'requests failed/ENOSPC'"
expect "no line per operation ('recording provenance failed')" test "$(grep -c 'recording provenance failed' "$log")" -eq 0
expect "the upgrades are in the log" test "$(grep -c 'upgraded live from' "$log")" -eq 2

kill -TERM "$daemon"; wait "$daemon"; status=$?; daemon=
expect "the daemon stopped cleanly" test "$status" -eq 0
if "$bin/fsck.xv6" -n "$img" >"$work/fsck.out" 2>&1; then ok "fsck.xv6: clean"; else fail "fsck.xv6: clean"; tail -3 "$work/fsck.out"; fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
