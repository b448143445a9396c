/* test_zoo2.c — the zoo2 files (llama3, qwen2.5, phi3, gemma2 and bert, F32 and quantized)
 * against llama.cpp's references (shared/models/zoo2/README.md), under every kernel variant this
 * CPU runs, with an F32 KV cache.
 *
 * Forward pass: each entry (the 4 prompts and the chat conversations) is evaluated from the
 * reference's prompt ids (prompt in one batch, then each reference greedy id fed back), so the
 * forward pass is checked even where elm cannot tokenize the vocabulary yet. Per the README:
 *   F32 files: greedy ids equal up to the first recorded margin < 0.1; top-10 p within 1e-4
 *   (2e-3 for gemma2, whose F16 GELU table turns last-bit differences into ~1e-4..1e-3);
 *   quantized files: greedy ids equal up to the first margin < 0.3; the positions whose top-10
 *   p differ by more than 1e-3 are counted and printed, not failed (a correct implementation
 *   flips activation roundings there: llama.cpp's own batch path does, see
 *   top_probs_batch_dp), but a difference above 0.2 fails.
 * BERT: the embedding of each reference's token ids within 1e-4 (F32) / 1e-3 (Q8_0).
 * Tokenization: the prompt ids elm's tokenizer gives are compared in test_tokenize (prompts and
 * chat prompts of every generative file, bert's embedded texts), which skips a file whose
 * vocabulary elm cannot load. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "elm/status.h"
#include "engine/kv.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "tests/common/elm_test.h"
#include "tests/common/json.h"

#define MAX_TOK 256

struct report {
    int entries, ids_compared, ids_reference, positions, over_1e3;
    int over_1e3_ref; /* of those, positions where llama.cpp's own batch path moved > 1e-3 */
    double max_dp;
    char failure[512];
};

struct limits {
    double margin_cut, p_tol; /* p_tol: fail above it (F32), or count above it (quantized) */
    /* quantized: fail above this. zoo2/README.md ("Quantised files are fragile at the 1e-3
     * level"): a correct double-precision reimplementation of the Q8_0 path moved p by up to
     * 0.12 and 0.15 from llama.cpp; 0.2 is past what a correct implementation was seen to do. */
    double p_fail;
};

static const char *const gen_files[] = {
    "zoo-llama3",        "zoo-llama3-q8_0", "zoo-llama3-q4_k_m", "zoo-llama3-q4_0",
    "zoo-qwen25",        "zoo-qwen25-q8_0", "zoo-qwen25-q4_k_m", "zoo-phi3",
    "zoo-phi3-q8_0",     "zoo-phi3-q4_k_m", "zoo-gemma2",        "zoo-gemma2-q8_0",
    "zoo-gemma2-q4_k_m",
};

static bool quantized(const char *name)
{
    return strchr(name + 4, '-') != NULL; /* "zoo-llama3-q8_0" */
}

static json_t *load_ref(const char *name)
{
    char rel[128];
    snprintf(rel, sizeof rel, "zoo2/%s.ref.json", name);
    const char *path = elm_test_model_path(rel);
    char *text = path ? elm_test_read_file(path, NULL) : NULL;
    json_t *ref = text ? elm_test_json(text) : NULL;
    free(text);
    return ref;
}

static int load_model(const char *name, const char *kernel, struct elm_model **m)
{
    char rel[128], err[512];
    snprintf(rel, sizeof rel, "zoo2/%s.gguf", name);
    const char *path = elm_test_model_path(rel);
    if (!path)
        return -1;
    struct elm_model_params mp = {.n_threads = 2, .kernel = kernel, .vocab_optional = true};
    if (elm_model_load(path, &mp, m, err, sizeof err))
        fail_msg("load %s: %s", path, err);
    return 0;
}

/* Compares the logits with one reference position's top-10 list; returns the largest |dp|. */
static double compare_top(const float *logits, int V, const json_t *top)
{
    double mx = logits[elm_argmax(logits, V)], sum = 0, worst = 0;
    for (int i = 0; i < V; i++)
        sum += exp((double)logits[i] - mx);
    for (size_t e = 0; e < json_array_size(top); e++) {
        int id = (int)elm_test_jnum(json_array_get(top, e), "id");
        double pref = elm_test_jnum(json_array_get(top, e), "p");
        double d = fabs(exp((double)logits[id] - mx) / sum - pref);
        worst = d > worst ? d : worst;
    }
    return worst;
}

/* One entry: prompt ids in one batch, then every reference greedy id fed back. */
static void check_entry(const struct elm_model *m, struct elm_work *w, const json_t *e,
                        const struct limits *lim, bool quant, struct report *r)
{
    const json_t *pids = json_object_get(e, "prompt_ids"), *gids = json_object_get(e, "greedy_ids"),
                      *tops = json_object_get(e, "top_probs"), *margins = json_object_get(e, "logit_margins"),
                      *bdp = json_object_get(e, "top_probs_batch_dp");
    assert_non_null(pids);
    assert_non_null(gids);
    assert_non_null(tops);
    assert_non_null(margins);
    assert_true(json_array_size(pids) > 0 && json_array_size(pids) + json_array_size(gids) < MAX_TOK);
    struct elm_kv *kv;
    assert_int_equal(elm_kv_create(m, MAX_TOK, ELM_TYPE_F32, &kv), 0);
    const int V = m->hp.n_vocab, n = (int)json_array_size(pids);
    float *logits = malloc((size_t)V * sizeof *logits);
    struct elm_batch_item items[MAX_TOK];
    for (int i = 0; i < n; i++)
        items[i] = (struct elm_batch_item){.token = (int32_t)elm_test_jat(pids, (size_t)i),
                                           .pos = i,
                                           .kv = kv,
                                           .logits = i == n - 1 ? logits : NULL};
    assert_int_equal(elm_model_forward(m, w, items, n), 0);
    r->ids_reference += (int)json_array_size(gids);
    bool ids_done = false;
    for (size_t k = 0; k < json_array_size(gids); k++) {
        if (k < json_array_size(tops)) {
            double d = compare_top(logits, V, json_array_get(tops, k));
            r->max_dp = d > r->max_dp ? d : r->max_dp;
            r->positions++;
            r->over_1e3 += d > 1e-3;
            r->over_1e3_ref += d > 1e-3 && bdp && k < json_array_size(bdp) && elm_test_jat(bdp, k) > 1e-3;
            bool bad = quant ? d > lim->p_fail : d > lim->p_tol;
            if (bad && !r->failure[0])
                snprintf(r->failure, sizeof r->failure, "entry %d position %zu: |dp| %.3g",
                         r->entries, k, d);
        }
        if (!ids_done && elm_test_jat(margins, k) < lim->margin_cut)
            ids_done = true;
        const int32_t want = (int32_t)elm_test_jat(gids, k);
        if (!ids_done) {
            const int32_t got = elm_argmax(logits, V);
            if (got != want) {
                if (!r->failure[0])
                    snprintf(r->failure, sizeof r->failure,
                             "entry %d position %zu: greedy %d, reference %d (margin %.3f)",
                             r->entries, k, got, want, elm_test_jat(margins, k));
                ids_done = true;
            } else {
                r->ids_compared++;
            }
        }
        if (k + 1 == json_array_size(gids))
            break;
        struct elm_batch_item it = {.token = want, .pos = n + (int)k, .kv = kv, .logits = logits};
        assert_int_equal(elm_model_forward(m, w, &it, 1), 0);
    }
    free(logits);
    elm_kv_destroy(&kv);
    r->entries++;
}

/* Every entry of one file; returns -1 when the file is missing, 1 on a failure, else 0. */
static int check_file(const char *name, const char *kernel, struct report *r)
{
    memset(r, 0, sizeof *r);
    json_t *ref = load_ref(name);
    struct elm_model *m = NULL;
    if (!ref || load_model(name, kernel, &m)) {
        json_decref(ref);
        return -1;
    }
    const bool q = quantized(name), gemma = strstr(name, "gemma2") != NULL;
    const struct limits lim = {
        .margin_cut = q ? 0.3 : 0.1, .p_tol = q ? 1e-3 : (gemma ? 2e-3 : 1e-4), .p_fail = 0.2};
    struct elm_work *w;
    assert_int_equal(elm_work_create(m, MAX_TOK, MAX_TOK, &w), 0);
    const char *lists[] = {"prompts", "chat"};
    for (int li = 0; li < 2; li++) {
        const json_t *list = json_object_get(ref, lists[li]);
        assert_non_null(list);
        for (size_t i = 0; i < json_array_size(list); i++)
            check_entry(m, w, json_array_get(list, i), &lim, q, r);
    }
    elm_work_destroy(&w);
    elm_model_destroy(&m);
    json_decref(ref);
    return r->failure[0] ? 1 : 0;
}

static bool variant_usable(const char *variant)
{
    if (!elm_kernels_cpu_has(variant)) {
        print_message("SKIP: this CPU cannot run the %s kernels\n", variant);
        return false;
    }
    if (!elm_kernels_get(variant)) {
        print_message("SKIP: the %s kernels are not built\n", variant);
        return false;
    }
    return true;
}

static void run_generative(const char *variant)
{
    if (!variant_usable(variant))
        skip();
    int failures = 0, missing = 0;
    const int n_files = (int)(sizeof gen_files / sizeof *gen_files);
    for (int i = 0; i < n_files; i++) {
        struct report r;
        int rc = check_file(gen_files[i], variant, &r);
        if (rc < 0) {
            missing++;
            continue;
        }
        print_message("%-7s %-18s kv f32: %d entries, %3d/%3d ids, %3d positions, max |dp| "
                      "%.2e, %2d over 1e-3 (%2d where llama.cpp's batch path is too)%s%s\n",
                      variant, gen_files[i], r.entries, r.ids_compared, r.ids_reference,
                      r.positions, r.max_dp, r.over_1e3, r.over_1e3_ref, rc ? "  FAIL: " : "",
                      rc ? r.failure : "");
        failures += rc != 0;
    }
    if (missing == n_files) {
        print_message("SKIP: no zoo2 files under %s\n", elm_test_models_dir());
        skip();
    }
    assert_int_equal(missing, 0);
    assert_int_equal(failures, 0);
}

/* ---- bert ---------------------------------------------------------------------------------- */

static void run_bert(const char *variant, const char *name, double tol)
{
    if (!variant_usable(variant))
        skip();
    json_t *ref = load_ref(name);
    struct elm_model *m = NULL;
    if (!ref || load_model(name, variant, &m)) {
        print_message("SKIP: zoo2/%s not found under %s\n", name, elm_test_models_dir());
        json_decref(ref);
        skip();
    }
    assert_true(elm_model_is_embedding(m));
    const json_t *embs = json_object_get(ref, "embeddings");
    assert_non_null(embs);
    const int E = m->hp.n_embd, n = (int)json_array_size(embs);
    int32_t *ids[16], n_ids[16];
    assert_true(n > 0 && n <= 16);
    for (int s = 0; s < n; s++) {
        const json_t *t = json_object_get(json_array_get(embs, (size_t)s), "token_ids");
        n_ids[s] = (int32_t)json_array_size(t);
        ids[s] = malloc(json_array_size(t) * sizeof *ids[s]);
        for (size_t i = 0; i < json_array_size(t); i++)
            ids[s][i] = (int32_t)elm_test_jat(t, i);
    }
    float *out = malloc((size_t)n * E * sizeof *out);
    assert_int_equal(elm_model_embed(m, (const int32_t *const *)ids, n_ids, n, out), 0);
    double worst = 0;
    for (int s = 0; s < n; s++) {
        const json_t *v = json_object_get(json_array_get(embs, (size_t)s), "embedding");
        assert_int_equal((int)json_array_size(v), E);
        for (int i = 0; i < E; i++) {
            double d = fabs((double)out[(size_t)s * E + i] - elm_test_jat(v, (size_t)i));
            worst = d > worst ? d : worst;
        }
    }
    print_message("%-7s %-14s %d texts, max |d| per component %.2e (limit %.0e)\n", variant, name,
                  n, worst, tol);
    for (int s = 0; s < n; s++)
        free(ids[s]);
    free(out);
    elm_model_destroy(&m);
    json_decref(ref);
    assert_true(worst <= tol);
}

/* ---- tokenization -------------------------------------------------------------------------- */

/* The prompt ids of every entry as elm's tokenizer makes them (add_special, parse_special, as
 * llama-server's /tokenize did), for each file whose vocabulary elm can load. */
static void test_tokenize(void **state)
{
    const char *files[] = {"zoo-llama3", "zoo-qwen25", "zoo-phi3", "zoo-gemma2", "zoo-bert"};
    int checked = 0, mismatched = 0;
    for (size_t f = 0; f < sizeof files / sizeof *files; f++) {
        json_t *ref = load_ref(files[f]);
        struct elm_model *m = NULL;
        if (!ref || load_model(files[f], NULL, &m)) {
            json_decref(ref);
            continue;
        }
        if (!m->vocab) {
            print_message("SKIP tokenization of %s: elm cannot read its vocabulary yet "
                          "(pre-tokenizer not supported); forward pass checked from the "
                          "reference ids\n",
                          files[f]);
            elm_model_destroy(&m);
            json_decref(ref);
            continue;
        }
        /* generative files have prompts and chats, bert its embedded texts */
        const char *lists[] = {"prompts", "chat", "embeddings"},
                   *fields[] = {"text", "prompt_text", "text"},
                   *idf[] = {"prompt_ids", "prompt_ids", "token_ids"};
        for (int li = 0; li < 3; li++) {
            const json_t *list = json_object_get(ref, lists[li]);
            for (size_t i = 0; list && i < json_array_size(list); i++) {
                const json_t *e = json_array_get(list, i), *text = json_object_get(e, fields[li]),
                                  *pids = json_object_get(e, idf[li]);
                int32_t ids[MAX_TOK];
                int n = elm_tokenize(m->vocab, json_string_value(text), json_string_length(text), true, true, ids, MAX_TOK);
                bool same = n == (int)json_array_size(pids);
                for (int k = 0; same && k < n; k++)
                    same = ids[k] == (int32_t)elm_test_jat(pids, (size_t)k);
                checked++;
                if (!same) {
                    mismatched++;
                    print_message("%s %s[%zu]: elm's %d ids differ from the reference's %zu\n",
                                  files[f], lists[li], i, n, json_array_size(pids));
                }
            }
        }
        elm_model_destroy(&m);
        json_decref(ref);
    }
    if (!checked) {
        print_message("SKIP: no zoo2 vocabulary elm can load under %s\n", elm_test_models_dir());
        skip();
    }
    print_message("tokenization: %d entries checked, %d differ\n", checked, mismatched);
    assert_int_equal(mismatched, 0);
}

/* What the loader reads for each family, and what it refuses. */
static void test_load(void **state)
{
    struct elm_model *m = NULL;
    if (load_model("zoo-gemma2", NULL, &m)) {
        print_message("SKIP: no zoo2 files under %s\n", elm_test_models_dir());
        skip();
    }
    const struct elm_hparams *hp = &m->hp;
    assert_int_equal(hp->arch, ELM_ARCH_GEMMA2);
    assert_int_equal(hp->head_dim, 16); /* key_length, not n_embd / n_head = 8 */
    assert_int_equal(hp->n_swa, 8);
    assert_true(hp->swa_even_only);
    assert_true(hp->attn_softcap == 50.0f && hp->final_softcap == 30.0f);
    assert_true(hp->q_scale == 0.25f && hp->embd_scale == sqrtf(32.0f));
    assert_true(m->output.data == m->tok_embd.data); /* tied */
    assert_true(m->layers[25].attn_post_norm && m->layers[25].ffn_post_norm);
    char err[256];
    assert_int_equal(elm_kv_type_check(m, ELM_TYPE_Q8_0, err, sizeof err), ELM_EUNSUPPORTED);
    elm_model_destroy(&m);

    assert_int_equal(load_model("zoo-phi3", NULL, &m), 0);
    assert_int_equal(m->hp.arch, ELM_ARCH_PHI3);
    assert_true(m->hp.n_swa == 2047 && !m->hp.swa_even_only);
    /* the fused QKV split into consecutive row ranges of one tensor */
    size_t row = elm_row_bytes(m->layers[0].wq.type, 256);
    assert_ptr_equal(m->layers[0].wk.data, (const char *)m->layers[0].wq.data + 256 * row);
    assert_ptr_equal(m->layers[0].wv.data, (const char *)m->layers[0].wq.data + 512 * row);
    assert_true(m->output.data != m->tok_embd.data);
    elm_model_destroy(&m);

    assert_int_equal(load_model("zoo-llama3", NULL, &m), 0);
    assert_non_null(m->rope_freqs);
    assert_true(m->rope_freqs[0] == 1.0f && m->rope_freqs[31] == 8.0f);
    assert_non_null(m->vocab); /* llama-bpe */
    elm_model_destroy(&m);

    /* qwen2's pre-tokenizer is known: the file loads without vocab_optional (an unknown one is
     * refused, test_vocab's test_validation) */
    struct elm_model_params mp = {.n_threads = 1};
    const char *path = elm_test_model_path("zoo2/zoo-qwen25.gguf");
    assert_non_null(path);
    assert_int_equal(elm_model_load(path, &mp, &m, err, sizeof err), 0);
    assert_non_null(m->vocab);
    elm_model_destroy(&m);

    /* bert makes embeddings, not logits */
    assert_int_equal(load_model("zoo-bert", NULL, &m), 0);
    assert_true(elm_model_is_embedding(m) && m->hp.pooling == ELM_POOL_MEAN);
    struct elm_work *w;
    assert_int_equal(elm_work_create(m, 4, 16, &w), 0);
    float logits[384];
    struct elm_kv *kv;
    assert_int_equal(elm_kv_create(m, 16, ELM_TYPE_F32, &kv), 0);
    struct elm_batch_item it = {.token = 101, .pos = 0, .kv = kv, .logits = logits};
    assert_int_equal(elm_model_forward(m, w, &it, 1), -EINVAL);
    const int32_t bad[] = {101, 384, 102}, *ids = bad, n = 3, too_long = 513;
    float emb[64];
    assert_int_equal(elm_model_embed(m, &ids, &n, 1, emb), ELM_ETOKEN);
    assert_int_equal(elm_model_embed(m, &ids, &too_long, 1, emb), ELM_ECONTEXT);
    elm_kv_destroy(&kv);
    elm_work_destroy(&w);
    elm_model_destroy(&m);
}

static void test_ref(void **state)
{
    run_generative("ref");
}

static void test_avx2(void **state)
{
    run_generative("avx2");
}

static void test_avx512(void **state)
{
    run_generative("avx512");
}

static void test_bert(void **state)
{
    const char *variants[] = {"ref", "avx2", "avx512"};
    for (size_t i = 0; i < sizeof variants / sizeof *variants; i++) {
        if (!elm_kernels_cpu_has(variants[i]) || !elm_kernels_get(variants[i]))
            continue;
        run_bert(variants[i], "zoo-bert", 1e-4);
        run_bert(variants[i], "zoo-bert-q8_0", 1e-3);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load), cmocka_unit_test(test_bert),   cmocka_unit_test(test_ref),
        cmocka_unit_test(test_avx2), cmocka_unit_test(test_avx512), cmocka_unit_test(test_tokenize),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
