# aarch64-linux-gnu.cmake — cross-compiles elm for 64-bit ARM Linux with Debian's cross toolchain
# (gcc-aarch64-linux-gnu) against the arm64 multiarch libraries (scripts/deps-arm64.sh installs
# both), and runs what it builds under qemu's user-mode emulator, so that ctest works unchanged:
#   cmake -S . -B build/arm64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake
# The baseline is ARMv8.0-A: the dotprod and i8mm kernels carry their own -march (CMakeLists.txt)
# and are chosen at run time, as the x86 variants are.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(ELM_CROSS_TRIPLE aarch64-linux-gnu)

set(CMAKE_C_COMPILER ${ELM_CROSS_TRIPLE}-gcc)
# Debian multiarch: the arm64 libraries live in /usr/lib/aarch64-linux-gnu, headers in /usr/include
# (shared with the host's), pkg-config files in /usr/lib/aarch64-linux-gnu/pkgconfig.
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/${ELM_CROSS_TRIPLE}/pkgconfig:/usr/share/pkgconfig)
set(ENV{PKG_CONFIG_PATH} "")
set(CMAKE_LIBRARY_ARCHITECTURE ${ELM_CROSS_TRIPLE})

# qemu-user needs the target's dynamic loader and libc, and both must come from the same glibc
# build: ld.so and libc.so.6 share a private interface (GLIBC_PRIVATE) that may change between
# Debian revisions. "-L /" runs the multiarch runtime (libc6:arm64: /lib/ld-linux-aarch64.so.1
# and /lib/aarch64-linux-gnu, the one libzmq:arm64 and the other libraries were built against).
# Not "-L /usr/aarch64-linux-gnu": that takes the cross package's ld.so (libc6-arm64-cross, an
# older revision), which then finds libc.so.6 through the host's ld.so.cache in the multiarch
# directory; that pair spins forever as soon as a second thread runs (docs/arm64.md).
# QEMU_CPU (environment) picks the emulated core; scripts/test-arm64.sh sets "max", which has
# dotprod and i8mm, so every variant runs.
find_program(ELM_QEMU NAMES qemu-aarch64-static qemu-aarch64 REQUIRED)
set(CMAKE_CROSSCOMPILING_EMULATOR ${ELM_QEMU};-L;/)

set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
