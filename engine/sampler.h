/* sampler.h — choosing the next token from logits: greedy, temperature, top-k, top-p, min-p,
 * repetition penalty, with a seeded generator so that a fixed seed reproduces a run exactly.
 *
 * The chain follows llama.cpp's default order: repetition penalty on the raw logits, then top-k,
 * top-p and min-p on the distribution at temperature 1, then temperature, then a draw. A
 * temperature of 0 is greedy: the argmax of the (penalised) logits, lowest id on ties.
 */
#ifndef ELM_SAMPLER_H
#define ELM_SAMPLER_H

#include <stdint.h>

#include "common/sampling.h" /* struct elm_sampling, its defaults and ranges */

struct elm_sampler;

/* Caller owns *out. The parameters are copied; -EINVAL when elm_sampling_check refuses them. */
int elm_sampler_create(const struct elm_sampling *p, int32_t n_vocab, struct elm_sampler **out);
void elm_sampler_destroy(struct elm_sampler **s);

/* Picks a token. logits (n_vocab) may be modified (penalty applied in place). recent holds the
 * n_recent most recent tokens of the sequence (prompt included) for the repetition penalty. */
int32_t elm_sampler_sample(struct elm_sampler *s, float *logits, const int32_t *recent,
                           int n_recent);

/* Greedy choice alone: index of the largest value, lowest index on ties. */
int32_t elm_argmax(const float *x, int32_t n);

#endif
