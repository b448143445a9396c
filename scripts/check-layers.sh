#!/usr/bin/env bash
# check-layers.sh [BUILD_DIR] — fails when the code leaves the layering of docs/architecture.md.
#
# 1. Includes: every project header is spelled from the repository root ("engine/kv.h",
#    "elm/status.h" for the public ones), and a folder includes only from the folders below it:
#
#      common   <  kernels  <  engine
#      common   <  ipc      <  libclient
#      engine, ipc          <  daemon
#      engine, ipc, libclient  <  cli, bench        (never daemon/)
#      ipc, libclient          <  httpd             (never engine/ or daemon/: a client only)
#      engine, ipc          <  fuzz                 (the libFuzzer targets)
#      include/elm (the public headers) include only each other; tests/ may include anything.
#
# 2. Cycles: no two files may depend on each other, directly or around a loop, neither through
#    includes nor (with BUILD_DIR) through the functions their objects call. A file and its own
#    header are one node. tsort finds the loops.
set -euo pipefail
cd "$(dirname "$0")/.."
export LC_ALL=C # sort and join must agree on the order

declare -A allowed=(
    [common]="common"
    [kernels]="common kernels"
    [engine]="common kernels engine"
    [ipc]="common ipc"
    [libclient]="common ipc libclient"
    [daemon]="common kernels engine ipc daemon"
    [cli]="common kernels engine ipc libclient cli"
    [bench]="common kernels engine ipc libclient bench"
    [httpd]="common ipc libclient httpd"
    [fuzz]="common kernels engine ipc fuzz"
    [tests]="common kernels engine ipc libclient daemon cli bench httpd tests"
    [include]=""
)
folders=(common kernels engine ipc libclient daemon cli bench httpd fuzz include tests)
bad=0
say() { echo "check-layers: $*" >&2; bad=1; }

# node: a source file and its header are one node ("engine/kv.c", "engine/kv.h" -> engine/kv)
node() { local p=${1#include/}; echo "${p%.*}"; }

edges=$(mktemp)
trap 'rm -f "$edges"' EXIT

while IFS= read -r f; do
    top=${f%%/*}
    while IFS= read -r inc; do
        [ -n "$inc" ] || continue
        if [[ $inc != */* ]]; then
            say "$f: #include \"$inc\": spell project headers from the repository root"
            continue
        fi
        itop=${inc%%/*}
        if [ "$itop" = elm ]; then
            [ -f "include/$inc" ] || [ -f "include/$inc.in" ] || say "$f: #include \"$inc\": no such public header"
            echo "$(node "$f") $(node "$inc")" >>"$edges"
            continue
        fi
        if [ ! -f "$inc" ]; then
            say "$f: #include \"$inc\": no such file"
            continue
        fi
        case " ${allowed[$top]} " in
        *" $itop "*) ;;
        *) say "$f: #include \"$inc\": $top/ may not include from $itop/ (docs/architecture.md)" ;;
        esac
        echo "$(node "$f") $(node "$inc")" >>"$edges"
    done < <(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f")
done < <(git ls-files -co --exclude-standard -- '*.c' '*.h' | grep -E "^($(IFS='|'; echo "${folders[*]}"))/")

# tsort prints "tsort: -: input contains a loop:" and the loop's members on stderr.
loops() { # $1: what the edges are
    local out
    out=$(awk '$1 != $2' "$edges" | sort -u | tsort 2>&1 >/dev/null || true)
    if [ -n "$out" ]; then
        say "a cycle through $1:"
        echo "$out" | grep -v 'input contains a loop' | sed 's/^tsort: /    /' >&2
    fi
}
loops "#include"

if [ $# -ge 1 ]; then
    build=$1
    : >"$edges"
    defs=$(mktemp)
    trap 'rm -f "$edges" "$defs"' EXIT
    # Each object of the project's own code (tests excluded) with its source, each source once:
    # build/daemon/CMakeFiles/elmd.dir/elmd_main.c.o is daemon/elmd_main.c; "__/" in an object path is "../".
    declare -A src_of=()
    while IFS= read -r o; do
        rel=${o#"$build"/}
        s=${rel%%CMakeFiles/*}${rel#*.dir/}
        s=$(realpath -m -s --relative-to=. "${s//__/..}")
        s=${s%.o}
        [[ $s == tests/* ]] || src_of[$s]=$o
    done < <(find "$build" -name '*.c.o' -path '*/CMakeFiles/*')
    for src in "${!src_of[@]}"; do
        nm -g --defined-only "${src_of[$src]}" | awk -v n="$(node "$src")" 'NF == 3 {print $3, n}'
    done | sort -u >"$defs"
    for src in "${!src_of[@]}"; do
        nm -u "${src_of[$src]}" | awk -v n="$(node "$src")" '{print $NF, n}'
    done | sort -u | join - "$defs" | awk '$2 != $3 {print $2, $3}' >>"$edges"
    loops "function calls (objects in $build)"
fi

[ $bad -eq 0 ] && echo "check-layers: ok"
exit $bad
