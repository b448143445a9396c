#!/usr/bin/env bash
# tsan.sh [ctest args] — the ThreadSanitizer job: builds the tsan flavour (scripts/build.sh
# tsan) of elmd, elmctl and the daemon and integration tests (which run the client library
# against real daemons), runs them, and counts the data-race reports of every process they
# started (elmd children included: each writes its reports to build/tsan/reports/). The
# suppressions (scripts/tsan.supp) name only uninstrumented third-party libraries; any report
# left fails the job. Run before each release (about six minutes on two cores: not in test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
export ELM_MODELS_DIR=${ELM_MODELS_DIR:-$(cd .. && pwd)/shared/models}
cmake -S . -B build/tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DELM_TSAN=ON >/dev/null
labels='^(daemon|integration)$'
# Left out: test_eval, in-process arithmetic (the pool's threads it uses are checked by every
# other test here) that takes over ten minutes under TSan; test_httpd_abuse, whose check that the
# gateway's RSS stays flat cannot hold under TSan's growing shadow memory (42 -> 93 MB); and
# test_elmd_limits, whose forked group-member child (threads in the parent, setuid, new ZeroMQ
# threads) stops inside TSan's runtime ("dup thread with used id": TSan's fork-without-exec
# limit, not a report).
skip='^(test_eval|test_httpd_abuse|test_elmd_limits)$'
tests=$(cd build/tsan && ctest -N -L "$labels" -E "$skip" | sed -n 's/^ *Test *#[0-9]*: //p')
scripts/build.sh tsan elmd elmctl elm-httpd $tests >/dev/null
reports=$PWD/build/tsan/reports
rm -rf "$reports"
mkdir -p "$reports"
chmod 1777 "$reports" # tests that become another user (a group member) write reports too
# log_path: one file per process; exitcode=0 so a report does not change a test's own result
# (the count below decides); second_deadlock_stack: both stacks of a lock-order report;
# die_after_fork=0: tests fork client processes that start ZeroMQ's threads, which TSan refuses
# by default after a fork of a threaded process (the child's own accesses are still checked).
export TSAN_OPTIONS="suppressions=$PWD/scripts/tsan.supp log_path=$reports/tsan exitcode=0 second_deadlock_stack=1 history_size=7 die_after_fork=0"
# Every thread is elm's own, the compute pool's workers included (common/pool.c hands jobs over
# with C11 atomics, which TSan sees), so all of them are checked.
status=0
(cd build/tsan && ctest --output-on-failure -j2 -L "$labels" -E "$skip" "$@") || status=1
n=$(cat "$reports"/tsan* 2>/dev/null | grep -c '^WARNING: ThreadSanitizer' || true)
echo "tsan: $n reports (build/tsan/reports)" >&2
if [ "$n" -gt 0 ]; then
  grep -h -A3 '^WARNING: ThreadSanitizer' "$reports"/tsan* | head -40 >&2
  status=1
fi
exit $status
