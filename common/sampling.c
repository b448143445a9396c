/* sampling.c — the sampling defaults and ranges (see sampling.h). */
#include <errno.h>
#include <math.h>
#include <stdbool.h>

#include "common/sampling.h"

void elm_sampling_default(struct elm_sampling *s)
{
    *s = (struct elm_sampling){
        .temp = 0.8f,
        .top_k = 40,
        .top_p = 0.95f,
        .min_p = 0.05f,
        .repeat_penalty = 1.0f,
        .repeat_last_n = 64,
        .seed = ELM_SEED_RANDOM,
    };
}

int elm_sampling_check(const struct elm_sampling *s)
{
    /* Each test is written so that NaN fails it. */
    bool ok = isfinite(s->temp) && s->temp >= 0 && s->top_k >= 0 && s->top_p >= 0 &&
              s->top_p <= 1 && s->min_p >= 0 && s->min_p <= 1 && isfinite(s->repeat_penalty) &&
              s->repeat_penalty > 0 && s->repeat_last_n >= 0;
    return ok ? 0 : -EINVAL;
}
