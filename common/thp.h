/* thp.h — whether transparent huge pages can be had, for the memory that asks for them (the
 * daemon's weights, the KV pool). */
#ifndef ELM_COMMON_THP_H
#define ELM_COMMON_THP_H

#include <stdbool.h>

/* True when THP is switched off system-wide ("[never]") or its setting cannot be read; then
 * madvise(MADV_HUGEPAGE) would be accepted but give nothing. */
bool elm_thp_disabled(void);

#endif
