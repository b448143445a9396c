/* test_sched.c — one scheduling step (daemon/plan.c): which tokens of which sessions go into a
 * pass, called in-process on plain session states (no threads, rings or model).
 *
 * The rule under test (plan.h): decoding sessions first, one token each, in session order;
 * then the prompts share the rest max-min fairly, at most prefill_chunk each, the remainder
 * round-robin from *rr, within the batch and the step_ms budget at the fitted cost of a pass
 * (at least one prompt token per step); sessions not ready take nothing.
 * And the KV memory decision (elmd_plan_memory): wants served oldest request first; when the
 * pool is short, idle sessions' pages go first (least recently used first), then the most
 * recently admitted running request is preempted, possibly the one asking.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "daemon/plan.h"
#include "tests/common/elm_test.h"

#define DEC                                                                                        \
    {                                                                                              \
        .ready = true, .to_eval = 0                                                                \
    }
#define PRE(n)                                                                                     \
    {                                                                                              \
        .ready = true, .to_eval = (n)                                                              \
    }
#define OFF(n)                                                                                     \
    {                                                                                              \
        .ready = false, .to_eval = (n)                                                             \
    }

static const struct elmd_plan_limits roomy = {.batch = 80, .prefill_chunk = 64};

static void test_decoders_first_then_prompt_chunks(void **state)
{
    (void)state;
    struct elmd_plan_slot s[] = {PRE(100), DEC, PRE(10), DEC};
    int take[4], order[4], m, rr = 0;
    int n = elmd_plan(s, 4, &roomy, &rr, take, order, &m);
    /* 2 decode tokens; then up to 78 prompt tokens: a full chunk (64) of session 0, and the
     * 10 session 2 has left */
    assert_int_equal(take[1], 1);
    assert_int_equal(take[3], 1);
    assert_int_equal(take[0], 64);
    assert_int_equal(take[2], 10);
    assert_int_equal(n, 76);
    assert_int_equal(m, 4);
    int want[] = {1, 3, 0, 2};
    assert_memory_equal(order, want, sizeof want);
    assert_int_equal(rr, 1);
}

static void test_batch_caps_prompt_tokens(void **state)
{
    (void)state;
    struct elmd_plan_limits lim = {.batch = 20, .prefill_chunk = 16};
    struct elmd_plan_slot s[] = {PRE(100), PRE(100), DEC};
    int take[3], order[3], m, rr = 0;
    int n = elmd_plan(s, 3, &lim, &rr, take, order, &m);
    /* 1 decode token, then 19 prompt tokens: 9 each, the odd one to session 0 (rr) */
    assert_int_equal(n, 20);
    assert_int_equal(take[2], 1);
    assert_int_equal(take[0], 10);
    assert_int_equal(take[1], 9);
    int want[] = {2, 0, 1};
    assert_int_equal(m, 3);
    assert_memory_equal(order, want, sizeof want);
}

/* The round-robin start moves every step, so the same prompt does not always get the tokens
 * that do not divide. */
static void test_round_robin_rotates(void **state)
{
    (void)state;
    struct elmd_plan_limits lim = {.batch = 8, .prefill_chunk = 8};
    struct elmd_plan_slot s[] = {PRE(50), PRE(50), PRE(50)};
    int take[3], order[3], m, rr = 0;
    for (int step = 0; step < 4; step++) {
        int n = elmd_plan(s, 3, &lim, &rr, take, order, &m);
        assert_int_equal(n, 8);
        assert_int_equal(m, 3);
        assert_int_equal(order[0], step % 3);
        assert_int_equal(take[step % 3], 3);       /* 2 each, and one of the 2 left over */
        assert_int_equal(take[(step + 1) % 3], 3); /* to the first two in turn */
        assert_int_equal(take[(step + 2) % 3], 2);
        assert_int_equal(rr, (step + 1) % 3);
    }
}

/* Prompts that arrive together with nothing decoding finish in the same pass: the ones with
 * most left go first. */
static void test_prompts_finish_together(void **state)
{
    (void)state;
    struct elmd_plan_limits lim = {.batch = 72, .prefill_chunk = 64};
    struct elmd_plan_slot s[8];
    for (int k = 0; k < 8; k++)
        s[k] = (struct elmd_plan_slot){.ready = true, .to_eval = 26};
    int take[8], order[8], m, rr = 0, passes = 0;
    for (bool left = true; left; passes++) {
        assert_int_equal(elmd_plan(s, 8, &lim, &rr, take, order, &m), passes < 2 ? 72 : 64);
        left = false;
        for (int k = 0; k < 8; k++) {
            s[k].to_eval -= take[k];
            left |= s[k].to_eval > 0;
            assert_true(s[k].to_eval > 0 || passes == 2); /* none decodes before the others */
        }
    }
    assert_int_equal(passes, 3); /* 208 tokens in passes of 72 */

    /* four requests a step late: they catch up with the first four's prompts */
    for (int k = 0; k < 8; k++)
        s[k].to_eval = k < 4 ? 8 : 26;
    assert_int_equal(elmd_plan(s, 8, &lim, &rr, take, order, &m), 72);
    for (int k = 0; k < 8; k++)
        assert_int_equal(take[k], k < 4 ? 0 : 18);
    assert_int_equal(m, 4);

    /* the chunk still caps each: 100 gives 64, 30 the 8 left, 5 waits */
    struct elmd_plan_slot mixed[] = {PRE(5), PRE(100), PRE(30)};
    int t3[3], o3[3];
    assert_int_equal(elmd_plan(mixed, 3, &lim, &rr, t3, o3, &m), 72);
    assert_int_equal(t3[0], 0);
    assert_int_equal(t3[1], 64);
    assert_int_equal(t3[2], 8);

    /* more than ELMD_TOGETHER_PASSES passes of prompts: max-min, the short ones go first */
    mixed[1].to_eval = ELMD_TOGETHER_PASSES * 72;
    assert_int_equal(elmd_plan(mixed, 3, &lim, &rr, t3, o3, &m), 72);
    assert_int_equal(t3[0], 5);
    assert_int_equal(t3[1], 37);
    assert_int_equal(t3[2], 30);

    /* a batch smaller than the prompts: nothing finishes together, but they progress */
    struct elmd_plan_limits tiny = {.batch = 2, .prefill_chunk = 64};
    for (int k = 0; k < 8; k++)
        s[k].to_eval = 26;
    assert_int_equal(elmd_plan(s, 8, &tiny, &rr, take, order, &m), 2);
}

static void test_sessions_not_ready_take_nothing(void **state)
{
    (void)state;
    struct elmd_plan_slot s[] = {OFF(0), OFF(30), PRE(5), DEC};
    int take[4], order[4], m, rr = 1;
    int n = elmd_plan(s, 4, &roomy, &rr, take, order, &m);
    assert_int_equal(n, 6);
    assert_int_equal(take[0], 0);
    assert_int_equal(take[1], 0);
    assert_int_equal(take[2], 5);
    assert_int_equal(take[3], 1);
    int want[] = {3, 2};
    assert_int_equal(m, 2);
    assert_memory_equal(order, want, sizeof want);
}

static void test_nothing_to_do(void **state)
{
    (void)state;
    struct elmd_plan_slot s[] = {OFF(0), OFF(7)};
    int take[2] = {9, 9}, order[2], m = 9, rr = 0;
    assert_int_equal(elmd_plan(s, 2, &roomy, &rr, take, order, &m), 0);
    assert_int_equal(m, 0);
    assert_int_equal(take[0], 0);
    assert_int_equal(take[1], 0);
    rr = 5;
    assert_int_equal(elmd_plan(NULL, 0, &roomy, &rr, take, order, &m), 0);
    assert_int_equal(rr, 0);
}

/* step_ms: the prompt tokens of a step fit the budget at the fitted cost of a pass; when the
 * decoding tokens alone take more than half of it, the prompts may still cost as much as they
 * do (a step at most doubles), at least one token; no cost measured yet means no cut. */
static void test_step_budget(void **state)
{
    (void)state;
    struct elmd_plan_limits lim = {.batch = 200, .prefill_chunk = 64, .step_ms = 10};
    struct elmd_plan_slot s[] = {DEC, DEC, PRE(500), PRE(500)};
    int take[4], order[4], m, rr = 0;

    lim.tok_ns = 0; /* unknown: only the batch caps */
    assert_int_equal(elmd_prefill_allowance(&lim, 2), 198);
    assert_int_equal(elmd_plan(s, 4, &lim, &rr, take, order, &m), 2 + 64 + 64);

    /* 4 ms a pass plus 0.5 ms a token: 12 tokens fit 10 ms, 2 of them decoding */
    lim.fixed_ns = 4e6;
    lim.tok_ns = 5e5;
    assert_int_equal(elmd_prefill_allowance(&lim, 2), 10);
    rr = 0;
    assert_int_equal(elmd_plan(s, 4, &lim, &rr, take, order, &m), 12);
    assert_int_equal(take[2], 5);
    assert_int_equal(take[3], 5);

    /* 8 ms a pass: the 2 decoding tokens take 9 of the 10 ms, the budget holds 2 prompt
     * tokens; they may cost the decoding part's 9 ms instead: 18 */
    lim.fixed_ns = 8e6;
    assert_int_equal(elmd_prefill_allowance(&lim, 2), 18);
    assert_int_equal(elmd_prefill_allowance(&lim, 0), 200); /* (nothing decoding: no cut) */
    rr = 0;
    assert_int_equal(elmd_plan(s, 4, &lim, &rr, take, order, &m), 2 + 18);
    assert_int_equal(take[2], 9);
    assert_int_equal(take[3], 9);

    lim.fixed_ns = 0;
    lim.tok_ns = 1e8; /* 100 ms a token: the budget holds none, the decoding part 2 tokens */
    assert_int_equal(elmd_prefill_allowance(&lim, 2), 2);
    assert_int_equal(elmd_prefill_allowance(&lim, 1), 1); /* and at least one */
    rr = 0;
    assert_int_equal(elmd_plan(s, 4, &lim, &rr, take, order, &m), 4);
    assert_int_equal(take[2], 1);
    assert_int_equal(take[3], 1);
    lim.fixed_ns = 2e7; /* the fixed part alone exceeds the budget: the step may double */
    lim.tok_ns = 1e5;
    assert_int_equal(elmd_prefill_allowance(&lim, 2), 198); /* (202: capped by the batch) */
    lim.batch = 400;
    assert_int_equal(elmd_prefill_allowance(&lim, 2), 202);
    lim.batch = 200;

    /* Nothing decoding: no stream to keep flowing, no budget. Two prompts share the pass in
     * chunks; a prompt alone takes the whole pass (its first token in one pass). */
    assert_int_equal(elmd_prefill_allowance(&lim, 0), 200);
    struct elmd_plan_slot two[] = {PRE(500), PRE(500)}, one[] = {PRE(500), OFF(0)};
    rr = 0;
    assert_int_equal(elmd_plan(two, 2, &lim, &rr, take, order, &m), 64 + 64);
    rr = 0;
    assert_int_equal(elmd_plan(one, 2, &lim, &rr, take, order, &m), 200);
    assert_int_equal(take[0], 200);
    struct elmd_plan_slot short_one[] = {PRE(9)};
    rr = 0;
    assert_int_equal(elmd_plan(short_one, 1, &lim, &rr, take, order, &m), 9);
}

/* The fit: exact on passes that lie on a line; while every pass has the same size the slope
 * is kept and the fixed part follows the passes' mean time (load). */
static void test_cost_learn(void **state)
{
    (void)state;
    struct elmd_pass_cost c = {0};
    elmd_cost_learn(&c, 1, 30000000); /* one pass: all of it per token, nothing fixed */
    assert_true(c.fixed_ns == 0 && c.tok_ns == 30000000.0);
    elmd_cost_learn(&c, 8, 65000000); /* 25 ms + 5 ms a token */
    assert_true(fabs(c.fixed_ns - 25e6) < 1 && fabs(c.tok_ns - 5e6) < 1e-3);
    elmd_cost_learn(&c, 72, 385000000); /* on the same line: the same fit */
    assert_true(fabs(c.fixed_ns - 25e6) < 1 && fabs(c.tok_ns - 5e6) < 1e-3);
    /* the machine gets slower: many 8-token passes at 85 ms. Once older passes have faded the
     * sizes stop varying; the slope stays and the fixed part takes the change. */
    for (int i = 0; i < 400; i++)
        elmd_cost_learn(&c, 8, 85000000);
    assert_true(fabs(c.tok_ns * 8 + c.fixed_ns - 85e6) < 1e3);
    assert_true(c.tok_ns > 0 && c.fixed_ns > 0);
    /* noise that says tokens are free (bigger pass, less time) falls back to cost per token */
    struct elmd_pass_cost z = {0};
    elmd_cost_learn(&z, 1, 50000000);
    elmd_cost_learn(&z, 8, 40000000);
    const double d = ELMD_COST_DECAY; /* the mean time over the mean size, the first decayed */
    assert_true(z.fixed_ns == 0 && fabs(z.tok_ns - (d * 50e6 + 40e6) / (d * 1 + 8)) < 1e-3);
}

/* ---- KV memory ----------------------------------------------------------------------------- */

#define RUN(ord, h, w)                                                                             \
    {                                                                                              \
        .running = true, .order = (ord), .held = (h), .want = (w)                                  \
    }
#define IDLE(ord, h)                                                                               \
    {                                                                                              \
        .running = false, .order = (ord), .held = (h)                                              \
    }

static void test_memory_fits(void **state)
{
    (void)state;
    const struct elmd_mem_slot s[3] = {RUN(1, 2, 1), RUN(2, 3, 1), IDLE(0, 4)};
    bool take[3];
    assert_int_equal(elmd_plan_memory(s, 3, 2, take), 0);
    assert_false(take[0] || take[1] || take[2]);
}

static void test_memory_idle_first_least_recently_used(void **state)
{
    (void)state;
    /* 0 free, 2 wanted: the idle session used longest ago (order 5) is enough */
    const struct elmd_mem_slot s[4] = {RUN(1, 2, 1), IDLE(9, 3), IDLE(5, 1), RUN(2, 2, 1)};
    bool take[4];
    assert_int_equal(elmd_plan_memory(s, 4, 1, take), 1);
    assert_true(take[2]);
    assert_false(take[0] || take[1] || take[3]);
}

static void test_memory_preempts_most_recently_admitted(void **state)
{
    (void)state;
    /* no idle pages: the oldest (order 1) wants a page, the youngest running (order 7, not
     * planned this step) is preempted, the one in between keeps its pages and gets its want */
    const struct elmd_mem_slot s[3] = {RUN(7, 4, 0), RUN(1, 5, 1), RUN(3, 3, 1)};
    bool take[3];
    assert_int_equal(elmd_plan_memory(s, 3, 0, take), 1);
    assert_true(take[0]);
    assert_false(take[1] || take[2]);
}

static void test_memory_youngest_preempts_itself(void **state)
{
    (void)state;
    /* the youngest is the one short of a page: it waits, the older ones run */
    const struct elmd_mem_slot s[3] = {RUN(1, 5, 1), RUN(9, 3, 1), RUN(3, 3, 0)};
    bool take[3];
    assert_int_equal(elmd_plan_memory(s, 3, 1, take), 1);
    assert_true(take[1]);
    assert_false(take[0] || take[2]);
}

static void test_memory_several_victims(void **state)
{
    (void)state;
    /* the oldest needs 6 pages (a resumed prompt chunk): idle pages first, then the two
     * youngest running requests (one of them planned: it gets nothing), never the one admitted
     * second */
    const struct elmd_mem_slot s[5] = {RUN(1, 0, 6), IDLE(4, 1), RUN(5, 2, 1), RUN(8, 2, 0),
                                       RUN(2, 1, 0)};
    bool take[5];
    assert_int_equal(elmd_plan_memory(s, 5, 1, take), 3);
    assert_true(take[1] && take[2] && take[3]);
    assert_false(take[0] || take[4]);
}

static void test_memory_nothing_wanted(void **state)
{
    (void)state;
    const struct elmd_mem_slot s[2] = {RUN(1, 2, 0), IDLE(2, 2)};
    bool take[2];
    assert_int_equal(elmd_plan_memory(s, 2, 0, take), 0);
    assert_false(take[0] || take[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decoders_first_then_prompt_chunks),
        cmocka_unit_test(test_batch_caps_prompt_tokens),
        cmocka_unit_test(test_round_robin_rotates),
        cmocka_unit_test(test_prompts_finish_together),
        cmocka_unit_test(test_sessions_not_ready_take_nothing),
        cmocka_unit_test(test_nothing_to_do),
        cmocka_unit_test(test_step_budget),
        cmocka_unit_test(test_cost_learn),
        cmocka_unit_test(test_memory_fits),
        cmocka_unit_test(test_memory_idle_first_least_recently_used),
        cmocka_unit_test(test_memory_preempts_most_recently_admitted),
        cmocka_unit_test(test_memory_youngest_preempts_itself),
        cmocka_unit_test(test_memory_several_victims),
        cmocka_unit_test(test_memory_nothing_wanted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
