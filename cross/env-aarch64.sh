# shellcheck shell=bash disable=SC2034  # sourced: the variables are used by the sourcing script
# Sourced by build-aarch64.sh and test-aarch64.sh: the toolchain for aarch64-unknown-linux-gnu
# with glibc symbol versions held at 2.31 (JetPack 5, Ubuntu 20.04; JetPack 6 has 2.35).
#
# - Rust's aarch64 standard library (cross/rust-aarch64.sh): rustup's (`rustup target add aarch64-unknown-linux-gnu`)
#   when the default toolchain has it; otherwise Debian's rustc-web with libstd-rust-web-dev:arm64
#   (`dpkg --add-architecture arm64`), whose rustc (1.96 in bookworm-security) is newer than our
#   rust-version (1.85).
# - Linking and C code (aws-lc-sys, ...): cargo-zigbuild with zig (PyPI: cargo-zigbuild, ziglang),
#   which links against glibc 2.31 stubs whatever glibc the build machine has, for the target
#   spelled `aarch64-unknown-linux-gnu.2.31`.
# - Running: qemu-aarch64-static (qemu-user-static), with Debian's arm64 libc (libc6:arm64) as the
#   loader and libraries, so no binfmt_misc registration is needed.
# .ci/run installs all of these when missing (see "Building for Jetson" in the README).

CACHE="${LANDFALL_CACHE:-/var/cache/landfall}"
# TRIPLE, RUSTC and bindgen's aarch64 headers.
# shellcheck source=cross/rust-aarch64.sh
source cross/rust-aarch64.sh
GLIBC_MAX=2.31
ZIG_TARGET="$TRIPLE.$GLIBC_MAX"
export CARGO_TARGET_DIR="${AARCH64_TARGET_DIR:-$CACHE/target-aarch64}"
# cargo-zigbuild and zig from PyPI live in their own venv.
export PATH="$CACHE/zigenv/bin:$PATH"


for tool in cargo-zigbuild qemu-aarch64-static aarch64-linux-gnu-objdump; do
    command -v "$tool" >/dev/null || { echo "$tool is missing (see cross/env-aarch64.sh)" >&2; exit 1; }
done

# `cargo test` runs the test binaries through qemu; tests that start the landfall binary
# themselves read LANDFALL_TEST_RUNNER.
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER=qemu-aarch64-static
export LANDFALL_TEST_RUNNER=qemu-aarch64-static
