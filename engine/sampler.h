/* sampler.h — choosing the next token from logits: greedy, temperature, top-k, top-p, min-p,
 * repetition penalty, with a seeded generator so that a fixed seed reproduces a run exactly.
 *
 * The chain follows llama.cpp's default order: repetition penalty on the raw logits, then top-k,
 * top-p and min-p on the distribution at temperature 1, then temperature, then a draw. A
 * temperature <= 0 is greedy: the argmax of the (penalised) logits, lowest id on ties.
 */
#ifndef ELM_SAMPLER_H
#define ELM_SAMPLER_H

#include <stdint.h>

struct elm_sampling {
    float temp;           /* <= 0: greedy */
    int32_t top_k;        /* <= 0: off */
    float top_p;          /* >= 1: off */
    float min_p;          /* <= 0: off */
    float repeat_penalty; /* 1: off */
    int32_t repeat_last_n;/* how many recent tokens the penalty looks at */
    uint64_t seed;
};

#define ELM_SEED_RANDOM UINT64_MAX /* "pick a seed from the clock" when the sampler is created */

/* llama.cpp's defaults: temp 0.8, top_k 40, top_p 0.95, min_p 0.05, repeat 1.0 over 64, and a
 * seed from the clock. */
void elm_sampling_default(struct elm_sampling *s);
/* Returns 0 or -EINVAL naming nothing: values out of range (NaN, negative top_p...). */
int elm_sampling_check(const struct elm_sampling *s);

struct elm_sampler;

/* Caller owns *out. The parameters are copied. */
int elm_sampler_create(const struct elm_sampling *p, int32_t n_vocab, struct elm_sampler **out);
void elm_sampler_destroy(struct elm_sampler **s);

/* Picks a token. logits (n_vocab) may be modified (penalty applied in place). recent holds the
 * n_recent most recent tokens of the sequence (prompt included) for the repetition penalty. */
int32_t elm_sampler_sample(struct elm_sampler *s, float *logits, const int32_t *recent,
                           int n_recent);

/* Greedy choice alone: index of the largest value, lowest index on ties. */
int32_t elm_argmax(const float *x, int32_t n);

#endif
