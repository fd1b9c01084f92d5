# shellcheck shell=bash disable=SC2034  # sourced: the variables are used by the sourcing script
# Sourced by cross/env-aarch64.sh (CPU build, zig linker) and cross/build-jetson-cuda.sh (CUDA
# build, gcc linker): the Rust side of building for aarch64-unknown-linux-gnu.
#
# - RUSTC: a rustc that has the aarch64 standard library: rustup's (`rustup target add
#   aarch64-unknown-linux-gnu`) when the default toolchain has it; otherwise Debian's rustc-web
#   with libstd-rust-web-dev:arm64 (`dpkg --add-architecture arm64`), whose rustc (1.96 in
#   bookworm-security) is newer than our rust-version (1.85).
# - bindgen (V4L2 bindings for cameras) parses the aarch64 headers, not the host's: clang's target
#   plus the arm64 kernel and libc headers that linux-libc-dev:arm64 and libc6-dev:arm64 put under
#   /usr/include/aarch64-linux-gnu.

TRIPLE=aarch64-unknown-linux-gnu

has_std() { # $1: a rustc; true when it has the aarch64 standard library
    local libdir
    libdir="$("$1" --print target-libdir --target "$TRIPLE" 2>/dev/null)" || return 1
    compgen -G "$libdir/libstd-*.rlib" >/dev/null
}
if [ -z "${RUSTC:-}" ]; then
    if has_std rustc; then
        RUSTC="$(command -v rustc)"
    elif [ -x /usr/bin/rustc ] && has_std /usr/bin/rustc; then
        RUSTC=/usr/bin/rustc
    else
        echo "no rustc with the $TRIPLE standard library: rustup target add $TRIPLE, or apt-get install rustc-web libstd-rust-web-dev:arm64" >&2
        exit 1
    fi
fi
export RUSTC

export BINDGEN_EXTRA_CLANG_ARGS_aarch64_unknown_linux_gnu="--target=aarch64-linux-gnu -isystem /usr/include/aarch64-linux-gnu -isystem /usr/include"
