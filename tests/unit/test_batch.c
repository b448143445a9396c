/* test_batch.c — batch invariance of the forward pass: a sequence's logits are bit-for-bit the
 * same whether it runs alone or batched with 1, 3 or 7 other sequences of different lengths,
 * at any position in the batch, during prefill and during decode, on F32, Q8_0, Q4_0 and
 * Q4_K_M files. This is the property the daemon's scheduler relies on to promise reproducible
 * results under load. */
#include <stdlib.h>
#include <string.h>

#include "elm_test.h"
#include "engine/model.h"
#include "engine/sampler.h"

#define N_CTX  96
#define MAX_SEQ 8

struct seq {
    struct elm_kv *kv;
    int32_t ids[N_CTX];
    int n;   /* prompt length */
    int pos; /* next position */
};

static const char *const prompts[MAX_SEQ] = {
    "Once upon a time", "The quick brown fox jumps over the lazy dog.", "hello",
    "def add(x, y):\n    return x + y", "a", "Lily and Tom went to the park to play.",
    "1 2 3 4 5 6 7 8 9 10 11 12", "zzz",
};

/* Prefills sequence 0 in chunks of 5 and then decodes 6 greedy tokens, together with n_others
 * other sequences doing the same with their own prompts, sequence 0 placed at slot `slot`
 * among them. Records sequence 0's logits after every step in out[step]. */
static void run(const struct elm_model *m, struct elm_work *w, int n_others, int slot,
                float out[][512], int *n_steps)
{
    int V = m->hp.n_vocab, n_seq = n_others + 1;
    struct seq s[MAX_SEQ];
    float *logits[MAX_SEQ];
    for (int i = 0; i < n_seq; i++) {
        /* slot order: sequence 0 sits at index `slot`, the others around it */
        int p = i == slot ? 0 : (i < slot ? i + 1 : i);
        assert_int_equal(elm_kv_create(m, N_CTX, ELM_TYPE_F16, &s[i].kv), 0);
        s[i].n = elm_tokenize(m->vocab, prompts[p], strlen(prompts[p]), true, false, s[i].ids,
                              N_CTX);
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

static void check_file(const char *rel)
{
    const char *path = elm_test_model_path(rel);
    if (!path) {
        print_message("SKIP: %s not found under %s\n", rel, elm_test_models_dir());
        skip();
    }
    char err[256];
    struct elm_model_params mp = {.n_threads = 2};
    struct elm_model *m;
    if (elm_model_load(path, &mp, &m, err, sizeof err))
        fail_msg("%s", err);
    assert_int_equal(m->hp.n_vocab, 512);
    struct elm_work *w;
    assert_int_equal(elm_work_create(m, MAX_SEQ * 5, N_CTX, &w), 0);
    static float alone[16][512], batched[16][512];
    int n_alone, n_b;
    run(m, w, 0, 0, alone, &n_alone);
    assert_true(n_alone >= 7);
    const int others[] = {1, 3, 7};
    for (int o = 0; o < 3; o++) {
        for (int slot = 0; slot <= others[o]; slot += others[o] > 1 ? 2 : 1) {
            run(m, w, others[o], slot, batched, &n_b);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_f32),
        cmocka_unit_test(test_q8_0),
        cmocka_unit_test(test_q4_0),
        cmocka_unit_test(test_q4_k_m),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
