/* test_elmd_kvpool.c — one KV pool for every session, taken page by page, and what happens when
 * it runs out:
 *   - sixteen: 16 concurrent requests without a token limit on a pool that holds 4 full
 *     contexts all complete, none refused, each equal byte for byte to the same request run
 *     alone; stats count the preemptions and recomputed tokens;
 *   - larger than the pool: a request that could need more positions than the whole pool holds
 *     fails at once with ELM_ECONTEXT and the numbers; the same session's bounded request runs;
 *   - exhaustion: a daemon with a 2048-position pool (64 pages); two requests with ~1000-token
 *     prompts take all of it, their clients not reading; the older grows and preempts the
 *     younger (requeued); new requests wait in the FIFO behind it and get ELM_EBUSY with the
 *     pool's numbers after queue_timeout_ms, one beyond max_queued without waiting (while they
 *     still wait); both long ones then finish byte-identical to running alone (the preempted
 *     one recomputed), and a new request succeeds;
 *   - a waiting request cancelled: DONE/CANCEL at once;
 *   - the session whose pages were taken: its next KEEP_CONTEXT turn evaluates its whole
 *     history again and gives the output of the whole conversation in-process;
 *   - max_queued = 0 and queue_timeout_ms = 0: refused without waiting; a preempted request
 *     cancelled: DONE/CANCEL.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/common/elmd_fixture.h"

#define POOL_TOKENS "2048" /* 64 pages of 32 */
#define SMALL_RING  16384  /* event ring of the non-reading clients: ~590 tokens, then paused */
#define N_LONG      1000   /* tokens the long requests generate */
#define LONG_PROMPT 980    /* at least this many prompt tokens: 31 or 32 pages */
/* queue_timeout_ms of the exhaustion test: far longer than a refusal takes, so that "refused at
 * once" shows as an order of events (the queue-full refusal comes while the waiting ones still
 * wait), not as a latency; a bound that only a hung daemon would reach. */
#define TIMEOUT_MS "8000"

static int start(void **state, const char *max_queued, const char *timeout_ms)
{
    const char *extra[] = {"--threads",
                           "1",
                           "--max-sessions",
                           "8",
                           "--kv-pool-tokens",
                           POOL_TOKENS,
                           "--max-queued",
                           max_queued,
                           "--queue-timeout-ms",
                           timeout_ms,
                           NULL};
    return fx_start(state, extra);
}

static int setup(void **state)
{
    return start(state, "2", TIMEOUT_MS);
}

static int setup_no_queue(void **state)
{
    return start(state, "0", "30000");
}

static int setup_no_wait(void **state)
{
    return start(state, "16", "0");
}

/* 16 sessions of 128 tokens on a pool of 512 positions: 4 full contexts. A session may ask for
 * more context than the pool holds (up to the model's 2048): its unbounded requests cannot be
 * served. */
static int setup_sixteen(void **state)
{
    const char *extra[] = {"--threads", "1", "--max-sessions", "17", "--ctx", "128",
                           "--kv-pool-tokens", "512", "--max-queued", "16",
                           /* a bound only a hung daemon reaches: nothing may be refused */
                           "--queue-timeout-ms", "600000", NULL};
    return fx_start(state, extra);
}

static uint64_t status_u64(struct tc *c, uint16_t tag)
{
    assert_int_equal(tc_simple(c, ELM_CMD_STATUS), 0);
    return tc_u64(c, tag);
}

/* Waits up to ms for STATUS's tag to become want (a bound only a hung daemon reaches). */
static void wait_status_ms(struct tc *c, uint16_t tag, uint64_t want, int ms)
{
    int64_t end = td_deadline(ms);
    while (status_u64(c, tag) != want && td_now_ms() < end)
        td_sleep_ms(5);
    assert_int_equal(status_u64(c, tag), want);
}

static void wait_status(struct tc *c, uint16_t tag, uint64_t want)
{
    wait_status_ms(c, tag, want, 30000);
}

static const char *const long_seeds[2] = {"Once upon a time", "The little dog"};
static char long_prompts[2][8192];

/* A prompt of LONG_PROMPT to LONG_PROMPT + 20 tokens: seed, then a story sentence repeated. */
static void make_long_prompts(void)
{
    if (long_prompts[0][0])
        return;
    struct elm_model *m = local_model(elm_test_model_path(TD_MODEL));
    for (int i = 0; i < 2; i++) {
        char *p = long_prompts[i];
        snprintf(p, sizeof long_prompts[i], "%s", long_seeds[i]);
        for (;;) {
            int32_t *ids, n;
            assert_int_equal(elm_prompt_tokenize(m, p, strlen(p), false, &ids, &n), 0);
            free(ids);
            if (n >= LONG_PROMPT)
                break;
            strcat(p, " Tom saw a big red ball.");
            assert_true(strlen(p) < sizeof long_prompts[i] - 64);
        }
    }
    elm_model_destroy(&m);
}

/* Two sessions whose long requests hold the whole pool, their clients not reading: the older
 * grows and preempts the younger, which waits to be recomputed (the FIFO's first). */
static void fill_pool(struct fx *f, struct ts long_s[2])
{
    make_long_prompts();
    assert_int_equal(status_u64(&f->c, ELM_TAG_KV_PAGES), 64);
    assert_int_equal(tc_u64(&f->c, ELM_TAG_N_CTX), 2048);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(ts_open_evt(&f->c, &long_s[i], getpid(), 0, SMALL_RING), 0);
        assert_int_equal(ts_prompt(&long_s[i], 1, long_prompts[i], N_LONG, 0, 1), 0);
    }
    /* two prompts of ~1000 tokens first: minutes under ASan on a loaded machine */
    wait_status_ms(&f->c, ELM_TAG_N_QUEUED, 1, 240000);
    assert_int_equal(stat_u64(&f->c, ELM_TAG_N_PREEMPTIONS), 1);
}

/* Reads a long request to its end; it must be what the engine gives alone (computed once: a
 * 1000-token reference takes seconds on a busy machine). */
static void finish_long(struct ts *s, int i, struct ts_result *got)
{
    static struct ts_result want[2];
    if (!want[i].done)
        local_greedy(elm_test_model_path(TD_MODEL), long_prompts[i], N_LONG, &want[i]);
    assert_int_equal(ts_collect(s, got, 60000), 0);
    assert_false(got->error);
    assert_int_equal(got->dn.reason, ELM_DONE_LENGTH);
    assert_same(got, &want[i]);
}

/* The refusal of a short request behind the preempted long one: its one page is not the
 * question, the request before it is (the free pages depend on where the older long request
 * paused). */
static void assert_busy_msg(const char *msg, int ahead)
{
    char want[64];
    snprintf(want, sizeof want, "free, %d requests waiting before it; try later", ahead);
    assert_non_null(strstr(msg, "no KV memory for this request: 1 pages needed, "));
    assert_non_null(strstr(msg, want));
}

/* Sends a short request on s and waits (up to 20 s) for its ERROR ELM_EBUSY. */
static void expect_busy(struct ts *s, uint32_t req_id, struct ts_result *r)
{
    assert_int_equal(ts_prompt(s, req_id, "Tom had a red ball", 50, 0, 1), 0);
    assert_int_equal(ts_collect(s, r, 20000), 0);
    assert_true(r->error);
    assert_int_equal(r->err_code, ELM_EBUSY);
    assert_int_equal(r->req_id, req_id);
    assert_int_equal(r->n_ids, 0);
}

static void test_exhaustion(void **state)
{
    struct fx *f = *state;
    REQUIRE_DAEMON(f);
    struct ts long_s[2], w[3];
    static struct ts_result got[2], r[3];
    fill_pool(f, long_s);
    for (int i = 0; i < 3; i++)
        assert_int_equal(ts_open(&f->c, &w[i], getpid(), 0), 0);

    /* Two wait (max_queued 2: the preempted request is not one of them); the third finds the
     * queue full and is refused without waiting: its refusal comes while the other two are
     * still queued, with nothing on their rings. */
    assert_int_equal(ts_prompt(&w[0], 7, "Tom had a red ball", 50, 0, 1), 0);
    assert_int_equal(ts_prompt(&w[1], 8, "Tom had a red ball", 50, 0, 1), 0);
    wait_status(&f->c, ELM_TAG_N_QUEUED, 3);
    expect_busy(&w[2], 9, &r[2]);
    print_message("queue full: %s\n", r[2].err_msg);
    assert_busy_msg(r[2].err_msg, 3);
    assert_int_equal(status_u64(&f->c, ELM_TAG_N_QUEUED), 3);
    for (int i = 0; i < 2; i++) {
        memset(&r[i], 0, sizeof r[i]);
        assert_int_equal(ts_next(&w[i], &r[i], 0, NULL), -ETIMEDOUT);
    }
    /* The waiting ones: ELM_EBUSY once queue_timeout_ms has passed, with the pool's numbers (a
     * 6-token prompt needs 1 page) and the requests before them; the preempted one never
     * times out: it has started. */
    for (int i = 0; i < 2; i++) {
        assert_int_equal(ts_collect(&w[i], &r[i], 60000), 0);
        assert_true(r[i].error);
        assert_int_equal(r[i].err_code, ELM_EBUSY);
        assert_int_equal(r[i].req_id, 7 + i);
        assert_busy_msg(r[i].err_msg, 1 + i);
    }
    wait_status(&f->c, ELM_TAG_N_QUEUED, 1); /* published at the end of the engine's step */
    assert_int_equal(stat_u64(&f->c, ELM_TAG_N_BUSY), 3);
    /* A waiting request can be cancelled: DONE/CANCEL, nothing generated. */
    assert_int_equal(ts_prompt(&w[0], 11, "Tom had a red ball", 50, 0, 1), 0);
    wait_status(&f->c, ELM_TAG_N_QUEUED, 2);
    assert_int_equal(elm_rec_cancel_push(&w[0].r.req, 11), 0);
    assert_int_equal(ts_collect(&w[0], &r[0], 5000), 0);
    assert_true(r[0].done);
    assert_int_equal(r[0].req_id, 11);
    assert_int_equal(r[0].dn.reason, ELM_DONE_CANCEL);
    assert_int_equal(r[0].n_ids, 0);
    wait_status(&f->c, ELM_TAG_N_QUEUED, 1);
    assert_int_equal(stat_u64(&f->c, ELM_TAG_N_BUSY), 3);
    /* Both long requests finish as they would alone: the older ran on, the preempted one
     * resumes once the older has ended (taking its kept pages: reclaimed) and recomputes. */
    for (int i = 0; i < 2; i++)
        finish_long(&long_s[i], i, &got[i]);
    assert_int_equal(stat_u64(&f->c, ELM_TAG_N_PREEMPTIONS), 1);
    assert_true(stat_u64(&f->c, ELM_TAG_N_RECOMPUTED) >= LONG_PROMPT);
    assert_int_equal(stat_u64(&f->c, ELM_TAG_N_KV_RECLAIMED), 1);

    /* A new request runs beside the idle conversation (taking its pages if it must). */
    static struct ts_result want, ok;
    local_greedy(elm_test_model_path(TD_MODEL), "Tom had a red ball", 50, &want);
    assert_int_equal(ts_prompt(&w[0], 10, "Tom had a red ball", 50, 0, 1), 0);
    assert_int_equal(ts_collect(&w[0], &ok, 60000), 0);
    assert_false(ok.error);
    assert_same(&ok, &want);

    /* The session that lost its pages continues its conversation: its history is evaluated
     * again (DONE's n_prompt is all of it) and the answer is that of the whole conversation. */
    struct elm_model *m = local_model(elm_test_model_path(TD_MODEL));
    static int32_t conv[4096];
    int32_t *ids, n_ids;
    assert_int_equal(
        elm_prompt_tokenize(m, long_prompts[0], strlen(long_prompts[0]), false, &ids, &n_ids), 0);
    memcpy(conv, ids, (size_t)n_ids * sizeof *ids);
    free(ids);
    int32_t n = n_ids;
    memcpy(conv + n, got[0].ids, (size_t)got[0].n_ids * sizeof *conv);
    n += got[0].n_ids;
    const char *more = " The end";
    int32_t n_more = elm_tokenize(m->vocab, more, strlen(more), false, false, conv + n, 4096 - n);
    assert_true(n_more > 0);
    n += n_more;
    static struct ts_result turn2, want2;
    local_greedy_ids(m, conv, n, 10, &want2);
    uint64_t reused0 = stat_u64(&f->c, ELM_TAG_N_PROMPT_REUSED);
    assert_int_equal(ts_prompt_flags(&long_s[0], 2, more, 10, 0, 1, ELM_PROMPT_F_KEEP_CONTEXT), 0);
    assert_int_equal(ts_collect(&long_s[0], &turn2, 120000), 0); /* ~2000 tokens again */
    assert_false(turn2.error);
    assert_same(&turn2, &want2);
    print_message("turn 2 of the reclaimed session: %u of %d tokens evaluated\n", turn2.dn.n_prompt,
                  n);
    /* long_s[0]'s pages went to the preempted request: nothing of it was kept. */
    assert_int_equal(turn2.dn.n_prompt, n);
    assert_int_equal(stat_u64(&f->c, ELM_TAG_N_PROMPT_REUSED) - reused0, 0);
    elm_model_destroy(&m);
    for (int i = 0; i < 2; i++)
        assert_int_equal(ts_close(&f->c, &long_s[i]), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(ts_close(&f->c, &w[i]), 0);
}

#define N_SIXTEEN 16

/* Sixteen different stories (greedy, no token limit: each runs to EOS or its context). */
static void sixteen_prompt(int i, char *buf, size_t cap)
{
    static const char *const who[4] = {"Tom", "Lily", "a little dog", "the old king"};
    static const char *const what[4] = {"a red ball", "a big tree", "a shiny box", "the sea"};
    snprintf(buf, cap, "Once upon a time, %s found %s.", who[i % 4], what[i / 4]);
}

static void test_sixteen(void **state)
{
    struct fx *f = *state;
    REQUIRE_DAEMON(f);
    assert_int_equal(status_u64(&f->c, ELM_TAG_KV_PAGES), 16);
    static struct ts s[N_SIXTEEN];
    static struct ts_result alone[N_SIXTEEN], got[N_SIXTEEN];
    char prompt[128];
    for (int i = 0; i < N_SIXTEEN; i++)
        assert_int_equal(ts_open(&f->c, &s[i], getpid(), 0), 0);
    /* each alone: one request at a time on the daemon */
    for (int i = 0; i < N_SIXTEEN; i++) {
        sixteen_prompt(i, prompt, sizeof prompt);
        assert_int_equal(ts_prompt(&s[i], 1, prompt, 0, 0, 1), 0);
        assert_int_equal(ts_collect(&s[i], &alone[i], 60000), 0);
        assert_false(alone[i].error);
    }
    assert_int_equal(stat_u64(&f->c, ELM_TAG_N_PREEMPTIONS), 0);
    /* all at once: the pool cannot hold them; none is refused, each gives the same bytes */
    for (int i = 0; i < N_SIXTEEN; i++) {
        sixteen_prompt(i, prompt, sizeof prompt);
        assert_int_equal(ts_prompt(&s[i], 2, prompt, 0, 0, 1), 0);
    }
    size_t total = 0;
    for (int i = 0; i < N_SIXTEEN; i++) {
        assert_int_equal(ts_collect(&s[i], &got[i], 120000), 0);
        if (got[i].error)
            fail_msg("request %d: error %d: %s", i, got[i].err_code, got[i].err_msg);
        assert_int_equal(got[i].dn.reason, alone[i].dn.reason);
        assert_same(&got[i], &alone[i]);
        total += (size_t)got[i].n_ids;
    }
    uint64_t pre = stat_u64(&f->c, ELM_TAG_N_PREEMPTIONS);
    uint64_t rec = stat_u64(&f->c, ELM_TAG_N_RECOMPUTED);
    print_message("16 requests, %zu tokens: %llu preemptions, %llu tokens recomputed\n", total,
                  (unsigned long long)pre, (unsigned long long)rec);
    assert_true(pre > 0);
    assert_true(rec > 0);
    assert_int_equal(stat_u64(&f->c, ELM_TAG_N_BUSY), 0);
    assert_int_equal(stat_u64(&f->c, ELM_TAG_N_ERRORS), 0);
    for (int i = 0; i < N_SIXTEEN; i++)
        assert_int_equal(ts_close(&f->c, &s[i]), 0);
}

/* A request that could need more than the whole pool: refused at once, with its numbers. */
static void test_larger_than_pool(void **state)
{
    struct fx *f = *state;
    REQUIRE_DAEMON(f);
    struct ts s;
    static struct ts_result r, ok;
    assert_int_equal(ts_open(&f->c, &s, getpid(), 1024), 0);
    assert_int_equal(ts_prompt(&s, 1, "Once upon a time", 0, 0, 1), 0);
    assert_int_equal(ts_collect(&s, &r, 20000), 0);
    assert_true(r.error);
    assert_int_equal(r.err_code, ELM_ECONTEXT);
    print_message("refused: %s\n", r.err_msg);
    assert_non_null(strstr(r.err_msg, "may need 1024 KV positions"));
    assert_non_null(strstr(r.err_msg, "context 1024"));
    assert_non_null(strstr(r.err_msg, "the whole KV pool holds 512 (16 pages of 32)"));
    /* bounded, it fits: it runs */
    assert_int_equal(ts_prompt(&s, 2, "Once upon a time", 20, 0, 1), 0);
    assert_int_equal(ts_collect(&s, &ok, 20000), 0);
    assert_false(ok.error);
    assert_int_equal(ok.n_ids, 20);
    assert_int_equal(ts_close(&f->c, &s), 0);
}

/* max_queued = 0: nobody waits. */
static void test_no_queue(void **state)
{
    struct fx *f = *state;
    REQUIRE_DAEMON(f);
    struct ts long_s[2], w;
    static struct ts_result got[2], r;
    fill_pool(f, long_s);
    assert_int_equal(ts_open(&f->c, &w, getpid(), 0), 0);
    /* refused, not queued: expect_busy's 20 s wait ends before the 30 s queue timeout */
    expect_busy(&w, 3, &r);
    print_message("refused: %s\n", r.err_msg);
    assert_busy_msg(r.err_msg, 1);
    for (int i = 0; i < 2; i++)
        finish_long(&long_s[i], i, &got[i]);
    assert_int_equal(stat_u64(&f->c, ELM_TAG_N_BUSY), 1);
    for (int i = 0; i < 2; i++)
        assert_int_equal(ts_close(&f->c, &long_s[i]), 0);
    assert_int_equal(ts_close(&f->c, &w), 0);
}

/* queue_timeout_ms = 0: the same. */
static void test_no_wait(void **state)
{
    struct fx *f = *state;
    REQUIRE_DAEMON(f);
    struct ts long_s[2], w;
    static struct ts_result got[2], r;
    fill_pool(f, long_s);
    assert_int_equal(ts_open(&f->c, &w, getpid(), 0), 0);
    expect_busy(&w, 3, &r);
    assert_int_equal(status_u64(&f->c, ELM_TAG_N_QUEUED), 1); /* the preempted one */
    /* A preempted request can be cancelled: DONE/CANCEL after the tokens it had sent. */
    assert_int_equal(elm_rec_cancel_push(&long_s[1].r.req, 1), 0);
    assert_int_equal(ts_collect(&long_s[1], &got[1], 20000), 0);
    assert_true(got[1].done);
    assert_int_equal(got[1].dn.reason, ELM_DONE_CANCEL);
    assert_true(got[1].n_ids < N_LONG);
    wait_status(&f->c, ELM_TAG_N_QUEUED, 0);
    finish_long(&long_s[0], 0, &got[0]);
    for (int i = 0; i < 2; i++)
        assert_int_equal(ts_close(&f->c, &long_s[i]), 0);
    assert_int_equal(ts_close(&f->c, &w), 0);
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    td_alarm(540); /* under the 600 s of ctest: ASan and a loaded machine make this file slow */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sixteen, setup_sixteen, fx_teardown),
        cmocka_unit_test_setup_teardown(test_larger_than_pool, setup_sixteen, fx_teardown),
        cmocka_unit_test_setup_teardown(test_exhaustion, setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_no_queue, setup_no_queue, fx_teardown),
        cmocka_unit_test_setup_teardown(test_no_wait, setup_no_wait, fx_teardown),
    };
    if (getenv("ELMD_TEST_FILTER"))
        cmocka_set_test_filter(getenv("ELMD_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
