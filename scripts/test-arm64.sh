#!/usr/bin/env bash
# test-arm64.sh — the ARM64 pass (docs/arm64.md): installs the cross toolchain, qemu and the
# arm64 libraries if missing, cross-compiles everything into build/arm64, and runs the tests under
# qemu-aarch64 through ctest (the toolchain file sets CMAKE_CROSSCOMPILING_EMULATOR).
#
# QEMU_CPU=max emulates a core with dotprod and i8mm, so test_simd and the per-variant model
# tests run all three ARM variants (neon, dotprod, i8mm). Emulation is 10-50x slower than the
# host, so the pass runs what CI's budget allows (about 15 minutes on 2 cores): the kernel, unit
# and ipc labels (test_simd: every variant bit-identical to the reference; test_model:
# stories260K's golden ids under every variant, F32 and F16 KV).
# Left out, and why:
#  - test_zoo: 24 files under 4 variants, far over the budget under emulation; the ARM variants'
#    bits equal the reference's (test_simd) and the reference's equal the x86 build's
#    (test_quant's digest), which the x86 pass holds to the zoo.
#  - integration: elmd under qemu-aarch64 7.2 (Debian 12) hangs, busy and without system calls,
#    when it creates its first thread (libzmq's), and so do the tests' forked children; under
#    QEMU_STRACE=1 it starts, loads stories260K through the pread fallback (io_uring is ENOSYS
#    under qemu-user) and serves. ELM_ARM64_TESTS="-L integration" runs them anyway.
#  - bench: timings under emulation mean nothing.
# ELM_ARM64_TESTS overrides the ctest selection. Extra arguments go to ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps-arm64.sh
export ELM_MODELS_DIR=${ELM_MODELS_DIR:-$(cd .. && pwd)/shared/models}
export QEMU_CPU=${QEMU_CPU:-max}
# processes the tests start (elmd) find the arm64 loader and libraries here, and are run by
# the emulator (tests/integration/test_elmd_util.h): the host kernel has no binfmt_misc entry
export QEMU_LD_PREFIX=/usr/aarch64-linux-gnu
export ELM_TEST_EMULATOR=${ELM_TEST_EMULATOR:-$(command -v qemu-aarch64-static)}
start=$(date +%s)
cmake -S . -B build/arm64 -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake >/dev/null
cmake --build build/arm64 -j"$(nproc)"
built=$(date +%s)
read -r -a sel <<<"${ELM_ARM64_TESTS:--L kernel|unit|ipc -E ^test_zoo$}"
status=0
(cd build/arm64 && ctest --output-on-failure -j2 "${sel[@]}" "$@") || status=1
end=$(date +%s)
echo "test-arm64: build $((built - start)) s, tests $((end - built)) s" >&2
exit $status
