#!/usr/bin/env bash
# Builds part of the test suite for aarch64 (glibc 2.31, as the release binary) and runs it under
# qemu-aarch64: the library's unit tests, the classifier against the transformers+peft reference
# fixtures, BLIP-2 and image preprocessing against transformers, the CLI through the real
# (emulated) binary, and the daemon over a real mosquitto (a host binary; only the test process
# is emulated). Left out: classifier_minilm (real weights,
# far too slow emulated) and the tests of host tools (systemd_unit, models_pull).
# The release profile is used so these share the compiled dependencies of build-aarch64.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
source cross/env-aarch64.sh

TESTS=(--lib --test classifier_reference --test cli_classifier --test daemon_classify
    --test blip2_reference --test imaging_reference)
echo "testing $ZIG_TARGET under $CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER: ${TESTS[*]}" >&2
cargo-zigbuild test --release --locked --target "$ZIG_TARGET" "${TESTS[@]}" "$@"
