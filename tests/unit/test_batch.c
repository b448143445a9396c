/* test_batch.c — batch invariance of the forward pass: a sequence's logits are bit-for-bit the
 * same whether it runs alone or batched with 1, 3 or 7 other sequences of different lengths,
 * at any position in the batch, during prefill and during decode, on F32, Q8_0, Q4_0 and
 * Q4_K_M files, for every architecture (llama, qwen2, llama3, qwen2.5, phi3, gemma2). This is
 * the property the daemon's scheduler relies on to promise reproducible results under load.
 * gemma2's sliding window is also checked in a shared, paged pool: a prompt longer than the
 * window and than a page, its pages interleaved with 3 other sessions', gives the bits it gives
 * alone. A pass long enough to spread its per-token ops over the pool's threads gives the bits
 * of short passes. bert embeddings are the same for a text alone or embedded with others. */
#include <stdlib.h>
#include <string.h>

#include "engine/kv.h"
#include "engine/model.h"
#include "engine/rows.h"
#include "engine/sampler.h"
#include "tests/common/elm_test.h"

#define N_CTX   96
#define MAX_SEQ 8
#define MAX_V   640 /* the largest vocabulary of the files below */

struct seq {
    struct elm_kv *kv;
    int32_t ids[N_CTX];
    int n;   /* prompt length */
    int pos; /* next position */
};

static const char *const long_prompt =
    "Once upon a time there was a little girl who liked to play in the park with her dog.";

static const char *const prompts[MAX_SEQ] = {
    "Once upon a time", "The quick brown fox jumps over the lazy dog.", "hello",
    "def add(x, y):\n    return x + y", "a", "Lily and Tom went to the park to play.",
    "1 2 3 4 5 6 7 8 9 10 11 12", "zzz",
};

/* The prompt's ids; for a file whose tokenizer elm cannot read yet (loaded vocab_optional),
 * ids made from its bytes: the forward pass does not care where they come from. */
static int prompt_ids(const struct elm_model *m, const char *text, int32_t *ids)
{
    if (m->vocab)
        return elm_tokenize(m->vocab, text, strlen(text), true, false, ids, N_CTX);
    int n = 0;
    for (const char *c = text; *c && n < N_CTX; c++, n++)
        ids[n] = (int32_t)(((unsigned char)*c * 31u + (unsigned)n) % (unsigned)m->hp.n_vocab);
    return n;
}

/* Prefills sequence 0 in chunks of 5 and then decodes 6 greedy tokens, together with n_others
 * other sequences doing the same with their own prompts, sequence 0 placed at slot `slot`
 * among them. Records sequence 0's logits after every step in out[step]. With a pool, every
 * sequence takes its pages from it step by step, so their pages interleave; sequence 0's
 * prompt is then `first` when not NULL. */
static void run(const struct elm_model *m, struct elm_work *w, int n_others, int slot,
                struct elm_kv_pool *pool, const char *first, float out[][MAX_V], int *n_steps)
{
    int V = m->hp.n_vocab, n_seq = n_others + 1;
    struct seq s[MAX_SEQ];
    float *logits[MAX_SEQ];
    for (int i = 0; i < n_seq; i++) {
        /* slot order: sequence 0 sits at index `slot`, the others around it */
        int p = i == slot ? 0 : (i < slot ? i + 1 : i);
        if (pool)
            assert_int_equal(elm_kv_open(pool, N_CTX, &s[i].kv), 0);
        else
            assert_int_equal(elm_kv_create(m, N_CTX, ELM_TYPE_F16, &s[i].kv), 0);
        s[i].n = prompt_ids(m, p == 0 && first ? first : prompts[p], s[i].ids);
        assert_true(s[i].n > 0 && s[i].n < N_CTX - 8);
        s[i].pos = 0;
        logits[i] = malloc((size_t)V * sizeof(float));
    }
    *n_steps = 0;
    for (int step = 0; step < 40; step++) {
        struct elm_batch_item items[MAX_SEQ * 5];
        int n = 0;
        bool seq0_logits = false;
        for (int i = 0; i < n_seq; i++) {
            struct seq *q = &s[i];
            int want = q->pos < q->n ? (q->n - q->pos < 5 ? q->n - q->pos : 5) : 1;
            if (q->pos + want > q->n + 6)
                continue; /* this one is finished */
            if (pool)
                assert_int_equal(elm_kv_reserve(q->kv, q->pos + want), 0);
            for (int k = 0; k < want; k++) {
                int pos = q->pos + k;
                bool last = pos >= q->n - 1;
                items[n++] = (struct elm_batch_item){
                    .token = q->ids[pos], .pos = pos, .kv = q->kv,
                    .logits = last && k == want - 1 ? logits[i] : NULL};
                if (i == slot && last && k == want - 1)
                    seq0_logits = true;
            }
        }
        if (!n)
            break;
        assert_int_equal(elm_model_forward(m, w, items, n), 0);
        for (int i = 0; i < n_seq; i++) {
            struct seq *q = &s[i];
            int want = q->pos < q->n ? (q->n - q->pos < 5 ? q->n - q->pos : 5) : 1;
            if (q->pos + want > q->n + 6)
                continue;
            q->pos += want;
            if (q->pos >= q->n) /* decode: append the greedy token */
                q->ids[q->pos] = elm_argmax(logits[i], V);
        }
        if (seq0_logits)
            memcpy(out[(*n_steps)++], logits[slot], (size_t)V * sizeof(float));
    }
    for (int i = 0; i < n_seq; i++) {
        elm_kv_destroy(&s[i].kv);
        free(logits[i]);
    }
}

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

static float alone[16][MAX_V], batched[16][MAX_V];

static void check_file(const char *rel)
{
    struct elm_model *m = load(rel);
    assert_true(m->hp.n_vocab <= MAX_V);
    struct elm_work *w;
    assert_int_equal(elm_work_create(m, MAX_SEQ * 5, N_CTX, &w), 0);
    int n_alone, n_b;
    run(m, w, 0, 0, NULL, NULL, alone, &n_alone);
    assert_true(n_alone >= 7);
    const int others[] = {1, 3, 7};
    for (int o = 0; o < 3; o++) {
        for (int slot = 0; slot <= others[o]; slot += others[o] > 1 ? 2 : 1) {
            run(m, w, others[o], slot, NULL, NULL, batched, &n_b);
            assert_int_equal(n_b, n_alone);
            for (int k = 0; k < n_alone; k++)
                if (memcmp(alone[k], batched[k], sizeof alone[k]))
                    fail_msg("%s: step %d differs with %d others, slot %d", rel, k, others[o],
                             slot);
        }
    }
    elm_work_destroy(&w);
    elm_model_destroy(&m);
}

static void test_f32(void **state)
{
    check_file("zoo/zoo-llama.gguf");
}

static void test_q8_0(void **state)
{
    check_file("zoo/zoo-llama-q8_0.gguf");
}

static void test_q4_0(void **state)
{
    check_file("zoo/zoo-qwen2-q4_0.gguf");
}

static void test_q4_k_m(void **state)
{
    check_file("zoo/zoo-llama-q4_k_m.gguf");
}

static void test_llama3(void **state)
{
    check_file("zoo2/zoo-llama3.gguf");
}

static void test_qwen25_q8_0(void **state)
{
    check_file("zoo2/zoo-qwen25-q8_0.gguf");
}

static void test_phi3(void **state)
{
    check_file("zoo2/zoo-phi3.gguf");
}

static void test_phi3_q4_k_m(void **state)
{
    check_file("zoo2/zoo-phi3-q4_k_m.gguf");
}

static void test_gemma2(void **state)
{
    check_file("zoo2/zoo-gemma2.gguf");
}

static void test_gemma2_q4_k_m(void **state)
{
    check_file("zoo2/zoo-gemma2-q4_k_m.gguf");
}

/* A gemma2 prompt longer than the window (8) and than a page (32 positions), in a pool shared
 * with 3 other sessions whose pages interleave with its own, against the same prompt alone in
 * its own pool: every step's logits bit-identical. Every even layer then attends from inside
 * a page that is not the sequence's first. */
static void test_gemma2_window_paged(void **state)
{
    struct elm_model *m = load("zoo2/zoo-gemma2.gguf");
    assert_true(m->hp.n_swa > 0 && m->hp.n_swa < ELM_KV_PAGE);
    int32_t ids[N_CTX];
    int n = prompt_ids(m, long_prompt, ids);
    assert_true(n > ELM_KV_PAGE + m->hp.n_swa);
    struct elm_work *w;
    assert_int_equal(elm_work_create(m, MAX_SEQ * 5, N_CTX, &w), 0);
    struct elm_kv_pool *pool;
    int n_alone, n_b;
    assert_int_equal(elm_kv_pool_create(m, ELM_TYPE_F16, 4 * elm_kv_pages_for(N_CTX), 0, &pool), 0);
    run(m, w, 0, 0, pool, long_prompt, alone, &n_alone);
    elm_kv_pool_destroy(&pool);
    assert_true(n_alone >= 7);
    for (int slot = 0; slot <= 3; slot += 3) {
        assert_int_equal(elm_kv_pool_create(m, ELM_TYPE_F16, 4 * elm_kv_pages_for(N_CTX), 0, &pool),
                         0);
        run(m, w, 3, slot, pool, long_prompt, batched, &n_b);
        elm_kv_pool_destroy(&pool);
        assert_int_equal(n_b, n_alone);
        for (int k = 0; k < n_alone; k++)
            if (memcmp(alone[k], batched[k], (size_t)m->hp.n_vocab * sizeof(float)))
                fail_msg("gemma2 window: step %d differs with 3 others, slot %d", k, slot);
    }
    elm_work_destroy(&w);
    elm_model_destroy(&m);
}

/* A pass long enough that its per-token ops spread over the pool's threads (engine/rows.h)
 * against the same prompt in passes of 5 tokens, whose rows stay on the caller: the logits of
 * the last and of a middle token bit-identical. */
static void check_long_pass(const char *rel)
{
    enum { LONG = ELM_ROWS_SPREAD_MIN + 8, MID = LONG / 2 };
    struct elm_model *m = load(rel);
    const int V = m->hp.n_vocab;
    float *got[2][2];
    for (int i = 0; i < 4; i++)
        assert_non_null(got[i / 2][i % 2] = malloc((size_t)V * sizeof(float)));
    struct elm_work *w;
    assert_int_equal(elm_work_create(m, LONG, LONG, &w), 0);
    const int chunks[] = {LONG, 5};
    for (int c = 0; c < 2; c++) {
        struct elm_kv *kv;
        assert_int_equal(elm_kv_create(m, LONG, ELM_TYPE_F16, &kv), 0);
        for (int start = 0; start < LONG; start += chunks[c]) {
            struct elm_batch_item items[LONG];
            const int k = LONG - start < chunks[c] ? LONG - start : chunks[c];
            for (int i = 0; i < k; i++) {
                const int p = start + i;
                items[i] = (struct elm_batch_item){
                    .token = (int32_t)(((unsigned)p * 31u + 7u) % (unsigned)V),
                    .pos = p,
                    .kv = kv,
                    .logits = p == MID        ? got[c][0]
                              : p == LONG - 1 ? got[c][1]
                                              : NULL};
            }
            assert_int_equal(elm_model_forward(m, w, items, k), 0);
        }
        elm_kv_destroy(&kv);
    }
    for (int i = 0; i < 2; i++)
        if (memcmp(got[0][i], got[1][i], (size_t)V * sizeof(float)))
            fail_msg("%s: the %s token differs in one pass of %d", rel, i ? "last" : "middle",
                     LONG);
    for (int i = 0; i < 4; i++)
        free(got[i / 2][i % 2]);
    elm_work_destroy(&w);
    elm_model_destroy(&m);
}

static void test_long_pass(void **state)
{
    check_long_pass("zoo/zoo-llama.gguf");
    check_long_pass("zoo/zoo-qwen2-q4_0.gguf");
    check_long_pass("zoo/zoo-llama-q4_k_m.gguf");
    check_long_pass("zoo2/zoo-gemma2-q4_k_m.gguf");
}

/* bert: each text's embedding alone equals its embedding among all of them. */
static void test_bert(void **state)
{
    struct elm_model *m = load("zoo2/zoo-bert.gguf");
    const int E = m->hp.n_embd;
    int32_t ids[4][N_CTX], n_ids[4];
    const int32_t *ptr[4];
    for (int s = 0; s < 4; s++) {
        /* [CLS] ... [SEP] around ids from the prompts' bytes */
        int n = prompt_ids(m, prompts[s + 1], ids[s] + 1);
        ids[s][0] = 101;
        ids[s][n + 1] = 102;
        n_ids[s] = n + 2;
        ptr[s] = ids[s];
    }
    float all[4][64], one[64];
    assert_true(E <= 64);
    assert_int_equal(elm_model_embed(m, ptr, n_ids, 4, &all[0][0]), 0);
    for (int s = 0; s < 4; s++) {
        assert_int_equal(elm_model_embed(m, &ptr[s], &n_ids[s], 1, one), 0);
        assert_memory_equal(one, all[s], (size_t)E * sizeof(float));
    }
    elm_model_destroy(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f32),
        cmocka_unit_test(test_q8_0),
        cmocka_unit_test(test_q4_0),
        cmocka_unit_test(test_q4_k_m),
        cmocka_unit_test(test_llama3),
        cmocka_unit_test(test_qwen25_q8_0),
        cmocka_unit_test(test_phi3),
        cmocka_unit_test(test_phi3_q4_k_m),
        cmocka_unit_test(test_gemma2),
        cmocka_unit_test(test_gemma2_q4_k_m),
        cmocka_unit_test(test_gemma2_window_paged),
        cmocka_unit_test(test_long_pass),
        cmocka_unit_test(test_bert),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
