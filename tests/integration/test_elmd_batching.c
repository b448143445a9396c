/* test_elmd_batching.c — the batch changes under a session's feet and its output does not:
 *   - cancel mid-batch: four sessions stream in the same batch; one is cancelled after a few
 *     tokens and ends with DONE/CANCEL at most one token after the cancel was sent; the other
 *     three are byte-identical to running alone;
 *   - joins and leaves at every step: sessions start one after another (each when the previous
 *     one has produced a token) with different prompt lengths and n_predict, and a prefill chunk
 *     of 3, so the batch's shape changes nearly every step; each output equals its alone output;
 *   - prefix reuse: a KEEP_CONTEXT turn evaluates only its new tokens (DONE's n_prompt, the
 *     stats' reused counter) and equals generating over the whole conversation in-process; a
 *     new prompt sharing a prefix with the session's previous one reuses that prefix;
 *   - `elmctl status --json` reports the KV pool.
 * "Alone" is the engine in this process (local_greedy*), greedy, so the comparison is exact.
 */
#include <sys/wait.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kernels/kernels.h"
#include "tests/common/elmd_fixture.h"
#include "tests/common/json.h"

static int setup(void **state)
{
    const char *extra[] = {"--threads", "1", "--max-sessions", "8", NULL};
    return fx_start(state, extra);
}

/* A prefill chunk of 3 tokens: prompts take several steps, so chunks and decodes mix. */
static int setup_small_chunks(void **state)
{
    const char *extra[] = {"--threads", "1", "--max-sessions", "8", "--prefill-chunk", "3", NULL};
    return fx_start(state, extra);
}

/* ---- cancel mid-batch ---------------------------------------------------------------------- */

#define N_CANCEL 4
#define VICTIM   1
#define K_BEFORE 5   /* tokens the victim streams before its cancel */
#define N_OTHERS 150 /* tokens of the sessions that run to the end */
#define N_VICTIM 1900

static void test_cancel_mid_batch(void **state)
{
    struct fx *f = *state;
    REQUIRE_DAEMON(f);
    static const char *const prompts[N_CANCEL] = {"Once upon a time", "The little dog",
                                                  "Lily and Ben went to the park", "Mom said"};
    static struct ts_result want[N_CANCEL], got[N_CANCEL];
    struct ts s[N_CANCEL];
    for (int i = 0; i < N_CANCEL; i++) {
        if (i != VICTIM)
            local_greedy(elm_test_model_path(TD_MODEL), prompts[i], N_OTHERS, &want[i]);
        assert_int_equal(ts_open(&f->c, &s[i], getpid(), 0), 0);
    }
    local_greedy(elm_test_model_path(TD_MODEL), prompts[VICTIM], K_BEFORE, &want[VICTIM]);
    uint64_t steps0 = stat_u64(&f->c, ELM_TAG_N_STEPS);
    for (int i = 0; i < N_CANCEL; i++)
        assert_int_equal(
            ts_prompt(&s[i], 10 + i, prompts[i], i == VICTIM ? N_VICTIM : N_OTHERS, 0, 1), 0);
    memset(got, 0, sizeof got);
    while (got[VICTIM].n_ids < K_BEFORE)
        assert_int_equal(ts_next(&s[VICTIM], &got[VICTIM], 10000, NULL), 0);
    assert_int_equal(elm_rec_cancel_push(&s[VICTIM].r.req, 10 + VICTIM), 0);
    /* Everything the daemon published before it could have seen the cancel ends at head. */
    uint32_t head = atomic_load_explicit(&s[VICTIM].r.evt.hdr->head, memory_order_acquire);
    int after = 0, rc;
    uint32_t pos;
    while ((rc = ts_next(&s[VICTIM], &got[VICTIM], 10000, &pos)) == 0)
        after += (int32_t)(pos - head) >= 0;
    assert_int_equal(rc, 1);
    assert_true(got[VICTIM].done);
    assert_int_equal(got[VICTIM].dn.reason, ELM_DONE_CANCEL);
    print_message("victim: %d tokens, %d of them after the cancel was sent\n", got[VICTIM].n_ids,
                  after);
    /* The step running when the cancel arrived may still send its token; the next one ends
     * the request. */
    assert_true(after <= 1);
    assert_true(got[VICTIM].n_ids < N_VICTIM);
    /* What it sent is the start of its alone output. */
    struct ts_result ref;
    local_greedy(elm_test_model_path(TD_MODEL), prompts[VICTIM], got[VICTIM].n_ids, &ref);
    assert_memory_equal(got[VICTIM].ids, ref.ids, (size_t)got[VICTIM].n_ids * sizeof(int32_t));
    int total = got[VICTIM].n_ids;
    for (int i = 0; i < N_CANCEL; i++) {
        if (i == VICTIM)
            continue;
        assert_int_equal(ts_collect(&s[i], &got[i], 20000), 0);
        assert_same(&got[i], &want[i]);
        assert_int_equal(got[i].dn.reason, ELM_DONE_LENGTH);
        total += got[i].n_ids;
    }
    /* They shared passes: far fewer forward passes than tokens. */
    uint64_t steps = stat_u64(&f->c, ELM_TAG_N_STEPS) - steps0;
    print_message("%d tokens in %llu forward passes\n", total, (unsigned long long)steps);
    assert_true(steps * 2 < (uint64_t)total);
    for (int i = 0; i < N_CANCEL; i++)
        assert_int_equal(ts_close(&f->c, &s[i]), 0);
}

/* ---- joins and leaves ---------------------------------------------------------------------- */

#define N_JOIN 6

static void test_joins_and_leaves(void **state)
{
    struct fx *f = *state;
    REQUIRE_DAEMON(f);
    static const char *const prompts[N_JOIN] = {
        "Once upon a time",
        "Tom had a red ball. He liked to play with it every day in the garden",
        "The sun",
        "Lily and Ben went to the park to see the big tree and the little birds",
        "One day, a big bird",
        "Mom said",
    };
    static const int n_predict[N_JOIN] = {41, 23, 57, 12, 33, 48};
    static struct ts_result want[N_JOIN], got[N_JOIN];
    struct ts s[N_JOIN];
    for (int i = 0; i < N_JOIN; i++) {
        local_greedy(elm_test_model_path(TD_MODEL), prompts[i], n_predict[i], &want[i]);
        assert_int_equal(ts_open(&f->c, &s[i], getpid(), 0), 0);
    }
    memset(got, 0, sizeof got);
    bool ended[N_JOIN] = {0};
    /* Session i starts once session i-1 has streamed its first tokens; everyone is read
     * round-robin meanwhile, so each of them joins a running batch and they leave at
     * different steps. */
    int started = 0, n_ended = 0;
    while (n_ended < N_JOIN) {
        if (started < N_JOIN &&
            (started == 0 || got[started - 1].n_ids >= 2 || ended[started - 1])) {
            assert_int_equal(ts_prompt(&s[started], 100 + started, prompts[started],
                                       (uint32_t)n_predict[started], 0, 1),
                             0);
            started++;
        }
        for (int i = 0; i < started; i++) {
            if (ended[i])
                continue;
            int rc = ts_next(&s[i], &got[i], 1, NULL);
            assert_true(rc == 0 || rc == 1 || rc == -ETIMEDOUT);
            if (rc == 1) {
                ended[i] = true;
                n_ended++;
            }
        }
    }
    for (int i = 0; i < N_JOIN; i++) {
        assert_false(got[i].error);
        assert_int_equal(got[i].req_id, 100 + i);
        assert_same(&got[i], &want[i]);
        assert_int_equal(ts_close(&f->c, &s[i]), 0);
    }
}

/* ---- prefix reuse -------------------------------------------------------------------------- */

/* Tokens of text as the daemon tokenizes a prompt: with BOS per the vocabulary, or none. */
static int32_t tokens_of(const struct elm_model *m, const char *text, bool bos, int32_t *out,
                         int cap)
{
    if (bos) {
        int32_t *ids, n;
        assert_int_equal(elm_prompt_tokenize(m, text, strlen(text), false, &ids, &n), 0);
        assert_true(n <= cap);
        memcpy(out, ids, (size_t)n * sizeof *ids);
        free(ids);
        return n;
    }
    int n = elm_tokenize(m->vocab, text, strlen(text), false, false, out, cap);
    assert_true(n > 0 && n <= cap);
    return n;
}

static void test_prefix_reuse(void **state)
{
    struct fx *f = *state;
    REQUIRE_DAEMON(f);
    struct elm_model *m = local_model(elm_test_model_path(TD_MODEL));
    static struct ts_result r1, r2, want;
    static int32_t conv[4096];
    struct ts s;
    assert_int_equal(ts_open(&f->c, &s, getpid(), 0), 0);

    /* Turn 1, then turn 2 continuing it. */
    const char *t1 = "Once upon a time there was a little girl", *t2 = " She went to the park";
    int32_t n1 = tokens_of(m, t1, true, conv, 4096);
    assert_int_equal(ts_prompt(&s, 1, t1, 20, 0, 1), 0);
    assert_int_equal(ts_collect(&s, &r1, 20000), 0);
    assert_int_equal(r1.n_ids, 20);
    assert_int_equal(r1.dn.n_prompt, n1);
    uint64_t reused0 = stat_u64(&f->c, ELM_TAG_N_PROMPT_REUSED);
    uint64_t eval0 = stat_u64(&f->c, ELM_TAG_N_PROMPT_TOKENS);
    int32_t n = n1;
    memcpy(conv + n, r1.ids, 20 * sizeof *conv);
    n += 20;
    int32_t n2 = tokens_of(m, t2, false, conv + n, 4096 - n);
    n += n2;
    assert_int_equal(ts_prompt_flags(&s, 2, t2, 25, 0, 1, ELM_PROMPT_F_KEEP_CONTEXT), 0);
    assert_int_equal(ts_collect(&s, &r2, 20000), 0);
    /* Evaluated: the new tokens and the last answer token (sampled, never fed back). */
    print_message("turn 2: %u prompt tokens evaluated of %d\n", r2.dn.n_prompt, n);
    assert_int_equal(r2.dn.n_prompt, n2 + 1);
    assert_int_equal(stat_u64(&f->c, ELM_TAG_N_PROMPT_REUSED) - reused0, n - n2 - 1);
    assert_int_equal(stat_u64(&f->c, ELM_TAG_N_PROMPT_TOKENS) - eval0, n2 + 1);
    local_greedy_ids(m, conv, n, 25, &want);
    assert_same(&r2, &want);

    /* A new prompt (no KEEP_CONTEXT) that starts like the conversation: the shared prefix is
     * kept, the rest evaluated, and the output is that of the prompt alone. */
    const char *t3 = "Once upon a time there was a big dog";
    int32_t p3[256];
    int32_t n3 = tokens_of(m, t3, true, p3, 256), common = 0;
    while (common < n3 && common < n && p3[common] == conv[common])
        common++;
    assert_true(common >= 4 && common < n3);
    reused0 = stat_u64(&f->c, ELM_TAG_N_PROMPT_REUSED);
    assert_int_equal(ts_prompt(&s, 3, t3, 15, 0, 1), 0);
    assert_int_equal(ts_collect(&s, &r2, 20000), 0);
    assert_int_equal(r2.dn.n_prompt, n3 - common);
    assert_int_equal(stat_u64(&f->c, ELM_TAG_N_PROMPT_REUSED) - reused0, common);
    local_greedy_ids(m, p3, n3, 15, &want);
    assert_same(&r2, &want);
    assert_int_equal(ts_close(&f->c, &s), 0);
    elm_model_destroy(&m);
}

/* ---- elmctl status --json ------------------------------------------------------------------ */

/* Runs elmctl with args; returns its stdout (malloc'ed) or NULL. */
static char *elmctl(const struct td *t, const char *args)
{
    char cmd[1024], out[128];
    snprintf(out, sizeof out, "%s/elmctl.out", t->base);
    snprintf(cmd, sizeof cmd, "'%s/cli/elmctl' --runtime-dir '%s' %s > '%s'", elm_test_build_dir(),
             t->dir, args, out);
    int st = system(cmd);
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        return NULL;
    return elm_test_read_file(out, NULL);
}

static void test_status_json_kv(void **state)
{
    struct fx *f = *state;
    REQUIRE_DAEMON(f);
    struct ts s;
    static struct ts_result r;
    assert_int_equal(ts_open(&f->c, &s, getpid(), 0), 0);
    assert_int_equal(ts_prompt(&s, 1, "Once upon a time", 40, 0, 1), 0);
    assert_int_equal(ts_collect(&s, &r, 20000), 0);
    char *js = elmctl(&f->t, "--json status");
    assert_non_null(js);
    print_message("%s", js);
    json_t *j = elm_test_json(js);
    assert_non_null(j);
    /* stories260K: 2048-token context, 8 sessions: max(8 x 2048 / 4, 4 x 2048) = 8192
     * positions = 256 pages of 32; a page is K and V of 5 layers x 32 values x 32 positions
     * in f16 = 20480 bytes. */
    assert_int_equal(elm_test_jnum(j, "kv_pages"), 256);
    assert_int_equal(elm_test_jnum(j, "kv_page_tokens"), 32);
    assert_int_equal(elm_test_jnum(j, "kv_page_bytes"), 20480);
    assert_int_equal(elm_test_jnum(j, "kv_bytes"), 256 * 20480);
    assert_int_equal(elm_test_jnum(j, "kv_capacity"), 8192);
    /* The finished request keeps its conversation's pages: 4 + 1 + 40 tokens, 2 pages. */
    assert_int_equal(elm_test_jnum(j, "kv_pages_free"), 256 - 2);
    assert_true(elm_test_jnum(j, "kv_tokens") >= 44 && elm_test_jnum(j, "kv_tokens") <= 64);
    assert_int_equal(elm_test_jnum(j, "n_queued"), 0);
    assert_string_equal(elm_test_jstr(j, "kv_type"), "f16");
    /* the matrix unit, where the daemon's kernels hand it tiles (this process probes the same
     * CPU and kernel): "AMX" on an AMX machine, else no field */
    const char *unit = elm_kernels_matrix_unit(elm_kernels_get(elm_test_jstr(j, "kernel")));
    if (unit[0])
        assert_string_equal(elm_test_jstr(j, "matrix_unit"), unit);
    else
        assert_null(elm_test_jstr(j, "matrix_unit"));
    const char *backing = elm_test_jstr(j, "kv_backing");
    assert_true(backing && (!strcmp(backing, "hugetlb") || !strcmp(backing, "thp") ||
                            !strcmp(backing, "plain")));
    assert_true(json_is_boolean(json_object_get(j, "kv_locked")));
    json_decref(j);
    free(js);
    /* ... and in words. */
    char *txt = elmctl(&f->t, "status");
    assert_non_null(txt);
    assert_non_null(strstr(txt, "kv pool"));
    assert_non_null(strstr(txt, "254 of 256 pages free"));
    if (unit[0])
        assert_non_null(strstr(txt, ", Q4_0 prefill on AMX, "));
    free(txt);
    assert_int_equal(ts_close(&f->c, &s), 0);
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    alarm(300);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_cancel_mid_batch, setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_joins_and_leaves, setup_small_chunks, fx_teardown),
        cmocka_unit_test_setup_teardown(test_prefix_reuse, setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_status_json_kv, setup, fx_teardown),
    };
    if (getenv("ELMD_TEST_FILTER"))
        cmocka_set_test_filter(getenv("ELMD_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
