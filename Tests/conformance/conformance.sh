#!/bin/bash
# The conformance kit: the project's checks against any module file,
# through bento-upgraded and a real FUSE mount, knowing nothing of the
# module's insides. Sections, each one report line:
#   posix     files, names, links, permissions, real tools, a remount
#   crash     block writes recorded under a workload (Tests/crash); the image
#             rebuilt at flush cut points, mounted, fsynced data checked
#   state     export/import round trips: upgrades to a copy of the module
#             while files are held open, nothing may change
#   self      upgrades to itself under a self-checking load (Tests/mount/load.c)
#   next      upgrades to the next version and back under the load
#   kill9     kill -9 of the mount's worker under the load, then of the
#             daemon after an fsync: the data must survive
# Usage: Tests/conformance/conformance.sh [OPTIONS] MODULE.so
#   --next NEXT.so     the next version (default: a copy of MODULE, as "self")
#   --under FS.so      MODULE is a layer: stacked over FS.so, which stays as
#                      it is while the layer is upgraded (module-sdk.md, "Layers")
#   --mkfs 'CMD'       makes an empty image: sh runs CMD IMAGE, {size} in CMD
#                      the size (e.g. 'mkfs.xv6 --size {size}'); default: a file of
#                      zeroes, for modules that format at their first mount
#   --image-size N     the image's size (default 256M; 64M for crash images)
#   --fsck 'CMD'       also runs CMD IMAGE after each clean unmount (a crash
#                      image's too, after its recovery mount)
#   --bin DIR          bento-upgraded and bentoctl (default .build/debug)
#   --upgrades N       upgrades per load section (default 30)
#   --cuts N           crash cut points (default 20)
#   --subsets N        at each cut also N random subsets of the writes before
#                      the next flush (default 0: prefixes only, as a device
#                      that writes in order; a module without a journal may
#                      fail these, the template's does)
#   --sections LIST    which to run (default posix,crash,state,self,next,kill9)
# Exit status 0 when every section passed.
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
usage() { sed -n '/^# Usage/,/^# Exit/p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
next= under= mkfs= fsck= size=256M bin=.build/debug upgrades=30 cuts=20 subsets=0 sections=posix,crash,state,self,next,kill9
while [ $# -gt 1 ]; do
    case $1 in
        --next) next=$2 ;; --under) under=$2 ;; --mkfs) mkfs=$2 ;; --fsck) fsck=$2 ;; --image-size) size=$2 ;;
        --bin) bin=$2 ;; --upgrades) upgrades=$2 ;; --cuts) cuts=$2 ;; --subsets) subsets=$2 ;; --sections) sections=$2 ;;
        *) usage ;;
    esac
    shift 2
done
[ $# -eq 1 ] && [ -f "$1" ] || usage
bin=$(cd "$bin" && pwd)
work=$(mktemp -d /dev/shm/bento-conformance.XXXXXX)
chmod 755 "$work"
# The module files as the daemon wants them: root's, written by nobody else.
# Two copies of each, so that an upgrade always goes to another file.
install -m 0644 "$1" "$work/a.so" && install -m 0644 "$1" "$work/a2.so"
install -m 0644 "${next:-$1}" "$work/b.so"
[ -z "$under" ] || install -m 0644 "$under" "$work/under.so"
mnt=$work/mnt sock=$work/control.sock log=$work/daemon.log img=$work/x.img
mkdir "$mnt"
daemon= passed=0 failed=0 report=()

ok()   { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; }
expect() { local name=$1; shift; if "$@" >/dev/null 2>&1; then ok "$name"; else fail "$name"; fi; }
refuse() { local name=$1; shift; if "$@" >/dev/null 2>&1; then fail "$name"; else ok "$name"; fi; }
ctl() { "$bin/bentoctl" --socket "$sock" "$@"; }
mounted() { grep -q " $mnt " /proc/self/mountinfo; }
serving() { mounted && stat -f "$mnt" >/dev/null 2>&1; }

# make_image FILE SIZE: an empty image, by --mkfs or of zeroes.
make_image() {
    rm -f "$1"
    if [ -n "$mkfs" ]; then sh -c "${mkfs//\{size\}/$2} \"\$1\"" sh "$1" >/dev/null
    else truncate -s "$2" "$1"; fi
}
# run_fsck IMAGE: --fsck, if given.
run_fsck() { [ -z "$fsck" ] || sh -c "$fsck \"\$1\"" sh "$1"; }
# start [MODULE [IMAGE]]: serves the image at $mnt, with $preload's environment.
preload=()
start() {
    rm -f "$sock"
    local modules=(--module "${1:-$work/a.so}")
    [ -z "$under" ] || modules+=(--module "$work/under.so")
    env "${preload[@]}" "$bin/bento-upgraded" --image "${2:-$img}" --mountpoint "$mnt" "${modules[@]}" \
        --allow-other --control-socket "$sock" --state-dir "$work/state" >>"$log" 2>&1 &
    daemon=$!
    for _ in $(seq 200); do [ -S "$sock" ] && serving && return 0; kill -0 "$daemon" 2>/dev/null || break; sleep 0.05; done
    echo "     the daemon did not mount; its log ends:"; tail -5 "$log" | sed 's/^/     /'; return 1
}
# stop: SIGTERM (flush, unmount); its exit status.
stop() {
    [ -n "$daemon" ] || return 0
    kill -TERM "$daemon" 2>/dev/null; wait "$daemon"; local status=$?
    daemon=
    mounted && { umount -l "$mnt"; status=99; }
    return $status
}
cleanup() {
    [ -n "${loadpid:-}" ] && kill "$loadpid" 2>/dev/null
    stop
    mounted && umount -l "$mnt"
    if [ -n "${KEEP:-}" ]; then echo "     kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# section NAME: runs section_NAME, then one report line with its counts.
section() {
    local p0=$passed f0=$failed t0=$SECONDS
    extra=
    echo "== $1"
    rm -rf "$work/state"; make_image "$img" "$size"
    "section_$1"
    stop || fail "$1: clean stop"
    local p=$((passed - p0)) f=$((failed - f0))
    report+=("$(printf '%-6s %-4s %3d passed, %d failed, %3d s%s' "$1" "$([ $f -eq 0 ] && echo pass || echo FAIL)" \
        $p $f $((SECONDS - t0)) "${extra:+; $extra}")")
}
clean_stop() {  # clean_stop LABEL: stop, then --fsck
    stop; expect "$1: clean unmount" test $? -eq 0
    [ -z "$fsck" ] || expect "$1: fsck clean" run_fsck "$img"
}
version() { ctl status --json | grep -o '"version" *: *"[^"]*"' | head -1 | sed 's/.*"\([^"]*\)"$/\1/'; }
upgrade() {  # upgrade MODULE: 0 if upgraded, else prints the answer
    local out; out=$(ctl upgrade "$mnt" "$1" --json 2>&1)
    echo "$out" > "$work/answer"
    grep -q '"result" *: *"upgraded"' <<<"$out" && return 0
    echo "     upgrade to ${1##*/}: $(grep -E '"(result|error)"' <<<"$out" | tr -s ' ' | paste -sd ' ' | head -c 300)"; return 1
}

cc -O2 -pthread -o "$work/load" "$here/mount/load.c" || exit 1
cc -O2 -o "$work/hold" "$here/mount/hold.c" || exit 1
for tool in workload crashimages check; do cc -O2 -pthread -o "$work/$tool" "$here/crash/$tool.c" || exit 1; done
cc -shared -fPIC -O2 -o "$work/record.so" "$here/crash/record.c" -ldl -lpthread || exit 1

section_posix() {
    start || { fail "posix: mount"; return; }
    cd "$mnt"
    printf 'hello\n' > f && printf 'world\n' >> f
    expect "create, write and append" test "$(cat f)" = "$(printf 'hello\nworld')"
    head -c 300000 /dev/urandom > r && cp r "$work/r"
    expect "300 KB read back" cmp r "$work/r"
    truncate -s 1000 r && truncate -s 5000 r
    expect "truncate shrinks" test "$(stat -c %s r)" = 5000
    expect "regrown tail reads as zeroes" cmp <(head -c 1000 "$work/r"; head -c 4000 /dev/zero) r
    dd if=/dev/urandom of=sparse bs=4096 count=1 seek=65536 status=none
    expect "sparse file has its size" test "$(stat -c %s sparse)" = $((65537 * 4096))
    expect "hole reads as zeroes" cmp <(head -c 8192 /dev/zero) <(dd if=sparse bs=4096 skip=1000 count=2 status=none)
    mkdir -p a/b c && echo one > a/x && echo two > c/y
    mv a/x c/y
    expect "rename over an existing file" test "$(cat c/y)" = one -a ! -e a/x
    mv a/b c/b
    expect "rename a directory across directories" test -d c/b -a ! -e a/b
    expect "directory link counts follow" test "$(stat -c %h c)" = 3 -a "$(stat -c %h a)" = 2
    ln c/y hard && ln -s c/y soft
    expect "hard link shares the inode" test "$(stat -c %i hard)" = "$(stat -c %i c/y)" -a "$(stat -c %h c/y)" = 2
    expect "symlink resolves" test "$(readlink soft)" = c/y -a "$(cat soft)" = one
    refuse "rmdir of a non-empty directory" rmdir c
    expect "rmdir of an empty directory" rmdir c/b
    expect "O_EXCL refuses an existing file" bash -c 'set -C; ! { : > f; } 2>/dev/null'
    head -c 2000000 /dev/urandom > big && cp big "$work/big"
    local before; before=$(stat -f -c %a .)
    exec 3<big
    rm big
    expect "unlinked file is gone from its directory" test ! -e big
    expect "unlinked open file still reads" cmp "$work/big" /dev/fd/3
    exec 3<&-
    # Its blocks come back after the last close (the kernel's release may lag).
    local freed=no
    for _ in $(seq 50); do [ "$(stat -f -c %a .)" -gt $((before + 400)) ] && { freed=yes; break; }; sleep 0.1; done
    expect "space comes back after the last close" test $freed = yes
    echo meta > m && chmod 0751 m && chown 1234:5678 m && touch -d '2001-02-03 04:05:06.789012345' m
    stat -c '%a %u %g %y' m > "$work/meta"
    mkdir many && (cd many && seq -f 'entry-%g' 2000 | xargs touch)
    expect "2,000 entries listed" test "$(ls many | wc -l)" = 2000
    expect "statfs answers" stat -f .
    echo secret > private && chmod 600 private && echo public > open && chmod 644 open
    nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
    refuse "non-root cannot read a 0600 file" nobody cat private
    expect "non-root reads a 0644 file" nobody cat open
    refuse "non-root cannot create in a root directory" nobody touch newfile
    tar -C /usr/include -cf - linux | tar -xf -
    expect "tar of /usr/include/linux matches" diff -r /usr/include/linux linux
    cp -a /etc/apt copied
    expect "cp -a matches" diff -r /etc/apt copied
    mkdir repo && cp -a /usr/include/linux repo/ && (cd repo && git init -q && git add -A \
        && git -c user.email=t@example.com -c user.name=t commit -qm import) >/dev/null 2>&1
    expect "git commit and git fsck" bash -c 'cd repo && git log --oneline | grep -q import && git fsck --strict'
    find linux repo -type f -print0 | sort -z | xargs -0 sha256sum > "$work/sums"
    cd /
    clean_stop posix
    start || { fail "posix: mount again"; return; }
    expect "metadata kept across a remount" test "$(stat -c '%a %u %g %y' "$mnt/m")" = "$(cat "$work/meta")"
    expect "checksums equal after a remount" bash -c "cd '$mnt' && sha256sum --quiet -c '$work/sums'"
    clean_stop "posix, remounted"
}

section_crash() {
    # A workload on a fresh image with every block write and flush recorded.
    make_image "$work/c.img" 64M
    cp "$work/c.img" "$work/c.base"
    mkdir "$work/model"
    local seed=$(( (RANDOM << 15) | RANDOM ))
    preload=(LD_PRELOAD="$work/record.so" BENTO_RECORD_IMAGE="$work/c.img" BENTO_RECORD_LOG="$work/c.rec")
    start "$work/a.so" "$work/c.img"; local up=$?
    preload=()
    [ $up -eq 0 ] || { fail "crash: mount with recording"; return; }
    expect "workload (seed $seed) succeeds" "$work/workload" "$mnt" "$work/model" "$work/oplog" "$seed" 30 100
    stop; expect "clean unmount after the workload" test $? -eq 0
    local flushes; flushes=$("$work/crashimages" info "$work/c.rec" | awk '{ print $4 }')
    "$work/crashimages" build "$work/c.base" "$work/c.rec" "$flushes" all "$work/replayed.img" >/dev/null
    expect "the record log replays to the final image" cmp "$work/replayed.img" "$work/c.img"
    # Cuts spread over the flushes; at each, the image with none and with
    # all of the writes before the next flush: a prefix of the device's writes.
    local k subset out deadline durable=0 images=0 problems
    for k in $(for ((j = 0; j < cuts; j++)); do echo $(( j * flushes / (cuts - 1) )); done | uniq); do
        for subset in none all $(for ((r = 1; r <= subsets; r++)); do echo $((seed % 100000 * 1000 + k * 10 + r)); done); do
            out=$("$work/crashimages" build "$work/c.base" "$work/c.rec" "$k" $subset "$work/cut.img") \
                || { fail "cut $k/$flushes $subset: crashimages"; continue; }
            read -r _ deadline _ _ <<<"$out"
            images=$((images + 1)) problems=
            if start "$work/a.so" "$work/cut.img" >/dev/null; then
                out=$(timeout 60 "$work/check" "$mnt" "$work/model" "$work/oplog" "$deadline") || problems+="$out "
                durable=$((durable + $(sed -n 's/^checked //p' <<<"$out" | head -1)))
            else
                problems+="not mounted: $(tail -1 "$log") "
            fi
            stop || problems+="unclean stop "
            [ -z "$fsck" ] || run_fsck "$work/cut.img" >/dev/null 2>&1 || problems+="fsck "
            if [ -z "$problems" ]; then ok "cut $k/$flushes $subset"; else fail "cut $k/$flushes $subset: $problems"; fi
        done
    done
    extra="$images crash images of $flushes flushes, $durable fsynced files checked"
}

# hold_start N: N files held open in $mnt/held; hold_check: each still works.
hold_start() {
    coproc HOLD { "$work/hold" "$mnt/held" "$1" open; }
    read -r -t 120 ready <&"${HOLD[0]}"
    expect "$1 files held open" test "$ready" = "ready $1"
    held=$1
}
hold_check() { echo check >&"${HOLD[1]}" && read -r -t 120 answer <&"${HOLD[0]}" && [ "$answer" = "ok $held" ]; }
hold_stop() { echo quit >&"${HOLD[1]}"; wait "$HOLD_PID"; }

section_state() {
    start || { fail "state: mount"; return; }
    mkdir "$mnt/fixed" && for i in $(seq 100); do seq "$i" > "$mnt/fixed/$i"; done
    ln -s fixed/1 "$mnt/link"
    (cd "$mnt" && ls -liR fixed link; find fixed -type f -exec sha256sum {} +) > "$work/before"
    hold_start 500
    exec 7>>"$mnt/fixed/100"
    local i target rounds=0
    for i in 1 2 3 4 5 6; do
        target=$work/a2.so; [ $((i % 2)) -eq 0 ] && target=$work/a.so
        stat -f -c '%b %f %a %c %d' "$mnt" > "$work/statfs.before"
        upgrade "$target" || { fail "round trip $i: upgraded"; continue; }
        rounds=$((rounds + 1))
        expect "round trip $i: the state was exported and imported" grep -q '"stateFormat"' "$work/answer"
        (cd "$mnt" && ls -liR fixed link; find fixed -type f -exec sha256sum {} +) > "$work/after"
        expect "round trip $i: names, inode numbers, attributes and content unchanged" cmp "$work/before" "$work/after"
        expect "round trip $i: free counts unchanged" test "$(stat -f -c '%b %f %a %c %d' "$mnt")" = "$(cat "$work/statfs.before")"
        expect "round trip $i: each held fd still reads and writes its own file" hold_check
    done
    expect "a file open throughout is still read and written" bash -c "echo more >&7 && tail -1 '$mnt/fixed/100' | grep -q more"
    exec 7>&-
    expect "rollback" ctl rollback "$mnt"
    expect "after the rollback: held fds work" hold_check
    hold_stop
    clean_stop state
    extra="$rounds round trips with $held files held open, state $(grep -o '"stateBytes" *: *[0-9]*' "$work/answer" | grep -o '[0-9]*$') B ($(sed -n 's/.*"stateFormat" *: *"\([^"]*\)".*/\1/p' "$work/answer"))"
}

# upgrades_under_load LABEL A B: $upgrades upgrades alternating B and A
# under a 4-thread load, with files held open.
upgrades_under_load() {
    local label=$1 a=$2 b=$3 i target done=0
    start "$a" || { fail "$label: mount"; return; }
    hold_start 1000
    mkdir "$mnt/load"
    "$work/load" "$mnt/load" 4 300 > "$work/load.out" 2> "$work/load.err" &
    loadpid=$!
    sleep 1
    local versions=$(version)
    for i in $(seq "$upgrades"); do
        target=$b; [ $((i % 2)) -eq 0 ] && target=$a
        upgrade "$target" && done=$((done + 1))
        [ $i -eq 1 ] && versions+=" <-> $(version)"
        sleep 0.2
    done
    touch "$mnt/load/STOP"; wait $loadpid; local status=$?; loadpid=
    expect "$label: $upgrades upgrades, all upgraded" test $done -eq "$upgrades"
    echo "     $(cat "$work/load.out")"; head -3 "$work/load.err" | sed 's/^/     /'
    expect "$label: the load saw no failed call and no wrong byte" test $status -eq 0
    expect "$label: the load did work" test "$(grep -o 'ops=[0-9]*' "$work/load.out" | cut -d= -f2)" -gt 1000
    expect "$label: each of $held held fds still works" hold_check
    hold_stop
    clean_stop "$label"
    extra="$done upgrades $versions, $(grep -o 'ops=[0-9]*' "$work/load.out") by the load"
}
section_self() { upgrades_under_load self "$work/a.so" "$work/a2.so"; }
section_next() {
    upgrades_under_load next "$work/a.so" "$work/b.so"
    [ -n "$next" ] || extra+=" (no --next: a copy of the module)"
}

section_kill9() {
    start || { fail "kill9: mount"; return; }
    mkdir "$mnt/load"
    "$work/load" "$mnt/load" 4 300 > "$work/load.out" 2> "$work/load.err" &
    loadpid=$!
    sleep 1
    # The mount's worker: the daemon's child running --worker.
    local kills=0 took=0 w i
    for i in 1 2 3; do
        w=$(pgrep -P "$daemon" -f -- --worker | head -1)
        [ -n "$w" ] && kill -9 "$w" && kills=$((kills + 1))
        sleep 1.5
        # Another worker serves now.
        local n; n=$(pgrep -P "$daemon" -f -- --worker | head -1)
        [ -n "$n" ] && [ "$n" != "$w" ] && took=$((took + 1))
    done
    touch "$mnt/load/STOP"; wait $loadpid; local status=$?; loadpid=
    expect "3 workers killed by kill -9, each replaced by a new one" test $kills -eq 3 -a $took -eq 3
    echo "     $(cat "$work/load.out")"; head -3 "$work/load.err" | sed 's/^/     /'
    expect "through the worker kills the load saw no failed call and no wrong byte" test $status -eq 0
    # The daemon itself: what fsync returned for survives, on the next mount.
    head -c 1000000 /dev/urandom > "$mnt/durable" && sync "$mnt/durable" && cp "$mnt/durable" "$work/durable"
    mkdir "$mnt/dir" && echo named > "$mnt/dir/f" && sync "$mnt/dir/f" "$mnt/dir"
    kill -9 "$daemon"; wait "$daemon" 2>/dev/null; daemon=
    refuse "a killed daemon leaves a dead mount" stat "$mnt/durable"
    umount -l "$mnt" 2>/dev/null
    start || { fail "kill9: mount after kill -9"; return; }
    expect "fsynced data survives kill -9" cmp "$mnt/durable" "$work/durable"
    expect "an fsynced name survives kill -9" test "$(cat "$mnt/dir/f")" = named
    expect "the load's files read back after kill -9" bash -c "ls -R '$mnt/load' >/dev/null"
    clean_stop kill9
    extra="$kills worker kills under $(grep -o 'ops=[0-9]*' "$work/load.out") by the load, 1 daemon kill"
}

for s in ${sections//,/ }; do
    declare -F "section_$s" >/dev/null || { echo "no section $s"; exit 2; }
    section "$s"
done
echo "== conformance of ${1##*/}${under:+ over ${under##*/}}${next:+ (next ${next##*/})}"
printf '%s\n' "${report[@]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
