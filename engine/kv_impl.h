/* kv_impl.h — the layout of a KV pool and of a sequence's page table, shared by kv.c (which
 * hands pages out), attention.c (which reads and writes them) and forward.c (which checks a
 * batch's caches against the model). Nothing else includes it.
 *
 * A page is n_layer blocks, one per layer, each holding that layer's K rows of the page's
 * ELM_KV_PAGE positions and then its V rows, KV head by KV head:
 *     page + layer * layer_bytes + (h * ELM_KV_PAGE + p) * head_bytes              K, head h, p
 *     page + layer * layer_bytes + ELM_KV_PAGE * row_bytes + (same)               V, head h, p
 * A head's row is head_dim values of the pool's type (for Q8_0 head_dim / 32 blocks, a whole
 * number of blocks); row_bytes is n_head_kv of them. Head-major, so that one head's rows of a
 * page (what one attention job reads) are one run of bytes: position-major rows left a head's
 * rows row_bytes apart, which the hardware prefetchers did not follow and which fell into a
 * few L1 sets (docs/kernels-perf.md, "Decode attention over a long context").
 */
#ifndef ELM_KV_IMPL_H
#define ELM_KV_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/residency.h"
#include "kernels/kernels.h" /* enum elm_type */

struct elm_kv_pool {
    enum elm_type type;
    int32_t n_layer, kv_dim, head_dim;
    size_t head_bytes;   /* one head of one position in type */
    size_t row_bytes;    /* kv_dim values in type */
    size_t layer_bytes;  /* K and V rows of ELM_KV_PAGE positions: 2 * ELM_KV_PAGE * row_bytes */
    size_t page_bytes;   /* n_layer * layer_bytes, rounded up to a cache line */
    unsigned char *base; /* n_pages * page_bytes, at mem.base */
    struct elm_region mem;
    int64_t n_pages;
    int64_t n_free;
    int32_t *free_list; /* [n_pages] indices of free pages in free_list[0 .. n_free) */
    int64_t n_open;     /* caches taken from the pool and not destroyed */
};

struct elm_kv {
    struct elm_kv_pool *pool;
    bool owns_pool; /* elm_kv_create's private pool */
    int32_t n_ctx;
    int32_t n_pages;   /* pages held: positions [0, n_pages * ELM_KV_PAGE) are backed */
    int32_t max_pages; /* elm_kv_pages_for(n_ctx) */
    int32_t *table;    /* [max_pages] page index of each run of ELM_KV_PAGE positions */
};

/* The start of page i of a pool. */
static inline unsigned char *elm_kv_page(const struct elm_kv_pool *p, int32_t i)
{
    return p->base + (size_t)i * p->page_bytes;
}

#endif
