/* quant_data.c — see quant_data.h. */
#include <math.h>
#include <stdlib.h>

#include "tests/common/elm_test.h"
#include "tests/common/quant_data.h"

const enum elm_type elm_test_weight_types[ELM_TEST_N_WEIGHT_TYPES] = {
    ELM_TYPE_F32,  ELM_TYPE_F16,  ELM_TYPE_BF16, ELM_TYPE_Q4_0, ELM_TYPE_Q4_1,
    ELM_TYPE_Q5_0, ELM_TYPE_Q5_1, ELM_TYPE_Q8_0, ELM_TYPE_Q2_K, ELM_TYPE_Q3_K,
    ELM_TYPE_Q4_K, ELM_TYPE_Q5_K, ELM_TYPE_Q6_K,
};

static uint64_t rng_state;

void elm_test_rng_seed(uint64_t seed)
{
    rng_state = seed;
}

uint64_t elm_test_rng_next(void)
{
    /* splitmix64: tiny, and good enough for test data */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double rng_uniform(void) /* (0, 1) */
{
    return ((double)(elm_test_rng_next() >> 11) + 0.5) / 9007199254740992.0;
}

void elm_test_fill_normal(float *x, int64_t n, uint64_t seed)
{
    rng_state = seed;
    for (int64_t i = 0; i < n; i += 2) {
        double r = sqrt(-2.0 * log(rng_uniform())), t = 2.0 * M_PI * rng_uniform();
        x[i] = (float)(r * cos(t));
        if (i + 1 < n)
            x[i + 1] = (float)(r * sin(t));
    }
}

void *elm_test_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    assert_non_null(p);
    return p;
}
