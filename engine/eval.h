/* eval.h — scoring a model on text the way llama.cpp's llama-perplexity does (docs/compression.md):
 * the text's tokens, cut into chunks of n_ctx evaluated from an empty cache, the first token of
 * each replaced by BOS when the vocabulary adds one, and the second half of each chunk scored.
 *
 * The runner (elm_eval_chunk) gives the logits; what is computed from them lives here too: the
 * negative log-likelihood and perplexity with its standard error (elm_ppl), llama.cpp's
 * quantized base log-probabilities ("kld-base" files) and the KL-divergence statistics against
 * them (elm_kld). `elmctl perplexity`, `imatrix`, `kld` and `distill-data` are built from these.
 */
#ifndef ELM_EVAL_H
#define ELM_EVAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "engine/model.h"

/* The tokens of a text as llama-perplexity makes them: one trailing '\n' dropped, BOS as the
 * vocabulary asks, control-token text kept as text. *ids is malloc'ed (caller frees). */
int elm_eval_tokenize(const struct elm_model *m, const char *text, size_t len, int32_t **ids,
                      int32_t *n);

/* The first scored position of a chunk (n_ctx / 2) and how many positions are scored: logits at
 * j = first .. n_ctx - 2 against the token at j + 1. */
static inline int32_t elm_eval_first(int32_t n_ctx)
{
    return n_ctx / 2;
}
static inline int32_t elm_eval_n_scored(int32_t n_ctx)
{
    return n_ctx - 1 - n_ctx / 2;
}

struct elm_eval; /* a model, a work area and a cache for one chunk of n_ctx tokens */

/* n_ctx >= 2. kv_type: ELM_TYPE_F16 (llama.cpp's default), F32 or Q8_0. Caller owns *out. */
int elm_eval_create(const struct elm_model *m, int32_t n_ctx, enum elm_type kv_type,
                    struct elm_eval **out);
void elm_eval_destroy(struct elm_eval **e); /* NULL-safe, nulls *e */
int32_t elm_eval_n_ctx(const struct elm_eval *e);
/* The observer of the chunk passes' matmuls (model.h), NULL for none. */
void elm_eval_set_observer(struct elm_eval *e, const struct elm_matmul_observer *o);

/* Evaluates n_ctx tokens at positions 0..n_ctx-1 from an empty cache, in one pass, with
 * tokens[0] replaced by BOS when the vocabulary adds BOS (tokens is not changed). Positions
 * from first on write their logits to logits[(j - first) * n_vocab ...]; first == n_ctx wants
 * none. Returns 0 or the forward pass's error (ELM_ETOKEN for an id out of the vocabulary). */
int elm_eval_chunk(struct elm_eval *e, const int32_t *tokens, int32_t first, float *logits);

/* ---- perplexity ---------------------------------------------------------------------------- */

/* -log p(tok) from one position's logits, as llama-perplexity computes it (max in float,
 * sum of expf in double). */
double elm_eval_nll(const float *logits, int32_t n_vocab, int32_t tok);

struct elm_ppl {
    double nll, nll2; /* sums of nll and nll^2 */
    int64_t count;
};

static inline void elm_ppl_add(struct elm_ppl *p, double nll)
{
    p->nll += nll;
    p->nll2 += nll * nll;
    p->count++;
}
double elm_ppl_value(const struct elm_ppl *p); /* exp(mean nll) */
/* PPL * sqrt((mean nll^2 - mean^2) / (count - 1)); 0 when that variance is not positive. */
double elm_ppl_err(const struct elm_ppl *p);

/* ---- base log-probabilities (llama.cpp's --kl-divergence-base file) ------------------------ */

/* uint16 values per record: 4 (float scale, float min_log_prob) + n_vocab rounded up to even. */
static inline int32_t elm_logprobs_nv(int32_t n_vocab)
{
    return 2 * ((n_vocab + 1) / 2) + 4;
}

/* Quantizes one position's log-softmax into rec (elm_logprobs_nv values) as llama-perplexity
 * --kl-divergence-base does, and returns its nll for tok (max + lse - logit, lse in float). */
double elm_logprobs_encode(const float *logits, int32_t n_vocab, int32_t tok, uint16_t *rec);

/* Writes the header: "_logits_", n_ctx, n_vocab, n_chunk, then the n_chunk * n_ctx tokens as
 * tokenized. Records follow, chunk by chunk (elm_logprobs_write). 0 or -EIO. */
int elm_logprobs_write_header(FILE *f, int32_t n_ctx, int32_t n_vocab, int32_t n_chunk,
                              const int32_t *tokens);
int elm_logprobs_write(FILE *f, const uint16_t *recs, size_t n_values);

struct elm_logprobs_file {
    FILE *f;
    int32_t n_ctx, n_vocab, n_chunk;
    int32_t *tokens; /* [n_chunk * n_ctx] */
};

/* Opens a base file, checking the header and that its size is exactly what the header implies.
 * Returns 0, -errno, -ENOMEM or ELM_EFORMAT with a message in err. */
int elm_logprobs_open(const char *path, struct elm_logprobs_file *lf, char *err, size_t errlen);
/* Reads chunk i's elm_eval_n_scored(n_ctx) records into recs. 0, -EINVAL, -EIO. */
int elm_logprobs_read_chunk(struct elm_logprobs_file *lf, int32_t i, uint16_t *recs);
void elm_logprobs_close(struct elm_logprobs_file *lf);

/* ---- KL-divergence ------------------------------------------------------------------------- */

struct elm_kld {
    double sum_nll, sum_nll2, sum_nll_base, sum_nll_base2, sum_nll_nll_base;
    double sum_kld, sum_kld2, sum_p_diff, sum_p_diff2, sum_p_diff4;
    int64_t n_same_top, count, cap;
    float *kld_values, *p_diff_values; /* [count] every position's KLD and delta-p */
};

/* One position: the evaluated model's logits against the base record rec, target tok.
 * 0 or -ENOMEM. */
int elm_kld_add(struct elm_kld *k, const float *logits, int32_t n_vocab, const uint16_t *rec,
                int32_t tok);
void elm_kld_fini(struct elm_kld *k);

/* A mean and its uncertainty, as llama.cpp's mean_and_uncertainty. */
struct elm_mean_err {
    double val, err;
};

/* What llama-perplexity --kl-divergence prints, in the same units (fractions, not percent). */
struct elm_kld_stats {
    int64_t n;
    struct elm_mean_err ppl_q, ppl_base, ln_ppl_ratio, ppl_ratio, ppl_diff, kld, p_diff, rms_p_diff,
        same_top;
    double cor_ln_ppl; /* correlation of ln PPL(Q) and ln PPL(base) */
    double kld_max, kld_999, kld_990, kld_median, kld_100, kld_050, kld_010, kld_min;
    double dp_max, dp_999, dp_990, dp_950, dp_900, dp_750, dp_median, dp_250, dp_100, dp_050,
        dp_010, dp_001, dp_min;
};

/* The statistics so far. The percentiles need count >= 1 (they are 0 otherwise). 0 or -ENOMEM. */
int elm_kld_stats(const struct elm_kld *k, struct elm_kld_stats *s);

#endif
