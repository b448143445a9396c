/* test_prune.c — FFN-width and attention-head pruning (engine/prune_width.c) and per-layer
 * widths in the engine (model.c, forward.c).
 *
 * A pruned model must compute what the original computes with the removed channels' (heads')
 * contributions zeroed: the same logits as the original file with those columns of ffn_down
 * (attn_output) set to 0, up to F32 summation order. Each pruned file passes elm's strict load,
 * its per-layer metadata matches its tensors, a file mixing a pruned layer 0 with full layers
 * (INT32 width arrays) runs, and metadata that disagrees with the tensors is refused. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "elm/status.h"
#include "engine/eval.h"
#include "engine/gguf.h"
#include "engine/gguf_writer.h"
#include "engine/prune.h"
#include "tests/common/elm_test.h"

#define N_CTX     64
#define N_CALIB   3     /* calibration chunks */
#define LOGIT_TOL 1e-3f /* F32 sums with and without the zeroed terms differ in order only */

static char dir[] = "/tmp/elm-prune-XXXXXX";

static struct elm_model *load(const char *path)
{
    struct elm_model_params mp = {.n_threads = 2};
    struct elm_model *m = NULL;
    char err[256];
    int rc = elm_model_load(path, &mp, &m, err, sizeof err);
    if (rc)
        print_message("%s: %s\n", path, err);
    assert_int_equal(rc, 0);
    return m;
}

/* Tokens of the TinyStories sample's start, N_CALIB + 1 chunks of N_CTX. */
static int32_t *calib_tokens(const struct elm_model *m)
{
    ELM_REQUIRE_MODEL(text, "corpus/tinystories-sample-30k.txt");
    size_t len;
    char *t = elm_test_read_file(text, &len);
    assert_non_null(t);
    int32_t *ids, n;
    assert_int_equal(elm_eval_tokenize(m, t, len < 40000 ? len : 40000, &ids, &n), 0);
    assert_true(n >= (N_CALIB + 1) * N_CTX);
    free(t);
    return ids;
}

static struct elm_prune_acts *measure(const struct elm_model *m, const int32_t *ids)
{
    struct elm_prune_acts *a = NULL;
    struct elm_eval *e = NULL;
    assert_int_equal(elm_prune_acts_create(m, &a), 0);
    assert_int_equal(elm_eval_create(m, N_CTX, ELM_TYPE_F32, &e), 0);
    const struct elm_matmul_observer obs = elm_prune_acts_observer(a);
    elm_eval_set_observer(e, &obs);
    for (int i = 0; i < N_CALIB; i++)
        assert_int_equal(elm_eval_chunk(e, ids + (size_t)i * N_CTX, N_CTX, NULL), 0);
    assert_int_equal(a->tokens, N_CALIB * N_CTX);
    elm_eval_destroy(&e);
    return a;
}

/* Logits of the last half of a held-out chunk. */
static float *logits_of(const struct elm_model *m, const int32_t *ids)
{
    struct elm_eval *e = NULL;
    const int32_t first = elm_eval_first(N_CTX);
    float *lg = malloc((size_t)(N_CTX - first) * (size_t)m->hp.n_vocab * sizeof *lg);
    assert_non_null(lg);
    assert_int_equal(elm_eval_create(m, N_CTX, ELM_TYPE_F32, &e), 0);
    assert_int_equal(elm_eval_chunk(e, ids + (size_t)N_CALIB * N_CTX, first, lg), 0);
    elm_eval_destroy(&e);
    return lg;
}

static const float *row_of(const struct elm_gguf *g, const struct elm_gguf_tensor *t, int64_t r)
{
    return (const float *)elm_gguf_tensor_data(g, t) + (size_t)r * (size_t)t->ne[0];
}

/* Whether row r of orig's tensor `name` is among the rows of pruned's. */
static bool row_kept(const struct elm_gguf *orig, const struct elm_gguf *pruned, const char *name,
                     int64_t r)
{
    const struct elm_gguf_tensor *a = elm_gguf_find_tensor(orig, name);
    const struct elm_gguf_tensor *b = elm_gguf_find_tensor(pruned, name);
    assert_non_null(a);
    assert_non_null(b);
    for (int64_t i = 0; i < b->ne[1]; i++)
        if (!memcmp(row_of(orig, a, r), row_of(pruned, b, i), (size_t)a->ne[0] * sizeof(float)))
            return true;
    return false;
}

struct masked {
    float *buf[64];
    int n;
};

/* Writes orig with, in the layers below n_layer, the ffn_down (attn_output) columns of the
 * channels (query rows) that pruned no longer has set to zero. */
static void write_masked(const char *orig_path, const char *pruned_path, int n_layer,
                         const char *out)
{
    struct elm_gguf *g = NULL, *p = NULL;
    char err[256], name[96];
    assert_int_equal(elm_gguf_open(orig_path, &g, err, sizeof err), 0);
    assert_int_equal(elm_gguf_open(pruned_path, &p, err, sizeof err), 0);
    struct elm_gguf_writer *w = elm_gguf_writer_create((uint32_t)g->alignment);
    struct masked mk = {0};
    for (uint64_t i = 0; i < g->n_kv; i++)
        assert_int_equal(elm_gguf_writer_copy_kv(w, &g->kv[i]), 0);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const struct elm_gguf_tensor *t = &g->tensors[i];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        int l = -1;
        char what[64] = "";
        const void *data = elm_gguf_tensor_data(g, t);
        if (sscanf(name, "blk.%d.%63s", &l, what) == 2 && l < n_layer &&
            (!strcmp(what, "ffn_down.weight") || !strcmp(what, "attn_output.weight"))) {
            assert_int_equal(t->type, ELM_TYPE_F32);
            float *c = malloc(t->n_bytes);
            assert_non_null(c);
            memcpy(c, data, t->n_bytes);
            char src[96];
            snprintf(src, sizeof src, "blk.%d.%s", l,
                     what[0] == 'f' ? "ffn_gate.weight" : "attn_q.weight");
            for (int64_t j = 0; j < t->ne[0]; j++)
                if (!row_kept(g, p, src, j))
                    for (int64_t r = 0; r < t->ne[1]; r++)
                        c[(size_t)r * (size_t)t->ne[0] + (size_t)j] = 0.0f;
            mk.buf[mk.n++] = c;
            data = c;
        }
        assert_int_equal(elm_gguf_writer_add_tensor(w, name, t->type, t->n_dims, t->ne, data), 0);
    }
    assert_int_equal(elm_gguf_writer_write(w, out, err, sizeof err), 0);
    for (int i = 0; i < mk.n; i++)
        free(mk.buf[i]);
    elm_gguf_writer_destroy(&w);
    elm_gguf_destroy(&p);
    elm_gguf_destroy(&g);
}

/* Writes orig with layer 0 taken from pruned, the widths as INT32 arrays; bad_ff != 0 states
 * that n_ff for layer 0 instead of the tensors' (the load must then fail). */
static void write_mixed(const char *orig_path, const char *pruned_path, int32_t bad_ff,
                        const char *out)
{
    struct elm_model *m = load(orig_path), *pm = load(pruned_path);
    const struct elm_gguf *g = m->gguf, *p = pm->gguf;
    const int32_t L = m->hp.n_layer;
    int32_t ff[64], nh[64], nkv[64];
    for (int32_t l = 0; l < L; l++) {
        const struct elm_layer *ly = l ? &m->layers[l] : &pm->layers[0];
        ff[l] = ly->n_ff, nh[l] = ly->n_head, nkv[l] = ly->n_head_kv;
    }
    if (bad_ff)
        ff[0] = bad_ff;
    struct elm_gguf_writer *w = elm_gguf_writer_create((uint32_t)g->alignment);
    char err[256], name[96];
    for (uint64_t i = 0; i < g->n_kv; i++)
        assert_int_equal(elm_gguf_writer_copy_kv(w, &g->kv[i]), 0);
    assert_int_equal(
        elm_gguf_writer_set_arr(w, "llama.feed_forward_length", ELM_GGUF_I32, (uint64_t)L, ff), 0);
    assert_int_equal(
        elm_gguf_writer_set_arr(w, "llama.attention.head_count", ELM_GGUF_I32, (uint64_t)L, nh), 0);
    assert_int_equal(
        elm_gguf_writer_set_arr(w, "llama.attention.head_count_kv", ELM_GGUF_I32, (uint64_t)L, nkv),
        0);
    assert_int_equal(
        elm_gguf_writer_set_u32(w, "llama.attention.key_length", (uint32_t)m->hp.head_dim), 0);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const struct elm_gguf_tensor *t = &g->tensors[i];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        if (!strncmp(name, "blk.0.", 6))
            t = elm_gguf_find_tensor(p, name);
        assert_non_null(t);
        const void *data = elm_gguf_tensor_data(t == &g->tensors[i] ? g : p, t);
        assert_int_equal(elm_gguf_writer_add_tensor(w, name, t->type, t->n_dims, t->ne, data), 0);
    }
    assert_int_equal(elm_gguf_writer_write(w, out, err, sizeof err), 0);
    elm_gguf_writer_destroy(&w);
    elm_model_destroy(&pm);
    elm_model_destroy(&m);
}

static void assert_close(const float *a, const float *b, size_t n)
{
    float worst = 0;
    for (size_t i = 0; i < n; i++)
        worst = fmaxf(worst, fabsf(a[i] - b[i]));
    assert_true(worst <= LOGIT_TOL);
}

/* Every layer's widths as the model says, and its tensors' shapes agree. */
static void assert_widths(const struct elm_model *pm, int32_t ff, int32_t nh, int32_t nkv)
{
    const int64_t hd = pm->hp.head_dim;
    for (int32_t l = 0; l < pm->hp.n_layer; l++) {
        const struct elm_layer *ly = &pm->layers[l];
        assert_int_equal(ly->n_ff, ff);
        assert_int_equal(ly->n_head, nh);
        assert_int_equal(ly->n_head_kv, nkv);
        char n[64];
        snprintf(n, sizeof n, "blk.%d.ffn_down.weight", l);
        assert_int_equal(elm_gguf_find_tensor(pm->gguf, n)->ne[0], ff);
        snprintf(n, sizeof n, "blk.%d.ffn_up.weight", l);
        assert_int_equal(elm_gguf_find_tensor(pm->gguf, n)->ne[1], ff);
        snprintf(n, sizeof n, "blk.%d.attn_q.weight", l);
        assert_int_equal(elm_gguf_find_tensor(pm->gguf, n)->ne[1], nh * hd);
        snprintf(n, sizeof n, "blk.%d.attn_k.weight", l);
        assert_int_equal(elm_gguf_find_tensor(pm->gguf, n)->ne[1], nkv * hd);
        snprintf(n, sizeof n, "blk.%d.attn_output.weight", l);
        assert_int_equal(elm_gguf_find_tensor(pm->gguf, n)->ne[0], nh * hd);
    }
}

/* Prunes rel's FFN by `fraction` and one KV group per layer; each file loads with the widths
 * expected and computes what the original does with those columns zeroed. */
static void check_model(const char *rel, double fraction, int32_t ff_kept)
{
    ELM_REQUIRE_MODEL(path, rel);
    struct elm_model *m = load(path);
    int32_t *ids = calib_tokens(m);
    struct elm_prune_acts *a = measure(m, ids);
    const size_t nlog = (size_t)(N_CTX - elm_eval_first(N_CTX)) * (size_t)m->hp.n_vocab;
    char out[256], masked[256], err[256];
    struct elm_prune_stats st;
    for (int kind = 0; kind < 2; kind++) {
        snprintf(out, sizeof out, "%s/%s.gguf", dir, kind ? "heads" : "ffn");
        snprintf(masked, sizeof masked, "%s/masked.gguf", dir);
        int rc = kind ? elm_prune_heads(m, a, 1, out, &st, err, sizeof err)
                      : elm_prune_ffn(m, a, fraction, out, &st, err, sizeof err);
        if (rc)
            print_message("%s\n", err);
        assert_int_equal(rc, 0);
        assert_true(st.params_out < st.params_in && st.bytes_out < st.bytes_in);
        struct elm_model *pm = load(out);
        if (kind)
            assert_widths(pm, m->hp.n_ff, m->hp.n_head - m->hp.n_head / m->hp.n_head_kv,
                          m->hp.n_head_kv - 1);
        else
            assert_widths(pm, ff_kept, m->hp.n_head, m->hp.n_head_kv);
        uint32_t v = 0; /* the same width everywhere: one integer, as llama's loader needs */
        assert_int_equal(elm_gguf_get_u32(pm->gguf, "llama.feed_forward_length", &v), 0);
        assert_int_equal(v, (uint32_t)pm->layers[0].n_ff);
        write_masked(path, out, m->hp.n_layer, masked);
        struct elm_model *mm = load(masked);
        float *x = logits_of(pm, ids), *y = logits_of(mm, ids);
        assert_close(x, y, nlog);
        free(x);
        free(y);
        elm_model_destroy(&mm);
        elm_model_destroy(&pm);
    }
    /* layer 0 pruned both ways, the others full: per-layer INT32 arrays, per-layer KV rows */
    char both[256], mixed[256];
    snprintf(both, sizeof both, "%s/both.gguf", dir);
    snprintf(mixed, sizeof mixed, "%s/mixed.gguf", dir);
    struct elm_model *hm = load(out); /* heads.gguf */
    elm_prune_acts_destroy(&a);
    a = measure(hm, ids);
    assert_int_equal(elm_prune_ffn(hm, a, fraction, both, &st, err, sizeof err), 0);
    elm_model_destroy(&hm);
    write_mixed(path, both, 0, mixed);
    struct elm_model *xm = load(mixed);
    assert_int_equal(xm->layers[0].n_ff, ff_kept);
    assert_int_equal(xm->layers[0].n_head_kv, m->hp.n_head_kv - 1);
    assert_int_equal(xm->layers[1].n_ff, m->hp.n_ff);
    assert_int_equal(xm->layers[1].n_head_kv, m->hp.n_head_kv);
    write_masked(path, both, 1, masked);
    struct elm_model *mm = load(masked);
    float *x = logits_of(xm, ids), *y = logits_of(mm, ids);
    assert_close(x, y, nlog);
    free(x);
    free(y);
    elm_model_destroy(&mm);
    elm_model_destroy(&xm);
    /* a width that disagrees with the tensors is refused by the strict load */
    write_mixed(path, both, ff_kept + 1, mixed);
    struct elm_model *bad = NULL;
    assert_int_equal(elm_model_load(mixed, NULL, &bad, err, sizeof err), ELM_EMODEL);
    assert_non_null(strstr(err, "ffn_gate"));
    elm_prune_acts_destroy(&a);
    free(ids);
    elm_model_destroy(&m);
}

static void test_stories260k(void **state)
{
    (void)state;
    check_model("stories260K.gguf", 0.25, 129); /* 172 - round(43) */
}

static void test_zoo_llama(void **state)
{
    (void)state;
    check_model("zoo/zoo-llama.gguf", 0.5, 384);
}

/* Quantized rows are not cut (their blocks would need requantizing); bad arguments refused. */
static void test_refusals(void **state)
{
    (void)state;
    ELM_REQUIRE_MODEL(path, "zoo/zoo-llama-q4_0.gguf");
    struct elm_model *m = load(path);
    int32_t *ids = calib_tokens(m);
    struct elm_prune_acts *a = measure(m, ids);
    char out[256], err[256];
    snprintf(out, sizeof out, "%s/q.gguf", dir);
    assert_int_equal(elm_prune_ffn(m, a, 0.25, out, NULL, err, sizeof err), ELM_EUNSUPPORTED);
    assert_non_null(strstr(err, "only F32/F16/BF16"));
    assert_int_equal(access(out, F_OK), -1);
    assert_int_equal(elm_prune_heads(m, a, m->hp.n_head_kv, out, NULL, err, sizeof err), -EINVAL);
    assert_int_equal(elm_prune_ffn(m, a, 1.0, out, NULL, err, sizeof err), -EINVAL);
    elm_prune_acts_destroy(&a);
    free(ids);
    elm_model_destroy(&m);
}

int main(void)
{
    if (!mkdtemp(dir))
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stories260k),
        cmocka_unit_test(test_zoo_llama),
        cmocka_unit_test(test_refusals),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        rc = rc ? rc : 1;
    return rc;
}
