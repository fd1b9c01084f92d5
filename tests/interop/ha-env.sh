#!/usr/bin/env bash
# Makes (once) a Python with Home Assistant's own package for tests/homeassistant.rs and prints
# the path of a command that runs it: `LANDFALL_HA_PYTHON="$(tests/interop/ha-env.sh DIR)"`.
#
# Home Assistant needs Python 3.13, which Debian 12 does not have: DIR becomes a minimal Debian 13
# (trixie) root made by debootstrap, with homeassistant installed there by pip. Its Python is then
# run from the host through the root's own dynamic loader and libraries, so the tests need
# neither chroot nor root. Making DIR needs root (debootstrap, chroot) and the Debian mirror and
# PyPI; about 4 minutes.
set -euo pipefail

ROOT="${1:?usage: tests/interop/ha-env.sh DIR}"
HA_VERSION=2026.2.3
MIRROR="${LANDFALL_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
WRAPPER="$ROOT/ha-python"

if [ -x "$WRAPPER" ] && "$WRAPPER" -c "from homeassistant.const import __version__ as v; assert v == '$HA_VERSION', v" 2>/dev/null; then
    echo "$WRAPPER"
    exit 0
fi
[ "$(uname -m)" = x86_64 ] || { echo "ha-env.sh: made for x86_64 hosts" >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "ha-env.sh: needs debootstrap (apt install debootstrap)" >&2; exit 1; }

if [ ! -x "$ROOT/usr/bin/python3.13" ] || [ ! -x "$ROOT/usr/bin/gcc" ]; then
    rm -rf "$ROOT"
    # gcc and the headers: one of Home Assistant's dependencies (lru-dict) has no 3.13 wheel.
    debootstrap --variant=minbase --include=python3,python3-venv,python3-dev,gcc,libc6-dev,ca-certificates \
        trixie "$ROOT" "$MIRROR" >&2
fi
# The host's certificate bundle and resolver, so that pip in the root reaches PyPI as the host does.
cp /etc/ssl/certs/ca-certificates.crt "$ROOT/etc/ssl/certs/ca-certificates.crt"
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
mount --bind /dev "$ROOT/dev"
mount -t proc proc "$ROOT/proc"
trap 'umount "$ROOT/proc" "$ROOT/dev" 2>/dev/null || true' EXIT
[ -x "$ROOT/opt/ha/bin/pip" ] || chroot "$ROOT" python3 -m venv /opt/ha
chroot "$ROOT" env -u PIP_FIND_LINKS /opt/ha/bin/pip install -q --disable-pip-version-check \
    "homeassistant==$HA_VERSION" >&2

cat > "$WRAPPER" <<'SH'
#!/bin/sh
# Debian 13's Python with Home Assistant, run from the host through the root's own loader.
R="$(dirname "$(readlink -f "$0")")"
exec env PYTHONHOME="$R/usr" PYTHONPATH="$R/opt/ha/lib/python3.13/site-packages" \
    "$R/lib64/ld-linux-x86-64.so.2" --library-path "$R/lib/x86_64-linux-gnu:$R/usr/lib/x86_64-linux-gnu" \
    "$R/usr/bin/python3.13" "$@"
SH
chmod +x "$WRAPPER"
"$WRAPPER" -c "from homeassistant.const import __version__ as v; assert v == '$HA_VERSION', v"
echo "$WRAPPER"
