/* prune.h — pruning (elmctl prune): a copy of a GGUF model without some of its blocks, or with
 * narrower FFNs or fewer attention heads per block (prune_width.c).
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

#include "engine/model.h"

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

struct elm_gguf_str;
/* The block number N of a tensor named "blk.N.rest" and in *rest the offset of the '.' before
 * rest; -1 for any other name. Both pruners use it to find a tensor's layer. */
long elm_prune_block_of(const struct elm_gguf_str *name, size_t *rest);

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
/* ---- width pruning (prune_width.c) ---------------------------------------------------------- */

/* Calibration statistics: per layer, the sum of squares of every input column of ffn_down
 * ([n_ff] per layer) and of attn_output ([n_head * head_dim]), over `tokens` tokens. */
struct elm_prune_acts {
    int32_t n_layer;
    double **ffn, **attn;
    int64_t tokens;
};

/* Zeroed statistics shaped for m. Caller owns *out (elm_prune_acts_destroy). 0 or -ENOMEM. */
int elm_prune_acts_create(const struct elm_model *m, struct elm_prune_acts **out);
void elm_prune_acts_destroy(struct elm_prune_acts **a); /* NULL-safe, nulls *a */
/* The pass observer that accumulates into a (elm_work_set_observer / elm_eval_set_observer). */
struct elm_matmul_observer elm_prune_acts_observer(struct elm_prune_acts *a);

/* Writes m's file (m from elm_model_load: its gguf holds the weights) to out with, in every
 * layer, round(fraction x n_ff) of the FFN channels removed (at least one stays): those of
 * lowest sum_i |W_down[i][j]| x ||x_j||, x the ffn_down input measured in a. The kept rows of
 * ffn_gate/ffn_up and columns of ffn_down stay in order; <arch>.feed_forward_length becomes the
 * new width (an INT32 array when layers differ). Only llama, qwen2 and gemma2 files with
 * F32/F16/BF16 FFN tensors: others are refused with ELM_EUNSUPPORTED (quantize after pruning).
 * Returns 0, -EINVAL, -ENOMEM, -errno, ELM_E* with a message in err; st filled on success. */
int elm_prune_ffn(const struct elm_model *m, const struct elm_prune_acts *a, double fraction,
                  const char *out, struct elm_prune_stats *st, char *err, size_t errlen);

/* As elm_prune_ffn for attention: in every layer the n_drop KV groups (a K/V head and the query
 * heads that share it under GQA) of lowest summed attn_output column score are removed, rows of
 * attn_q/k/v (and biases) and columns of attn_output; head_count, head_count_kv and the head
 * size (key_length, value_length) are written. n_drop must leave every layer one group. */
int elm_prune_heads(const struct elm_model *m, const struct elm_prune_acts *a, int32_t n_drop,
                    const char *out, struct elm_prune_stats *st, char *err, size_t errlen);

#endif
