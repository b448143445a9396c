#!/usr/bin/env bash
# package.sh [-B BUILD_DIR] [-o OUT_DIR] — builds the Debian packages elm, libelmclient0 and
# libelmclient-dev (cmake/package.cmake) with CPack: a release build configured for /usr
# (default build/package, without the tests), then `cpack -G DEB`. The .deb files land in
# OUT_DIR (default BUILD_DIR/debs), and their names are printed. Install them with
#   sudo apt-get install ./elm_*.deb ./libelmclient0_*.deb ./libelmclient-dev_*.deb
set -euo pipefail
cd "$(dirname "$0")/.."
build=build/package
out=
while getopts "B:o:" opt; do
  case "$opt" in
    B) build=$OPTARG ;;
    o) out=$OPTARG ;;
    *) echo "usage: package.sh [-B BUILD_DIR] [-o OUT_DIR]" >&2; exit 2 ;;
  esac
done
out=${out:-$build/debs}
scripts/deps.sh
echo "package: configuring $build for /usr" >&2
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX=/usr -DELM_TESTS=OFF \
  >/dev/null
echo "package: building" >&2
cmake --build "$build" -j"$(nproc)" >/dev/null
mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -f "$out"/*.deb
echo "package: running cpack" >&2
(cd "$build" && cpack -G DEB -B "$out" >/dev/null)
ls "$out"/*.deb
