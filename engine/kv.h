/* kv.h — the KV cache: fixed-size pages of K/V memory from one pool, handed to sequences.
 *
 * A pool is one region (hugetlb pages when the system has them reserved, else transparent huge
 * pages, else plain pages; mlock'ed when allowed) cut into pages of ELM_KV_PAGE positions; a page
 * holds those positions' K and V rows for every layer. A sequence's cache (struct elm_kv) is a
 * page table: position p lives in page table[p / ELM_KV_PAGE]. Pages are taken and given back
 * only by elm_kv_reserve/elm_kv_trim/elm_kv_destroy — between passes, never on the forward
 * pass, so a token costs no allocation (engine/seq.h grows a sequence page by page, and its
 * preemption gives all of them back).
 *
 * ELM_KV_PAGE is a multiple of the 16 lanes that the attention sums keep (kernels.h kv_mix), so
 * a sum can carry its lanes from page to page and gives the bits of one contiguous cache.
 *
 * Threads: the pool is not locked; one thread (the daemon's engine thread) reserves and trims.
 */
#ifndef ELM_KV_H
#define ELM_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"

struct elm_model;

#define ELM_KV_PAGE 32 /* positions per page */

enum elm_kv_pool_flags {
    ELM_KV_POOL_HUGE = 1u << 0, /* try hugetlb, then transparent huge pages */
    ELM_KV_POOL_LOCK = 1u << 1, /* mlock the pool (best effort: see elm_kv_pool_locked) */
    ELM_KV_POOL_THP = 1u << 2,  /* transparent huge pages only: leave reserved pages alone */
};

struct elm_kv_pool;

/* A pool of n_pages pages for model m's layers and KV width, in type ELM_TYPE_F32, F16 or
 * Q8_0. Errors: -EINVAL (bad type or n_pages <= 0), ELM_EUNSUPPORTED (Q8_0 for a model whose
 * head_dim is not a multiple of 32: each head's row is stored as whole Q8_0 blocks), -ENOMEM.
 * Caller owns *out. */
int elm_kv_pool_create(const struct elm_model *m, enum elm_type type, int64_t n_pages,
                       unsigned flags, struct elm_kv_pool **out);
/* Whether m can use a cache of type: 0, or the error elm_kv_pool_create would return, with a
 * message in err (may be NULL) for the user. */
int elm_kv_type_check(const struct elm_model *m, enum elm_type type, char *err, size_t errlen);

/* NULL-safe, nulls *p. Every elm_kv taken from it must be destroyed first. */
void elm_kv_pool_destroy(struct elm_kv_pool **p);

enum elm_type elm_kv_pool_type(const struct elm_kv_pool *p);
int64_t elm_kv_pool_pages(const struct elm_kv_pool *p);      /* total pages */
int64_t elm_kv_pool_free_pages(const struct elm_kv_pool *p); /* pages no sequence holds */
size_t elm_kv_pool_page_bytes(const struct elm_kv_pool *p);  /* bytes of one page */
/* The bytes of one page of a pool for m in type: what elm_kv_pool_create would make, known
 * before making it (elmd bounds a pool's memory with it). */
size_t elm_kv_page_bytes(const struct elm_model *m, enum elm_type type);
const char *elm_kv_pool_backing(const struct elm_kv_pool *p); /* "hugetlb", "thp", "plain" */
bool elm_kv_pool_locked(const struct elm_kv_pool *p);

/* Pages needed for n positions. */
static inline int64_t elm_kv_pages_for(int64_t n)
{
    return n <= 0 ? 0 : (n + ELM_KV_PAGE - 1) / ELM_KV_PAGE;
}

struct elm_kv; /* one sequence's cache: up to n_ctx positions, pages from a pool */

/* A cache of at most n_ctx positions holding no pages yet. Caller owns *out. */
int elm_kv_open(struct elm_kv_pool *pool, int32_t n_ctx, struct elm_kv **out);

/* Makes positions [0, n) backed by pages, taking the missing ones from the pool. All or
 * nothing: -ENOSPC when the pool has too few free pages (then nothing is taken), ELM_ECONTEXT
 * when n > n_ctx, -EINVAL when n < 0. Never gives pages back (see elm_kv_trim). */
int elm_kv_reserve(struct elm_kv *kv, int32_t n);

/* Gives back the pages not needed for positions [0, n); the K/V of those positions stay. */
void elm_kv_trim(struct elm_kv *kv, int32_t n);

int32_t elm_kv_capacity(const struct elm_kv *kv); /* positions backed by pages (<= n_ctx) */
int32_t elm_kv_n_ctx(const struct elm_kv *kv);
int64_t elm_kv_pages(const struct elm_kv *kv);       /* pages held */
enum elm_type elm_kv_type(const struct elm_kv *kv);

/* Returns its pages to the pool and frees it; NULL-safe, nulls *kv. */
void elm_kv_destroy(struct elm_kv **kv);

/* A standalone cache for n_ctx positions with its own private pool, fully reserved (plain
 * memory): for tests, tools and the in-process generator. elm_kv_destroy frees the pool too. */
int elm_kv_create(const struct elm_model *m, int32_t n_ctx, enum elm_type type,
                  struct elm_kv **out);

#endif
