/* sampling.h — the sampling parameters of a request, their defaults and their valid ranges:
 * the one definition that the engine's sampler, the daemon's request-record check and
 * libelmclient's elm_request_init()/request check all use. It lives in common/ because
 * libelmclient may not link the engine, and the engine may not depend on ipc/.
 *
 * What each value means (greedy at temp 0, top-k 0 off, top-p 1 off...) is the sampler's
 * business (engine/sampler.h); this file only says which values are allowed.
 */
#ifndef ELM_COMMON_SAMPLING_H
#define ELM_COMMON_SAMPLING_H

#include <stdint.h>

struct elm_sampling {
    float temp;            /* finite, >= 0; 0: greedy */
    int32_t top_k;         /* >= 0; 0: off */
    float top_p;           /* [0, 1]; 1: off */
    float min_p;           /* [0, 1]; 0: off */
    float repeat_penalty;  /* finite, > 0; 1: off */
    int32_t repeat_last_n; /* >= 0: how many recent tokens the penalty looks at */
    uint64_t seed;         /* ELM_SEED_RANDOM: from the clock when the sampler is created */
};

#define ELM_SEED_RANDOM UINT64_MAX /* = ELM_REQUEST_SEED_RANDOM of the public API */

/* llama.cpp's defaults: temp 0.8, top_k 40, top_p 0.95, min_p 0.05, repeat 1.0 over 64, and a
 * seed from the clock. */
void elm_sampling_default(struct elm_sampling *s);

/* Returns 0 when every field is in the range its comment gives, else -EINVAL (NaN is out of
 * every range). */
int elm_sampling_check(const struct elm_sampling *s);

#endif
