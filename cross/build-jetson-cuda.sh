#!/usr/bin/env bash
# Builds the JetPack 6 binary: aarch64-unknown-linux-gnu, `--features cuda,v4l2`, for Orin
# (sm_87), against CUDA 12.2's API, and prints its path. cross/check-jetson-cuda.sh checks it.
#
# - Kernels: Debian's nvcc 11.8 (nvidia-cuda-toolkit) writes candle's PTX for sm_87 and
#   compiles its static kernels with the aarch64 g++ as host compiler. A driver refuses PTX of an
#   ISA newer than its own (CUDA_ERROR_UNSUPPORTED_PTX_VERSION); 11.8 writes ISA 7.8, which
#   JetPack 6's CUDA 12.2 driver (ISA up to 8.2) loads. PyPI's CUDA 12.2 nvcc wheel has no nvcc
#   driver program, only ptxas.
# - API: cudarc binds CUDA 12.2 (CUDARC_CUDA_VERSION), whatever nvcc's version.
# - Linking: Debian's aarch64 gcc against the sonames of cross/jetpack6-sdk.sh, with Debian 12's
#   arm64 glibc; cross/check-glibc.sh then holds the symbol versions to 2.35 (Ubuntu 22.04).
# Extra arguments go to cargo.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE="${LANDFALL_CACHE:-/var/cache/landfall}"
# TRIPLE, RUSTC and bindgen's aarch64 headers.
# shellcheck source=cross/rust-aarch64.sh
source cross/rust-aarch64.sh
export CARGO_TARGET_DIR="${JETSON_TARGET_DIR:-$CACHE/target-jetson}"

for tool in nvcc aarch64-linux-gnu-gcc aarch64-linux-gnu-g++ aarch64-linux-gnu-readelf; do
    command -v "$tool" >/dev/null || { echo "$tool is missing (apt-get install nvidia-cuda-toolkit g++-aarch64-linux-gnu binutils-aarch64-linux-gnu)" >&2; exit 1; }
done

SDK="$(cross/jetpack6-sdk.sh)"
NVCC="$(command -v nvcc)"
export CUDA_HOME="$SDK" NVCC CUDA_COMPUTE_CAP=87 CUDARC_CUDA_VERSION=12020
export NVCC_CCBIN=aarch64-linux-gnu-g++
# nvcc 11.8 knows gcc up to 11; Debian 12's cross compiler is gcc 12, which compiles these
# kernels' host side as well.
export NVCC_APPEND_FLAGS="${NVCC_APPEND_FLAGS:+$NVCC_APPEND_FLAGS }-allow-unsupported-compiler"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc CXX_aarch64_unknown_linux_gnu=aarch64-linux-gnu-g++
export AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar

echo "building $TRIPLE --features cuda,v4l2 (CUDA 12.2 API, sm_87) with $("$RUSTC" --version) in $CARGO_TARGET_DIR" >&2
cargo build --release --locked --target "$TRIPLE" --features cuda,v4l2 "$@" >&2
echo "$CARGO_TARGET_DIR/$TRIPLE/release/landfall"
