# What the checks inside the container share: reporting (ok, fail, skip,
# check), waiting, what the system says of mounts and the unit, and the
# journal since a mark. Sourced by checks.sh and containment.sh, which set
# unit, tmp, passed, failed and skipped first.
ok()   { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; }
skip() { skipped=$((skipped + 1)); echo "skip $1"; }
note() { sed 's/^/     /' | head -"${2:-15}"; }
# check NAME COMMAND...: runs it, its output shown only when it fails.
check() {
    local name=$1; shift
    if "$@" >"$tmp/check.out" 2>&1; then ok "$name"; else fail "$name"; note <"$tmp/check.out"; fi
}
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

# --- What the system says --------------------------------------------------

# The mount ID (first field of mountinfo) of the top-most mount at $1.
mount_id() { awk -v m="$1" '$5 == m { id = $1 } END { print id }' /proc/self/mountinfo; }
# Its file system type, from mountinfo (never touches the mount itself).
fs_type() {
    awk -v m="$1" '$5 == m { for (i = 7; i <= NF; i++) if ($i == "-") t = $(i + 1) } END { print t }' /proc/self/mountinfo
}
is_fuse() { case $(fs_type "$1") in fuse | fuse.*) return 0 ;; *) return 1 ;; esac; }
fuse_mounts() { awk '{ for (i = 7; i <= NF; i++) if ($i == "-" && $(i + 1) ~ /^fuse(\.|$)/) print $5 }' /proc/self/mountinfo; }
no_fuse_mounts() { [ -z "$(fuse_mounts)" ] || { echo "still mounted: $(fuse_mounts)"; return 1; }; }
# findmnt as a user would ask (bounded: a dead FUSE mount can block a stat).
findmnt_fuse() { local t; t=$(timeout 10 findmnt -n -o FSTYPE "$1"); echo "findmnt: '$t'"; [[ $t == fuse* ]]; }
prop() { systemctl show -p "$1" --value "$unit"; }
# Waits up to $2 seconds for the command in the rest to succeed.
wait_until() {
    local deadline=$(($(date +%s) + $1)); shift
    until "$@" >/dev/null 2>&1; do [ "$(date +%s)" -ge "$deadline" ] && return 1; sleep 0.1; done
}
# Writes and reads a file through the mount, bounded in time.
write_read() {
    timeout 20 bash -c 'echo "$2" > "$1" && [ "$(cat "$1")" = "$2" ]' _ "$1" "$2" \
        || { echo "writing and reading $1 failed or hung"; return 1; }
}

# The journal since a mark: `jmark` remembers where it ends now; `jentries
# [-u] ID` prints the entries since then (export format, a blank line after
# each) with MESSAGE_ID=ID, and with -u only those from the unit. The
# matching is done here: journalctl 252 skips the first match when
# --after-cursor is combined with matches.
jmark() { journalctl --sync 2>/dev/null; cursor=$(journalctl -q -n 1 -o export | sed -n 's/^__CURSOR=//p'); }
jentries() {
    local from=
    [ "$1" = -u ] && { from=$unit; shift; }
    journalctl --sync 2>/dev/null
    if [ -n "${cursor:-}" ]; then journalctl -q --no-pager -o export --after-cursor "$cursor"
    else journalctl -q --no-pager -o export; fi |
        awk -v id="$1" -v unit="$from" 'BEGIN { RS = "" }
            { e = "\n" $0 "\n"
              if (index(e, "\nMESSAGE_ID=" id "\n") && (unit == "" || index(e, "\n_SYSTEMD_UNIT=" unit "\n"))) print $0 "\n" }'
}
# jhas [-u] ID FIELD...: an entry since the mark with MESSAGE_ID=ID (from the
# unit, with -u) has every FIELD: a name, or NAME=value for an exact value.
jhas() {
    local u=; [ "$1" = -u ] && { u=-u; shift; }
    local id=$1; shift
    jentries $u "$id" >"$tmp/j"
    awk -v want="$*" 'BEGIN { RS = ""; n = split(want, w, " ") }
        { e = "\n" $0 "\n"; hits = 0
          for (i = 1; i <= n; i++) hits += index(w[i], "=") ? index(e, "\n" w[i] "\n") > 0 : index(e, "\n" w[i] "=") > 0
          if (hits == n) found = 1 }
        END { exit !found }' "$tmp/j" && return 0
    echo "no journal entry MESSAGE_ID=$id${*:+ with $*}${u:+ from $unit} since the mark; entries with that ID:"
    grep -E '^(MESSAGE|BENTO_[A-Z_]*|_SYSTEMD_UNIT|_PID)=' "$tmp/j" | head -20
    echo "the unit's last entries:"; journalctl -q --no-pager -u "$unit" -n 10 -o cat
    return 1
}
# A field's value in the last entry with MESSAGE_ID=$1 since the mark.
jfield() { jentries "$1" | sed -n "s/^$2=//p" | tail -1; }
