/* test_imatrix.c — the imatrix file format (engine/imatrix.h): llama-imatrix's own files read
 * back with the values its JSON lists, a write/read round trip that gives the same bytes, the
 * accumulator's stored values, and malformed files refused. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "elm/status.h"
#include "engine/imatrix.h"
#include "tests/common/elm_test.h"
#include "tests/common/json.h"

/* llama.cpp's zoo-llama imatrix: entries, ncall, nval and every value as its JSON lists them
 * (evalref/README.md section 3; the JSON's numbers read back to the same float32). */
static void test_read_llama_file(void **state)
{
    (void)state;
    ELM_REQUIRE_MODEL(path, "evalref/imatrix/zoo-llama.imatrix");
    ELM_REQUIRE_MODEL(jpath, "evalref/imatrix/zoo-llama.imatrix.json");
    struct elm_imatrix *im = NULL;
    char err[256];
    assert_int_equal(elm_imatrix_read(path, &im, err, sizeof err), 0);
    char *text = elm_test_read_file(jpath, NULL);
    struct json *j = json_parse(text);
    assert_non_null(j);
    const struct json *ents = json_get(j, "entries");
    assert_int_equal(im->n_entries, (int)ents->n);
    assert_int_equal(im->n_entries, 14);
    assert_int_equal(im->last_call, 169);
    assert_string_equal(im->dataset, "corpus/tinystories-sample-30k.txt");
    for (size_t i = 0; i < ents->n; i++) {
        const struct json *e = json_at(ents, i);
        const struct elm_imatrix_entry *m = elm_imatrix_find(im, json_get(e, "name")->str);
        assert_non_null(m);
        assert_int_equal(m->ncall, (int)json_get(e, "ncall")->num);
        assert_int_equal(m->nval, (int)json_get(e, "nval")->num);
        const struct json *v = json_get(e, "values");
        for (int32_t k = 0; k < m->nval; k++)
            assert_true(m->values[k] == (float)json_at(v, (size_t)k)->num);
    }
    float w[768];
    const struct elm_imatrix_entry *d = elm_imatrix_find(im, "blk.1.ffn_down.weight");
    assert_non_null(d);
    elm_imatrix_weights(d, w);
    assert_true(w[5] == d->values[5] / 169.0f);
    assert_null(elm_imatrix_find(im, "token_embd.weight"));

    /* written back in the same entry order, the bytes are llama.cpp's */
    char out[] = "/tmp/elm-imatrix-XXXXXX";
    int fd = mkstemp(out);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(elm_imatrix_write(out, im), 0);
    size_t la, lb;
    char *a = elm_test_read_file(path, &la), *b = elm_test_read_file(out, &lb);
    assert_int_equal(la, lb);
    assert_memory_equal(a, b, la);
    unlink(out);
    free(a);
    free(b);
    json_free(j);
    free(text);
    elm_imatrix_destroy(&im);
    assert_null(im);
}

/* Two calls of 2 rows: stored value = sum(x^2) / 4 * 2. */
static void test_accumulate(void **state)
{
    (void)state;
    struct elm_imatrix_acc *a;
    assert_int_equal(elm_imatrix_acc_create(&a), 0);
    const float x[6] = {1, 2, 3, -1, 0, 0.5f};
    assert_int_equal(elm_imatrix_acc_add(a, "blk.0.attn_q.weight", x, 3, 2), 0);
    assert_int_equal(elm_imatrix_acc_add(a, "blk.0.attn_q.weight", x, 3, 2), 0);
    assert_int_equal(elm_imatrix_acc_add(a, "blk.0.attn_q.weight", x, 2, 1), -EINVAL);
    struct elm_imatrix *im;
    assert_int_equal(elm_imatrix_acc_get(a, "calib.txt", &im), 0);
    assert_int_equal(im->n_entries, 1);
    assert_int_equal(im->entries[0].ncall, 2);
    assert_int_equal(im->last_call, 2);
    assert_true(im->entries[0].values[0] == (4.0f / 4.0f) * 2.0f);
    assert_true(im->entries[0].values[2] == (18.5f / 4.0f) * 2.0f);
    elm_imatrix_destroy(&im);
    elm_imatrix_acc_destroy(&a);
    assert_null(a);
}

static int write_bytes(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = fwrite(p, 1, n, f);
    fclose(f);
    return w == n ? 0 : -1;
}

/* Truncations at every byte, counts past the end and a bad trailer are ELM_EFORMAT. */
static void test_malformed(void **state)
{
    (void)state;
    const unsigned char good[] = {1, 0, 0, 0, 1,   0,  0, 0, 'w', 1, 0, 0, 0, 1, 0,
                                  0, 0, 0, 0, 128, 63, 1, 0, 0,   0, 1, 0, 0, 0, 'd'};
    char path[] = "/tmp/elm-imatrix-bad-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    struct elm_imatrix *im = NULL;
    char err[256];
    assert_int_equal(write_bytes(path, good, sizeof good), 0);
    assert_int_equal(elm_imatrix_read(path, &im, err, sizeof err), 0);
    assert_true(im->entries[0].values[0] == 1.0f);
    assert_string_equal(im->dataset, "d");
    elm_imatrix_destroy(&im);
    for (size_t n = 0; n < sizeof good; n++) {
        if (n == 21) /* the entries alone, without the optional trailer, are a whole file */
            continue;
        assert_int_equal(write_bytes(path, good, n), 0);
        assert_int_equal(elm_imatrix_read(path, &im, err, sizeof err), ELM_EFORMAT);
        assert_null(im);
    }
    unsigned char bad[sizeof good];
    memcpy(bad, good, sizeof good);
    bad[13] = 0x7f; /* nval far past the file */
    assert_int_equal(write_bytes(path, bad, sizeof bad), 0);
    assert_int_equal(elm_imatrix_read(path, &im, err, sizeof err), ELM_EFORMAT);
    memcpy(bad, good, sizeof good);
    bad[3] = 0x80; /* negative entry count */
    assert_int_equal(write_bytes(path, bad, sizeof bad), 0);
    assert_int_equal(elm_imatrix_read(path, &im, err, sizeof err), ELM_EFORMAT);
    unlink(path);
    assert_int_equal(elm_imatrix_read(path, &im, err, sizeof err), -ENOENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_read_llama_file),
        cmocka_unit_test(test_accumulate),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
