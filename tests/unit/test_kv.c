/* test_kv.c — the paged KV cache (engine/kv.h) and the pooled sequences built on it
 * (engine/seq.h), and the Q8_0 cache type:
 *  - pool accounting: pages, free pages, page bytes per type, backing;
 *  - reserve is all or nothing (-ENOSPC changes nothing), ELM_ECONTEXT past n_ctx, trim keeps
 *    the K/V of the positions it keeps (logits after trim + reserve + recompute are equal);
 *  - two sequences whose pages interleave in one pool give logits bit-identical to standalone
 *    caches, alone and batched together;
 *  - a position without a page is refused with ELM_ECONTEXT before anything is written;
 *  - elm_seq_start's reservation, -ENOSPC leaving the sequence reusable, elm_seq_release;
 *  - Q8_0: refused for head_dim 8 (stories260K);
 *  - F16 and Q8_0 caches held to llama.cpp's own F16- and Q8_0-cache references of five zoo
 *    files (shared/models/zoo/kv/; the bounds and where they come from are above kv_refs).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "elm/status.h"
#include "engine/kv.h"
#include "engine/kv_impl.h"
#include "engine/model.h"
#include "engine/seq.h"
#include "tests/common/elm_test.h"
#include "tests/common/zoo.h"

#define NCTX 128

static struct elm_model *load(const char *path)
{
    char err[512];
    struct elm_model_params mp = {.n_threads = 2};
    struct elm_model *m;
    if (elm_model_load(path, &mp, &m, err, sizeof err))
        fail_msg("load %s: %s", path, err);
    return m;
}

/* A fixed token for position p (any ids will do: the model is random). */
static int32_t tok(const struct elm_model *m, int32_t p)
{
    return (int32_t)((p * 37 + 5) % m->hp.n_vocab);
}

/* Runs positions [from, to) of the fixed token stream through kv in chunks of `chunk`;
 * logits of the last position into out (when not NULL). Returns the forward's result. */
static int run(const struct elm_model *m, struct elm_work *w, struct elm_kv *kv, int32_t from,
               int32_t to, int chunk, float *out)
{
    struct elm_batch_item items[64];
    for (int32_t p0 = from; p0 < to; p0 += chunk) {
        int n = to - p0 < chunk ? to - p0 : chunk;
        for (int i = 0; i < n; i++)
            items[i] = (struct elm_batch_item){.token = tok(m, p0 + i),
                                               .pos = p0 + i,
                                               .kv = kv,
                                               .logits = p0 + i == to - 1 ? out : NULL};
        int rc = elm_model_forward(m, w, items, n);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- pool accounting ------------------------------------------------------------------------ */

static void test_pool_accounting(void **state)
{
    ELM_REQUIRE_MODEL(path, "zoo/zoo-llama.gguf");
    struct elm_model *m = load(path); /* 2 layers, kv_dim 2 * 64 */
    static const struct {
        enum elm_type t;
        size_t row; /* bytes of one kv_dim row */
    } types[] = {{ELM_TYPE_F32, 128 * 4}, {ELM_TYPE_F16, 128 * 2}, {ELM_TYPE_Q8_0, 4 * 34}};
    for (int i = 0; i < 3; i++) {
        struct elm_kv_pool *pool;
        assert_int_equal(elm_kv_pool_create(m, types[i].t, 10, 0, &pool), 0);
        assert_int_equal(elm_kv_pool_type(pool), types[i].t);
        assert_int_equal(elm_kv_pool_pages(pool), 10);
        assert_int_equal(elm_kv_pool_free_pages(pool), 10);
        /* 2 layers x (K, V) x 32 positions x row, already a multiple of 64 */
        assert_int_equal(elm_kv_pool_page_bytes(pool), 2 * 2 * 32 * types[i].row);
        assert_string_equal(elm_kv_pool_backing(pool), "plain");
        assert_false(elm_kv_pool_locked(pool));

        struct elm_kv *kv;
        assert_int_equal(elm_kv_open(pool, 100, &kv), 0);
        assert_int_equal(elm_kv_n_ctx(kv), 100);
        assert_int_equal(elm_kv_capacity(kv), 0);
        assert_int_equal(elm_kv_pages(kv), 0);
        assert_int_equal(elm_kv_reserve(kv, 40), 0);
        assert_int_equal(elm_kv_pages(kv), 2);
        assert_int_equal(elm_kv_capacity(kv), 64);
        assert_int_equal(elm_kv_pool_free_pages(pool), 8);
        assert_int_equal(elm_kv_reserve(kv, 30), 0); /* never shrinks */
        assert_int_equal(elm_kv_pages(kv), 2);
        assert_int_equal(elm_kv_reserve(kv, 100), 0);
        assert_int_equal(elm_kv_pages(kv), 4);
        assert_int_equal(elm_kv_capacity(kv), 100); /* 128 backed, n_ctx 100 */
        elm_kv_trim(kv, 33);
        assert_int_equal(elm_kv_pages(kv), 2);
        elm_kv_trim(kv, 32);
        assert_int_equal(elm_kv_pages(kv), 1);
        assert_int_equal(elm_kv_capacity(kv), 32);
        assert_int_equal(elm_kv_pool_free_pages(pool), 9);
        elm_kv_destroy(&kv);
        assert_null(kv);
        assert_int_equal(elm_kv_pool_free_pages(pool), 10);
        elm_kv_pool_destroy(&pool);
        assert_null(pool);
    }
    /* huge pages and mlock are best effort: the pool works whatever the system grants */
    struct elm_kv_pool *pool;
    assert_int_equal(
        elm_kv_pool_create(m, ELM_TYPE_F16, 3, ELM_KV_POOL_HUGE | ELM_KV_POOL_LOCK, &pool), 0);
    const char *b = elm_kv_pool_backing(pool);
    assert_true(!strcmp(b, "hugetlb") || !strcmp(b, "thp") || !strcmp(b, "plain"));
    print_message("huge pool: backing %s, locked %d\n", b, elm_kv_pool_locked(pool));
    elm_kv_pool_destroy(&pool);

    assert_int_equal(elm_kv_pool_create(m, ELM_TYPE_Q4_0, 4, 0, &pool), -EINVAL);
    assert_int_equal(elm_kv_pool_create(m, ELM_TYPE_F16, 0, 0, &pool), -EINVAL);
    elm_kv_pool_destroy(&pool); /* NULL-safe */
    elm_model_destroy(&m);
}

static void test_reserve_all_or_nothing(void **state)
{
    ELM_REQUIRE_MODEL(path, "zoo/zoo-llama.gguf");
    struct elm_model *m = load(path);
    struct elm_kv_pool *pool;
    assert_int_equal(elm_kv_pool_create(m, ELM_TYPE_F16, 5, 0, &pool), 0);
    struct elm_kv *a, *b;
    assert_int_equal(elm_kv_open(pool, NCTX, &a), 0);
    assert_int_equal(elm_kv_open(pool, NCTX, &b), 0);
    assert_int_equal(elm_kv_reserve(a, 96), 0); /* 3 pages */
    assert_int_equal(elm_kv_reserve(b, 33), 0); /* 2 pages */
    assert_int_equal(elm_kv_pool_free_pages(pool), 0);
    elm_kv_trim(b, 1);
    assert_int_equal(elm_kv_pool_free_pages(pool), 1);
    assert_int_equal(elm_kv_reserve(b, 96), -ENOSPC); /* needs 2 more, 1 free: takes none */
    assert_int_equal(elm_kv_pages(b), 1);
    assert_int_equal(elm_kv_capacity(b), 32);
    assert_int_equal(elm_kv_pages(a), 3);
    assert_int_equal(elm_kv_pool_free_pages(pool), 1);
    assert_int_equal(elm_kv_reserve(b, NCTX + 1), ELM_ECONTEXT);
    assert_int_equal(elm_kv_reserve(b, -1), -EINVAL);
    assert_int_equal(elm_kv_pages(b), 1);
    assert_int_equal(elm_kv_reserve(b, 64), 0);
    assert_int_equal(elm_kv_pool_free_pages(pool), 0);
    elm_kv_destroy(&a);
    elm_kv_destroy(&b);
    assert_int_equal(elm_kv_pool_free_pages(pool), 5);
    elm_kv_pool_destroy(&pool);
    elm_model_destroy(&m);
}

/* ---- the forward pass over pages --------------------------------------------------------------
 */

static void test_trim_keeps_kv(void **state)
{
    ELM_REQUIRE_MODEL(path, "zoo/zoo-qwen2.gguf");
    struct elm_model *m = load(path);
    const int V = m->hp.n_vocab;
    float *want = malloc((size_t)V * sizeof *want), *got = malloc((size_t)V * sizeof *got);
    struct elm_work *w;
    assert_int_equal(elm_work_create(m, 64, NCTX, &w), 0);
    struct elm_kv *ref;
    assert_int_equal(elm_kv_create(m, NCTX, ELM_TYPE_F16, &ref), 0);
    assert_int_equal(run(m, w, ref, 0, 41, 41, want), 0);

    struct elm_kv_pool *pool;
    struct elm_kv *a, *b;
    assert_int_equal(elm_kv_pool_create(m, ELM_TYPE_F16, 4, 0, &pool), 0);
    assert_int_equal(elm_kv_open(pool, NCTX, &a), 0);
    assert_int_equal(elm_kv_open(pool, NCTX, &b), 0);
    assert_int_equal(elm_kv_reserve(a, 40), 0);
    assert_int_equal(run(m, w, a, 0, 40, 40, NULL), 0);
    elm_kv_trim(a, 32); /* page 0 (positions 0..31) stays, page 1 goes back */
    /* b takes the page a gave back and overwrites it */
    assert_int_equal(elm_kv_reserve(b, 64), 0);
    assert_int_equal(run(m, w, b, 0, 64, 32, NULL), 0);
    assert_int_equal(elm_kv_reserve(a, 41), 0);
    assert_int_equal(run(m, w, a, 32, 41, 9, got), 0); /* only 32..40 recomputed */
    assert_memory_equal(want, got, (size_t)V * sizeof *got);

    elm_kv_destroy(&a);
    elm_kv_destroy(&b);
    elm_kv_pool_destroy(&pool);
    elm_kv_destroy(&ref);
    elm_work_destroy(&w);
    free(want);
    free(got);
    elm_model_destroy(&m);
}

/* Two sequences growing in turns take alternate pages of one pool; each one's logits after
 * every chunk equal those of its own standalone cache, whether the two run in separate
 * passes or in one batch. */
static void test_interleaved_pages(void **state)
{
    ELM_REQUIRE_MODEL(path, "zoo/zoo-llama-q8_0.gguf");
    struct elm_model *m = load(path);
    const int V = m->hp.n_vocab;
    struct elm_work *w;
    assert_int_equal(elm_work_create(m, 64, NCTX, &w), 0);
    for (int ty = 0; ty < 3; ty++) {
        const enum elm_type t = ty == 0 ? ELM_TYPE_F32 : ty == 1 ? ELM_TYPE_F16 : ELM_TYPE_Q8_0;
        for (int batched = 0; batched < 2; batched++) {
            struct elm_kv *ref[2], *kv[2];
            struct elm_kv_pool *pool;
            assert_int_equal(elm_kv_pool_create(m, t, 8, 0, &pool), 0);
            for (int s = 0; s < 2; s++) {
                assert_int_equal(elm_kv_create(m, NCTX, t, &ref[s]), 0);
                assert_int_equal(elm_kv_open(pool, NCTX, &kv[s]), 0);
            }
            float *want = malloc((size_t)V * sizeof *want), *got[2];
            got[0] = malloc((size_t)V * sizeof(float));
            got[1] = malloc((size_t)V * sizeof(float));
            /* sequence s runs the token stream shifted by s (different contents) */
            for (int32_t p0 = 0; p0 < 120; p0 += 20) {
                struct elm_batch_item items[40];
                int n = 0;
                for (int s = 0; s < 2; s++) {
                    assert_int_equal(elm_kv_reserve(kv[s], p0 + 20), 0);
                    for (int i = 0; i < 20; i++)
                        items[n++] = (struct elm_batch_item){.token = tok(m, p0 + i + s),
                                                             .pos = p0 + i,
                                                             .kv = kv[s],
                                                             .logits = i == 19 ? got[s] : NULL};
                    if (!batched) {
                        assert_int_equal(elm_model_forward(m, w, items + n - 20, 20), 0);
                    }
                }
                if (batched)
                    assert_int_equal(elm_model_forward(m, w, items, n), 0);
                for (int s = 0; s < 2; s++) {
                    for (int i = 0; i < 20; i++) {
                        items[i] = (struct elm_batch_item){.token = tok(m, p0 + i + s),
                                                           .pos = p0 + i,
                                                           .kv = ref[s],
                                                           .logits = i == 19 ? want : NULL};
                    }
                    assert_int_equal(elm_model_forward(m, w, items, 20), 0);
                    if (memcmp(want, got[s], (size_t)V * sizeof *want))
                        fail_msg("%s cache, %s: sequence %d differs after position %d",
                                 elm_type_get(t)->name, batched ? "batched" : "alone", s, p0 + 19);
                }
            }
            /* the pages did interleave */
            assert_int_equal(kv[0]->table[0], 0);
            assert_int_equal(kv[1]->table[0], 1);
            assert_int_equal(kv[0]->table[1], 2);
            assert_int_equal(kv[1]->table[1], 3);
            for (int s = 0; s < 2; s++) {
                elm_kv_destroy(&kv[s]);
                elm_kv_destroy(&ref[s]);
                free(got[s]);
            }
            free(want);
            elm_kv_pool_destroy(&pool);
        }
    }
    elm_work_destroy(&w);
    elm_model_destroy(&m);
}

/* A batch with an item at a position its cache has no page for fails with ELM_ECONTEXT and
 * writes nothing: no logits (of any item) and no byte of the pool. */
static void test_unbacked_position(void **state)
{
    ELM_REQUIRE_MODEL(path, "zoo/zoo-llama.gguf");
    struct elm_model *m = load(path);
    const int V = m->hp.n_vocab;
    struct elm_work *w;
    assert_int_equal(elm_work_create(m, 64, NCTX, &w), 0);
    struct elm_kv_pool *pool;
    struct elm_kv *a, *b;
    assert_int_equal(elm_kv_pool_create(m, ELM_TYPE_F16, 4, 0, &pool), 0);
    assert_int_equal(elm_kv_open(pool, NCTX, &a), 0);
    assert_int_equal(elm_kv_open(pool, NCTX, &b), 0);
    assert_int_equal(elm_kv_reserve(a, 32), 0);
    assert_int_equal(elm_kv_reserve(b, 10), 0);
    assert_int_equal(run(m, w, a, 0, 32, 32, NULL), 0);
    unsigned char *before = malloc(pool->mem.len);
    memcpy(before, pool->base, pool->mem.len);
    float *la = malloc((size_t)V * sizeof *la), *lb = malloc((size_t)V * sizeof *lb);
    memset(la, 0x7f, (size_t)V * sizeof *la);
    memset(lb, 0x7f, (size_t)V * sizeof *lb);
    struct elm_batch_item items[2] = {
        {.token = 3, .pos = 5, .kv = b, .logits = lb},  /* fine on its own */
        {.token = 4, .pos = 32, .kv = a, .logits = la}, /* no page for 32 */
    };
    assert_int_equal(elm_model_forward(m, w, items, 2), ELM_ECONTEXT);
    for (int i = 0; i < V; i++) {
        uint32_t ua, ub;
        memcpy(&ua, &la[i], 4);
        memcpy(&ub, &lb[i], 4);
        assert_int_equal(ua, 0x7f7f7f7fu);
        assert_int_equal(ub, 0x7f7f7f7fu);
    }
    assert_memory_equal(before, pool->base, pool->mem.len);
    /* past n_ctx is the same error; once reserved, the position runs */
    items[1].pos = NCTX;
    assert_int_equal(elm_model_forward(m, w, items + 1, 1), ELM_ECONTEXT);
    items[1].pos = 32;
    assert_int_equal(elm_kv_reserve(a, 33), 0);
    assert_int_equal(elm_model_forward(m, w, items + 1, 1), 0);
    free(before);
    free(la);
    free(lb);
    elm_kv_destroy(&a);
    elm_kv_destroy(&b);
    elm_kv_pool_destroy(&pool);
    elm_work_destroy(&w);
    elm_model_destroy(&m);
}

/* ---- pooled sequences ---------------------------------------------------------------------- */

struct ids {
    int32_t id[128];
    int n;
};

static int collect(void *user, const struct elm_seq_out *o)
{
    struct ids *c = user;
    if (o->token >= 0 && c->n < 128)
        c->id[c->n++] = o->token;
    return 0;
}

static void greedy_params(struct elm_gen_params *gp, int n_predict)
{
    elm_gen_params_default(gp);
    gp->sampling.temp = 0;
    gp->n_predict = n_predict;
}

static void test_pooled_seq(void **state)
{
    ELM_REQUIRE_MODEL(path, "stories260K.gguf");
    struct elm_model *m = load(path);
    struct elm_work *w;
    assert_int_equal(elm_work_create(m, 64, 256, &w), 0);
    int32_t prompt[40];
    for (int i = 0; i < 40; i++)
        prompt[i] = i ? tok(m, i) : 1;
    struct elm_gen_params gp;

    /* the standalone sequence's output is the oracle */
    struct elm_seq *ref;
    struct ids want = {0}, got = {0};
    assert_int_equal(elm_seq_create(m, 256, ELM_TYPE_F32, &ref), 0);
    greedy_params(&gp, 30);
    assert_int_equal(elm_seq_start(ref, prompt, 40, &gp), 0);
    assert_int_equal(elm_seq_run(ref, w, collect, &want), 0);
    assert_int_equal(want.n, 30);
    assert_int_equal(elm_seq_pages(ref), 8); /* standalone: all of n_ctx */

    struct elm_kv_pool *pool;
    assert_int_equal(elm_kv_pool_create(m, ELM_TYPE_F32, 5, 0, &pool), 0);
    struct elm_seq *s, *o;
    assert_int_equal(elm_seq_create_pooled(m, pool, 256, &s), 0);
    assert_int_equal(elm_seq_create_pooled(m, pool, 256, &o), 0);
    assert_int_equal(elm_seq_pages(s), 0);
    assert_int_equal(elm_seq_start(s, prompt, 40, &gp), 0);
    assert_int_equal(elm_seq_pages(s), 2); /* the prompt's 40 positions; the rest as it grows */
    assert_int_equal(elm_seq_pages_short(s, 64), 0);
    assert_int_equal(elm_seq_run(s, w, collect, &got), 0);
    assert_int_equal(got.n, 30);
    assert_memory_equal(want.id, got.id, sizeof want.id[0] * 30);
    /* keep the history: pages for the 69 positions whose K/V were computed */
    elm_seq_release(s, true);
    assert_int_equal(elm_seq_pages(s), 3);
    assert_int_equal(elm_kv_pool_free_pages(pool), 2);

    /* the other sequence takes the last 2 pages for its prompt; a third would not fit */
    assert_int_equal(elm_seq_start(o, prompt, 40, &gp), 0);
    assert_int_equal(elm_seq_pages(o), 2);
    assert_int_equal(elm_kv_pool_free_pages(pool), 0);
    assert_int_equal(elm_seq_n_pending(o), 40);
    /* preempted before it ran: its pages go back, its request stays, to be evaluated again */
    assert_int_equal(elm_seq_preempt(o), 0);
    assert_int_equal(elm_seq_pages(o), 0);
    assert_int_equal(elm_seq_n_pending(o), 40);
    assert_int_equal(elm_kv_pool_free_pages(pool), 2);
    /* a failed start leaves the sequence as it was: the next start still reuses the
     * conversation */
    int32_t longer[170];
    memcpy(longer, prompt, sizeof prompt);
    memcpy(longer + 40, got.id, 29 * sizeof *longer);
    for (int i = 69; i < 170; i++)
        longer[i] = 5;
    assert_int_equal(elm_seq_start(s, longer, 170, &gp), -ENOSPC); /* 6 pages: 3 held, 2 free */
    assert_int_equal(elm_kv_pool_free_pages(pool), 2);
    assert_int_equal(elm_seq_pages(s), 3);
    greedy_params(&gp, 2);
    assert_int_equal(elm_seq_start(s, longer, 70, &gp), 0);
    assert_int_equal(elm_seq_n_reused(s), 69);
    assert_int_equal(elm_seq_pages(s), 3); /* 70 positions */
    got.n = 0;
    assert_int_equal(elm_seq_run(s, w, collect, &got), 0);
    assert_int_equal(got.n, 2);
    assert_int_equal(elm_seq_pages(s), 3); /* grown to 71 positions */

    /* the preempted one resumes once pages are free: the tokens of the uninterrupted run */
    elm_seq_release(s, false);
    got.n = 0;
    assert_int_equal(elm_seq_run(o, w, collect, &got), 0);
    assert_int_equal(got.n, 30);
    assert_memory_equal(want.id, got.id, sizeof want.id[0] * 30);
    elm_seq_release(o, false);

    /* forget: every page back, and the next start recomputes everything */
    elm_seq_release(s, false);
    assert_int_equal(elm_seq_pages(s), 0);
    assert_int_equal(elm_kv_pool_free_pages(pool), 5);
    greedy_params(&gp, 30);
    assert_int_equal(elm_seq_start(s, prompt, 40, &gp), 0);
    assert_int_equal(elm_seq_n_reused(s), 0);
    got.n = 0;
    assert_int_equal(elm_seq_run(s, w, collect, &got), 0);
    assert_memory_equal(want.id, got.id, sizeof want.id[0] * 30);
    /* a short request gives back what a longer one held */
    elm_seq_release(s, true);
    greedy_params(&gp, 1);
    assert_int_equal(elm_seq_start(s, prompt, 10, &gp), 0);
    assert_int_equal(elm_seq_pages(s), 1);

    elm_seq_destroy(&s);
    elm_seq_destroy(&o);
    assert_int_equal(elm_kv_pool_free_pages(pool), 5);
    elm_kv_pool_destroy(&pool);
    elm_seq_destroy(&ref);
    elm_work_destroy(&w);
    elm_model_destroy(&m);
}

/* ---- Q8_0 cache ---------------------------------------------------------------------------- */

/* stories260K has head_dim 8: a head is not a whole Q8_0 block, so the cache type is refused
 * (llama.cpp cannot make such a cache either). */
static void test_q8_0_refused(void **state)
{
    ELM_REQUIRE_MODEL(path, "stories260K.gguf");
    struct elm_model *m = load(path);
    assert_int_equal(m->hp.head_dim, 8);
    struct elm_seq *s = NULL;
    struct elm_kv_pool *pool = NULL;
    char err[256];
    assert_int_equal(elm_seq_create(m, 64, ELM_TYPE_Q8_0, &s), ELM_EUNSUPPORTED);
    assert_int_equal(elm_kv_pool_create(m, ELM_TYPE_Q8_0, 4, 0, &pool), ELM_EUNSUPPORTED);
    assert_int_equal(elm_kv_type_check(m, ELM_TYPE_Q8_0, err, sizeof err), ELM_EUNSUPPORTED);
    assert_non_null(strstr(err, "head_dim is 8"));
    assert_null(s);
    assert_null(pool);
    assert_int_equal(elm_kv_type_check(m, ELM_TYPE_F16, err, sizeof err), 0);
    elm_model_destroy(&m);
}

/* ---- llama.cpp's own F16- and Q8_0-cache references (shared/models/zoo/kv/) ------------------ */

/* elm with an F16 or a Q8_0 cache against llama.cpp with the same cache type, on the five zoo
 * files that shared/models/zoo/kv/ has references for. The bounds add up effects its README and
 * the zoo README measured; none comes from elm's output:
 *  - 1e-2 in p, greedy ids up to the first margin < 0.1: the zoo README's "F16 KV cache" row, for
 *    attention done in another precision or order than the reference's;
 *  - + 4e-2 in p, and the cut doubled to 0.2, for zoo-llama-q8_0 and zoo-qwen2-q4_k_m: the kv
 *    references were made on an AVX2 machine, and the kv README's control (an F32-cache run
 *    there against the zoo's AVX-512 reference) moves these two files by 0.04 (elm reproduces the
 *    AVX-512 build) and, on its own, flips zoo-qwen2-q4_k_m's greedy id at a margin of 0.0998
 *    (prompt 2, position 5 of its zoo reference); on the other three files it is <= 2.1e-6;
 *  - + 7e-3 in p for the Q8_0 references: llama.cpp makes a Q8_0 cache only with flash attention
 *    (-fa), whose fused softmax and summation order are not elm's; the kv README's controls put
 *    that change at <= 1.6e-3 + 1.2e-3 (zoo-llama) and 4e-3 + 3e-3 (zoo-qwen2), with and without
 *    -fa against the same F32-cache run.
 * Measured (active kernel; every variant gives the same bits, test_simd): max |dp| F16 1.4e-4,
 * 7.0e-3, 2.1e-3, 9.3e-4, 3.5e-2 and Q8_0 5.1e-4, 9.4e-7, 9.8e-3, 1.2e-3, 5.3e-2, in the order of
 * the table. Every greedy id before the cut equals the reference's. The one that differs past it:
 * zoo-qwen2-q4_k_m with a Q8_0 cache, 'Once upon a time' position 20 (elm 163, llama.cpp 164),
 * where the reference's margin is 0.113 — the CPU effect above flips ids at that size. With cut
 * 0.1, prompt 3 of zoo-llama compares no id: its reference's first margin is already below. */
struct kv_ref {
    const char *file;  /* zoo/<file>.gguf */
    enum elm_type kv;  /* the cache type of elm and of the reference */
    double cut, p_tol; /* margin cut and top-10 p bound, as argued above */
};

static const struct kv_ref kv_refs[] = {
    {"zoo-llama", ELM_TYPE_F16, 0.1, 1e-2},
    {"zoo-llama-q8_0", ELM_TYPE_F16, 0.2, 1e-2 + 4e-2},
    {"zoo-llama-q4_k_m", ELM_TYPE_F16, 0.1, 1e-2},
    {"zoo-qwen2", ELM_TYPE_F16, 0.1, 1e-2},
    {"zoo-qwen2-q4_k_m", ELM_TYPE_F16, 0.2, 1e-2 + 4e-2},
    {"zoo-llama", ELM_TYPE_Q8_0, 0.1, 1e-2 + 7e-3},
    {"zoo-llama-q8_0", ELM_TYPE_Q8_0, 0.2, 1e-2 + 4e-2 + 7e-3},
    {"zoo-llama-q4_k_m", ELM_TYPE_Q8_0, 0.1, 1e-2 + 7e-3},
    {"zoo-qwen2", ELM_TYPE_Q8_0, 0.1, 1e-2 + 7e-3},
    {"zoo-qwen2-q4_k_m", ELM_TYPE_Q8_0, 0.2, 1e-2 + 4e-2 + 7e-3},
};
#define N_KV_REFS (sizeof kv_refs / sizeof *kv_refs)

static void test_kv_refs(void **state)
{
    int failures = 0, missing = 0, checked = 0;
    for (size_t i = 0; i < N_KV_REFS; i++) {
        const struct kv_ref *c = &kv_refs[i];
        const char *t = elm_type_get(c->kv)->name;
        char ref[160];
        snprintf(ref, sizeof ref, "zoo/kv/%s.kv-%s.ref.json", c->file, t);
        struct zoo_report r;
        int rc = zoo_check_ref(c->file, ref, NULL, c->kv, c->cut, c->p_tol, &r);
        if (rc < 0) {
            print_message("%s or zoo/%s.gguf not found\n", ref, c->file);
            missing++;
            continue;
        }
        if (rc == 0 && (r.ids_compared != r.ids_expected || r.prompts != 4)) {
            snprintf(r.failure, sizeof r.failure, "%d prompts, %d ids compared, reference %d",
                     r.prompts, r.ids_compared, r.ids_expected);
            rc = 1;
        }
        print_message(
            "%-17s kv %-4s: ids %2d %2d %2d %2d of %3d, %3d positions, max |dp| %.2e%s%s\n",
            c->file, t, r.ids_prompt[0], r.ids_prompt[1], r.ids_prompt[2], r.ids_prompt[3],
            r.ids_reference, r.positions, r.max_dp, rc ? "  FAIL: " : "", rc ? r.failure : "");
        failures += rc != 0;
        checked++;
    }
    assert_int_equal(failures, 0);
    if (missing) {
        print_message("SKIP: test_kv_refs: %d of %zu references or models not found under %s\n",
                      missing, N_KV_REFS, elm_test_models_dir());
        skip();
    }
    assert_int_equal(checked, N_KV_REFS);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool_accounting),   cmocka_unit_test(test_reserve_all_or_nothing),
        cmocka_unit_test(test_trim_keeps_kv),     cmocka_unit_test(test_interleaved_pages),
        cmocka_unit_test(test_unbacked_position), cmocka_unit_test(test_pooled_seq),
        cmocka_unit_test(test_q8_0_refused),      cmocka_unit_test(test_kv_refs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
