/* test_sampler.c — the sampler chain on fixed logits, and the generation loop's seed
 * reproducibility, stop strings and length limits on stories260K. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "engine/seq.h"
#include "tests/common/elm_test.h"

static void test_greedy_and_ties(void **state)
{
    float l[5] = {0.5f, 2.0f, 2.0f, -1.0f, 1.0f};
    assert_int_equal(elm_argmax(l, 5), 1); /* lowest id wins a tie */
    struct elm_sampling p;
    elm_sampling_default(&p);
    p.temp = 0;
    struct elm_sampler *s;
    assert_int_equal(elm_sampler_create(&p, 5, &s), 0);
    assert_int_equal(elm_sampler_sample(s, l, NULL, 0), 1);
    elm_sampler_destroy(&s);
    assert_null(s);
}

/* elm_argmax against the rule it keeps, the one-pass scan that keeps the first strictly greater
 * value, on lengths around its lane count with NaNs (at 0 too), signed zeros, infinities, ties. */
static void test_argmax_matches_scan(void **state)
{
    static const float vals[] = {NAN, 0.0f, -0.0f, INFINITY, -INFINITY, -3, -1, 1, 2};
    float x[300];
    srand(7);
    for (int trial = 0; trial < 20000; trial++) {
        int n = 1 + rand() % (trial % 2 ? 40 : 300);
        for (int i = 0; i < n; i++)
            x[i] = vals[rand() % (int)(sizeof vals / sizeof *vals)];
        int32_t want = 0;
        for (int32_t i = 1; i < n; i++)
            if (x[i] > x[want])
                want = i;
        assert_int_equal(elm_argmax(x, n), want);
    }
    x[0] = -0.0f;
    x[1] = 0.0f;
    assert_int_equal(elm_argmax(x, 2), 0);
    x[0] = NAN;
    x[1] = 5;
    assert_int_equal(elm_argmax(x, 2), 0);
}

static void test_top_k_one_is_greedy(void **state)
{
    float base[100];
    for (int i = 0; i < 100; i++)
        base[i] = sinf((float)i * 1.7f) * 3;
    int32_t best = elm_argmax(base, 100);
    struct elm_sampling p;
    elm_sampling_default(&p);
    p.top_k = 1;
    p.temp = 1.5f;
    p.seed = 42;
    struct elm_sampler *s;
    assert_int_equal(elm_sampler_create(&p, 100, &s), 0);
    for (int i = 0; i < 50; i++) {
        float l[100];
        memcpy(l, base, sizeof l);
        assert_int_equal(elm_sampler_sample(s, l, NULL, 0), best);
    }
    elm_sampler_destroy(&s);
}

/* min_p = 0.5 keeps only tokens at least half as likely as the best one. */
static void test_min_p_and_top_p(void **state)
{
    float base[4] = {logf(0.5f), logf(0.3f), logf(0.15f), logf(0.05f)};
    struct elm_sampling p;
    elm_sampling_default(&p);
    p.top_k = 0;
    p.top_p = 1.0f;
    p.min_p = 0.5f;
    p.temp = 1.0f;
    p.seed = 7;
    struct elm_sampler *s;
    assert_int_equal(elm_sampler_create(&p, 4, &s), 0);
    int seen[4] = {0};
    for (int i = 0; i < 400; i++) {
        float l[4];
        memcpy(l, base, sizeof l);
        seen[elm_sampler_sample(s, l, NULL, 0)]++;
    }
    assert_true(seen[0] > 0 && seen[1] > 0);
    assert_int_equal(seen[2] + seen[3], 0);
    elm_sampler_destroy(&s);

    p.min_p = 0;
    p.top_p = 0.6f; /* 0.5 alone is < 0.6; 0.5 + 0.3 reaches it */
    assert_int_equal(elm_sampler_create(&p, 4, &s), 0);
    memset(seen, 0, sizeof seen);
    for (int i = 0; i < 400; i++) {
        float l[4];
        memcpy(l, base, sizeof l);
        seen[elm_sampler_sample(s, l, NULL, 0)]++;
    }
    assert_true(seen[0] > 0 && seen[1] > 0);
    assert_int_equal(seen[2] + seen[3], 0);
    elm_sampler_destroy(&s);
}

static void test_repeat_penalty(void **state)
{
    float l[3] = {2.0f, 1.9f, -1.0f};
    struct elm_sampling p;
    elm_sampling_default(&p);
    p.temp = 0;
    p.repeat_penalty = 1.5f;
    struct elm_sampler *s;
    assert_int_equal(elm_sampler_create(&p, 3, &s), 0);
    int32_t recent[] = {0, 0, 2};
    assert_int_equal(elm_sampler_sample(s, l, recent, 3), 1);
    /* one float division or product each (llama.cpp's penalty rule): exact, no tolerance */
    assert_true(l[0] == 2.0f / 1.5f);
    assert_true(l[2] == -1.5f);
    elm_sampler_destroy(&s);
}

static void test_bad_params(void **state)
{
    struct elm_sampling p;
    elm_sampling_default(&p);
    p.top_p = NAN;
    struct elm_sampler *s = NULL;
    assert_int_equal(elm_sampler_create(&p, 10, &s), -22);
    assert_null(s);

    /* The ranges are common/sampling.h's, the same that the wire and libelmclient enforce:
     * the engine used to take a top_p above 1, a negative temperature and a negative top-k. */
    struct {
        const char *what;
        struct elm_sampling p;
    } bad[] = {{.what = "top_p > 1"}, {.what = "temp < 0"},         {.what = "top_k < 0"},
               {.what = "min_p > 1"}, {.what = "repeat_penalty 0"}, {.what = "repeat_last_n < 0"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        elm_sampling_default(&bad[i].p);
    bad[0].p.top_p = 1.0001f;
    bad[1].p.temp = -0.5f;
    bad[2].p.top_k = -1;
    bad[3].p.min_p = 1.5f;
    bad[4].p.repeat_penalty = 0;
    bad[5].p.repeat_last_n = -1;
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        if (elm_sampling_check(&bad[i].p) != -EINVAL)
            fail_msg("%s was accepted", bad[i].what);
        assert_int_equal(elm_sampler_create(&bad[i].p, 10, &s), -EINVAL);
        assert_null(s);
    }

    /* The edges are in range: temp 0 is greedy; top_k 0, top_p 1, min_p 0 are "off". */
    p = (struct elm_sampling){.top_p = 1, .repeat_penalty = 1};
    assert_int_equal(elm_sampling_check(&p), 0);
    assert_int_equal(elm_sampler_create(&p, 10, &s), 0);
    elm_sampler_destroy(&s);
}

/* The defaults are llama.cpp's, the ones elm_request_init() documents. */
static void test_defaults(void **state)
{
    struct elm_sampling p;
    elm_sampling_default(&p);
    assert_float_equal(p.temp, 0.8f, 0);
    assert_int_equal(p.top_k, 40);
    assert_float_equal(p.top_p, 0.95f, 0);
    assert_float_equal(p.min_p, 0.05f, 0);
    assert_float_equal(p.repeat_penalty, 1.0f, 0);
    assert_int_equal(p.repeat_last_n, 64);
    assert_true(p.seed == ELM_SEED_RANDOM);
    assert_int_equal(elm_sampling_check(&p), 0);
}

/* ---- generation loop ----------------------------------------------------------------------- */

struct out {
    int32_t ids[256];
    int n;
    char text[4096];
    size_t len;
    enum elm_stop_reason done;
};

static int collect(void *user, const struct elm_seq_out *o)
{
    struct out *c = user;
    if (o->token >= 0 && c->n < 256)
        c->ids[c->n++] = o->token;
    if (o->text_len && c->len + o->text_len < sizeof c->text) {
        memcpy(c->text + c->len, o->text, o->text_len);
        c->len += o->text_len;
    }
    c->done = o->done;
    return 0;
}

static void run(struct elm_model *m, const struct elm_gen_params *gp, const char *prompt,
                struct out *o)
{
    int32_t *ids, n;
    assert_int_equal(elm_prompt_tokenize(m, prompt, strlen(prompt), false, &ids, &n), 0);
    struct elm_seq *s;
    struct elm_work *w;
    assert_int_equal(elm_seq_create(m, 256, ELM_TYPE_F16, &s), 0);
    assert_int_equal(elm_work_create(m, 32, 256, &w), 0);
    assert_int_equal(elm_seq_start(s, ids, n, gp), 0);
    memset(o, 0, sizeof *o);
    assert_int_equal(elm_seq_run(s, w, collect, o), 0);
    free(ids);
    elm_seq_destroy(&s);
    elm_work_destroy(&w);
}

static void test_generation(void **state)
{
    ELM_REQUIRE_MODEL(path, "stories260K.gguf");
    char err[256];
    struct elm_model *m;
    struct elm_model_params mp = {.n_threads = 2};
    if (elm_model_load(path, &mp, &m, err, sizeof err))
        fail_msg("%s", err);
    struct elm_gen_params gp;
    elm_gen_params_default(&gp);
    gp.n_predict = 40;
    gp.sampling.seed = 1234;
    gp.sampling.temp = 1.0f;
    struct out a, b, c;
    run(m, &gp, "Once upon a time", &a);
    run(m, &gp, "Once upon a time", &b);
    assert_int_equal(a.n, 40);
    assert_int_equal(a.done, ELM_STOP_LENGTH);
    assert_memory_equal(a.ids, b.ids, sizeof(int32_t) * 40); /* same seed, same tokens */
    gp.sampling.seed = 99;
    run(m, &gp, "Once upon a time", &c);
    assert_true(memcmp(a.ids, c.ids, sizeof(int32_t) * 40) != 0);

    /* greedy from BOS: " Once upon a time, there was a little girl named Lily." then "She" */
    gp.sampling.temp = 0;
    gp.n_predict = 60;
    gp.n_stop = 1;
    gp.stop[0] = "girl named";
    run(m, &gp, "", &a);
    assert_int_equal(a.done, ELM_STOP_STRING);
    a.text[a.len] = 0;
    assert_string_equal(a.text, "Once upon a time, there was a little ");
    elm_model_destroy(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_greedy_and_ties),
        cmocka_unit_test(test_argmax_matches_scan),
        cmocka_unit_test(test_top_k_one_is_greedy),
        cmocka_unit_test(test_min_p_and_top_p),
        cmocka_unit_test(test_repeat_penalty),
        cmocka_unit_test(test_bad_params),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_generation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
