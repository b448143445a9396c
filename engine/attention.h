/* attention.h — a layer's attention over the paged KV cache, and the store of a token's K and V
 * into it, for forward.c. Nothing else includes it.
 *
 * Attention walks a sequence's cache page by page (ELM_KV_PAGE positions each): the scores
 * position by position, then the weighted sum of V over the pages into 16 lanes per output that
 * only the final fold combines (kernels.h kv_mix), so a paged cache gives the bits of a
 * contiguous one. The query heads that share a KV head (GQA) are one job, so the weighted sum
 * reads and converts each V row once for all of them (kv_mix_group).
 *
 * The sliding window is a mask, as in llama.cpp: a query at position i sees keys j with
 * i - n_swa < j <= i. Every position stays in the cache; the scores and the weighted sum start at
 * the page of the window's first position, with the positions before it in that page masked,
 * which gives the bits of a sum over the whole cache with those weights 0.
 */
#ifndef ELM_ATTENTION_H
#define ELM_ATTENTION_H

#include <stddef.h>
#include <stdint.h>

#include "engine/kv.h"
#include "engine/model.h"

/* Each compute thread's scratch for attention, made once with the work area. */
struct elm_attn_scratch {
    int n_threads;
    int group;           /* the most query heads sharing a KV head in any layer */
    int32_t n_ctx_max;   /* the longest sequence attended over */
    float *att;          /* [n_threads][group][n_ctx_max] attention weights per thread and head */
    float *lanes;        /* [n_threads][group][16][head_dim] partial sums of the weighted V */
    const void **vpages; /* [n_threads][n_pages] a sequence's V pages of one KV head */
    size_t n_pages;      /* elm_kv_pages_for(n_ctx_max) */
    void *qc;            /* [n_threads][group][qc_row] query heads in the cache type (F16, Q8_0) */
    size_t qc_row;       /* bytes per head in qc: head_dim floats, more than any cache needs */
};

/* 0, or -ENOMEM with nothing held. */
int elm_attn_scratch_init(struct elm_attn_scratch *s, const struct elm_model *m, int n_threads,
                          int32_t n_ctx_max);
void elm_attn_scratch_free(struct elm_attn_scratch *s);

/* Stores one position's K and V rows of a layer (n values each: the layer's n_head_kv heads; a
 * pruned layer may fill only the front of the pool's kv_dim-wide rows, which its attention alone
 * reads) in the cache's type. The caller has checked that pos is backed by a page. */
void elm_kv_store(const struct elm_kernels *k, struct elm_kv *kv, int layer, int32_t pos,
                  const float *kr, const float *vr, int n);

/* out = attention of the layer's query rows q over each item's cache, for the n items of a pass
 * (q and out: one row of n_head * head_dim per item), on up to s->n_threads pool threads. Every
 * item's K and V of this layer must be stored first, so that a token sees the earlier tokens of
 * its own sequence that arrived in the same pass. */
void elm_attention(const struct elm_model *m, const struct elm_attn_scratch *s, int layer,
                   const struct elm_batch_item *items, int n, const float *q, float *out);

#endif
