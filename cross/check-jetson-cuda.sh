#!/usr/bin/env bash
# Checks a JetPack 6 binary (cross/build-jetson-cuda.sh) without a Jetson, and fails naming
# what would not load there:
# - it is an aarch64 ELF;
# - `readelf -d` NEEDED names only glibc, libstdc++/libgcc and the CUDA 12 sonames JetPack 6
#   installs (and names the CUDA ones it must: a CPU-only binary is not this build);
# - every PTX module it embeds targets at most sm_87 (Orin) and is of ISA at most 8.2, the newest
#   that CUDA 12.2's driver loads (a newer one fails with CUDA_ERROR_UNSUPPORTED_PTX_VERSION);
# - its glibc symbol versions are at most 2.35 and libstdc++'s at most GLIBCXX_3.4.30 (Ubuntu
#   22.04, JetPack 6's base).
# Usage: cross/check-jetson-cuda.sh BINARY
set -euo pipefail
BIN="$1"
cd "$(dirname "$0")/.."
READELF="${READELF:-aarch64-linux-gnu-readelf}" OBJDUMP="${OBJDUMP:-aarch64-linux-gnu-objdump}"
PTX_ISA_MAX=8.2 SM_MAX=87 GLIBC_MAX=2.35 GLIBCXX_MAX=3.4.30
CUDA_SONAMES="libcuda.so.1 libcudart.so.12 libcublas.so.12 libcublasLt.so.12 libnvrtc.so.12 libcurand.so.10"
SYSTEM_SONAMES="libc.so.6 libm.so.6 libdl.so.2 libpthread.so.0 librt.so.1 ld-linux-aarch64.so.1 libgcc_s.so.1 libstdc++.so.6"
REQUIRED="libcuda.so.1 libcudart.so.12 libcublas.so.12"
fail=0
bad() { echo "check-jetson-cuda: $BIN: $*" >&2; fail=1; }
newer() { [ "$1" != "$2" ] && [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | tail -1)" = "$1" ]; } # $1 > $2

[ -f "$BIN" ] || { echo "check-jetson-cuda: $BIN: no such file" >&2; exit 1; }
machine="$("$READELF" -h "$BIN" | sed -n 's/^ *Machine: *//p')"
[ "$machine" = "AArch64" ] || bad "machine is '$machine', not AArch64"

needed="$("$READELF" -d "$BIN" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')"
for lib in $needed; do
    case " $CUDA_SONAMES $SYSTEM_SONAMES " in
        *" $lib "*) ;;
        *) bad "needs $lib, which JetPack 6 does not install" ;;
    esac
done
for lib in $REQUIRED; do
    grep -qx "$lib" <<<"$needed" || bad "does not link $lib (not a CUDA build?)"
done

# PTX text sits in .rodata as written by nvcc; strings splits it into lines.
ptx="$(strings -a -n 6 "$BIN" | grep -E '^\.(version [0-9]+\.[0-9]+|target sm_[0-9]+[a-z]?)( |,|$)' || true)"
modules="$(grep -c '^\.version' <<<"$ptx" || true)"
[ "$modules" -gt 0 ] || bad "embeds no PTX"
isas="$(sed -n 's/^\.version \([0-9.]*\).*/\1/p' <<<"$ptx" | sort -uV)"
targets="$(sed -n 's/^\.target sm_\([0-9]*\).*/\1/p' <<<"$ptx" | sort -un)"
for v in $isas; do
    ! newer "$v" "$PTX_ISA_MAX" || bad "embeds PTX of ISA $v (CUDA 12.2's driver loads at most $PTX_ISA_MAX)"
done
for sm in $targets; do
    [ "$sm" -le "$SM_MAX" ] || bad "embeds PTX for sm_$sm (Orin is sm_$SM_MAX)"
done

# The static kernels' fatbins (candle-kernels' libmoe): machine code per GPU architecture, listed
# by cuobjdump (nvidia-cuda-toolkit); each must be for Orin's or an older one.
cubins="(cuobjdump not installed)"
if command -v cuobjdump >/dev/null; then
    cubin_sms="$(cuobjdump -lelf "$BIN" 2>/dev/null | grep -o 'sm_[0-9]*' | sed 's/sm_//' || true)"
    [ -n "$cubin_sms" ] || bad "cuobjdump finds no GPU machine code (the static kernels are missing)"
    for sm in $(sort -un <<<"$cubin_sms" | tr '\n' ' '); do
        [ "$sm" -le "$SM_MAX" ] || bad "carries machine code for sm_$sm (Orin is sm_$SM_MAX)"
    done
    cubins="$(sort -n <<<"$cubin_sms" | uniq -c | awk '{print "sm_" $2 "×" $1}' | tr '\n' ' ')"
fi

glibc="$(OBJDUMP="$OBJDUMP" cross/check-glibc.sh "$BIN" "$GLIBC_MAX")" || fail=1
glibcxx="$("$OBJDUMP" -T "$BIN" | grep -o 'GLIBCXX_[0-9][0-9.]*' | sed 's/GLIBCXX_//' | sort -uV | tail -1 || true)"
if [ -n "$glibcxx" ] && newer "$glibcxx" "$GLIBCXX_MAX"; then
    bad "needs GLIBCXX_$glibcxx (Ubuntu 22.04 has up to GLIBCXX_$GLIBCXX_MAX)"
fi

[ "$fail" = 0 ] || exit 1
echo "check-jetson-cuda: $BIN: AArch64; NEEDED $(tr '\n' ' ' <<<"$needed"); $modules PTX modules, ISA $(tr '\n' ' ' <<<"$isas")targets sm_${targets//$'\n'/ sm_}; cubins $cubins; ${glibc##*: }; GLIBCXX ${glibcxx:-none}"
