#!/usr/bin/env bash
# Prints the path of a tarball holding a clean, minimal Debian root (debootstrap --variant=minbase
# plus systemd, as a Debian or Ubuntu machine that runs services has), making it on first use.
# The tarball is cached (LANDFALL_CACHE, default /var/cache/landfall) so CI debootstraps once.
# Usage: cross/debian-root.sh [suite] (default bookworm; amd64, the host's architecture).
set -euo pipefail

SUITE="${1:-bookworm}"
CACHE="${LANDFALL_CACHE:-/var/cache/landfall}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
TARBALL="$CACHE/debroot/$SUITE-amd64-systemd.tar.gz"

if [ ! -s "$TARBALL" ]; then
    command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install debootstrap" >&2; exit 1; }
    mkdir -p "$CACHE/debroot"
    work="$(mktemp -d "$CACHE/debroot/build.XXXXXX")"
    trap 'rm -rf "$work"' EXIT
    echo "debootstrapping $SUITE from $MIRROR into $work (once; cached as $TARBALL)" >&2
    debootstrap --variant=minbase --include=systemd "$SUITE" "$work/root" "$MIRROR" >"$work/log" 2>&1 \
        || { tail -20 "$work/log" >&2; echo "debootstrap failed" >&2; exit 1; }
    rm -rf "$work/root/var/cache/apt/archives/"*.deb
    tar -C "$work/root" -czf "$work/root.tar.gz" .
    mv "$work/root.tar.gz" "$TARBALL"
fi
echo "$TARBALL"
