#!/usr/bin/env bash
# CI's checks of a JetPack 6 CUDA binary (cross/build-jetson-cuda.sh), all without a Jetson:
# 1. cross/check-jetson-cuda.sh accepts it;
# 2. that check can fail: the same binary with its PTX relabelled ISA 8.4 (what CUDA 12.4's nvcc
#    writes, and JetPack 6.0's driver refuses) is rejected naming the ISA, and a binary that is
#    not an aarch64 CUDA build (the second argument, e.g. the host's) is rejected too;
# 3. under qemu-aarch64, with the link-time SDK's libraries standing in for JetPack's, the binary
#    starts (every NEEDED soname resolves, every symbol binds: LD_BIND_NOW), `--device cuda`
#    fails with one line naming CUDA, and `--device auto` falls back to the CPU.
# Usage: cross/jetson-cuda-checks.sh JETSON_BINARY [NOT_A_JETSON_BINARY]
set -euo pipefail
BIN="$1" OTHER="${2:-}"
cd "$(dirname "$0")/.."
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
die() { echo "jetson-cuda-checks: $*" >&2; exit 1; }

cross/check-jetson-cuda.sh "$BIN"

python3 - "$BIN" "$WORK/ptx84" <<'PY'
import sys
data = open(sys.argv[1], "rb").read()
old, new = b"\n.version 7.8\n", b"\n.version 8.4\n"
if old not in data:
    sys.exit("no PTX of ISA 7.8 to relabel")
open(sys.argv[2], "wb").write(data.replace(old, new))
PY
if cross/check-jetson-cuda.sh "$WORK/ptx84" 2>"$WORK/ptx84.log"; then
    die "a binary with PTX of ISA 8.4 was accepted"
fi
grep -q "ISA 8.4" "$WORK/ptx84.log" || { cat "$WORK/ptx84.log" >&2; die "the PTX 8.4 refusal does not name the ISA"; }
echo "jetson-cuda-checks: refused as it must be: $(grep 'ISA 8.4' "$WORK/ptx84.log" | sed 's/.*: //')"
if [ -n "$OTHER" ]; then
    if cross/check-jetson-cuda.sh "$OTHER" 2>"$WORK/other.log"; then die "$OTHER was accepted"; fi
    echo "jetson-cuda-checks: $OTHER refused as it must be ($(wc -l <"$WORK/other.log") reasons, e.g. $(head -1 "$WORK/other.log" | sed 's/.*: //'))"
fi

SDK="$(cross/jetpack6-sdk.sh)"
run() { LD_BIND_NOW=1 LD_LIBRARY_PATH="$SDK/lib" timeout 120 qemu-aarch64-static "$BIN" "$@"; }
version="$(run --version)" || die "the binary does not start under qemu-aarch64 with JetPack 6's sonames"
echo "jetson-cuda-checks: starts under qemu-aarch64 (LD_BIND_NOW): $version"
CLASSIFY=(classify --base tests/fixtures/classifier/bases/zh_prefixed --adapter tests/fixtures/classifier/cases/zh_qv/adapter --text "很好")
if run "${CLASSIFY[@]}" --device cuda >"$WORK/cuda.log" 2>&1; then
    die "--device cuda succeeded with no GPU"
fi
grep -qi "cuda" "$WORK/cuda.log" || { cat "$WORK/cuda.log" >&2; die "--device cuda failed without naming CUDA"; }
echo "jetson-cuda-checks: --device cuda without a GPU: $(tail -1 "$WORK/cuda.log")"
run "${CLASSIFY[@]}" --device auto >"$WORK/auto.log" 2>&1 \
    || { cat "$WORK/auto.log" >&2; die "--device auto did not fall back to the CPU"; }
echo "jetson-cuda-checks: --device auto without a GPU: $(tail -1 "$WORK/auto.log")"
