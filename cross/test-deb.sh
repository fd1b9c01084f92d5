#!/usr/bin/env bash
# Installs the amd64 .deb into a clean Debian root (cross/debian-root.sh) and checks what the
# package promises: `landfall --version` runs, the unit, sysusers, tmpfiles, config and manifest
# are in place, the user exists in video and render, the service user can read the config,
# nothing is enabled; an upgrade to a newer revision (and a reinstall of it) keeps a local config
# edit; `dpkg --purge` leaves nothing but the user data (the models under
# /var/lib/landfall/models) and the system user. Given an arm64 .deb as well, checks that it has
# the same files and that its binary runs under qemu-aarch64.
# Usage: cross/test-deb.sh OLD_amd64.deb NEW_amd64.deb [arm64.deb]   (as root: chroot, mount)
set -euo pipefail
cd "$(dirname "$0")/.."
OLD="$(realpath "$1")" NEW="$(realpath "$2")" ARM="${3:+$(realpath "$3")}"

fail() { echo "test-deb: FAIL: $*" >&2; exit 1; }
ok() { echo "test-deb: ok: $*"; }

TARBALL="$(cross/debian-root.sh)"
work="$(mktemp -d)"
root="$work/root"
cleanup() { umount "$root/proc" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
mkdir "$root"
tar -C "$root" -xzf "$TARBALL"
mount -t proc proc "$root/proc"
# No service manager runs in the root (no /run/systemd/system), as during an image build: the
# maintainer scripts must then neither start nor fail.
in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 "$@"; }
# Every path in the root but the package database, logs and the pseudo filesystems.
snapshot() {
    (cd "$root" && find . -xdev \( -path ./proc -o -path ./dev -o -path ./run -o -path ./tmp \
        -o -path ./var/lib/dpkg -o -path ./var/log -o -path ./var/cache/debconf \) -prune -o -print) | sort
}
before="$(snapshot)"
cp "$OLD" "$root/tmp/old.deb"
cp "$NEW" "$root/tmp/new.deb"

# Install.
in_root dpkg -i /tmp/old.deb >"$work/install.log" 2>&1 || { cat "$work/install.log"; fail "dpkg -i $OLD"; }
version="$(in_root landfall --version)" || fail "landfall --version does not run in the root"
old_version="$(dpkg-deb -f "$OLD" Version)"
[ "$version" = "landfall ${old_version%-*}" ] || fail "landfall --version says '$version', the package is $old_version"
ok "installed $old_version; $version"
for f in /usr/bin/landfall /lib/systemd/system/landfall.service /usr/lib/sysusers.d/landfall.conf \
    /usr/lib/tmpfiles.d/landfall.conf /etc/landfall/landfall.toml /usr/share/landfall/manifest.toml \
    /usr/share/doc/landfall/README.md /usr/share/doc/landfall/copyright; do
    [ -f "$root$f" ] || fail "$f is not installed"
done
cmp "$root/lib/systemd/system/landfall.service" systemd/landfall.service || fail "the unit differs from systemd/landfall.service"
ok "binary, unit, sysusers, tmpfiles, config, manifest and docs in place"
# shellcheck disable=SC2016  # dpkg-query's own ${field} syntax
in_root dpkg-query -W -f='${Conffiles}\n' landfall | grep -q '^ /etc/landfall/landfall.toml ' \
    || fail "/etc/landfall/landfall.toml is not a conffile"
groups="$(in_root id -nG landfall)" || fail "no user landfall"
for g in landfall video render; do [[ " $groups " == *" $g "* ]] || fail "landfall is not in $g ($groups)"; done
[ "$(in_root stat -c '%U:%G %a' /etc/landfall/landfall.toml)" = "root:landfall 640" ] \
    || fail "config is $(in_root stat -c '%U:%G %a' /etc/landfall/landfall.toml), want root:landfall 640"
[ "$(in_root stat -c '%U:%G %a' /var/lib/landfall/models)" = "landfall:landfall 750" ] \
    || fail "models dir is $(in_root stat -c '%U:%G %a' /var/lib/landfall/models)"
in_root setpriv --reuid=landfall --regid=landfall --init-groups landfall check-config \
    --config /etc/landfall/landfall.toml >/dev/null || fail "the service user cannot use the config"
ok "user landfall ($groups), config root:landfall 640, models dir landfall 750, check-config as landfall"
enabled="$(in_root systemctl is-enabled landfall.service 2>&1 || true)"
[ "$enabled" = disabled ] || fail "systemctl is-enabled says '$enabled', want disabled"
[ -z "$(find "$root/etc/systemd/system" -name 'landfall*' -print -quit)" ] || fail "something links the unit under /etc/systemd/system"
ok "the unit is installed, not enabled"

# Upgrade, keeping a local edit of the config; then reinstall the same version.
echo '# a local edit' >>"$root/etc/landfall/landfall.toml"
in_root dpkg -i /tmp/new.deb >"$work/upgrade.log" 2>&1 || { cat "$work/upgrade.log"; fail "upgrade to $NEW"; }
new_version="$(dpkg-deb -f "$NEW" Version)"
# shellcheck disable=SC2016
[ "$(in_root dpkg-query -W -f='${Version}' landfall)" = "$new_version" ] || fail "not upgraded to $new_version"
in_root dpkg -i /tmp/new.deb >"$work/reinstall.log" 2>&1 || { cat "$work/reinstall.log"; fail "reinstall of $NEW"; }
grep -q '^# a local edit$' "$root/etc/landfall/landfall.toml" || fail "the upgrade lost the local config edit"
[ "$(in_root stat -c '%U:%G %a' /etc/landfall/landfall.toml)" = "root:landfall 640" ] || fail "the upgrade changed the config's owner or mode"
in_root landfall --version >/dev/null || fail "landfall --version after the upgrade"
enabled="$(in_root systemctl is-enabled landfall.service 2>&1 || true)"
[ "$enabled" = disabled ] || fail "after the upgrade, is-enabled says '$enabled'"
ok "upgraded $old_version -> $new_version and reinstalled: local config edit and modes kept, still disabled"

# Purge: user data stays, the rest goes.
mkdir -p "$root/var/lib/landfall/models/my-adapter" "$root/var/lib/landfall/queue" "$root/var/cache/landfall/cuda"
echo weights >"$root/var/lib/landfall/models/my-adapter/adapter_model.safetensors"
echo pending >"$root/var/lib/landfall/queue/0001.json"
echo jit >"$root/var/cache/landfall/cuda/ComputeCache"
echo key >"$root/etc/landfall/client.key"
in_root dpkg --purge landfall >"$work/purge.log" 2>&1 || { cat "$work/purge.log"; fail "dpkg --purge"; }
after="$(snapshot)"
gone="$(comm -23 <(echo "$before") <(echo "$after"))"
[ -z "$gone" ] || fail "purge removed what was there before the install: $gone"
# What may remain: the models (user data), and the account database's backup copies, which
# systemd-sysusers writes when it adds the user (Debian keeps system users on purge).
left="$(comm -13 <(echo "$before") <(echo "$after") \
    | grep -v -x -e ./var/lib/landfall -e './var/lib/landfall/models' -e './var/lib/landfall/models/.*' \
        -e './etc/passwd-' -e './etc/group-' -e './etc/shadow-' -e './etc/gshadow-' || true)"
[ -z "$left" ] || fail "purge left: $left"
[ -f "$root/var/lib/landfall/models/my-adapter/adapter_model.safetensors" ] || fail "purge removed the user's models"
in_root id landfall >/dev/null || fail "purge removed the system user"
ok "purged: only /var/lib/landfall/models (user data) and the system user remain"

if [ -n "$ARM" ]; then
    [ "$(dpkg-deb -f "$ARM" Architecture)" = arm64 ] || fail "$ARM is not arm64"
    diff <(dpkg-deb -c "$NEW" | awk '{print $NF}') <(dpkg-deb -c "$ARM" | awk '{print $NF}') \
        || fail "the arm64 package's files differ from the amd64 one's"
    mkdir "$work/arm"
    dpkg-deb -x "$ARM" "$work/arm"
    arm_version="$(qemu-aarch64-static "$work/arm/usr/bin/landfall" --version)" || fail "the arm64 binary does not run under qemu"
    ok "arm64 package: same files, $arm_version under qemu-aarch64; depends: $(dpkg-deb -f "$ARM" Depends)"
fi
echo "test-deb: all checks passed"
