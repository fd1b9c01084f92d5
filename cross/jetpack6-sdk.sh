#!/usr/bin/env bash
# Makes the link-time CUDA 12 SDK for the JetPack 6 build (cross/build-jetson-cuda.sh): the
# aarch64 shared libraries the binary links against, under one directory, and prints it.
#
# JetPack 6 installs CUDA 12.2 with these sonames, which is all a dynamically linked binary
# records: libcudart.so.12, libcublas.so.12, libcublasLt.so.12, libnvrtc.so.12, libcurand.so.10
# and the driver's libcuda.so.1. NVIDIA's L4T repository cannot be reached from CI, so the
# libraries come from what can: PyPI's aarch64 `nvidia-*-cu12` wheels (CUDA 12.4, the oldest with
# aarch64 wheels; only their sonames and the CUDA 12.2 API the binary is built against matter)
# and Debian's libcuda1:arm64 (the driver library; on the Jetson, nvidia-l4t-cuda provides it).
# Nothing here is shipped: the .deb depends on JetPack's packages instead.
set -euo pipefail
CACHE="${LANDFALL_CACHE:-/var/cache/landfall}"
SDK="$CACHE/jetpack6-sdk"
WHEELS=(
    nvidia-cuda-runtime-cu12==12.4.127
    nvidia-cublas-cu12==12.4.5.8
    nvidia-cuda-nvrtc-cu12==12.4.127
    nvidia-curand-cu12==10.3.5.147
)
SONAMES=(libcudart.so.12 libcublas.so.12 libcublasLt.so.12 libnvrtc.so.12 libcurand.so.10 libcuda.so.1)

complete() { local s; for s in "${SONAMES[@]}"; do [ -e "$SDK/lib/$s" ] && [ -e "$SDK/lib/${s%%.so*}.so" ] || return 1; done; }
if complete; then echo "$SDK"; exit 0; fi

rm -rf "$SDK.tmp" && mkdir -p "$SDK.tmp/lib" "$SDK.tmp/dl"
# pip: the system Python's, else a venv's (Debian's python3 may come without pip).
PY=python3
if ! python3 -m pip --version >/dev/null 2>&1; then
    [ -x "$CACHE/sdk-venv/bin/python" ] || python3 -m venv "$CACHE/sdk-venv"
    PY="$CACHE/sdk-venv/bin/python"
fi
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 \
    --platform manylinux2014_aarch64 -d "$SDK.tmp/dl" "${WHEELS[@]}" >&2
for whl in "$SDK.tmp"/dl/*.whl; do
    python3 -c 'import sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
for n in z.namelist():
    if "/lib/lib" in n and ".so" in n:
        z.extract(n, sys.argv[2])' "$whl" "$SDK.tmp/dl/x"
done
find "$SDK.tmp/dl/x" -name 'lib*.so*' -exec mv {} "$SDK.tmp/lib/" \;
# The driver library: apt-get download needs no install (and no NVIDIA driver on the builder).
(cd "$SDK.tmp/dl" && apt-get download -q libcuda1:arm64 >&2)
dpkg-deb -x "$SDK.tmp"/dl/libcuda1_*_arm64.deb "$SDK.tmp/dl/cuda"
cp "$(readlink -f "$SDK.tmp"/dl/cuda/usr/lib/aarch64-linux-gnu/nvidia/current/libcuda.so.1)" "$SDK.tmp/lib/libcuda.so.1"
for s in "${SONAMES[@]}"; do
    [ -e "$SDK.tmp/lib/$s" ] || { echo "jetpack6-sdk: $s is not in the downloads" >&2; exit 1; }
    # The linker looks for lib<name>.so; the binary records the soname inside it.
    ln -sf "$s" "$SDK.tmp/lib/${s%%.so*}.so"
done
rm -rf "$SDK.tmp/dl" "$SDK" && mv "$SDK.tmp" "$SDK"
echo "$SDK"
