/* test_admission.c — fitting a request into the model's KV pool (daemon/admission.c), called
 * in-process on sessions built by hand over stories260K and a small pool.
 *
 * What it pins down (admission.h): a request takes its prompt's pages before it runs, all or
 * nothing (the rest come as it grows, decided by plan.c); when the pool is short, idle sessions
 * give their pages back, least recently used first and only as many as needed; running sessions
 * are never touched; when even every idle session's pages would not be enough, nothing is taken
 * (-ENOSPC, with the pages needed and free); and a preempted request resumes the same way, with
 * the pages to evaluate all its tokens again.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/admission.h"
#include "elm/status.h"
#include "engine/kv.h"
#include "engine/model.h"
#include "engine/seq.h"
#include "tests/common/elm_test.h"

#define POOL_PAGES 8

struct fix {
    struct elm_model *m;
    struct elm_kv_pool *pool;
    struct elmd_session *s[4];
};

static int setup(void **state)
{
    const char *path = elm_test_model_path("stories260K.gguf");
    if (!path) {
        print_message("SKIP: model file %s/stories260K.gguf not found (set ELM_MODELS_DIR)\n",
                      elm_test_models_dir());
        *state = NULL;
        return 0;
    }
    struct fix *f = calloc(1, sizeof *f);
    assert_non_null(f);
    struct elm_model_params mp = {.n_threads = 1};
    char err[256];
    assert_int_equal(elm_model_load(path, &mp, &f->m, err, sizeof err), 0);
    assert_int_equal(elm_kv_pool_create(f->m, ELM_TYPE_F16, POOL_PAGES, 0, &f->pool), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fix *f = *state;
    if (!f)
        return 0;
    for (int i = 0; i < 4; i++)
        if (f->s[i]) {
            elm_seq_destroy(&f->s[i]->seq);
            free(f->s[i]);
        }
    elm_kv_pool_destroy(&f->pool);
    elm_model_destroy(&f->m);
    free(f);
    return 0;
}

#define FIX()                                                                                      \
    struct fix *f = *state;                                                                        \
    if (!f)                                                                                        \
    skip()

/* Session i with an n_ctx-token context on the pool, holding no pages. */
static struct elmd_session *session(struct fix *f, int i, int32_t n_ctx, uint64_t last_used)
{
    struct elmd_session *s = calloc(1, sizeof *s);
    assert_non_null(s);
    s->id = (uint64_t)i + 1;
    s->model = f->m;
    s->pool = f->pool;
    s->n_ctx = n_ctx;
    s->last_used_ns = last_used;
    assert_int_equal(elm_seq_create_pooled(f->m, f->pool, n_ctx, &s->seq), 0);
    f->s[i] = s;
    return s;
}

/* The sessions made so far (in order): admission's view of the engine's active list. */
static int n_act(const struct fix *f)
{
    int n = 0;
    while (n < 4 && f->s[n])
        n++;
    return n;
}

/* A request of n prompt tokens that may generate n_predict (-1: the whole context). */
static struct elmd_wait *request(int32_t n, int32_t n_predict)
{
    struct elmd_wait *w = calloc(1, sizeof *w);
    assert_non_null(w);
    w->toks = malloc((size_t)n * sizeof *w->toks);
    assert_non_null(w->toks);
    for (int32_t i = 0; i < n; i++)
        w->toks[i] = 10 + i; /* ordinary tokens of the 512-token vocabulary */
    w->n = n;
    elm_gen_params_default(&w->gp);
    w->gp.n_predict = n_predict;
    return w;
}

/* Starts a request on s (which must fit) and marks it running or, when !running, ended with
 * its pages kept — as the scheduler leaves a session between two turns. */
static void occupy(struct fix *f, struct elmd_session *s, int32_t n, int32_t n_predict,
                   bool running)
{
    struct elmd_wait *w = request(n, n_predict);
    int reclaimed = 0;
    assert_int_equal(elmd_admit(f->s, n_act(f), s, w, &reclaimed), 0);
    assert_int_equal(reclaimed, 0);
    s->cur.active = running;
    elmd_wait_free(w);
}

static void test_fits(void **state)
{
    FIX();
    struct elmd_session *a = session(f, 0, 128, 1);
    struct elmd_wait *w = request(10, 22); /* the prompt's 10 positions: one page */
    assert_int_equal(elmd_wait_need(a, w), 1);
    assert_int_equal(elmd_request_pages(a, w), 1); /* 32 positions at most */
    int reclaimed = 0;
    assert_int_equal(elmd_admit(f->s, n_act(f), a, w, &reclaimed), 0);
    assert_int_equal(reclaimed, 0);
    assert_int_equal(elm_seq_pages(a->seq), 1);
    assert_int_equal(elm_kv_pool_free_pages(f->pool), POOL_PAGES - 1);
    elmd_wait_free(w);

    /* without a token limit the request may grow to its whole context, but starts with its
     * prompt's pages */
    struct elmd_session *b = session(f, 1, 128, 2);
    w = request(40, -1);
    assert_int_equal(elmd_wait_need(b, w), 2);
    assert_int_equal(elmd_request_pages(b, w), 4);
    assert_int_equal(elmd_admit(f->s, n_act(f), b, w, &reclaimed), 0);
    assert_int_equal(elm_seq_pages(b->seq), 2);
    assert_int_equal(elm_kv_pool_free_pages(f->pool), POOL_PAGES - 3);
    elmd_wait_free(w);
}

static void test_reclaims_least_recently_used(void **state)
{
    FIX();
    struct elmd_session *old = session(f, 0, 128, 100), *recent = session(f, 1, 128, 200);
    struct elmd_session *c = session(f, 2, 128, 300);
    occupy(f, recent, 120, -1, false); /* 4 pages each, the pool is full */
    occupy(f, old, 120, -1, false);
    assert_int_equal(elm_kv_pool_free_pages(f->pool), 0);

    struct elmd_wait *w = request(120, -1);
    int reclaimed = 0;
    assert_int_equal(elmd_admit(f->s, n_act(f), c, w, &reclaimed), 0);
    assert_int_equal(reclaimed, 1); /* one session was enough */
    assert_int_equal(elm_seq_pages(old->seq), 0);
    assert_int_equal(elm_seq_pages(recent->seq), 4);
    assert_int_equal(elm_seq_pages(c->seq), 4);
    elmd_wait_free(w);
}

static void test_running_sessions_are_never_touched(void **state)
{
    FIX();
    struct elmd_session *a = session(f, 0, 128, 1), *b = session(f, 1, 128, 2);
    struct elmd_session *c = session(f, 2, 128, 3);
    occupy(f, a, 120, -1, true);
    occupy(f, b, 120, -1, true);

    struct elmd_wait *w = request(10, 22);
    int reclaimed = 0;
    assert_int_equal(elmd_admit(f->s, n_act(f), c, w, &reclaimed), -ENOSPC);
    assert_int_equal(reclaimed, 0);
    assert_int_equal(w->need_pages, 1);
    assert_int_equal(w->free_pages, 0);
    assert_int_equal(elm_seq_pages(a->seq), 4);
    assert_int_equal(elm_seq_pages(b->seq), 4);
    assert_int_equal(elm_seq_pages(c->seq), 0);
    elmd_wait_free(w);
}

/* Another session's history is worth keeping when taking it would not let the request run. */
static void test_takes_nothing_unless_enough(void **state)
{
    FIX();
    struct elmd_session *run = session(f, 0, 128, 1), *idle = session(f, 1, 128, 2);
    struct elmd_session *big = session(f, 2, 256, 3);
    occupy(f, run, 120, -1, true); /* 4 pages */
    occupy(f, idle, 60, 4, false); /* 2 pages */
    assert_int_equal(elm_kv_pool_free_pages(f->pool), 2);

    struct elmd_wait *w = request(150, 10); /* 5 pages for its prompt; at most 4 could be had */
    int reclaimed = 0;
    assert_int_equal(elmd_admit(f->s, n_act(f), big, w, &reclaimed), -ENOSPC);
    assert_int_equal(reclaimed, 0);
    assert_int_equal(w->need_pages, 5);
    assert_int_equal(w->free_pages, 2);
    assert_int_equal(elm_seq_pages(idle->seq), 2);
    assert_int_equal(elm_seq_pages(big->seq), 0);
    elmd_wait_free(w);

    /* once the running one has ended, its pages and the idle one's make room */
    run->cur.active = false;
    w = request(150, 10);
    reclaimed = 0;
    assert_int_equal(elmd_admit(f->s, n_act(f), big, w, &reclaimed), 0);
    assert_int_equal(elm_seq_pages(big->seq), 5);
    assert_int_equal(reclaimed, 1);
    assert_int_equal(elm_seq_pages(run->seq), 0);  /* least recently used: it went first */
    assert_int_equal(elm_seq_pages(idle->seq), 2); /* and was enough */
    elmd_wait_free(w);
}

/* A preempted request gets back the pages for all its tokens, from idle sessions if needed,
 * and never from running ones. */
static void test_resume(void **state)
{
    FIX();
    struct elmd_session *a = session(f, 0, 128, 1), *idle = session(f, 1, 128, 5);
    struct elmd_session *done = session(f, 2, 128, 3), *run = session(f, 3, 128, 4);
    occupy(f, a, 120, -1, true); /* 4 pages */
    assert_int_equal(elm_seq_preempt(a->seq), 0); /* before it ran: nothing was evaluated */
    assert_int_equal(elm_seq_pages(a->seq), 0);
    occupy(f, idle, 40, 4, false); /* 2 pages */
    occupy(f, done, 40, 4, true);  /* 2 pages */
    occupy(f, run, 90, 4, true);   /* 3 pages: 1 free */
    int reclaimed = 0;
    assert_int_equal(elmd_resume(f->s, n_act(f), a, &reclaimed), -ENOSPC); /* 1 + 2 < 4 */
    assert_int_equal(reclaimed, 0);
    assert_int_equal(elm_seq_pages(idle->seq), 2);

    done->cur.active = false; /* used longer ago than idle: its pages go first, then idle's */
    assert_int_equal(elmd_resume(f->s, n_act(f), a, &reclaimed), 0);
    assert_int_equal(reclaimed, 2);
    assert_int_equal(elm_seq_pages(a->seq), 4);
    assert_int_equal(elm_seq_n_pending(a->seq), 120);
    assert_int_equal(elm_seq_pages(run->seq), 3);
    assert_int_equal(elm_kv_pool_free_pages(f->pool), 1);
}

/* A prompt longer than the context is refused before any page moves. */
static void test_prompt_beyond_context(void **state)
{
    FIX();
    struct elmd_session *a = session(f, 0, 64, 1);
    struct elmd_wait *w = request(65, 1);
    int reclaimed = 0;
    assert_int_equal(elmd_admit(f->s, n_act(f), a, w, &reclaimed), ELM_ECONTEXT);
    assert_int_equal(elm_kv_pool_free_pages(f->pool), POOL_PAGES);
    elmd_wait_free(w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reclaims_least_recently_used, setup, teardown),
        cmocka_unit_test_setup_teardown(test_running_sessions_are_never_touched, setup, teardown),
        cmocka_unit_test_setup_teardown(test_takes_nothing_unless_enough, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prompt_beyond_context, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
