/* test_sched.c — one scheduling step (daemon/plan.c): which tokens of which sessions go into a
 * pass, called in-process on plain session states (no threads, rings or model).
 *
 * The rule under test (plan.h): decoding sessions first, one token each, in session order;
 * then prompt chunks of at most prefill_chunk, round-robin from *rr, within the batch and the
 * step_ms budget (at least one prompt token per step); sessions not ready take nothing.
 */
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
    /* 1 decode token, then 19 prompt tokens: a full chunk of 16 for session 0, 3 for 1 */
    assert_int_equal(n, 20);
    assert_int_equal(take[2], 1);
    assert_int_equal(take[0], 16);
    assert_int_equal(take[1], 3);
    int want[] = {2, 0, 1};
    assert_int_equal(m, 3);
    assert_memory_equal(order, want, sizeof want);
}

/* The round-robin start moves every step, so the same long prompt does not always go first. */
static void test_round_robin_rotates(void **state)
{
    (void)state;
    struct elmd_plan_limits lim = {.batch = 8, .prefill_chunk = 8};
    struct elmd_plan_slot s[] = {PRE(50), PRE(50), PRE(50)};
    int take[3], order[3], m, rr = 0;
    for (int step = 0; step < 4; step++) {
        int n = elmd_plan(s, 3, &lim, &rr, take, order, &m);
        assert_int_equal(n, 8);
        assert_int_equal(m, 1);
        assert_int_equal(order[0], step % 3); /* the whole batch goes to the session in turn */
        assert_int_equal(take[step % 3], 8);
        assert_int_equal(rr, (step + 1) % 3);
    }
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

/* step_ms: the prompt tokens of a step fit the budget at the measured cost of a token; at least
 * one, so prompts always progress; no cost measured yet means no cut. */
static void test_step_budget(void **state)
{
    (void)state;
    struct elmd_plan_limits lim = {.batch = 200, .prefill_chunk = 64, .step_ms = 10};
    struct elmd_plan_slot s[] = {DEC, DEC, PRE(500), PRE(500)};
    int take[4], order[4], m, rr = 0;

    lim.ns_per_tok = 0; /* unknown: only the batch caps */
    assert_int_equal(elmd_prefill_allowance(&lim, 2), 198);
    assert_int_equal(elmd_plan(s, 4, &lim, &rr, take, order, &m), 2 + 64 + 64);

    lim.ns_per_tok = 1e6; /* 1 ms a token: 10 tokens a step, 2 of them decoding */
    assert_int_equal(elmd_prefill_allowance(&lim, 2), 8);
    rr = 0;
    assert_int_equal(elmd_plan(s, 4, &lim, &rr, take, order, &m), 10);
    assert_int_equal(take[2], 8);
    assert_int_equal(take[3], 0);

    lim.ns_per_tok = 1e8; /* 100 ms a token: the budget holds none, prompts still get one */
    assert_int_equal(elmd_prefill_allowance(&lim, 2), 1);
    rr = 0;
    assert_int_equal(elmd_plan(s, 4, &lim, &rr, take, order, &m), 3);
    assert_int_equal(take[2], 1);
}

static void test_learn_cost(void **state)
{
    (void)state;
    double c = 0;
    elmd_learn_cost(&c, 4, 4000000); /* a small pass says nothing about batches */
    assert_true(c == 0);
    elmd_learn_cost(&c, 10, 10000000); /* first measure: taken as is */
    assert_true(c == 1000000.0);
    elmd_learn_cost(&c, 10, 50000000); /* then a running average, 1/4 weight to the new one */
    assert_true(c == 0.75 * 1000000.0 + 0.25 * 5000000.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decoders_first_then_prompt_chunks),
        cmocka_unit_test(test_batch_caps_prompt_tokens),
        cmocka_unit_test(test_round_robin_rotates),
        cmocka_unit_test(test_sessions_not_ready_take_nothing),
        cmocka_unit_test(test_nothing_to_do),
        cmocka_unit_test(test_step_budget),
        cmocka_unit_test(test_learn_cost),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
