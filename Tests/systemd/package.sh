#!/bin/bash
# The Debian package under real systemd (run in the container like
# checks.sh, by Tests/systemd/e2e.sh with BENTO_E2E_DEB): `apt install` of
# bento_*.deb, a mount configured and served, written and upgraded; `apt
# remove` stops the service cleanly; a reinstall serves the same data;
# `apt purge` leaves no file of the package behind. The image is the
# user's: it stays through everything.
set -u
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
unit=bento-upgraded.service
here=/usr/local/libexec/bento-test
deb=$(ls "$here"/bento_*_amd64.deb 2>/dev/null | head -1)
images=/var/lib/bento-test config=/etc/bento/bento.toml
m=/srv/p mods=/usr/lib/bento/modules
results=${RESULTS:-/results}
tmp=$(mktemp -d)
passed=0 failed=0 skipped=0
. "$(dirname "$0")/lib.sh"

export DEBIAN_FRONTEND=noninteractive
# The version serving mount $1, from bentoctl status's text.
version_of() { bentoctl status | awk -v m="$1" '$0 == m { want = 1; next } want && $1 == "module" { print $3; exit }'; }
serves() { [ "$(version_of "$1")" = "$2" ]; }
active() { [ "$(systemctl is-active "$unit")" = active ]; }
inactive() { ! systemctl is-active --quiet "$unit"; }
export -f version_of serves is_fuse fs_type
finish() {
    if [ "$failed" -ne 0 ]; then
        { echo "== systemctl status $unit"; systemctl status --no-pager -l "$unit" 2>&1
          echo "== journalctl -u $unit (last 100)"; journalctl -q --no-pager -u "$unit" -n 100 -o short-precise 2>&1
          echo "== dpkg -l bento"; dpkg -l bento 2>&1; echo "== fuse mounts"; fuse_mounts; } >"$results/diagnostics.txt"
    fi
    echo "container: $passed passed, $failed failed, $skipped skipped"
    rm -rf "$tmp"
    [ "$failed" -eq 0 ] && [ "$skipped" -eq 0 ]
    exit
}

# --- Install ----------------------------------------------------------------
echo "     $(systemctl --version | head -1); package ${deb##*/}"
[ -n "$deb" ] || { fail "a package to install in $here"; finish; }
check "nothing of Bento before the install" bash -c '! command -v bento-upgraded && ! test -e /etc/bento'
# The container has no network: the dependencies are in the root already.
check "apt install ./${deb##*/}" apt-get install -y -q "$deb"
for f in /usr/sbin/bento-upgraded /usr/bin/bentoctl /usr/sbin/mkfs.xv6 /usr/sbin/fsck.xv6 /usr/sbin/mount.xv6 \
    $mods/xv6fs-1.0.0.so $mods/xv6fs-2.0.0.so /usr/lib/bento/libswiftCore.so /lib/systemd/system/$unit \
    /usr/lib/systemd/catalog/bento.catalog /usr/lib/tmpfiles.d/bento.conf \
    /usr/share/man/man8/bento-upgraded.8.gz /usr/share/man/man8/bentoctl.8.gz /usr/share/man/man8/mkfs.xv6.8.gz \
    /usr/share/man/man8/fsck.xv6.8.gz /usr/share/man/man8/mount.xv6.8.gz /usr/share/man/man5/bento.toml.5.gz /usr/share/man/man7/bento-modules.7.gz \
    /usr/share/bash-completion/completions/bentoctl /usr/share/zsh/vendor-completions/_bentoctl \
    /usr/share/fish/vendor_completions.d/bentoctl.fish; do
    check "installed $f" test -e "$f"
done
version=${deb##*/bento_}; version=${version%%_*}
check "bento-upgraded --version says $version" test "$(bento-upgraded --version)" = "$version"
check "the unit's documentation is its man page" bash -c "systemctl show -p Documentation --value $unit | grep -q 'man:bento-upgraded(8)'"
check "/etc/bento/bento.toml is a conffile" bash -c "dpkg-query -W -f='\${Conffiles}' bento | grep -q ' /etc/bento/bento.toml '"
check "the conffile serves no mount" bash -c "! grep -q '^\[\[mount\]\]' $config"
check "postinst updated the journal's catalog (journalctl -x knows Bento)" \
    bash -c "journalctl --list-catalog 2>/dev/null | grep -qi bento"
check "the service is enabled and running after the install" bash -c "systemctl is-enabled --quiet $unit && systemctl is-active --quiet $unit"
check "/run/bento exists (tmpfiles)" test -d /run/bento
check "bentoctl status answers, no mount yet" bash -c "bentoctl status && ! bentoctl status | grep -q '^/'"

# --- Configure a mount, serve it, write, upgrade --------------------------
mkdir -p "$images" "$m"
check "mkfs.xv6 p.img" mkfs.xv6 --size 64M "$images/p.img"
printf '\n[[mount]]\nimage = "%s"\nmountpoint = "%s"\nmodule = "%s"\n' "$images/p.img" "$m" "$mods/xv6fs-1.0.0.so" >>"$config"
check "systemctl reload serves $m" bash -c "timeout 60 systemctl reload $unit && serves $m 1.0.0"
check "$m is a FUSE mount" is_fuse "$m"
head -c 3M /dev/urandom >"$tmp/data"
check "write data to $m" bash -c "cp $tmp/data $m/data && mkdir $m/dir && echo kept >$m/dir/note && sync"
check "bentoctl upgrade $m to 2.0.0" timeout 60 bentoctl upgrade "$m" "$mods/xv6fs-2.0.0.so"
check "$m serves 2.0.0 and reads back its data" bash -c "serves $m 2.0.0 && cmp $m/data $tmp/data"
echo "after upgrade" >>"$m/dir/note"
# fsck.xv6 goes with the package: a copy (and its libraries) checks the
# image once the package is gone.
mkdir -p "$tmp/keep/sbin" "$tmp/keep/lib" && cp -a /usr/sbin/fsck.xv6 "$tmp/keep/sbin/" && cp -a /usr/lib/bento "$tmp/keep/lib/"

# --- apt remove: the service stops cleanly --------------------------------
jmark
check "apt remove bento" apt-get remove -y -q bento
check "the service is stopped" inactive
check "$m is unmounted" bash -c "! is_fuse $m"
check "the daemon's stop was clean (journal: stopped)" \
    bash -c "journalctl -q --no-pager -u $unit -o cat | tail -20 | grep -q '^stopped$'"
check "the programs are gone, the conffile stays" bash -c "! test -e /usr/sbin/bento-upgraded && test -e $config"
check "fsck.xv6 -n p.img clean after the remove" "$tmp/keep/sbin/fsck.xv6" -n "$images/p.img"

# --- Reinstall: the same data, served again -------------------------------
check "apt install again" apt-get install -y -q "$deb"
check "the service runs again and serves $m" wait_until 30 serves "$m" 2.0.0
check "the same data after the reinstall" bash -c "cmp $m/data $tmp/data && [ \"\$(cat $m/dir/note)\" = \"\$(printf 'kept\nafter upgrade')\" ]"
# mount(8) finds the package's mount.xv6 (in /usr/sbin) for type xv6.
mkdir -p /srv/q
check "mkfs.xv6 q.img" mkfs.xv6 -q --size 32M "$images/q.img"
check "mount -t xv6 q.img /srv/q" mount -t xv6 "$images/q.img" /srv/q
check "/srv/q serves, as fuse.xv6" bash -c "[ \"\$(fs_type /srv/q)\" = fuse.xv6 ] && echo q >/srv/q/f && [ \"\$(cat /srv/q/f)\" = q ]"
check "umount /srv/q" umount /srv/q

# --- apt purge: nothing of ours left --------------------------------------
# Its files and links; not its directories (/lib is a link to usr/lib here).
dpkg-query -L bento | while read -r f; do [ ! -d "$f" ] && echo "$f"; done >"$tmp/files"
check "the package lists its files ($(wc -l <"$tmp/files"))" test -s "$tmp/files"
check "apt purge bento" apt-get purge -y -q bento
check "the service is gone" bash -c "! systemctl cat $unit"
check "$m is unmounted" bash -c "! is_fuse $m"
left() {
    local f found=
    while read -r f; do [ -e "$f" ] || [ -L "$f" ] && { echo "left: $f"; found=1; }; done <"$tmp/files"
    for f in /etc/bento /usr/lib/bento /run/bento /var/lib/bento /etc/systemd/system/multi-user.target.wants/$unit; do
        [ -e "$f" ] && { echo "left: $f"; found=1; }
    done
    [ -z "$found" ]
}
check "apt purge leaves no file of the package behind" left
check "the image, the user's data, stays" bash -c "test -s $images/p.img && $tmp/keep/sbin/fsck.xv6 -n $images/p.img"
finish
