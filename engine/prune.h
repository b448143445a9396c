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

#endif
