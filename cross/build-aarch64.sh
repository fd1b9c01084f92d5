#!/usr/bin/env bash
# Builds the release binary for aarch64-unknown-linux-gnu (Jetson, JetPack 5 and 6) and fails
# if it needs a glibc symbol newer than 2.31, naming the symbols. Extra arguments go to cargo
# (e.g. --features cuda, on a machine with an aarch64 CUDA toolkit). Prints the binary's path.
set -euo pipefail
cd "$(dirname "$0")/.."
source cross/env-aarch64.sh

echo "building $ZIG_TARGET with $("$RUSTC" --version) in $CARGO_TARGET_DIR" >&2
cargo-zigbuild zigbuild --release --locked --target "$ZIG_TARGET" "$@" >&2
BIN="$CARGO_TARGET_DIR/$TRIPLE/release/landfall"
cross/check-glibc.sh "$BIN" "$GLIBC_MAX" >&2
echo "$BIN"
