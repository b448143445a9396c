/* zoo.c — see zoo.h. The prompt is evaluated in one batch, then each reference greedy id is fed
 * back at the next position, exactly as llama.cpp produced the reference. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/kv.h"
#include "engine/model.h"
#include "engine/sampler.h"
#include "tests/common/elm_test.h"
#include "tests/common/json.h"
#include "tests/common/zoo.h"

#define MAX_TOK 256

static int check_prompt(const struct elm_model *m, struct elm_work *w, struct elm_kv *kv,
                        const json_t *pr, double margin_cut, double p_tol,
                        struct zoo_report *rep)
{
    const json_t *text = json_object_get(pr, "text"), *pids = json_object_get(pr, "prompt_ids"),
                      *gids = json_object_get(pr, "greedy_ids"), *tops = json_object_get(pr, "top_probs"),
                      *margins = json_object_get(pr, "logit_margins");
    if (!text || !pids || !gids || !tops || !margins) {
        snprintf(rep->failure, sizeof rep->failure, "reference JSON lacks a field");
        return 1;
    }
    int32_t ids[MAX_TOK];
    int n = elm_tokenize(m->vocab, json_string_value(text), json_string_length(text), true, true, ids, MAX_TOK);
    if (n != (int)json_array_size(pids)) {
        snprintf(rep->failure, sizeof rep->failure, "prompt '%s': %d ids, reference %zu", json_string_value(text),
                 n, json_array_size(pids));
        return 1;
    }
    for (int i = 0; i < n; i++)
        if (ids[i] != (int32_t)elm_test_jat(pids, (size_t)i)) {
            snprintf(rep->failure, sizeof rep->failure, "prompt '%s': id %d is %d, ref %d",
                     json_string_value(text), i, ids[i], (int)elm_test_jat(pids, (size_t)i));
            return 1;
        }
    int V = m->hp.n_vocab;
    float *logits = malloc((size_t)V * sizeof *logits);
    struct elm_batch_item items[MAX_TOK];
    for (int i = 0; i < n; i++)
        items[i] = (struct elm_batch_item){
            .token = ids[i], .pos = i, .kv = kv, .logits = i == n - 1 ? logits : NULL};
    int rc = elm_model_forward(m, w, items, n);
    int pos = n, result = 0;
    rep->ids_reference += (int)json_array_size(gids);
    size_t expect = 0;
    while (expect < json_array_size(gids) && expect < json_array_size(margins) && elm_test_jat(margins, expect) >= margin_cut)
        expect++;
    rep->ids_expected += (int)expect;
    int spare = 0, *mine = rep->prompts < ZOO_MAX_PROMPTS ? &rep->ids_prompt[rep->prompts] : &spare;
    for (size_t k = 0; k < json_array_size(gids) && !rc; k++) {
        if (k < json_array_size(tops)) {
            double mx = logits[elm_argmax(logits, V)], sum = 0;
            for (int i = 0; i < V; i++)
                sum += exp((double)logits[i] - mx);
            const json_t *top = json_array_get(tops, k);
            for (size_t e = 0; e < json_array_size(top); e++) {
                int id = (int)elm_test_jnum(json_array_get(top, e), "id");
                double pref = elm_test_jnum(json_array_get(top, e), "p");
                double p = exp((double)logits[id] - mx) / sum;
                double d = fabs(p - pref);
                if (d > rep->max_dp)
                    rep->max_dp = d;
                if (d > p_tol && !result) {
                    snprintf(rep->failure, sizeof rep->failure,
                             "prompt '%s' position %zu: p(%d) = %.6f, reference %.6f", json_string_value(text), k,
                             id, p, pref);
                    result = 1;
                }
            }
            rep->positions++;
        }
        if (elm_test_jat(margins, k) < margin_cut)
            break;
        int32_t want = (int32_t)elm_test_jat(gids, k), got = elm_argmax(logits, V);
        if (got != want) {
            if (!result)
                snprintf(rep->failure, sizeof rep->failure,
                         "prompt '%.200s' position %zu: greedy id %d, reference %d (margin %.3f)",
                         json_string_value(text), k, got, want, elm_test_jat(margins, k));
            result = 1;
            break;
        }
        rep->ids_compared++;
        (*mine)++;
        if (k + 1 == json_array_size(gids) || pos >= elm_kv_n_ctx(kv))
            break;
        struct elm_batch_item it = {.token = want, .pos = pos++, .kv = kv, .logits = logits};
        rc = elm_model_forward(m, w, &it, 1);
    }
    if (rc && !result) {
        snprintf(rep->failure, sizeof rep->failure, "forward failed: %d", rc);
        result = 1;
    }
    free(logits);
    return result;
}

int zoo_check(const char *name, const char *kernel, enum elm_type kv_type, double margin_cut,
              double p_tol, struct zoo_report *rep)
{
    char ref[256];
    snprintf(ref, sizeof ref, "zoo/%s.ref.json", name);
    return zoo_check_ref(name, ref, kernel, kv_type, margin_cut, p_tol, rep);
}

int zoo_check_ref(const char *name, const char *ref_rel, const char *kernel, enum elm_type kv_type,
                  double margin_cut, double p_tol, struct zoo_report *rep)
{
    char rel[256];
    snprintf(rel, sizeof rel, "zoo/%s.gguf", name);
    return zoo_check_paths(rel, ref_rel, kernel, kv_type, margin_cut, p_tol, rep);
}

int zoo_check_paths(const char *gguf_rel, const char *ref_rel, const char *kernel,
                    enum elm_type kv_type, double margin_cut, double p_tol, struct zoo_report *rep)
{
    memset(rep, 0, sizeof *rep);
    const char *gguf = elm_test_model_path(gguf_rel);
    const char *refp = elm_test_model_path(ref_rel);
    if (!gguf || !refp)
        return -1;
    char *text = elm_test_read_file(refp, NULL);
    json_t *ref = text ? elm_test_json(text) : NULL;
    free(text);
    const json_t *prompts = json_object_get(ref, "prompts");
    if (!prompts) {
        snprintf(rep->failure, sizeof rep->failure, "cannot read %s", refp);
        json_decref(ref);
        return 1;
    }
    struct elm_model_params mp = {.n_threads = 2, .kernel = kernel};
    struct elm_model *m = NULL;
    char err[512];
    int rc = elm_model_load(gguf, &mp, &m, err, sizeof err);
    if (rc) {
        snprintf(rep->failure, sizeof rep->failure, "load %.200s: %.200s", gguf, err);
        json_decref(ref);
        return 1;
    }
    struct elm_work *w = NULL;
    int result = elm_work_create(m, MAX_TOK, MAX_TOK, &w) ? 1 : 0;
    for (size_t i = 0; i < json_array_size(prompts) && !result; i++) {
        struct elm_kv *kv = NULL;
        if (elm_kv_create(m, MAX_TOK, kv_type, &kv)) {
            result = 1;
            break;
        }
        result = check_prompt(m, w, kv, json_array_get(prompts, i), margin_cut, p_tol, rep);
        rep->prompts++;
        elm_kv_destroy(&kv);
    }
    elm_work_destroy(&w);
    elm_model_destroy(&m);
    json_decref(ref);
    return result;
}
