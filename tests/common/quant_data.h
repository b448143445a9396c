/* quant_data.h — the deterministic inputs the kernel tests share (test_quant.c, test_ops.c): the
 * weight types, a seeded generator and N(0,1) data from it. Seeded, so that every run and every
 * machine sees the same numbers and a measured bound stays measured on the same data. */
#ifndef ELM_TEST_QUANT_DATA_H
#define ELM_TEST_QUANT_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"

/* Every weight type the type table must know. */
enum { ELM_TEST_N_WEIGHT_TYPES = 13 };
extern const enum elm_type elm_test_weight_types[ELM_TEST_N_WEIGHT_TYPES];

/* One generator per process (splitmix64): seed it, then draw. */
void elm_test_rng_seed(uint64_t seed);
uint64_t elm_test_rng_next(void);

/* n samples of N(0,1) (Box-Muller) from the generator seeded with seed. */
void elm_test_fill_normal(float *x, int64_t n, uint64_t seed);

/* malloc that fails the test instead of returning NULL (n 0 allowed). Caller frees. */
void *elm_test_xmalloc(size_t n);

#endif
