#!/usr/bin/env bash
# The check for a machine with an NVIDIA GPU, in one call (about 10 minutes on 16 cores, most of
# it the first `--features cuda` build): builds with CUDA, runs the BLIP-2 and classifier fixture
# suites on the GPU (f32 within the same 1e-4 of transformers as on the CPU; f16 and bf16 within
# the bounds the tests state), runs `bench caption` and `bench classify` on the GPU and on the
# CPU of the same machine, and prints one table (also written to $OUT/gpu-check.md when $OUT is
# set, e.g. by the device tool).
#
# LANDFALL_GPU_CHECK_DEVICE=cpu runs every step on the CPU instead, without the cuda feature:
# CI does that (it has no GPU) so that the script itself keeps working. Also:
#   LANDFALL_GPU_CHECK_FEATURES  cargo features (default: cuda; on the CPU: none)
#   LANDFALL_GPU_CHECK_PROFILE   release or dev (default: release; CI: dev, its warm cache)
#   CUDA_COMPUTE_CAP             the GPU's, e.g. 87 for Orin (default: what nvidia-smi says)
set -euo pipefail
cd "$(dirname "$0")/.."

DEVICE="${LANDFALL_GPU_CHECK_DEVICE:-cuda}"
PROFILE="${LANDFALL_GPU_CHECK_PROFILE:-release}"
die() { echo "gpu-check: $*" >&2; exit 1; }
case "$DEVICE" in
    cuda) FEATURES="${LANDFALL_GPU_CHECK_FEATURES-cuda}" ;;
    cpu) FEATURES="${LANDFALL_GPU_CHECK_FEATURES-}" ;;
    *) die "LANDFALL_GPU_CHECK_DEVICE must be cuda or cpu, not $DEVICE" ;;
esac
case "$PROFILE" in
    release) PROFILE_ARGS=(--release); PROFILE_DIR=release ;;
    dev) PROFILE_ARGS=(); PROFILE_DIR=debug ;;
    *) die "LANDFALL_GPU_CHECK_PROFILE must be release or dev, not $PROFILE" ;;
esac
FEATURE_ARGS=()
[ -n "$FEATURES" ] && FEATURE_ARGS=(--features "$FEATURES")
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target/gpu-check}"

MACHINE="$(nproc) cores, $(uname -m)"
if [ "$DEVICE" = cuda ]; then
    command -v nvidia-smi >/dev/null || die "nvidia-smi not found: no NVIDIA driver here"
    command -v nvcc >/dev/null || die "nvcc not found: the cuda feature compiles its kernels with it (CUDA toolkit)"
    if [ -z "${CUDA_COMPUTE_CAP:-}" ]; then
        CUDA_COMPUTE_CAP="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -1 | tr -d '. ')"
    fi
    export CUDA_COMPUTE_CAP
    MACHINE="$MACHINE, $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | head -1), nvcc $(nvcc --version | sed -n 's/.*release \([0-9.]*\).*/\1/p'), sm_$CUDA_COMPUTE_CAP"
fi
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
ROWS="$WORK/rows"
: > "$ROWS"
row() { printf '| %s | %s | %s |\n' "$1" "$2" "$3" >> "$ROWS"; }
elapsed() { echo "$(( $(date +%s) - $1 )) s"; }

# 1. The build: the binary and the two fixture suites.
start=$(date +%s)
cargo build "${PROFILE_ARGS[@]}" "${FEATURE_ARGS[@]}" --locked --bin landfall \
    --test blip2_reference --test classifier_reference >&2
row "build (\`${FEATURES:-no features}\`, $PROFILE)" "-" "ok in $(elapsed "$start")"
BIN="$CARGO_TARGET_DIR/$PROFILE_DIR/landfall"

# 2. The fixture suites on the device: the same assertions as on the CPU.
for suite in blip2_reference classifier_reference; do
    start=$(date +%s)
    log="$WORK/$suite.log"
    if LANDFALL_TEST_DEVICE="$DEVICE" cargo test "${PROFILE_ARGS[@]}" "${FEATURE_ARGS[@]}" --locked \
        --test "$suite" >"$log" 2>&1; then
        result="$(grep -h '^test result' "$log" | tail -1 | sed 's/^test result: //; s/; finished.*//')"
        row "$suite (f32 within 1e-4; f16/bf16 bounds)" "$DEVICE" "$result, $(elapsed "$start")"
    else
        cat "$log" >&2
        row "$suite" "$DEVICE" "FAILED: $(grep -h '^test .* FAILED' "$log" | tr '\n' ' ')"
        FAILED=1
    fi
done

# 3. Benchmarks on the fixtures: the device beside this machine's CPU.
json_field() { python3 -c 'import json,sys; d=json.loads(sys.stdin.read().strip().splitlines()[-1]); print(", ".join(f"{k} {d[k]:.4g}" if isinstance(d[k], float) else f"{k} {d[k]}" for k in sys.argv[1:]))' "$@"; }
devices=("$DEVICE")
[ "$DEVICE" = cuda ] && devices+=(cpu)
for dev in "${devices[@]}"; do
    dtypes=(f32)
    [ "$dev" = cuda ] && dtypes+=(f16)
    for dtype in "${dtypes[@]}"; do
        out="$("$BIN" bench caption --model tests/fixtures/blip2/modern --device "$dev" --dtype "$dtype" \
            --new-tokens 16 --repeats 3 --bandwidth-mib 0)"
        row "bench caption, BLIP-2 fixture, $dtype" "$dev" \
            "$(echo "$out" | json_field vision_qformer_ms prefill_ms decode_tokens_per_s peak_rss_mib rss_after_load_mib)"
        out="$("$BIN" bench classify --base tests/fixtures/classifier/bases/zh_prefixed \
            --adapter tests/fixtures/classifier/cases/zh_qv/adapter --device "$dev" --dtype "$dtype" \
            --batch-sizes 1,16 --seq-len 32 --seconds 2)"
        row "bench classify, zh fixture, $dtype, batch 1 / 16" "$dev" \
            "$(echo "$out" | head -1 | json_field texts_per_s) / $(echo "$out" | tail -1 | json_field texts_per_s peak_rss_mib rss_after_load_mib)"
    done
done

TABLE="$WORK/table.md"
{
    echo "gpu-check on $MACHINE, $(date -u +%Y-%m-%d)"
    echo
    echo "| check | device | result |"
    echo "| --- | --- | --- |"
    cat "$ROWS"
} > "$TABLE"
cat "$TABLE"
if [ -n "${OUT:-}" ]; then
    cp "$TABLE" "$OUT/gpu-check.md"
fi
[ -z "${FAILED:-}" ] || die "a fixture suite failed on $DEVICE (its log is above)"
