/* test_elmd_kvpool.c — one KV pool for every session, and what happens when it runs out:
 *   - exhaustion: a daemon with a 2048-position pool (64 pages); two long requests take all of
 *     it (their clients do not read, so they stay running, paused on full event rings); more
 *     requests wait in the FIFO and get ELM_EBUSY with the pool's numbers after
 *     queue_timeout_ms, one beyond max_queued without waiting (while they still wait); the two
 * running ones then finish byte-identical to running alone, and a new request succeeds (taking an
 * idle session's pages);
 *   - a waiting request cancelled: DONE/CANCEL at once;
 *   - the session whose pages were taken: its next KEEP_CONTEXT turn evaluates its whole
 *     history again and gives the output of the whole conversation in-process;
 *   - max_queued = 0 and queue_timeout_ms = 0: refused without waiting.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tests/common/elmd_fixture.h"

#define POOL_TOKENS "2048" /* 64 pages of 32 */
#define SMALL_RING  16384  /* event ring of the non-reading clients: ~590 tokens, then paused */
#define N_LONG      1000   /* reserves 32 pages with its prompt */
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

static uint64_t status_u64(struct tc *c, uint16_t tag)
{
    assert_int_equal(tc_simple(c, ELM_CMD_STATUS), 0);
    return tc_u64(c, tag);
}

/* Waits up to 10 s for STATUS's tag to become want. */
static void wait_status(struct tc *c, uint16_t tag, uint64_t want)
{
    int64_t end = td_deadline(10000);
    while (status_u64(c, tag) != want && td_now_ms() < end)
        td_sleep_ms(5);
    assert_int_equal(status_u64(c, tag), want);
}

static const char *const long_prompts[2] = {"Once upon a time", "The little dog"};

/* Two sessions whose long requests hold the whole pool, their clients not reading. */
static void fill_pool(struct fx *f, struct ts long_s[2])
{
    assert_int_equal(status_u64(&f->c, ELM_TAG_KV_PAGES), 64);
    assert_int_equal(tc_u64(&f->c, ELM_TAG_N_CTX), 2048);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(ts_open_evt(&f->c, &long_s[i], getpid(), 0, SMALL_RING), 0);
        assert_int_equal(ts_prompt(&long_s[i], 1, long_prompts[i], N_LONG, 0, 1), 0);
    }
    wait_status(&f->c, ELM_TAG_KV_PAGES_FREE, 0);
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

    /* Two wait (max_queued 2); the third finds the queue full and is refused without waiting:
     * its refusal comes while the other two are still queued, with nothing on their rings. */
    assert_int_equal(ts_prompt(&w[0], 7, "Tom had a red ball", 50, 0, 1), 0);
    assert_int_equal(ts_prompt(&w[1], 8, "Tom had a red ball", 50, 0, 1), 0);
    wait_status(&f->c, ELM_TAG_N_QUEUED, 2);
    expect_busy(&w[2], 9, &r[2]);
    print_message("queue full: %s\n", r[2].err_msg);
    assert_int_equal(status_u64(&f->c, ELM_TAG_N_QUEUED), 2);
    for (int i = 0; i < 2; i++) {
        memset(&r[i], 0, sizeof r[i]);
        assert_int_equal(ts_next(&w[i], &r[i], 0, NULL), -ETIMEDOUT);
    }
    /* The waiting ones: ELM_EBUSY once queue_timeout_ms has passed, with the pool's numbers (a
     * 50-token answer to a 6-token prompt needs 2 pages). */
    for (int i = 0; i < 2; i++) {
        assert_int_equal(ts_collect(&w[i], &r[i], 60000), 0);
        assert_true(r[i].error);
        assert_int_equal(r[i].err_code, ELM_EBUSY);
        assert_int_equal(r[i].req_id, 7 + i);
        assert_string_equal(r[i].err_msg, "no KV memory free: 2 pages needed, 0 free; try later");
    }
    wait_status(&f->c, ELM_TAG_N_QUEUED, 0); /* published at the end of the engine's step */
    assert_int_equal(stat_u64(&f->c, ELM_TAG_N_BUSY), 3);
    /* A waiting request can be cancelled: DONE/CANCEL, nothing generated. */
    assert_int_equal(ts_prompt(&w[0], 11, "Tom had a red ball", 50, 0, 1), 0);
    wait_status(&f->c, ELM_TAG_N_QUEUED, 1);
    assert_int_equal(elm_rec_cancel_push(&w[0].r.req, 11), 0);
    assert_int_equal(ts_collect(&w[0], &r[0], 5000), 0);
    assert_true(r[0].done);
    assert_int_equal(r[0].req_id, 11);
    assert_int_equal(r[0].dn.reason, ELM_DONE_CANCEL);
    assert_int_equal(r[0].n_ids, 0);
    wait_status(&f->c, ELM_TAG_N_QUEUED, 0);
    assert_int_equal(stat_u64(&f->c, ELM_TAG_N_BUSY), 3);
    /* Running requests were never touched: both still run, and finish as they would alone. */
    for (int i = 0; i < 2; i++)
        finish_long(&long_s[i], i, &got[i]);

    /* Now the pool is full of the two idle conversations: a new request takes the pages of the
     * least recently used one and runs. */
    static struct ts_result want, ok;
    local_greedy(elm_test_model_path(TD_MODEL), "Tom had a red ball", 50, &want);
    uint64_t reclaimed0 = stat_u64(&f->c, ELM_TAG_N_KV_RECLAIMED);
    assert_int_equal(ts_prompt(&w[0], 10, "Tom had a red ball", 50, 0, 1), 0);
    assert_int_equal(ts_collect(&w[0], &ok, 20000), 0);
    assert_false(ok.error);
    assert_same(&ok, &want);
    assert_int_equal(stat_u64(&f->c, ELM_TAG_N_KV_RECLAIMED) - reclaimed0, 1);

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
    assert_int_equal(ts_collect(&long_s[0], &turn2, 20000), 0);
    assert_false(turn2.error);
    assert_same(&turn2, &want2);
    print_message("turn 2 of the reclaimed session: %u of %d tokens evaluated\n", turn2.dn.n_prompt,
                  n);
    /* long_s[0] finished first, so its pages went first: nothing of it was kept. */
    assert_int_equal(turn2.dn.n_prompt, n);
    assert_int_equal(stat_u64(&f->c, ELM_TAG_N_PROMPT_REUSED) - reused0, 0);
    elm_model_destroy(&m);
    for (int i = 0; i < 2; i++)
        assert_int_equal(ts_close(&f->c, &long_s[i]), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(ts_close(&f->c, &w[i]), 0);
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
    assert_string_equal(r.err_msg, "no KV memory free: 2 pages needed, 0 free; try later");
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
    assert_int_equal(status_u64(&f->c, ELM_TAG_N_QUEUED), 0);
    for (int i = 0; i < 2; i++)
        finish_long(&long_s[i], i, &got[i]);
    for (int i = 0; i < 2; i++)
        assert_int_equal(ts_close(&f->c, &long_s[i]), 0);
    assert_int_equal(ts_close(&f->c, &w), 0);
}

int main(int argc, char **argv)
{
    (void)argc;
    td_omp_passive(argv);
    td_alarm(300);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_exhaustion, setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_no_queue, setup_no_queue, fx_teardown),
        cmocka_unit_test_setup_teardown(test_no_wait, setup_no_wait, fx_teardown),
    };
    if (getenv("ELMD_TEST_FILTER"))
        cmocka_set_test_filter(getenv("ELMD_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
