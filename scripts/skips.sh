#!/usr/bin/env bash
# skips.sh LOG [LABEL] — lists every skipped test case in a ctest log (LastTest.log, or the file
# of ctest --output-log) with its reason, so a green run says what it did not check.
# A case is cmocka's "[ RUN ] case" ... "[  SKIPPED ] case"; its reason is the last line the
# test printed in between that starts with "SKIP:" (tests/common: ELM_REQUIRE_MODEL, variants.c,
# ...), minus a repeated case name.
set -euo pipefail
log=${1:?usage: skips.sh LOG [LABEL]}
label=${2:-}
[ -f "$log" ] || { echo "skips.sh: no ctest log at $log" >&2; exit 1; }
awk -v label="$label" '
  /^[0-9]+\/[0-9]+ Testing: / { exe = $3; cur = ""; next }
  /^\[ RUN      \] / { cur = substr($0, 14); reason = ""; next }
  /^SKIP: / && cur != "" {
    reason = substr($0, 7)
    if (index(reason, cur ": ") == 1) reason = substr(reason, length(cur) + 3)
    next
  }
  /^\[  SKIPPED \] / {
    name = substr($0, 14)
    if (cur != "" && name == cur) {
      n++
      lines[n] = sprintf("  %s %s: %s", exe, name, reason != "" ? reason : "(the test printed no reason)")
      cur = ""
    }
    next
  }
  END {
    if (n == 0) { printf "=== no test case skipped%s\n", label != "" ? " (" label ")" : ""; exit }
    printf "=== %d skipped test case(s)%s:\n", n, label != "" ? " (" label ")" : ""
    for (i = 1; i <= n; i++) print lines[i]
  }' "$log"
