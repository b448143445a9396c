/* trace.h — timestamps of a request's way through elm, for `elm-bench load`'s first-token
 * breakdown and scripts/serve-trace.sh's pass-by-pass one. Off unless the environment names a file: ELM_TRACE=FILE makes every process that
 * reads it (elmd, elmctl, libelmclient's users) append one line per mark,
 * "<pid> <name> <CLOCK_MONOTONIC ns>", with a single write(2) (O_APPEND keeps lines whole).
 * Off, a mark costs a load and a branch after the first call.
 */
#ifndef ELM_TRACE_H
#define ELM_TRACE_H

#include <stdbool.h>

/* Appends "<pid> <name> <ns>" when tracing is on. Thread-safe. name: no spaces. */
void elm_trace(const char *name);

/* Whether marks are written: lets a caller skip formatting a mark's name. Thread-safe. */
bool elm_trace_is_on(void);

#endif
