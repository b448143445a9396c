/* test_elmd_embed.c — embeddings through elmd (EMBED/VECTOR records, libelmclient's
 * elm_session_embed), against llama.cpp's vectors (shared/models/zoo2/README.md):
 *   - zoo-bert.gguf and zoo-bert-q8_0.gguf: all the reference texts in one call; every component
 *     within the README's tolerance (1e-4 F32, 1e-3 Q8_0), each text's token count equal to the
 *     reference's (and the vocabulary's ids equal to its token_ids);
 *   - batched equals one by one, bit for bit (one pass over several sequences computes each as
 *     alone), and a session with a small event ring, which gets the vectors in several rounds as
 *     it reads them, gets the same bits;
 *   - `elmctl embed` prints the same bytes through elmd and with --local (also for more texts
 *     than one request takes, which it splits), and --json is one document with every vector;
 *   - errors: a prompt to the embedding model and an embedding request to a generative model
 *     (ELM_EUNSUPPORTED with a message), a text longer than the model's context (ELM_ECONTEXT),
 *     no texts (-EINVAL), a malformed EMBED record (ELM_EPROTO, the session is closed).
 * Skips with a message when a model file is missing.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "elm/client.h"
#include "engine/model.h"
#include "ipc/embed_rec.h"
#include "tests/common/elmd_fixture.h"
#include "tests/common/json.h"

#define MAX_TEXTS 32
#define SMALL_EVT (16u << 10) /* event ring of the raw session (elmd's smallest) */

struct ref {
    json_t *j;
    const json_t *embs;
    const char *texts[MAX_TEXTS];
    size_t n;
};

/* The reference of zoo2/<name>; false (after a skip message) when a file is missing. */
static bool load_ref(const char *name, struct ref *r, const char **model)
{
    char rel[128];
    snprintf(rel, sizeof rel, "zoo2/%s.ref.json", name);
    const char *path = elm_test_model_path(rel);
    char *text = path ? elm_test_read_file(path, NULL) : NULL;
    r->j = text ? elm_test_json(text) : NULL;
    free(text);
    snprintf(rel, sizeof rel, "zoo2/%s.gguf", name);
    *model = elm_test_model_path(rel);
    if (!r->j || !*model) {
        print_message("SKIP: zoo2/%s not found under %s\n", name, elm_test_models_dir());
        json_decref(r->j);
        return false;
    }
    r->embs = json_object_get(r->j, "embeddings");
    assert_non_null(r->embs);
    r->n = json_array_size(r->embs);
    assert_true(r->n >= 2 && r->n <= MAX_TEXTS);
    for (size_t i = 0; i < r->n; i++)
        r->texts[i] = json_string_value(json_object_get(json_array_get(r->embs, i), "text"));
    return true;
}

static void start_daemon(struct td *t, const char *model, elm_client **c, elm_session **s)
{
    const char *extra[] = {"--threads", "1", NULL};
    if (td_start(t, model, extra)) {
        td_dump_log(t);
        fail_msg("elmd did not start");
    }
    assert_int_equal(elm_client_connect(t->dir, c), 0);
    assert_int_equal(elm_session_open(*c, s), 0);
}

/* The vectors of the raw session with a SMALL_EVT event ring: an EMBED of every text ROUNDS
 * times over, then VECTOR records read one by one (the daemon sends the rest as room appears),
 * then DONE. */
#define ROUNDS 16 /* 96 vectors of zoo-bert's 64 floats: 26 KiB of records */
static float *embed_small_ring(struct td *t, const struct ref *r, uint32_t n_embd)
{
    const size_t n = ROUNDS * r->n;
    struct tc c;
    struct ts s;
    assert_int_equal(tc_open_path(&c, t->dir), 0);
    assert_int_equal(ts_open_evt(&c, &s, getpid(), 0, SMALL_EVT), 0);
    /* more than the ring holds: the daemon must wait for the reader between vectors */
    assert_true(n * (elm_rec_vector_size(n_embd) + ELM_RING_REC_HDR) >
                elm_ring_max_payload(&s.r.evt) + ELM_RING_REC_HDR);
    struct elm_embed_msg *m = calloc(1, sizeof *m);
    m->hdr = (struct elm_rec_embed){.req_id = 7, .n_text = (uint32_t)n};
    for (size_t i = 0; i < n; i++) {
        m->text[i] = r->texts[i % r->n];
        m->len[i] = (uint32_t)strlen(m->text[i]);
    }
    assert_int_equal(elm_rec_embed_push(&s.r.req, m), 0);
    float *v = calloc(n * n_embd, sizeof *v);
    unsigned char buf[4096];
    size_t got = 0;
    int64_t end = td_now_ms() + 30000;
    for (;;) {
        struct elm_ring_rec rec;
        int rc = elm_ring_pop(&s.r.evt, &rec, buf, sizeof buf);
        if (rc == -EAGAIN) {
            assert_true(td_now_ms() < end);
            elm_ring_wait_data(&s.r.evt, 100);
            continue;
        }
        assert_int_equal(rc, 0);
        if (rec.type == ELM_REC_DONE) {
            struct elm_rec_done d;
            assert_int_equal(elm_rec_done_decode(buf, rec.len, &d), 0);
            assert_int_equal(d.req_id, 7);
            assert_int_equal(d.reason, ELM_DONE_EOS);
            assert_int_equal(d.n_gen, n);
            break;
        }
        assert_int_equal(rec.type, ELM_REC_VECTOR);
        struct elm_rec_vector h;
        const void *p;
        assert_int_equal(elm_rec_vector_decode(buf, rec.len, &h, &p), 0);
        assert_int_equal(h.index, got);
        assert_int_equal(h.n_embd, n_embd);
        memcpy(v + got * n_embd, p, n_embd * sizeof *v);
        got++;
    }
    assert_int_equal(got, n);
    free(m);
    ts_close(&c, &s);
    tc_close(&c);
    return v;
}

/* A malformed EMBED (no texts): ERROR ELM_EPROTO, and the daemon closes the session. */
static void check_malformed(struct td *t)
{
    struct tc c;
    struct ts s;
    assert_int_equal(tc_open_path(&c, t->dir), 0);
    assert_int_equal(ts_open(&c, &s, getpid(), 0), 0);
    struct elm_rec_embed h = {.req_id = 3, .n_text = 0};
    assert_int_equal(elm_ring_push(&s.r.req, ELM_REC_EMBED, &h, sizeof h), 0);
    struct ts_result res = {0};
    assert_int_equal(ts_collect(&s, &res, 30000), 0);
    assert_true(res.error);
    assert_int_equal(res.err_code, ELM_EPROTO);
    ts_close(&c, &s);
    tc_close(&c);
}

static int sh(char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = elm_test_vsh(out, cap, NULL, fmt, ap);
    va_end(ap);
    return rc;
}

/* elmctl embed: the text lines through elmd equal --local's; --json has every vector. */
static void check_cli(struct td *t, const char *model, const struct ref *r, const float *v,
                      uint32_t E, bool split)
{
    static char a[1 << 16], b[1 << 16];
    const char *elmctl = elm_test_build_dir();
    char args[1024] = "";
    for (size_t i = 0; i < 2; i++) /* two texts as arguments: no quotes in the zoo2 texts */
        snprintf(args + strlen(args), sizeof args - strlen(args), " '%s'", r->texts[i]);
    assert_int_equal(
        sh(a, sizeof a, "%s/cli/elmctl --runtime-dir %s embed%s", elmctl, t->dir, args), 0);
    assert_int_equal(
        sh(b, sizeof b, "%s/cli/elmctl embed --local %s --threads 1%s", elmctl, model, args), 0);
    assert_string_equal(a, b);
    char *line = a; /* the first line reads back as the first vector, exactly (%.9g) */
    for (uint32_t k = 0; k < E; k++)
        assert_true(strtof(line, &line) == v[k]);
    assert_true(*line == '\n');
    assert_int_equal(
        sh(a, sizeof a,
           "printf '%%s\\n\\n%%s\\n' '%s' '%s' | %s/cli/elmctl --runtime-dir %s embed --json",
           r->texts[0], r->texts[1], elmctl, t->dir),
        0);
    json_t *j = elm_test_json(a);
    assert_non_null(j);
    assert_int_equal((uint32_t)json_number_value(json_object_get(j, "n_embd")), E);
    const json_t *es = json_object_get(j, "embeddings");
    assert_int_equal(json_array_size(es), 2); /* the empty line is no text */
    for (size_t i = 0; i < 2; i++) {
        const json_t *e = json_array_get(es, i), *x = json_object_get(e, "embedding");
        assert_int_equal((size_t)json_number_value(json_object_get(e, "index")), i);
        assert_int_equal(json_array_size(x), E);
        for (uint32_t k = 0; k < E; k++)
            assert_true((float)json_number_value(json_array_get(x, k)) == v[i * E + k]);
    }
    json_decref(j);
    if (!split)
        return;

    /* 240 lines of about 38 tokens: more than a request of 256 texts may hold (8192 tokens), so
     * elmctl splits it; the vectors are still --local's, byte for byte */
    char path[256];
    snprintf(path, sizeof path, "%s/lines.txt", t->base);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < 240; i++)
        for (int k = 0; k < 4; k++)
            fprintf(f, "%s%s", r->texts[(size_t)(i + k) % r->n], k == 3 ? "\n" : " ");
    fclose(f);
    assert_int_equal(sh(a, sizeof a,
                        "%s/cli/elmctl --runtime-dir %s embed < %s > %s.d && %s/cli/elmctl embed "
                        "--local %s --threads 1 - < %s > %s.l && cmp %s.d %s.l && wc -l < %s.d",
                        elmctl, t->dir, path, path, elmctl, model, path, path, path, path, path),
                     0);
    assert_int_equal(atoi(a), 240);
}

static void run(const char *name, double tol)
{
    struct ref r;
    const char *model;
    if (!load_ref(name, &r, &model))
        skip();
    /* the vocabulary the daemon tokenizes with gives llama.cpp's ids */
    struct elm_model_params mp = {.n_threads = 1};
    struct elm_model *m = NULL;
    char err[256];
    assert_int_equal(elm_model_load(model, &mp, &m, err, sizeof err), 0);
    const uint32_t E = (uint32_t)m->hp.n_embd;
    for (size_t i = 0; i < r.n; i++) {
        const json_t *want = json_object_get(json_array_get(r.embs, i), "token_ids");
        int32_t *ids, n;
        assert_int_equal(
            elm_tokenize_alloc(m->vocab, r.texts[i], strlen(r.texts[i]), true, false, &ids, &n), 0);
        assert_int_equal(n, (int)json_array_size(want));
        for (int k = 0; k < n; k++)
            assert_int_equal(ids[k], (int32_t)json_number_value(json_array_get(want, (size_t)k)));
        free(ids);
    }
    elm_model_destroy(&m);

    struct td t = {0};
    elm_client *c = NULL;
    elm_session *s = NULL;
    start_daemon(&t, model, &c, &s);

    /* every text in one call */
    float *v = NULL;
    uint32_t n_embd = 0, n_tok[MAX_TEXTS];
    assert_int_equal(elm_session_embed(s, r.texts, r.n, 0, &v, &n_embd, n_tok), 0);
    assert_int_equal(n_embd, E);
    double worst = 0;
    for (size_t i = 0; i < r.n; i++) {
        const json_t *e = json_array_get(r.embs, i), *want = json_object_get(e, "embedding");
        assert_int_equal(n_tok[i], (uint32_t)json_number_value(json_object_get(e, "n_tokens")));
        assert_int_equal(json_array_size(want), E);
        for (uint32_t k = 0; k < E; k++) {
            double d = fabs((double)v[i * E + k] - json_number_value(json_array_get(want, k)));
            worst = d > worst ? d : worst;
        }
    }
    print_message("%s through elmd: %zu texts in one call, max |d| per component %.2e (limit "
                  "%.0e)\n",
                  name, r.n, worst, tol);
    assert_true(worst <= tol);

    /* one by one: the same bits */
    for (size_t i = 0; i < r.n; i++) {
        float *one = NULL;
        uint32_t e1 = 0;
        assert_int_equal(elm_session_embed(s, &r.texts[i], 1, 0, &one, &e1, NULL), 0);
        assert_int_equal(e1, E);
        assert_memory_equal(one, v + i * E, E * sizeof *one);
        free(one);
    }
    /* streamed through a small event ring: the same bits */
    float *small = embed_small_ring(&t, &r, E);
    for (int k = 0; k < ROUNDS; k++)
        assert_memory_equal(small + (size_t)k * r.n * E, v, r.n * E * sizeof *v);
    free(small);

    /* errors: generating from an embedding model; a text longer than the context; no text */
    struct elm_request req;
    elm_request_init(&req);
    req.prompt = "hello";
    req.n_predict = 4;
    assert_int_equal(elm_session_generate(s, &req, NULL, NULL), ELM_EUNSUPPORTED);
    assert_non_null(strstr(elm_session_last_message(s), "embedding model"));
    size_t long_len = 4 * 600;
    char *longtext = malloc(long_len + 1);
    for (size_t i = 0; i < long_len; i += 4)
        memcpy(longtext + i, "cat ", 4);
    longtext[long_len] = 0;
    const char *two[] = {r.texts[0], longtext};
    float *none = NULL;
    assert_int_equal(elm_session_embed(s, two, 2, 0, &none, &n_embd, NULL), ELM_ECONTEXT);
    assert_non_null(strstr(elm_session_last_message(s), "text 1 has"));
    assert_null(none);
    assert_int_equal(elm_session_embed(s, two, 0, 0, &none, &n_embd, NULL), -EINVAL);
    free(longtext);
    /* the session still serves after refused requests */
    float *again = NULL;
    assert_int_equal(elm_session_embed(s, r.texts, r.n, 0, &again, &n_embd, NULL), 0);
    assert_memory_equal(again, v, r.n * E * sizeof *v);
    free(again);
    check_malformed(&t);
    check_cli(&t, model, &r, v, E, tol < 1e-3); /* the split once, with the F32 file */

    free(v);
    elm_session_close(&s);
    elm_client_close(&c);
    assert_int_equal(td_cleanup(&t), 0);
    json_decref(r.j);
}

static void test_bert_f32(void **state)
{
    (void)state;
    run("zoo-bert", 1e-4); /* zoo2/README.md: F32 embedding components within 1e-4 */
}

static void test_bert_q8_0(void **state)
{
    (void)state;
    run("zoo-bert-q8_0", 1e-3); /* zoo2/README.md: Q8_0 embedding components within 1e-3 */
}

/* An embedding request to a generative model. */
static void test_generative_refuses(void **state)
{
    (void)state;
    const char *model = elm_test_model_path(TD_MODEL);
    if (!model) {
        print_message("SKIP: %s not found under %s\n", TD_MODEL, elm_test_models_dir());
        skip();
    }
    struct td t = {0};
    elm_client *c = NULL;
    elm_session *s = NULL;
    start_daemon(&t, model, &c, &s);
    const char *texts[] = {"hello"};
    float *v = NULL;
    uint32_t n_embd = 0;
    assert_int_equal(elm_session_embed(s, texts, 1, 0, &v, &n_embd, NULL), ELM_EUNSUPPORTED);
    assert_non_null(strstr(elm_session_last_message(s), "generates text"));
    assert_null(v);
    elm_session_close(&s);
    elm_client_close(&c);
    assert_int_equal(td_cleanup(&t), 0);
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    alarm(300);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bert_f32),
        cmocka_unit_test(test_bert_q8_0),
        cmocka_unit_test(test_generative_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
