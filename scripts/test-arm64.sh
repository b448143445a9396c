#!/usr/bin/env bash
# test-arm64.sh — the ARM64 pass (docs/arm64.md): installs the cross toolchain, qemu and the
# arm64 libraries if missing, cross-compiles everything into build/arm64, and runs the tests under
# qemu-aarch64 through ctest (the toolchain file sets CMAKE_CROSSCOMPILING_EMULATOR).
#
# QEMU_CPU=max emulates a core with dotprod and i8mm, so test_simd runs all three ARM variants
# (neon, dotprod, i8mm) against the reference, bit for bit.
# What runs, and what is left out (measured with qemu-aarch64 7.2, Debian 12; docs/arm64.md):
#  - runs: test_simd (every ARM variant, every type and operation), test_proto, test_vocab,
#    test_shm: about 2 minutes.
#  - left out: every test that loads a model and runs the engine (test_model, test_sampler,
#    test_kv, test_batch), forks (test_quant, test_ring, test_session_shm) or starts elmd
#    (integration): under this qemu they hang, busy and without system calls, in glibc's
#    pthread mutex code (elmd: when libzmq creates its first thread), and run into their
#    timeouts; under QEMU_STRACE=1 elmd starts, loads stories260K through the pread fallback
#    (io_uring is ENOSYS under qemu-user) and serves, so the cause is the emulator's, not found
#    yet. test_zoo (24 files x 4 variants) would not fit the budget anyway; test_gguf fails on
#    x86 too (ggml-vocab-dbrx.gguf: duplicate key). bench: timings under emulation mean nothing.
# ELM_ARM64_TESTS overrides the selection (e.g. ELM_ARM64_TESTS="-L integration"). Extra
# arguments go to ctest.
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
read -r -a sel <<<"${ELM_ARM64_TESTS:--R ^test_(simd|proto|vocab|shm)$}"
status=0
(cd build/arm64 && ctest --output-on-failure -j2 "${sel[@]}" "$@") || status=1
end=$(date +%s)
echo "test-arm64: build $((built - start)) s, tests $((end - built)) s" >&2
exit $status
