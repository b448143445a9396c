/* prune.h — layer pruning: a copy of a GGUF model without some of its blocks (elmctl prune).
 *
 * The kept blocks are renumbered in order (blk.0 ... blk.n-1), <arch>.block_count is set to
 * what is left, and every other key and tensor is copied byte for byte, so the file is a valid
 * model for elm and llama.cpp alike. Which blocks to drop is the caller's choice; the influence
 * score that `elmctl prune` uses to choose (1 - cosine of a block's input and output, averaged
 * over calibration tokens) is accumulated by elm_prune_influence_add.
 */
#ifndef ELM_PRUNE_H
#define ELM_PRUNE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct elm_prune_stats {
    int32_t n_layer_in, n_layer_out;
    uint64_t params_in, params_out; /* elements of every tensor */
    uint64_t bytes_in, bytes_out;   /* file sizes */
};

/* Writes IN without the blocks whose drop[l] is true (drop has n_layer entries; at least one
 * block must stay). Refuses (ELM_EUNSUPPORTED) a file with per-layer metadata arrays, which
 * would need editing too. Returns 0, -errno, ELM_EFORMAT, ELM_EMODEL, ELM_EUNSUPPORTED with a
 * message in err; st filled on success (may be NULL). */
int elm_prune_layers(const char *in, const char *out, const bool *drop, int32_t n_layer,
                     struct elm_prune_stats *st, char *err, size_t errlen);

/* Adds n tokens' block influence: for rows a (a block's input) and b (its output) of n_embd
 * floats, sum += 1 - cos(a_t, b_t) per token, in double. */
void elm_prune_influence_add(double *sum, const float *a, const float *b, int64_t n_embd, int n);

struct elm_eval;
struct elm_model;
struct elm_ppl;
/* Measures the influence of each of m's blocks over n_chunk chunks of tokens evaluated with e
 * (a runner for m, elm_eval_create; its observer is taken for the call and detached after):
 * influence[l] (n_layer entries) = block l's mean 1 - cos(input, output) over every token. The
 * same passes give the chunks' perplexity in *ppl (NULL: not wanted), as `elmctl perplexity`
 * scores it. Returns 0, -ENOMEM or the forward pass's error. */
int elm_prune_measure(struct elm_eval *e, const struct elm_model *m, const int32_t *tokens,
                      int32_t n_chunk, double *influence, struct elm_ppl *ppl);
/* Marks in drop (n_layer entries) n more blocks, each the lowest influence not yet marked (ties
 * to the lower number). n must leave at least one block unmarked. */
void elm_prune_pick(const double *influence, int32_t n_layer, int32_t n, bool *drop);

#endif
