/* kv.c — the KV page pool and the page tables of sequences (kv.h; layout in kv_impl.h).
 *
 * The pool is one anonymous mapping, backed as the weights are (common/residency.h): explicit
 * 2 MiB huge pages when the system has them reserved, else an ordinary mapping aligned to 2 MiB
 * and offered to transparent huge pages, else plain pages; then mlock when asked, best effort. Free
 * pages are a stack of indices, so reserving and trimming cost O(pages moved) and never allocate.
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/errmsg.h"
#include "common/residency.h"
#include "elm/status.h"
#include "engine/kv.h"
#include "engine/kv_impl.h"
#include "engine/model.h"

#define CACHE_LINE 64

static size_t round_up(size_t x, size_t a)
{
    return (x + a - 1) / a * a;
}

/* ---- pool ---------------------------------------------------------------------------------- */

int elm_kv_type_check(const struct elm_model *m, enum elm_type type, char *err, size_t errlen)
{
    if (type != ELM_TYPE_F32 && type != ELM_TYPE_F16 && type != ELM_TYPE_Q8_0)
        return elm_errf(err, errlen, -EINVAL, "KV cache type %d is not f32, f16 or q8_0",
                        (int)type);
    if (type == ELM_TYPE_Q8_0 && m->hp.head_dim % 32 != 0)
        return elm_errf(err, errlen, ELM_EUNSUPPORTED,
                        "a q8_0 KV cache stores each head as blocks of 32 values; this model's "
                        "head_dim is %d",
                        (int)m->hp.head_dim);
    return 0;
}

/* The pool's memory, backed as the weights are (common/residency.h): HUGE tries reserved huge
 * pages first, THP only offers the mapping to transparent huge pages, neither maps plain pages
 * of exactly len bytes (a sequence's private cache stays small). */
static int map_pool(struct elm_kv_pool *p, size_t len, unsigned flags)
{
    enum elm_huge policy = (flags & ELM_KV_POOL_HUGE)  ? ELM_HUGE_AUTO
                           : (flags & ELM_KV_POOL_THP) ? ELM_HUGE_THP
                                                       : ELM_HUGE_OFF;
    int rc = elm_region_map(&p->mem, len, policy, NULL, 0);
    if (rc)
        return rc;
    p->base = p->mem.base;
    return 0;
}

int elm_kv_pool_create(const struct elm_model *m, enum elm_type type, int64_t n_pages,
                       unsigned flags, struct elm_kv_pool **out)
{
    if (n_pages <= 0 || n_pages > INT32_MAX)
        return -EINVAL;
    int rc = elm_kv_type_check(m, type, NULL, 0);
    if (rc)
        return rc;
    const struct elm_hparams *hp = &m->hp;
    struct elm_kv_pool *p = calloc(1, sizeof *p);
    if (!p)
        return -ENOMEM;
    p->type = type;
    p->n_layer = hp->n_layer;
    p->head_dim = hp->head_dim;
    p->kv_dim = hp->n_head_kv * hp->head_dim;
    p->head_bytes = elm_row_bytes(type, hp->head_dim);
    p->row_bytes = elm_row_bytes(type, p->kv_dim);
    p->layer_bytes = 2 * (size_t)ELM_KV_PAGE * p->row_bytes;
    p->page_bytes = elm_kv_page_bytes(m, type);
    p->n_pages = n_pages;
    p->n_free = n_pages;
    size_t bytes;
    if (__builtin_mul_overflow((size_t)n_pages, p->page_bytes, &bytes) ||
        bytes > SIZE_MAX - 2 * ELM_HUGE_PAGE) {
        free(p);
        return -ENOMEM;
    }
    p->free_list = malloc((size_t)n_pages * sizeof *p->free_list);
    if (!p->free_list || (rc = map_pool(p, bytes, flags))) {
        free(p->free_list);
        free(p);
        return -ENOMEM;
    }
    /* a stack popped from the top: the first pages handed out are 0, 1, 2... */
    for (int64_t i = 0; i < n_pages; i++)
        p->free_list[i] = (int32_t)(n_pages - 1 - i);
    if (flags & ELM_KV_POOL_LOCK)
        elm_region_lock(&p->mem); /* best effort: RLIMIT_MEMLOCK may refuse */
    *out = p;
    return 0;
}

void elm_kv_pool_destroy(struct elm_kv_pool **pp)
{
    if (!pp || !*pp)
        return;
    struct elm_kv_pool *p = *pp;
    assert(p->n_open == 0 && "every elm_kv of a pool is destroyed before the pool");
    elm_region_unmap(&p->mem);
    free(p->free_list);
    free(p);
    *pp = NULL;
}

enum elm_type elm_kv_pool_type(const struct elm_kv_pool *p)
{
    return p->type;
}

int64_t elm_kv_pool_pages(const struct elm_kv_pool *p)
{
    return p->n_pages;
}

int64_t elm_kv_pool_free_pages(const struct elm_kv_pool *p)
{
    return p->n_free;
}

size_t elm_kv_page_bytes(const struct elm_model *m, enum elm_type type)
{
    size_t row = elm_row_bytes(type, m->hp.n_head_kv * m->hp.head_dim);
    return round_up((size_t)m->hp.n_layer * 2 * ELM_KV_PAGE * row, CACHE_LINE);
}

size_t elm_kv_pool_page_bytes(const struct elm_kv_pool *p)
{
    return p->page_bytes;
}

const char *elm_kv_pool_backing(const struct elm_kv_pool *p)
{
    return elm_backing_name(p->mem.backing);
}

bool elm_kv_pool_locked(const struct elm_kv_pool *p)
{
    return p->mem.locked;
}

/* ---- one sequence's page table -------------------------------------------------------------- */

int elm_kv_open(struct elm_kv_pool *pool, int32_t n_ctx, struct elm_kv **out)
{
    if (!pool || n_ctx <= 0)
        return -EINVAL;
    struct elm_kv *kv = calloc(1, sizeof *kv);
    if (!kv)
        return -ENOMEM;
    kv->pool = pool;
    kv->n_ctx = n_ctx;
    kv->max_pages = (int32_t)elm_kv_pages_for(n_ctx);
    kv->table = malloc((size_t)kv->max_pages * sizeof *kv->table);
    if (!kv->table) {
        free(kv);
        return -ENOMEM;
    }
    pool->n_open++;
    *out = kv;
    return 0;
}

int elm_kv_reserve(struct elm_kv *kv, int32_t n)
{
    if (n < 0)
        return -EINVAL;
    if (n > kv->n_ctx)
        return ELM_ECONTEXT;
    const int32_t need = (int32_t)elm_kv_pages_for(n);
    if (need <= kv->n_pages)
        return 0;
    struct elm_kv_pool *p = kv->pool;
    if (need - kv->n_pages > p->n_free)
        return -ENOSPC;
    while (kv->n_pages < need)
        kv->table[kv->n_pages++] = p->free_list[--p->n_free];
    return 0;
}

void elm_kv_trim(struct elm_kv *kv, int32_t n)
{
    const int32_t keep = (int32_t)elm_kv_pages_for(n);
    struct elm_kv_pool *p = kv->pool;
    while (kv->n_pages > keep)
        p->free_list[p->n_free++] = kv->table[--kv->n_pages];
}

int32_t elm_kv_capacity(const struct elm_kv *kv)
{
    const int64_t backed = (int64_t)kv->n_pages * ELM_KV_PAGE;
    return backed < kv->n_ctx ? (int32_t)backed : kv->n_ctx;
}

int32_t elm_kv_n_ctx(const struct elm_kv *kv)
{
    return kv->n_ctx;
}

int64_t elm_kv_pages(const struct elm_kv *kv)
{
    return kv->n_pages;
}

enum elm_type elm_kv_type(const struct elm_kv *kv)
{
    return kv->pool->type;
}

void elm_kv_destroy(struct elm_kv **pkv)
{
    if (!pkv || !*pkv)
        return;
    struct elm_kv *kv = *pkv;
    elm_kv_trim(kv, 0);
    kv->pool->n_open--;
    if (kv->owns_pool)
        elm_kv_pool_destroy(&kv->pool);
    free(kv->table);
    free(kv);
    *pkv = NULL;
}

int elm_kv_create(const struct elm_model *m, int32_t n_ctx, enum elm_type type, struct elm_kv **out)
{
    if (n_ctx <= 0)
        return -EINVAL;
    struct elm_kv_pool *pool;
    int rc = elm_kv_pool_create(m, type, elm_kv_pages_for(n_ctx), 0, &pool);
    if (rc)
        return rc;
    struct elm_kv *kv;
    if ((rc = elm_kv_open(pool, n_ctx, &kv))) {
        elm_kv_pool_destroy(&pool);
        return rc;
    }
    kv->owns_pool = true;
    rc = elm_kv_reserve(kv, n_ctx); /* cannot fail: the pool was sized for it */
    assert(rc == 0);
    *out = kv;
    return 0;
}
