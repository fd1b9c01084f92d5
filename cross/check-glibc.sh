#!/usr/bin/env bash
# Fails when an ELF binary needs a GLIBC_ symbol version newer than the given one, naming each
# such symbol; otherwise prints the newest version it needs.
# Usage: cross/check-glibc.sh BINARY MAX_VERSION (e.g. 2.31)
set -euo pipefail
BIN="$1" MAX="$2"
OBJDUMP="${OBJDUMP:-aarch64-linux-gnu-objdump}"
[ -f "$BIN" ] || { echo "check-glibc: $BIN: no such file" >&2; exit 1; }

# objdump -T lines end in "... GLIBC_2.17  memcpy" (the version may sit in parentheses).
versions="$("$OBJDUMP" -T "$BIN" | grep -o 'GLIBC_[0-9][0-9.]*)\{0,1\} \{1,\}[^ ]*$' \
    | sed 's/)//; s/GLIBC_//' | awk '{print $1, $2}')"
[ -n "$versions" ] || { echo "check-glibc: $BIN: no GLIBC_ symbols (not a dynamic glibc binary?)" >&2; exit 1; }
newest="$(echo "$versions" | awk '{print $1}' | sort -uV | tail -1)"
too_new="$(echo "$versions" | while read -r v sym; do
    [ "$(printf '%s\n%s\n' "$v" "$MAX" | sort -V | tail -1)" = "$MAX" ] || echo "$sym@GLIBC_$v"
done | sort -u)"
if [ -n "$too_new" ]; then
    echo "check-glibc: $BIN needs glibc newer than $MAX: $(tr '\n' ' ' <<<"$too_new")" >&2
    exit 1
fi
echo "check-glibc: $BIN: newest GLIBC_ version needed is $newest (limit $MAX)"
