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
while read -r v; do
    [ -z "$v" ] || ! newer "$v" "$PTX_ISA_MAX" || bad "embeds PTX of ISA $v (CUDA 12.2's driver loads at most $PTX_ISA_MAX)"
done < <(sed -n 's/^\.version \([0-9.]*\).*/\1/p' <<<"$ptx" | sort -uV)
while read -r sm; do
    [ -z "$sm" ] || [ "$sm" -le "$SM_MAX" ] || bad "embeds PTX for sm_$sm (Orin is sm_$SM_MAX)"
done < <(sed -n 's/^\.target sm_\([0-9]*\).*/\1/p' <<<"$ptx" | sort -un)

# The static kernels' fatbins (candle-kernels' libmoe): machine code per GPU architecture, listed
# by cuobjdump (nvidia-cuda-toolkit); each must be for Orin's or an older one.
cubins=""
if command -v cuobjdump >/dev/null; then
    cubins="$(cuobjdump -lelf "$BIN" 2>/dev/null | grep -o 'sm_[0-9]*' | sort | uniq -c | awk '{print $2 "×" $1}' | tr '\n' ' ')"
    [ -n "$cubins" ] || bad "cuobjdump finds no GPU machine code (the static kernels are missing)"
    for sm in $(cuobjdump -lelf "$BIN" 2>/dev/null | grep -o 'sm_[0-9]*' | sort -u | tr -d 'sm_'); do
        [ "$sm" -le "$SM_MAX" ] || bad "carries machine code for sm_$sm (Orin is sm_$SM_MAX)"
    done
fi

if ! OBJDUMP="$OBJDUMP" cross/check-glibc.sh "$BIN" "$GLIBC_MAX" >/dev/null; then fail=1; fi
glibcxx="$("$OBJDUMP" -T "$BIN" | grep -o 'GLIBCXX_[0-9][0-9.]*' | sed 's/GLIBCXX_//' | sort -uV | tail -1 || true)"
if [ -n "$glibcxx" ] && newer "$glibcxx" "$GLIBCXX_MAX"; then
    bad "needs GLIBCXX_$glibcxx (Ubuntu 22.04 has up to GLIBCXX_$GLIBCXX_MAX)"
fi

[ "$fail" = 0 ] || exit 1
echo "check-jetson-cuda: $BIN: AArch64; NEEDED $(tr '\n' ' ' <<<"$needed"); $modules PTX modules, ISA $(sed -n 's/^\.version \([0-9.]*\).*/\1/p' <<<"$ptx" | sort -uV | tr '\n' ' ')targets $(sed -n 's/^\.target \(sm_[0-9a-z]*\).*/\1/p' <<<"$ptx" | sort -u | tr '\n' ' '); cubins ${cubins:-(cuobjdump not installed)}; $(OBJDUMP="$OBJDUMP" cross/check-glibc.sh "$BIN" "$GLIBC_MAX" | sed 's/.*: newest/newest/'); GLIBCXX ${glibcxx:-none}"
