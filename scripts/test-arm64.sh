#!/usr/bin/env bash
# test-arm64.sh — the ARM64 pass (docs/arm64.md): installs the cross toolchain, qemu and the
# arm64 libraries if missing, cross-compiles everything into build/arm64, and runs the tests under
# qemu-aarch64 through ctest (the toolchain file sets CMAKE_CROSSCOMPILING_EMULATOR).
#
# QEMU_CPU=max emulates a core with dotprod and i8mm, so test_simd runs all three ARM variants
# (neon, dotprod, i8mm) against the reference, bit for bit.
# What runs, and what is left out (measured with qemu-aarch64 7.2, Debian 12; docs/arm64.md):
#  - runs: the engine on real files (test_model's golden ids and test_zoo/test_zoo2 under every
#    ARM variant, test_sampler, test_kv, test_batch, test_gguf*, test_loader, test_vocab), the
#    kernels (test_simd, test_quant), ipc (test_fields, test_proto, test_ring, test_shm,
#    test_session_shm), the daemon's units, and elmd started under the emulator
#    (test_client_fake, test_elmd_basic, test_elmd_fuzz, test_elmd_sessions, and
#    test_elmd_clients: two elmctl processes at once, then elmctl status with the pread
#    fallback and the kernel variant).
#  - left out, for a limit of the emulator: test_ops (its override case re-executes
#    /proc/self/exe, a foreign binary to the host kernel: no binfmt_misc here),
#    test_client_daemon, test_client_cli, test_elmctl_local, test_elmd_batching, test_eval,
#    test_elmd_embed, test_elmd_limits, test_httpd, test_httpd_abuse, test_httpd_chat (they exec elmd, elmctl, elm-httpd or curl
#    directly or through a shell, not through ELM_TEST_EMULATOR; the embeddings, chat rendering
#    and evaluation code run under every ARM variant in test_zoo2, test_chat and test_imatrix),
#    test_chat_daemon, test_elmd_owner and test_elmd_regions (not yet tried under the emulator;
#    the session handover they rely on, a sealed memfd over SCM_RIGHTS with SO_PEERCRED, was
#    checked under qemu-aarch64 7.2 by hand and runs in test_elmd_basic), test_elmd_residency
#    (qemu-user refuses MAP_HUGETLB, EINVAL, and has no io_uring: its hugetlb and O_DIRECT +
#    io_uring cases expect both), bench (timings under emulation mean nothing, and it runs
#    elm-bench through a shell); and for time: test_elmd_kvpool (its exhaustion case computes
#    two 1000-token references in-process, has the daemon generate them too, then re-evaluate a
#    1000-token history: minutes of emulated CPU. With load average 20 on the 2 cores it got
#    through the waits of the exhaustion and the cancel, then the last turn's scaled 100 s bound
#    expired; CPU starvation, not a hang: every process there had ~10% of a core).
#  - qemu-user 7.2 has no futex_waitv (ENOSYS): test_ring skips its two-process futex_waitv
#    part, and elmd's engine polls every 2 ms instead of sleeping on its rings (daemon/step.c).
#  - ELM_TEST_TIME_SCALE (default 5 here) multiplies the daemon tests' hang bounds and alarms
#    (tests/common/elmd_fixture.h): under the emulator on a busy machine the old bounds, not a
#    lost wakeup, made waits return -ETIMEDOUT. No test asserts a duration.
# Threads and forks used to hang here: qemu must run the multiarch glibc (QEMU_LD_PREFIX=/),
# never the cross sysroot's ld.so with the multiarch libc.so.6 (cmake/aarch64-linux-gnu.cmake).
# ELM_ARM64_TESTS overrides the selection (e.g. ELM_ARM64_TESTS="-L integration"). Extra
# arguments go to ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps-arm64.sh
export ELM_MODELS_DIR=${ELM_MODELS_DIR:-$(cd .. && pwd)/shared/models}
export QEMU_CPU=${QEMU_CPU:-max}
export ELM_TEST_TIME_SCALE=${ELM_TEST_TIME_SCALE:-5}
# processes the tests start (elmd) are run by the emulator (tests/common/elmd_fixture.c): the
# host kernel has no binfmt_misc entry. "/" = the multiarch arm64 ld.so and libraries, the same
# glibc build throughout (the toolchain file's -L / for the tests themselves)
export QEMU_LD_PREFIX=/
export ELM_TEST_EMULATOR=${ELM_TEST_EMULATOR:-$(command -v qemu-aarch64-static)}
start=$(date +%s)
cmake -S . -B build/arm64 -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake >/dev/null
cmake --build build/arm64 -j"$(nproc)"
built=$(date +%s)
out="ops|client_daemon|client_cli|elmctl_local|elmd_batching|elmd_residency|elmd_kvpool|bench"
out+="|eval|elmd_embed|elmd_limits|httpd|httpd_abuse|httpd_chat|chat_daemon|elmd_owner|elmd_regions"
read -r -a sel <<<"${ELM_ARM64_TESTS:--E ^test_($out)$}"
status=0
(cd build/arm64 && ctest --output-on-failure -j2 "${sel[@]}" "$@") || status=1
end=$(date +%s)
echo "test-arm64: build $((built - start)) s, tests $((end - built)) s" >&2
exit $status
