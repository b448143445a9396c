/* test_model.c — the engine end to end on real files: golden greedy tokens of stories260K, the
 * quantizer's output, the zoo F32 references, F16 weights, rejected files, and the invariance
 * of logits to how a prompt is split into batches. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "elm/status.h"
#include "engine/gguf.h"
#include "engine/quantize.h"
#include "engine/seq.h"
#include "tests/common/elm_test.h"
#include "tests/common/variants.h"
#include "tests/common/zoo.h"

/* shared/models/README.md: the first 60 greedy ids of stories260K.gguf from BOS. */
static const int32_t stories_ref[60] = {
    403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426,
    338, 401, 396, 267, 337, 410, 408, 419, 292, 411, 322, 265, 282, 295, 433,
    426, 385, 328, 432, 358, 394, 261, 370, 432, 352, 266, 268, 388, 426, 338,
    391, 266, 267, 337, 335, 312, 432, 398, 312, 286, 267, 414, 270, 333, 415,
};

struct collect {
    int32_t ids[512];
    int n;
    char text[8192];
    size_t len;
};

static int on_token(void *user, const struct elm_seq_out *o)
{
    struct collect *c = user;
    if (o->token >= 0 && c->n < 512)
        c->ids[c->n++] = o->token;
    if (o->text_len && c->len + o->text_len < sizeof c->text) {
        memcpy(c->text + c->len, o->text, o->text_len);
        c->len += o->text_len;
        c->text[c->len] = 0;
    }
    return 0;
}

/* Greedy generation of n tokens from prompt text with the given kernel / KV type. */
static void greedy(const char *path, const char *kernel, enum elm_type kv, const char *prompt,
                   int n, struct collect *c)
{
    char err[512];
    struct elm_model_params mp = {.n_threads = 2, .kernel = kernel};
    struct elm_model *m;
    int rc = elm_model_load(path, &mp, &m, err, sizeof err);
    if (rc)
        fail_msg("load %s: %s", path, err);
    int32_t *ids, n_ids;
    assert_int_equal(elm_prompt_tokenize(m, prompt, strlen(prompt), false, &ids, &n_ids), 0);
    struct elm_seq *s;
    struct elm_work *w;
    assert_int_equal(elm_seq_create(m, 512, kv, &s), 0);
    assert_int_equal(elm_work_create(m, 64, 512, &w), 0);
    struct elm_gen_params gp;
    elm_gen_params_default(&gp);
    gp.sampling.temp = 0;
    gp.n_predict = n;
    assert_int_equal(elm_seq_start(s, ids, n_ids, &gp), 0);
    memset(c, 0, sizeof *c);
    assert_int_equal(elm_seq_run(s, w, on_token, c), 0);
    free(ids);
    elm_seq_destroy(&s);
    elm_work_destroy(&w);
    elm_model_destroy(&m);
}

/* The golden ids under one kernel variant (one case per variant of the dispatch table; a
 * variant this CPU lacks is a skip), with an F32 and an F16 cache. */
static void test_stories_golden(void **state)
{
    const char *variant = elm_test_variant_name(state);
    ELM_REQUIRE_MODEL(path, "stories260K.gguf");
    struct collect c;
    for (int kv = 0; kv < 2; kv++) {
        greedy(path, variant, kv ? ELM_TYPE_F16 : ELM_TYPE_F32, "", 60, &c);
        assert_int_equal(c.n, 60);
        assert_memory_equal(c.ids, stories_ref, sizeof stories_ref);
        const char *want = "Once upon a time, there was a little girl named Lily.";
        assert_memory_equal(c.text, want, strlen(want));
    }
}

static char tmpdir[64];

static const char *tmp_path(const char *name)
{
    static char buf[4][128];
    static int i;
    char *b = buf[i++ % 4];
    snprintf(b, sizeof buf[0], "%s/%s", tmpdir, name);
    return b;
}

/* The quantizer against llama-quantize: zoo/zoo-<model>-<preset>.gguf were written by
 * llama-quantize from zoo/zoo-<model>.gguf (zoo README, "How the files were made"), so elm's
 * quantization of the same F32 file must have every tensor with the same name, shape, type and
 * bytes. (What these bytes compute is test_zoo's part.) */
static void quantized_like_llama(const char *model, const char *preset, bool pure)
{
    char rel[128], err[512];
    snprintf(rel, sizeof rel, "zoo/%s.gguf", model);
    ELM_REQUIRE_MODEL(src, rel);
    snprintf(rel, sizeof rel, "zoo/%s-%s%s.gguf", model, preset, pure ? "-pure" : "");
    ELM_REQUIRE_MODEL(ref_path, rel);
    const char *mine_path = tmp_path("zoo-quantized.gguf");
    if (elm_quantize_file(src, mine_path, preset, pure, 2, NULL, err, sizeof err))
        fail_msg("quantize %s %s: %s", model, preset, err);
    struct elm_gguf *ref = NULL, *mine = NULL;
    if (elm_gguf_open(ref_path, &ref, err, sizeof err) ||
        elm_gguf_open(mine_path, &mine, err, sizeof err))
        fail_msg("open: %s", err);
    assert_int_equal(mine->n_tensors, ref->n_tensors);
    for (uint64_t i = 0; i < ref->n_tensors; i++) {
        const struct elm_gguf_tensor *r = &ref->tensors[i];
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)r->name.len, r->name.ptr);
        const struct elm_gguf_tensor *t = elm_gguf_find_tensor(mine, name);
        if (!t)
            fail_msg("%s %s: no tensor %s", model, preset, name);
        if (t->type != r->type)
            fail_msg("%s %s: %s is %s, llama-quantize wrote %s", model, preset, name,
                     elm_type_get(t->type)->name, elm_type_get(r->type)->name);
        assert_memory_equal(t->ne, r->ne, sizeof t->ne);
        assert_int_equal(t->n_bytes, r->n_bytes);
        if (memcmp(elm_gguf_tensor_data(mine, t), elm_gguf_tensor_data(ref, r), r->n_bytes))
            fail_msg("%s %s: %s differs from llama-quantize's bytes", model, preset, name);
    }
    /* and the whole file: metadata in llama-quantize's order, tensors in its order */
    size_t mine_len = 0, ref_len = 0;
    char *mine_bytes = elm_test_read_file(mine_path, &mine_len);
    char *ref_bytes = elm_test_read_file(ref_path, &ref_len);
    assert_non_null(mine_bytes);
    assert_non_null(ref_bytes);
    if (mine_len != ref_len || memcmp(mine_bytes, ref_bytes, ref_len))
        fail_msg("%s %s: the file differs from llama-quantize's (%zu vs %zu bytes)", model, preset,
                 mine_len, ref_len);
    free(mine_bytes);
    free(ref_bytes);
    print_message("%s %s%s: the file (%llu tensors) byte-identical to llama-quantize's\n", model,
                  preset, pure ? " --pure" : "", (unsigned long long)ref->n_tensors);
    elm_gguf_destroy(&ref);
    elm_gguf_destroy(&mine);
    unlink(mine_path);
}

static void test_quantize_like_llama(void **state)
{
    static const struct {
        const char *model, *preset;
        bool pure;
    } files[] = {
        /* every quantized preset of elm_quantize_presets() that the zoo has a file for */
        {"zoo-llama", "q8_0", false},   {"zoo-llama", "q6_k", false},
        {"zoo-llama", "q5_k_m", false}, {"zoo-llama", "q5_k", true},
        {"zoo-llama", "q5_1", false},   {"zoo-llama", "q5_0", false},
        {"zoo-llama", "q4_k_m", false}, {"zoo-llama", "q4_k", true},
        {"zoo-llama", "q4_1", false},   {"zoo-llama", "q4_0", false},
        {"zoo-qwen2", "q8_0", false},   {"zoo-qwen2", "q6_k", false},
        {"zoo-qwen2", "q5_k_m", false}, {"zoo-qwen2", "q5_0", false},
        {"zoo-qwen2", "q4_k_m", false}, {"zoo-qwen2", "q4_0", false},
        {"zoo-llama", "q3_k_m", false}, {"zoo-llama", "q3_k", true},
        {"zoo-llama", "q2_k", false},   {"zoo-llama", "q2_k", true},
        {"zoo-qwen2", "q3_k_m", false}, {"zoo-qwen2", "q2_k", false},
    };
    for (size_t i = 0; i < sizeof files / sizeof *files; i++)
        quantized_like_llama(files[i].model, files[i].preset, files[i].pure);
}

/* stories260K: its 64-wide rows fit Q8_0 and Q4_0 blocks; the five 172-wide ffn_down matrices
 * fit no block (models README, the legacy Q8_0 file's caveat) and stay F32, as do the norms;
 * the files load. What a quantized file computes is held to llama.cpp in test_zoo. */
static void test_stories_quantized(void **state)
{
    ELM_REQUIRE_MODEL(path, "stories260K.gguf");
    char err[512];
    struct elm_quantize_stats st;
    const char *q8 = tmp_path("stories-q8_0.gguf"), *q4 = tmp_path("stories-q4_0.gguf");
    if (elm_quantize_file(path, q8, "q8_0", false, 2, &st, err, sizeof err))
        fail_msg("quantize q8_0: %s", err);
    assert_int_equal(st.n_quantized, 37 - 5);
    assert_int_equal(st.n_kept, 48 - 32);
    if (elm_quantize_file(path, q4, "q4_0", false, 2, &st, err, sizeof err))
        fail_msg("quantize q4_0: %s", err);
    assert_int_equal(st.n_quantized, 37 - 5);
    struct collect c;
    greedy(q8, NULL, ELM_TYPE_F32, "", 60, &c);
    assert_int_equal(c.n, 60);
    greedy(q4, NULL, ELM_TYPE_F32, "", 60, &c);
    assert_int_equal(c.n, 60);
    unlink(q8);
    unlink(q4);
}

static void zoo_f32(const char *name)
{
    struct zoo_report r;
    int rc = zoo_check(name, NULL, ELM_TYPE_F32, 0.01, 1e-4, &r);
    if (rc < 0) {
        print_message("SKIP: zoo/%s not found under %s\n", name, elm_test_models_dir());
        skip();
    }
    print_message("%s: %d prompts, %d/%d greedy ids compared, %d positions, max |dp| %.2e\n", name,
                  r.prompts, r.ids_compared, r.ids_reference, r.positions, r.max_dp);
    if (rc)
        fail_msg("%s: %s", name, r.failure);
    assert_int_equal(r.prompts, 4);
}

static void test_zoo_llama(void **state)
{
    zoo_f32("zoo-llama");
}

static void test_zoo_qwen2(void **state)
{
    zoo_f32("zoo-qwen2");
}

/* F16 weights (llama-2-tiny-random) against the same weights dequantized to F32. Widening a
 * half to float is exact, so both files hold the same values, and the F16 and F32 dot products
 * do the same arithmetic on them (kernels/ref/float.c: a float product, summed in double; the
 * SIMD tiles reproduce that chain exactly, kernels/avx2/float.h): the logits must be the same
 * bits, a bound from the arithmetic rather than a measured margin. */
static void test_f16_model(void **state)
{
    ELM_REQUIRE_MODEL(path, "llama-2-tiny-random.gguf");
    char err[512];
    const char *f32 = tmp_path("tiny-f32.gguf");
    if (elm_quantize_file(path, f32, "f32", false, 2, NULL, err, sizeof err))
        fail_msg("dequantize: %s", err);
    const char *prompt = "The capital of France is";
    float *lg[2];
    int V = 0;
    for (int f = 0; f < 2; f++) {
        struct elm_model_params mp = {.n_threads = 2};
        struct elm_model *m;
        if (elm_model_load(f ? f32 : path, &mp, &m, err, sizeof err))
            fail_msg("load: %s", err);
        assert_int_equal(m->hp.n_vocab, 32000);
        int32_t *ids, n;
        assert_int_equal(elm_prompt_tokenize(m, prompt, strlen(prompt), false, &ids, &n), 0);
        assert_true(n > 2);
        struct elm_kv *kv;
        struct elm_work *w;
        assert_int_equal(elm_kv_create(m, 64, ELM_TYPE_F32, &kv), 0);
        assert_int_equal(elm_work_create(m, 64, 64, &w), 0);
        V = m->hp.n_vocab;
        lg[f] = malloc((size_t)V * sizeof(float));
        struct elm_batch_item items[64];
        for (int i = 0; i < n; i++)
            items[i] = (struct elm_batch_item){
                .token = ids[i], .pos = i, .kv = kv, .logits = i == n - 1 ? lg[f] : NULL};
        assert_int_equal(elm_model_forward(m, w, items, n), 0);
        free(ids);
        elm_kv_destroy(&kv);
        elm_work_destroy(&w);
        elm_model_destroy(&m);
    }
    double maxd = 0;
    for (int i = 0; i < V; i++)
        maxd = fmax(maxd, fabs((double)lg[0][i] - lg[1][i]));
    print_message("llama-2-tiny-random F16 vs F32: max |logit diff| %.2e\n", maxd);
    assert_memory_equal(lg[0], lg[1], (size_t)V * sizeof(float));
    free(lg[0]);
    free(lg[1]);
    unlink(f32);
}

static void test_rejected_files(void **state)
{
    ELM_REQUIRE_MODEL(v1, "tinyllamas-stories-260k-f32.gguf");
    ELM_REQUIRE_MODEL(q8, "tinyllamas-stories-260k-q8_0.gguf");
    char err[512];
    struct elm_model *m = NULL;
    assert_int_equal(elm_model_load(v1, NULL, &m, err, sizeof err), ELM_EUNSUPPORTED);
    assert_non_null(strstr(err, "v1"));
    assert_int_equal(elm_model_load(q8, NULL, &m, err, sizeof err), ELM_EFORMAT);
    assert_non_null(strstr(err, "ffn_down"));
    assert_non_null(strstr(err, "172"));
    assert_null(m);
}

/* A prompt evaluated in one batch, in chunks, or token by token gives bit-identical logits. */
static void test_batch_split_invariance(void **state)
{
    ELM_REQUIRE_MODEL(path, "zoo/zoo-qwen2.gguf");
    char err[512];
    struct elm_model_params mp = {.n_threads = 2};
    struct elm_model *m;
    if (elm_model_load(path, &mp, &m, err, sizeof err))
        fail_msg("load: %s", err);
    const char *prompt = "The quick brown fox jumps over the lazy dog.";
    int32_t *ids, n;
    assert_int_equal(elm_prompt_tokenize(m, prompt, strlen(prompt), false, &ids, &n), 0);
    int V = m->hp.n_vocab;
    float *ref = malloc((size_t)V * sizeof *ref), *got = malloc((size_t)V * sizeof *got);
    struct elm_work *w;
    assert_int_equal(elm_work_create(m, 64, 64, &w), 0);
    const int chunks[] = {64, 7, 3, 1};
    for (int c = 0; c < 4; c++) {
        struct elm_kv *kv;
        assert_int_equal(elm_kv_create(m, 64, ELM_TYPE_F16, &kv), 0);
        for (int start = 0; start < n; start += chunks[c]) {
            struct elm_batch_item items[64];
            int k = n - start < chunks[c] ? n - start : chunks[c];
            for (int i = 0; i < k; i++)
                items[i] =
                    (struct elm_batch_item){.token = ids[start + i],
                                            .pos = start + i,
                                            .kv = kv,
                                            .logits = start + i == n - 1 ? (c ? got : ref) : NULL};
            assert_int_equal(elm_model_forward(m, w, items, k), 0);
        }
        if (c)
            assert_memory_equal(ref, got, (size_t)V * sizeof *ref);
        elm_kv_destroy(&kv);
    }
    free(ids);
    free(ref);
    free(got);
    elm_work_destroy(&w);
    elm_model_destroy(&m);
}

/* Logits of zoo file name under kernel variant: a 24-token batch (prefill: several token tiles
 * per panel), an 8-token batch (a single tile) and 8 tokens one at a time (decode), all 40
 * positions' logits into out. *packed: whether the model's first Q4_0 matrix was packed. */
static void zoo_logits(const char *name, const char *variant, float *out, int n_vocab, bool *packed)
{
    char path[512], err[512];
    snprintf(path, sizeof path, "%s/zoo/%s.gguf", elm_test_models_dir(), name);
    struct elm_model_params mp = {.n_threads = 2, .kernel = variant};
    struct elm_model *m;
    if (elm_model_load(path, &mp, &m, err, sizeof err))
        fail_msg("load %s: %s", path, err);
    assert_int_equal(m->hp.n_vocab, n_vocab);
    assert_int_equal(m->layers[0].wq.type, ELM_TYPE_Q4_0);
    *packed = m->layers[0].wq.layout != ELM_LAYOUT_ROWS;
    struct elm_work *w;
    struct elm_kv *kv;
    assert_int_equal(elm_work_create(m, 24, 40, &w), 0);
    assert_int_equal(elm_kv_create(m, 40, ELM_TYPE_F32, &kv), 0);
    static const int batches[] = {24, 8, 1, 1, 1, 1, 1, 1, 1, 1};
    int pos = 0;
    for (size_t b = 0; b < sizeof batches / sizeof *batches; b++) {
        struct elm_batch_item items[24];
        for (int i = 0; i < batches[b]; i++, pos++)
            items[i] = (struct elm_batch_item){.token = (pos * 7919 + 11) % n_vocab,
                                               .pos = pos,
                                               .kv = kv,
                                               .logits = out + (size_t)pos * n_vocab};
        assert_int_equal(elm_model_forward(m, w, items, batches[b]), 0);
    }
    assert_int_equal(pos, 40);
    elm_kv_destroy(&kv);
    elm_work_destroy(&w);
    elm_model_destroy(&m);
}

/* Every variant gives ref's logits, bit for bit, on the Q4_0 zoo files (their outputs are
 * Q6_K: llama's its own, qwen2's tied to the embedding). A variant that multiplies Q4_0 packed
 * (avx2, avx512: kernels.h, ELM_LAYOUT_X8) rewrites the layers' matrices at load: this holds
 * the packed model to the file's rows through prefill, a single token tile and decode. */
static void test_packed_weights(void **state)
{
    const char *variant = elm_test_variant_name(state);
    static const char *const files[] = {"zoo-llama-q4_0", "zoo-qwen2-q4_0"};
    for (size_t f = 0; f < sizeof files / sizeof *files; f++) {
        char path[512];
        snprintf(path, sizeof path, "%s/zoo/%s.gguf", elm_test_models_dir(), files[f]);
        if (access(path, R_OK)) {
            print_message("SKIP: %s not found\n", path);
            skip();
        }
        struct elm_gguf *g;
        char err[512];
        if (elm_gguf_open(path, &g, err, sizeof err))
            fail_msg("%s: %s", path, err);
        const struct elm_gguf_tensor *te = elm_gguf_find_tensor(g, "token_embd.weight");
        assert_non_null(te);
        const int V = (int)te->ne[1];
        elm_gguf_destroy(&g);
        float *want = malloc((size_t)40 * V * sizeof *want);
        float *got = malloc((size_t)40 * V * sizeof *got);
        assert_non_null(want);
        assert_non_null(got);
        bool ref_packed, packed;
        zoo_logits(files[f], "ref", want, V, &ref_packed);
        zoo_logits(files[f], variant, got, V, &packed);
        assert_false(ref_packed);
        assert_int_equal(packed, elm_matmul_layout(elm_kernels_get(variant), ELM_TYPE_Q4_0) !=
                                     ELM_LAYOUT_ROWS);
        assert_memory_equal(want, got, (size_t)40 * V * sizeof *want);
        print_message("%s %s: 40 positions' logits equal to ref's%s\n", variant, files[f],
                      packed ? " (Q4_0 packed)" : "");
        free(want);
        free(got);
    }
}

/* Whether the page holding p is mapped in this process (/proc/self/pagemap bit 63; its flags
 * are readable without privilege). */
static bool page_present(const void *p)
{
    const long page = sysconf(_SC_PAGESIZE);
    FILE *f = fopen("/proc/self/pagemap", "rb");
    assert_non_null(f);
    uint64_t e = 0;
    assert_int_equal(fseek(f, (long)((uintptr_t)p / (uintptr_t)page * 8), SEEK_SET), 0);
    assert_int_equal(fread(&e, sizeof e, 1, f), 1);
    fclose(f);
    return e >> 63;
}

/* A model that packs over a file's read-only mapping (elm_model_load) puts the packed matrices
 * in one region of its own and hands the file's pages it packed from back to the page cache
 * (model.c, drop_source): the process holds the weights about once, not twice. Over a buffer
 * of the caller's (elm_gguf_parse) nothing is handed back: the buffer keeps its bytes. Both
 * models give the same logits (test_packed_weights holds them to ref's). */
static void test_packed_copy(void **state)
{
    (void)state;
    ELM_REQUIRE_MODEL(path, "zoo/zoo-llama-q4_0.gguf");
    char err[512];
    /* the active variant: avx2 and avx512 pack Q4_0, the ref and arm64 ones read rows */
    const bool packs = elm_matmul_layout(elm_kernels_active(), ELM_TYPE_Q4_0) != ELM_LAYOUT_ROWS;
    struct elm_model_params mp = {.n_threads = 1};
    struct elm_model *m;
    if (elm_model_load(path, &mp, &m, err, sizeof err))
        fail_msg("load %s: %s", path, err);
    const long page = sysconf(_SC_PAGESIZE);
    const uintptr_t lo = (uintptr_t)m->packed.base, hi = lo + m->packed.len;
    int pages = 0, dropped = 0;
    for (int32_t l = 0; l < m->hp.n_layer && !packs; l++)
        assert_int_equal(m->layers[l].w_up.layout, ELM_LAYOUT_ROWS);
    assert_true(packs == (lo != 0));
    for (int32_t l = 0; l < m->hp.n_layer && packs; l++) {
        const struct elm_tensor *T = &m->layers[l].w_up;
        assert_int_equal(T->layout, ELM_LAYOUT_X8);
        assert_true((uintptr_t)T->data >= lo && (uintptr_t)T->data < hi);
        /* where the file's rows were: their whole pages, unmapped */
        const struct elm_gguf_tensor *t = NULL;
        char name[64];
        snprintf(name, sizeof name, "blk.%d.ffn_up.weight", (int)l);
        assert_non_null(t = elm_gguf_find_tensor(m->gguf, name));
        const uint8_t *src = m->gguf->base + m->gguf->data_offset + t->offset;
        for (const uint8_t *q = (const uint8_t *)(((uintptr_t)src + (uintptr_t)page - 1) &
                                                  ~((uintptr_t)page - 1));
             q + page <= src + t->n_bytes; q += page, pages++)
            dropped += !page_present(q);
    }
    /* most, not all: packing the next tensor faults in its first pages, and the kernel maps
     * cached neighbours with them (fault-around, large folios), which may be this one's last */
    assert_true(packs == (pages > 0));
    assert_true(dropped * 2 >= pages);
    float *want = malloc((size_t)m->hp.n_vocab * sizeof *want);
    float *got = malloc((size_t)m->hp.n_vocab * sizeof *got);
    assert_non_null(want);
    assert_non_null(got);
    struct elm_model *models[2] = {m, NULL};

    /* the same file in a heap buffer */
    size_t size;
    uint8_t *buf = (uint8_t *)elm_test_read_file(path, &size), *copy = malloc(size);
    assert_non_null(buf);
    assert_non_null(copy);
    memcpy(copy, buf, size);
    struct elm_gguf *g;
    assert_int_equal(elm_gguf_parse(buf, size, &g, err, sizeof err), 0);
    assert_int_equal(elm_model_create(g, NULL, &mp, &models[1], err, sizeof err), 0);
    assert_memory_equal(buf, copy, size);
    for (int i = 0; i < 2; i++) {
        struct elm_work *w;
        struct elm_kv *kv;
        assert_int_equal(elm_work_create(models[i], 1, 4, &w), 0);
        assert_int_equal(elm_kv_create(models[i], 4, ELM_TYPE_F32, &kv), 0);
        struct elm_batch_item it = {.token = 42, .pos = 0, .kv = kv, .logits = i ? got : want};
        assert_int_equal(elm_model_forward(models[i], w, &it, 1), 0);
        elm_kv_destroy(&kv);
        elm_work_destroy(&w);
    }
    assert_memory_equal(want, got, (size_t)m->hp.n_vocab * sizeof *want);
    print_message("%s: %d of %d pages of ffn_up handed back, logits equal over a buffer\n",
                  elm_kernels_active()->name, dropped, pages);
    elm_model_destroy(&models[1]);
    elm_model_destroy(&m);
    free(buf);
    free(copy);
    free(want);
    free(got);
}

static int setup(void **state)
{
    strcpy(tmpdir, "/tmp/elm-test-XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    return rmdir(tmpdir);
}

/* The one default-context rule (elmd's sessions, elmctl --local): configured, else the
 * training context up to 4096, and 4096 for a file that states none. */
static void test_ctx_default(void **state)
{
    struct elm_model m = {.hp.n_ctx_train = 2048};
    assert_int_equal(elm_model_ctx_default(&m, 0), 2048);
    assert_int_equal(elm_model_ctx_default(&m, 100), 100);
    assert_int_equal(elm_model_ctx_default(&m, 8192), 8192); /* configured is not capped */
    m.hp.n_ctx_train = 32768;
    assert_int_equal(elm_model_ctx_default(&m, 0), ELM_CTX_DEFAULT_MAX);
    assert_int_equal(ELM_CTX_DEFAULT_MAX, 4096);
    m.hp.n_ctx_train = 0;
    assert_int_equal(elm_model_ctx_default(&m, 0), 4096);
    assert_int_equal(elm_model_ctx_default(&m, 512), 512);
}

int main(void)
{
    struct CMUnitTest tests[40];
    size_t n = 0;
    elm_test_add_variant_cases(tests, &n, 16, "test_stories_golden", test_stories_golden, true);
    elm_test_add_variant_cases(tests, &n, 24, "test_packed_weights", test_packed_weights, false);
    const struct CMUnitTest rest[] = {
        cmocka_unit_test(test_stories_quantized),
        cmocka_unit_test(test_quantize_like_llama),
        cmocka_unit_test(test_zoo_llama),
        cmocka_unit_test(test_zoo_qwen2),
        cmocka_unit_test(test_f16_model),
        cmocka_unit_test(test_rejected_files),
        cmocka_unit_test(test_batch_split_invariance),
        cmocka_unit_test(test_ctx_default),
        cmocka_unit_test(test_packed_copy),
    };
    memcpy(tests + n, rest, sizeof rest);
    n += sizeof rest / sizeof *rest;
    return _cmocka_run_group_tests("test_model", tests, n, setup, teardown);
}
