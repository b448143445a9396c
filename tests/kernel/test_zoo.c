/* test_zoo.c — every zoo file (llama and qwen2, every quantization type) under every kernel
 * variant of the dispatch table (one case per variant; a variant this CPU lacks is a skip),
 * against the references llama.cpp computed with an F32 KV cache. The bounds are the zoo
 * README's "Recommended tolerances" (shared/models/zoo/README.md, "Tolerances"):
 *   F32 files, F32 cache: top-10 p within 1e-4, greedy ids equal up to the first recorded
 *     margin < 0.01;
 *   quantized files, F32 cache (activations quantized as ggml does): 1e-3, margin 0.05;
 *   F32 files, F16 cache (elm's default): 1e-2, margin 0.1 (the README's "F16 KV cache" row;
 *     llama.cpp's own F16 cache moves these files by 1.1e-3 / 3.6e-3).
 * A quantized file with an F16 cache is held to llama.cpp's own F16-cache references in
 * tests/unit/test_kv.c (shared/models/zoo/kv/). Every case counts what it compared: all 24
 * files, and every greedy id the reference asks for (those before its first margin below the
 * cut, counted from the reference alone). */
#include <stdio.h>
#include <string.h>

#include "tests/common/elm_test.h"
#include "tests/common/variants.h"
#include "tests/common/zoo.h"

static const char *const files[] = {
    "zoo-llama",           "zoo-llama-q8_0", "zoo-llama-q6_k",      "zoo-llama-q5_k_m",
    "zoo-llama-q5_k-pure", "zoo-llama-q5_1", "zoo-llama-q5_0",      "zoo-llama-q4_k_m",
    "zoo-llama-q4_k-pure", "zoo-llama-q4_1", "zoo-llama-q4_0",      "zoo-llama-q3_k_m",
    "zoo-llama-q3_k-pure", "zoo-llama-q2_k", "zoo-llama-q2_k-pure", "zoo-qwen2",
    "zoo-qwen2-q8_0",      "zoo-qwen2-q6_k", "zoo-qwen2-q5_k_m",    "zoo-qwen2-q5_0",
    "zoo-qwen2-q4_k_m",    "zoo-qwen2-q4_0", "zoo-qwen2-q3_k_m",    "zoo-qwen2-q2_k",
};
#define N_FILES (sizeof files / sizeof *files)

/* One comparison of the zoo README's table: which files, which cache, which bounds. */
struct bound {
    enum elm_type kv;
    double p_tol, margin_cut;
};

static const struct bound f32_file = {ELM_TYPE_F32, 1e-4, 0.01};
static const struct bound quant_file = {ELM_TYPE_F32, 1e-3, 0.05};
static const struct bound f16_cache = {ELM_TYPE_F16, 1e-2, 0.1};

static int check(const char *variant, const char *file, const struct bound *b)
{
    struct zoo_report r;
    int rc = zoo_check(file, variant, b->kv, b->margin_cut, b->p_tol, &r);
    if (rc < 0)
        return -1;
    if (rc == 0 && r.ids_compared != r.ids_expected) {
        snprintf(r.failure, sizeof r.failure, "%d ids compared, the reference asks for %d",
                 r.ids_compared, r.ids_expected);
        rc = 1;
    }
    if (rc == 0 && r.prompts != 4) {
        snprintf(r.failure, sizeof r.failure, "%d prompts, the zoo has 4", r.prompts);
        rc = 1;
    }
    print_message("%-7s %-20s kv %s: %3d/%3d ids, %2d positions, max |dp| %.2e (bound %.0e)%s%s\n",
                  variant, file, elm_type_get(b->kv)->name, r.ids_compared, r.ids_reference,
                  r.positions, r.max_dp, b->p_tol, rc ? "  FAIL: " : "", rc ? r.failure : "");
    return rc;
}

static void test_zoo_variant(void **state)
{
    const char *variant = elm_test_variant_name(state);
    int failures = 0, missing = 0, checked = 0;
    for (size_t i = 0; i < N_FILES; i++) {
        const bool quantized = strchr(files[i] + 4, '-') != NULL; /* "zoo-llama-q4_0" */
        int rc = check(variant, files[i], quantized ? &quant_file : &f32_file);
        if (rc < 0) {
            missing++;
            continue;
        }
        failures += rc != 0;
        if (!quantized)
            failures += check(variant, files[i], &f16_cache) != 0;
        checked++;
    }
    assert_int_equal(failures, 0);
    if (missing) {
        print_message("SKIP: %d of %zu zoo files not found under %s\n", missing, N_FILES,
                      elm_test_models_dir());
        skip();
    }
    assert_int_equal(checked, N_FILES);
}

int main(void)
{
    struct CMUnitTest tests[16];
    size_t n = 0;
    elm_test_add_variant_cases(tests, &n, 16, "test_zoo", test_zoo_variant, true);
    return _cmocka_run_group_tests("test_zoo", tests, n, NULL, NULL);
}
