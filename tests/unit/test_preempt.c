/* test_preempt.c — a preempted-and-resumed generation stream continues with exactly the tokens
 * of an uninterrupted one (engine/seq.h elm_seq_preempt), the property the daemon's scheduler
 * relies on to take a running request's KV pages and give them back later.
 *
 * For each file (zoo-llama in F32, Q8_0 and Q4_K_M, and with a Q8_0 KV cache): a stream runs
 * alone on a pool of its own, prompt in chunks of 5 then decode, greedy (and on the F32 file
 * also sampled, temp 0.9, seed 7: the sampler's state must survive too). Then the same stream runs
 * batched with another sequence on one shared pool that it fills page by page, and is preempted
 * three times: in the middle of its prompt, early and late in its generation; after each it
 * evaluates all its tokens again in chunks of 7 (another chunking than the first time). Its sampled
 * ids and the logits they were drawn from must be bit-identical to the uninterrupted run's, its
 * pages must all have gone back at each preemption.
 */
#include <stdlib.h>
#include <string.h>

#include "engine/kv.h"
#include "engine/model.h"
#include "engine/seq.h"
#include "tests/common/elm_test.h"

#define N_CTX   128
#define N_GEN   32
#define MAX_V   640 /* the largest vocabulary of the files below */
#define N_BATCH 16

static const char *const prompts[2] = {
    "Once upon a time there was a little girl who liked to play",
    "The quick brown fox jumps over the lazy dog.",
};

struct trace {
    int32_t ids[N_GEN + 1];
    float logits[N_GEN + 1][MAX_V];
    int n;
};

static struct elm_model *load(const char *rel)
{
    const char *path = elm_test_model_path(rel);
    if (!path) {
        print_message("SKIP: %s not found under %s\n", rel, elm_test_models_dir());
        skip();
    }
    char err[256];
    struct elm_model_params mp = {.n_threads = 2, .vocab_optional = true};
    struct elm_model *m;
    if (elm_model_load(path, &mp, &m, err, sizeof err))
        fail_msg("%s", err);
    return m;
}

/* The prompt's ids; for a file whose tokenizer elm cannot read (vocab_optional), ids made from
 * its bytes: the forward pass does not care where they come from. */
static int prompt_ids(const struct elm_model *m, const char *text, int32_t *ids)
{
    if (m->vocab)
        return elm_tokenize(m->vocab, text, strlen(text), true, false, ids, N_CTX);
    int n = 0;
    for (const char *c = text; *c && n < N_CTX; c++, n++)
        ids[n] = (int32_t)(((unsigned char)*c * 31u + (unsigned)n) % (unsigned)m->hp.n_vocab);
    return n;
}

static void params(struct elm_gen_params *gp, bool sampled)
{
    elm_gen_params_default(gp);
    gp->n_predict = N_GEN;
    if (sampled) {
        gp->sampling.temp = 0.9f;
        gp->sampling.top_k = 40;
        gp->sampling.seed = 7;
    } else {
        gp->sampling.temp = 0;
    }
}

static void record(const struct elm_model *m, const struct elm_seq *s, const struct elm_seq_out *o,
                   struct trace *t)
{
    if (o->token < 0)
        return;
    assert_true(t->n <= N_GEN);
    t->ids[t->n] = o->token;
    memcpy(t->logits[t->n], elm_seq_logits(s), (size_t)m->hp.n_vocab * sizeof(float));
    t->n++;
}

/* Runs stream 0 to its end, batched with stream 1 when `other`, on one pool of pool_pages;
 * preempts stream 0 before the steps listed in at[] (chunks of 7 after the first preemption). */
static void run(const struct elm_model *m, struct elm_work *w, enum elm_type kv_type, bool sampled,
                bool other, int64_t pool_pages, const int *at, int n_at, struct trace *t)
{
    struct elm_kv_pool *pool;
    assert_int_equal(elm_kv_pool_create(m, kv_type, pool_pages, 0, &pool), 0);
    struct elm_seq *s[2] = {NULL, NULL};
    struct elm_gen_params gp;
    int n_seq = other ? 2 : 1;
    for (int i = 0; i < n_seq; i++) {
        int32_t ids[N_CTX];
        int n = prompt_ids(m, prompts[i], ids);
        assert_true(n > 5);
        params(&gp, sampled);
        assert_int_equal(elm_seq_create_pooled(m, pool, N_CTX, &s[i]), 0);
        assert_int_equal(elm_seq_start(s[i], ids, n, &gp), 0);
    }
    struct elm_batch_item items[N_BATCH];
    int chunk = 5, next_at = 0;
    t->n = 0;
    for (int step = 0; elm_seq_done(s[0]) == ELM_STOP_NONE; step++) {
        if (next_at < n_at && step == at[next_at]) {
            int32_t pending = elm_seq_n_pending(s[0]);
            int32_t dropped = elm_seq_preempt(s[0]);
            assert_true(dropped > 0);
            assert_int_equal(elm_seq_pages(s[0]), 0);
            assert_int_equal(elm_seq_n_pending(s[0]), pending + dropped);
            chunk = 7;
            next_at++;
        }
        int n[2] = {0, 0}, used = 0;
        for (int i = 0; i < n_seq; i++) {
            n[i] = elm_seq_plan(s[i], i == 0 ? chunk : 1, items + used);
            assert_int_equal(elm_seq_grow(s[i], n[i]), 0);
            used += n[i];
        }
        assert_true(used > 0);
        assert_int_equal(elm_model_forward(m, w, items, used), 0);
        for (int i = 0; i < n_seq; i++) {
            if (!n[i])
                continue;
            struct elm_seq_out o;
            elm_seq_advance(s[i], n[i], 0, &o);
            if (i == 0)
                record(m, s[0], &o, t);
        }
    }
    assert_int_equal(next_at, n_at); /* every preemption happened while it ran */
    for (int i = 0; i < n_seq; i++)
        elm_seq_destroy(&s[i]);
    assert_int_equal(elm_kv_pool_free_pages(pool), pool_pages);
    elm_kv_pool_destroy(&pool);
}

static struct trace alone, resumed;

static void check(const char *rel, enum elm_type kv_type, bool sampled_too)
{
    struct elm_model *m = load(rel);
    assert_true(m->hp.n_vocab <= MAX_V);
    struct elm_work *w;
    assert_int_equal(elm_work_create(m, N_BATCH, N_CTX, &w), 0);
    /* step 2: inside the prompt (chunks of 5); 10 and 24: a few and many tokens generated */
    const int at[] = {2, 10, 24};
    for (int sampled = 0; sampled <= sampled_too; sampled++) {
        run(m, w, kv_type, sampled, false, elm_kv_pages_for(N_CTX), NULL, 0, &alone);
        run(m, w, kv_type, sampled, true, 2 * elm_kv_pages_for(N_CTX), at, 3, &resumed);
        assert_true(alone.n > 20); /* N_GEN, or an end of text after the last preemption */
        assert_int_equal(resumed.n, alone.n);
        assert_memory_equal(resumed.ids, alone.ids, sizeof alone.ids[0] * (size_t)alone.n);
        for (int k = 0; k < alone.n; k++)
            if (memcmp(resumed.logits[k], alone.logits[k], (size_t)m->hp.n_vocab * sizeof(float)))
                fail_msg("%s (%s): the logits of token %d differ after preemption", rel,
                         sampled ? "sampled" : "greedy", k);
    }
    elm_work_destroy(&w);
    elm_model_destroy(&m);
}

static void test_f32(void **state)
{
    (void)state;
    check("zoo/zoo-llama.gguf", ELM_TYPE_F16, true);
}

static void test_q8_0(void **state)
{
    (void)state;
    check("zoo/zoo-llama-q8_0.gguf", ELM_TYPE_F16, false);
}

static void test_q4_k_m(void **state)
{
    (void)state;
    check("zoo/zoo-llama-q4_k_m.gguf", ELM_TYPE_F16, false);
}

static void test_q8_0_kv_cache(void **state)
{
    (void)state;
    check("zoo/zoo-llama.gguf", ELM_TYPE_Q8_0, false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f32),
        cmocka_unit_test(test_q8_0),
        cmocka_unit_test(test_q4_k_m),
        cmocka_unit_test(test_q8_0_kv_cache),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
