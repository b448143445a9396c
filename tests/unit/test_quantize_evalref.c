/* test_quantize_evalref.c — elm's quantizer against llama-quantize, whole files: every
 * quantization of zoo/zoo-llama.gguf that shared/models/evalref/quant records (Q4_K_M, Q3_K_M,
 * Q2_K, IQ4_NL, IQ4_XS and Q4_0, each without and with evalref/imatrix/zoo-llama.imatrix) must
 * have the sha256 of llama.cpp's file (evalref/quant/<id>.json "sha256"): metadata, tensor
 * order, types and every quantized byte, with the imatrix weights and the quantize.imatrix.*
 * keys. The imatrix path is given as llama-quantize was given it ("evalref/imatrix/...",
 * relative to the models folder, stored in quantize.imatrix.file), so the test runs there. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/quantize.h"
#include "tests/common/elm_test.h"
#include "tests/common/json.h"
#include "tests/common/sha256.h"

static const char *const types[] = {"q4_k_m", "q3_k_m", "q2_k", "iq4_nl", "iq4_xs", "q4_0"};
#define IMATRIX "evalref/imatrix/zoo-llama.imatrix"

/* The sha256 llama-quantize's file had, from evalref/quant/<id>.json; fails when unreadable. */
static void expected_sha(const char *id, char out[65])
{
    char rel[128];
    snprintf(rel, sizeof rel, "evalref/quant/%s.json", id);
    char *text = elm_test_read_file(rel, NULL);
    json_t *j = text ? elm_test_json(text) : NULL;
    const json_t *sha = json_object_get(j, "sha256");
    if (!sha || !json_string_value(sha) || strlen(json_string_value(sha)) != 64)
        fail_msg("%s: no sha256", rel);
    memcpy(out, json_string_value(sha), 65);
    json_decref(j);
    free(text);
}

static void test_quantize_like_llama(void **state)
{
    (void)state;
    ELM_REQUIRE_MODEL(src, "zoo/zoo-llama.gguf");
    ELM_REQUIRE_MODEL(im, IMATRIX);
    (void)src;
    (void)im;
    if (chdir(elm_test_models_dir()) != 0)
        fail_msg("chdir %s", elm_test_models_dir());
    char tmpl[] = "/tmp/elm-test-quantize-XXXXXX";
    const char *dir = mkdtemp(tmpl);
    assert_non_null(dir);
    int matched = 0;
    for (size_t i = 0; i < sizeof types / sizeof *types; i++) {
        for (int with = 0; with < 2; with++) {
            char id[64], out[256], err[512], want[65], got[65];
            snprintf(id, sizeof id, "zoo-llama-%s%s", types[i], with ? "-imat" : "");
            snprintf(out, sizeof out, "%s/%s.gguf", dir, id);
            expected_sha(id, want);
            int rc = elm_quantize_file_imatrix("zoo/zoo-llama.gguf", out, types[i], false,
                                               with ? IMATRIX : NULL, 2, NULL, err, sizeof err);
            if (rc)
                fail_msg("quantize %s: %s", id, err);
            size_t len = 0;
            char *bytes = elm_test_read_file(out, &len);
            assert_non_null(bytes);
            sha256_hex(bytes, len, got);
            free(bytes);
            unlink(out);
            print_message("%-24s %s %s\n", id, got, strcmp(got, want) ? "DIFFERS" : "= llama.cpp");
            matched += !strcmp(got, want);
        }
    }
    rmdir(dir);
    assert_int_equal(matched, 2 * (int)(sizeof types / sizeof *types));
}

/* A known-answer check of the hash itself, so a match above means what it says. */
static void test_sha256(void **state)
{
    (void)state;
    char hex[65];
    sha256_hex("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    static const char m[] = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha256_hex(m, sizeof m - 1, hex);
    assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sha256),
        cmocka_unit_test(test_quantize_like_llama),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
