/* test_gguf_writer.c — tests of the GGUF writer (engine/gguf_writer.c), read back through the
 * reader (engine/gguf.c, attacked on its own in test_gguf.c).
 *
 * The writer is checked by round trips: every KV type and tensor kind it can write must read
 * back bit for bit, alignment and padding as llama.cpp expects them, bad arguments refused with
 * an error, and a copy of stories260K.gguf must be byte-exact. Temporary files live in a
 * mkdtemp() directory removed by the group teardown.
 */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "elm/status.h"
#include "engine/gguf.h"
#include "engine/gguf_writer.h"
#include "kernels/kernels.h"
#include "tests/common/elm_test.h"
#include "tests/common/gguf_check.h"

static void fill_pattern(void *ctx, void *dst, uint64_t n)
{
    uint8_t *p = dst;
    for (uint64_t i = 0; i < n; i++)
        p[i] = (uint8_t)(i * 7 + *(int *)ctx);
}

static void tmp_path(char *buf, size_t len, const char *name)
{
    snprintf(buf, len, "%s/%s", elm_test_gguf_tmpdir(), name);
}

static void test_writer_round_trip(void **state)
{
    struct elm_gguf_writer *w = elm_gguf_writer_create(0);
    struct elm_gguf *g = NULL;
    char path[256], err[512];
    uint8_t u8 = 200, b1 = 1;
    int8_t i8 = -5;
    uint16_t u16 = 60000;
    int16_t i16 = -300;
    uint64_t u64 = UINT64_C(0xfedcba9876543210), n;
    int64_t i64 = -(INT64_C(1) << 40);
    double f64 = 3.14159265358979;
    float f32v[3] = {1.5f, -2.25f, 1e30f};
    uint32_t u32v[3] = {1, 2, UINT32_MAX};
    uint8_t boolv[3] = {1, 0, 1};
    double f64v[2] = {-1.0, 0.5};
    const char *strs[] = {"a", "", "ccc", "\xe2\x96\x81x"};
    struct elm_gguf_str sv[4];
    const void *data;
    int seed = 3;

    assert_non_null(w);
    assert_ok(elm_gguf_writer_set_scalar(w, "t.u8", ELM_GGUF_U8, &u8));
    assert_ok(elm_gguf_writer_set_scalar(w, "t.i8", ELM_GGUF_I8, &i8));
    assert_ok(elm_gguf_writer_set_scalar(w, "t.u16", ELM_GGUF_U16, &u16));
    assert_ok(elm_gguf_writer_set_scalar(w, "t.i16", ELM_GGUF_I16, &i16));
    assert_ok(elm_gguf_writer_set_u32(w, "t.u32", 1));
    assert_ok(elm_gguf_writer_set_i32(w, "t.i32", -7));
    assert_ok(elm_gguf_writer_set_f32(w, "t.f32", 0.125f));
    assert_ok(elm_gguf_writer_set_bool(w, "t.bool", true));
    assert_ok(elm_gguf_writer_set_str(w, "t.str", "hello"));
    assert_ok(elm_gguf_writer_set_scalar(w, "t.u64", ELM_GGUF_U64, &u64));
    assert_ok(elm_gguf_writer_set_scalar(w, "t.i64", ELM_GGUF_I64, &i64));
    assert_ok(elm_gguf_writer_set_scalar(w, "t.f64", ELM_GGUF_F64, &f64));
    assert_ok(elm_gguf_writer_set_arr(w, "t.af32", ELM_GGUF_F32, 3, f32v));
    assert_ok(elm_gguf_writer_set_arr(w, "t.au32", ELM_GGUF_U32, 3, u32v));
    assert_ok(elm_gguf_writer_set_arr(w, "t.abool", ELM_GGUF_BOOL, 3, boolv));
    assert_ok(elm_gguf_writer_set_arr(w, "t.af64", ELM_GGUF_F64, 2, f64v));
    assert_ok(elm_gguf_writer_set_arr(w, "t.aempty", ELM_GGUF_U8, 0, NULL));
    assert_ok(elm_gguf_writer_set_str_arr(w, "t.astr", strs, 4));
    /* replacing keeps the position (and may change the type) */
    assert_ok(elm_gguf_writer_set_u32(w, "t.u32", 4000000000u));
    assert_ok(elm_gguf_writer_set_scalar(w, "t.bool", ELM_GGUF_BOOL, &b1));

    float tf[8 * 3];
    uint8_t tq[2 * 2 * 34];
    for (int i = 0; i < 24; i++)
        tf[i] = (float)i - 3.5f;
    for (size_t i = 0; i < sizeof tq; i++)
        tq[i] = (uint8_t)(i * 13 + 1);
    assert_ok(elm_gguf_writer_add_tensor(w, "t.f32", ELM_TYPE_F32, 2, (const int64_t[]){8, 3}, tf));
    assert_ok(
        elm_gguf_writer_add_tensor(w, "t.q8", ELM_TYPE_Q8_0, 2, (const int64_t[]){64, 2}, tq));
    assert_ok(elm_gguf_writer_add_tensor_fill(w, "t.fill", ELM_TYPE_F16, 3,
                                              (const int64_t[]){5, 3, 2}, fill_pattern, &seed));
    tmp_path(path, sizeof path, "round.gguf");
    assert_ok(elm_gguf_writer_write(w, path, err, sizeof err));
    elm_gguf_writer_destroy(&w);
    assert_null(w);
    elm_gguf_writer_destroy(&w);

    int rc = elm_gguf_open(path, &g, err, sizeof err);
    if (rc)
        fail_msg("%s", err);
    elm_test_gguf_check_invariants(g);
    assert_int_equal(g->version, 3);
    assert_int_equal(g->n_kv, 18); /* no general.alignment: it is 32 */
    assert_null(elm_gguf_find(g, "general.alignment"));
    assert_true(elm_gguf_str_eq(g->kv[4].key, "t.u32"));
    assert_int_equal(g->kv[0].v.u64, 200);
    assert_int_equal(g->kv[1].v.i64, -5);
    assert_int_equal(g->kv[2].v.u64, 60000);
    assert_int_equal(g->kv[3].v.i64, -300);
    assert_int_equal(g->kv[4].v.u64, 4000000000u);
    assert_int_equal(g->kv[5].v.i64, -7);
    assert_true(g->kv[6].type == ELM_GGUF_F32 && g->kv[6].v.f64 == 0.125);
    assert_true(g->kv[7].type == ELM_GGUF_BOOL && g->kv[7].v.u64 == 1);
    assert_true(elm_gguf_str_eq(g->kv[8].v.str, "hello"));
    assert_int_equal(g->kv[9].v.u64, u64);
    assert_int_equal(g->kv[10].v.i64, i64);
    assert_true(g->kv[11].v.f64 == f64);
    static const uint32_t types[12] = {ELM_GGUF_U8,     ELM_GGUF_I8,  ELM_GGUF_U16, ELM_GGUF_I16,
                                       ELM_GGUF_U32,    ELM_GGUF_I32, ELM_GGUF_F32, ELM_GGUF_BOOL,
                                       ELM_GGUF_STRING, ELM_GGUF_U64, ELM_GGUF_I64, ELM_GGUF_F64};
    for (uint64_t i = 0; i < g->n_kv; i++)
        assert_int_equal(g->kv[i].type, i < 12 ? types[i] : ELM_GGUF_ARRAY);
    assert_ok(elm_gguf_get_arr(g, "t.af32", ELM_GGUF_F32, &n, &data));
    assert_true(n == 3 && memcmp(data, f32v, sizeof f32v) == 0);
    assert_ok(elm_gguf_get_arr(g, "t.au32", ELM_GGUF_U32, &n, &data));
    assert_true(n == 3 && memcmp(data, u32v, sizeof u32v) == 0);
    assert_ok(elm_gguf_get_arr(g, "t.abool", ELM_GGUF_BOOL, &n, &data));
    assert_true(n == 3 && memcmp(data, boolv, sizeof boolv) == 0);
    assert_ok(elm_gguf_get_arr(g, "t.af64", ELM_GGUF_F64, &n, &data));
    assert_true(n == 2 && memcmp(data, f64v, sizeof f64v) == 0);
    assert_ok(elm_gguf_get_arr(g, "t.aempty", ELM_GGUF_U8, &n, &data));
    assert_int_equal(n, 0);
    assert_ok(elm_gguf_get_str_arr(g, "t.astr", sv, 4));
    for (int i = 0; i < 4; i++)
        assert_true(elm_gguf_str_eq(sv[i], strs[i]));

    /* typed getters across integer types */
    uint32_t u;
    int32_t i;
    float f;
    bool bv;
    assert_ok(elm_gguf_get_u32(g, "t.u8", &u));
    assert_int_equal(u, 200);
    assert_ok(elm_gguf_get_i32(g, "t.i16", &i));
    assert_int_equal(i, -300);
    assert_int_equal(elm_gguf_get_u32(g, "t.i8", &u), ELM_EFORMAT);   /* negative */
    assert_int_equal(elm_gguf_get_u32(g, "t.u64", &u), ELM_EFORMAT);  /* too large */
    assert_int_equal(elm_gguf_get_i32(g, "t.u32", &i), ELM_EFORMAT);  /* > INT32_MAX */
    assert_int_equal(elm_gguf_get_i32(g, "t.i64", &i), ELM_EFORMAT);  /* < INT32_MIN */
    assert_int_equal(elm_gguf_get_u32(g, "t.bool", &u), ELM_EFORMAT); /* not an integer */
    assert_ok(elm_gguf_get_f32(g, "t.f64", &f));
    assert_true(f == (float)f64); /* an f64 read as f32 is its rounding to float, exactly */
    assert_int_equal(elm_gguf_get_f32(g, "t.u8", &f), ELM_EFORMAT);
    assert_ok(elm_gguf_get_bool(g, "t.bool", &bv));
    assert_true(bv);
    assert_int_equal(elm_gguf_get_bool(g, "t.u8", &bv), ELM_EFORMAT);

    /* tensors */
    const struct elm_gguf_tensor *t = elm_gguf_find_tensor(g, "t.f32");
    assert_non_null(t);
    assert_true(t->n_dims == 2 && t->ne[0] == 8 && t->ne[1] == 3 && t->type == ELM_TYPE_F32);
    assert_memory_equal(elm_gguf_tensor_data(g, t), tf, sizeof tf);
    t = elm_gguf_find_tensor(g, "t.q8");
    assert_non_null(t);
    assert_true(t->n_bytes == sizeof tq && t->type == ELM_TYPE_Q8_0);
    assert_memory_equal(elm_gguf_tensor_data(g, t), tq, sizeof tq);
    t = elm_gguf_find_tensor(g, "t.fill");
    assert_non_null(t);
    assert_true(t->n_dims == 3 && t->ne[2] == 2 && t->n_bytes == 30 * 2);
    uint8_t expect[60];
    fill_pattern(&seed, expect, sizeof expect);
    assert_memory_equal(elm_gguf_tensor_data(g, t), expect, sizeof expect);
    /* each tensor padded, the last one too (llama.cpp expects it) */
    assert_int_equal(g->size % 32, 0);
    elm_gguf_destroy(&g);

    /* no temporary file left behind */
    char tmp[300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    assert_int_equal(access(tmp, F_OK), -1);
    unlink(path);
}

static void test_writer_alignment(void **state)
{
    struct elm_gguf_writer *w = elm_gguf_writer_create(64);
    struct elm_gguf *g = NULL;
    char path[256], err[512];
    float a[32] = {1}, b[40] = {2};

    assert_null(elm_gguf_writer_create(48));
    assert_non_null(w);
    assert_ok(elm_gguf_writer_set_str(w, "general.architecture", "llama"));
    assert_ok(elm_gguf_writer_add_tensor(w, "a", ELM_TYPE_F32, 1, (int64_t[]){32}, a));
    assert_ok(elm_gguf_writer_add_tensor(w, "b", ELM_TYPE_F32, 1, (int64_t[]){40}, b));
    tmp_path(path, sizeof path, "align64.gguf");
    assert_ok(elm_gguf_writer_write(w, path, err, sizeof err));
    assert_ok(elm_gguf_open(path, &g, err, sizeof err));
    elm_test_gguf_check_invariants(g);
    assert_int_equal(g->alignment, 64);
    assert_int_equal(g->data_offset % 64, 0);
    assert_int_equal(elm_gguf_find_tensor(g, "b")->offset, 128); /* a: 128 bytes */
    assert_int_equal(g->size % 64, 0);
    assert_memory_equal(elm_gguf_tensor_data(g, elm_gguf_find_tensor(g, "b")), b, sizeof b);
    elm_gguf_destroy(&g);
    elm_gguf_writer_destroy(&w);

    /* a stale general.alignment is corrected to the writer's alignment */
    w = elm_gguf_writer_create(32);
    assert_ok(elm_gguf_writer_set_u32(w, "general.alignment", 256));
    assert_ok(elm_gguf_writer_add_tensor(w, "a", ELM_TYPE_F32, 1, (int64_t[]){32}, a));
    assert_ok(elm_gguf_writer_write(w, path, err, sizeof err));
    assert_ok(elm_gguf_open(path, &g, err, sizeof err));
    assert_int_equal(g->alignment, 32);
    assert_int_equal(g->n_kv, 1);
    elm_gguf_destroy(&g);
    elm_gguf_writer_destroy(&w);
    unlink(path);
}

/* add_tensor with the dims inline */
#define ADD(name, type, n_dims, data, ...)                                                         \
    elm_gguf_writer_add_tensor(w, name, type, n_dims, (int64_t[]){__VA_ARGS__}, data)

static void test_writer_errors(void **state)
{
    struct elm_gguf_writer *w = elm_gguf_writer_create(32);
    uint8_t q[64 * 172] = {0}, two = 2;
    const char *strs[] = {"x", NULL};
    char err[512];

    assert_non_null(w);
    assert_int_equal(ADD("blk.0.ffn_down.weight", ELM_TYPE_Q8_0, 2, q, 172, 64), ELM_EFORMAT);
    assert_contains(elm_gguf_writer_error(w), "'blk.0.ffn_down.weight'");
    assert_contains(elm_gguf_writer_error(w), "172");
    assert_int_equal(ADD("a", ELM_TYPE_F32, 5, q, 1, 1, 1, 1, 1), ELM_EFORMAT);
    assert_int_equal(ADD("a", ELM_TYPE_F32, 2, q, 0, 4), ELM_EFORMAT);
    assert_int_equal(ADD("a", ELM_TYPE_F32, 2, q, -1, 4), ELM_EFORMAT);
    assert_int_equal(ADD("a", ELM_TYPE_Q8_K, 1, q, 256), ELM_EUNSUPPORTED);
    assert_int_equal(ADD("a", 77, 1, q, 32), ELM_EUNSUPPORTED);
    assert_int_equal(ADD("", ELM_TYPE_F32, 1, q, 32), ELM_EFORMAT);
    assert_int_equal(ADD("a", ELM_TYPE_F32, 1, NULL, 32), -EINVAL);
    assert_ok(ADD("a", ELM_TYPE_F32, 1, q, 32));
    assert_int_equal(ADD("a", ELM_TYPE_F32, 1, q, 32), ELM_EFORMAT);
    assert_contains(elm_gguf_writer_error(w), "duplicate");
    assert_int_equal(elm_gguf_writer_set_arr(w, "k", ELM_GGUF_ARRAY, 1, q), ELM_EFORMAT);
    assert_int_equal(elm_gguf_writer_set_arr(w, "k", ELM_GGUF_STRING, 1, q), ELM_EFORMAT);
    assert_int_equal(elm_gguf_writer_set_arr(w, "k", ELM_GGUF_U64, UINT64_MAX / 2, q), ELM_EFORMAT);
    assert_int_equal(elm_gguf_writer_set_scalar(w, "k", ELM_GGUF_BOOL, &two), ELM_EFORMAT);
    assert_int_equal(elm_gguf_writer_set_scalar(w, "k", ELM_GGUF_STRING, "x"), ELM_EFORMAT);
    assert_int_equal(elm_gguf_writer_set_str_arr(w, "k", strs, 2), -EINVAL);
    assert_int_equal(elm_gguf_writer_set_u32(w, "", 1), ELM_EFORMAT);
    assert_int_equal(elm_gguf_writer_set_str(w, "k", NULL), -EINVAL);

    /* an unwritable path: an error naming it, and no temporary file */
    assert_int_equal(elm_gguf_writer_write(w, "/nonexistent/dir/x.gguf", err, sizeof err), -ENOENT);
    assert_contains(err, "/nonexistent/dir/x.gguf");
    elm_gguf_writer_destroy(&w);
    elm_gguf_writer_destroy(NULL);
}

/* Copies every KV and tensor of src into a new file and checks the copy field by field. */
static void copy_and_compare(const char *rel, const char *out_name, bool expect_identical)
{
    struct elm_gguf *src = NULL, *dst = NULL;
    struct elm_gguf_writer *w = elm_gguf_writer_create(32);
    char path[256], err[512];
    const char *in = elm_test_model_path(rel);

    assert_non_null(in);
    assert_ok(elm_gguf_open(in, &src, err, sizeof err));
    for (uint64_t i = 0; i < src->n_kv; i++)
        assert_ok(elm_gguf_writer_copy_kv(w, &src->kv[i]));
    for (uint64_t i = 0; i < src->n_tensors; i++) {
        const struct elm_gguf_tensor *t = &src->tensors[i];
        char name[256];
        assert_true(t->name.len < sizeof name);
        memcpy(name, t->name.ptr, t->name.len);
        name[t->name.len] = 0;
        assert_ok(elm_gguf_writer_add_tensor(w, name, t->type, t->n_dims, t->ne,
                                             elm_gguf_tensor_data(src, t)));
    }
    tmp_path(path, sizeof path, out_name);
    assert_ok(elm_gguf_writer_write(w, path, err, sizeof err));
    elm_gguf_writer_destroy(&w);

    assert_ok(elm_gguf_open(path, &dst, err, sizeof err));
    elm_test_gguf_check_invariants(dst);
    assert_int_equal(dst->n_kv, src->n_kv);
    assert_int_equal(dst->n_tensors, src->n_tensors);
    for (uint64_t i = 0; i < src->n_kv; i++) {
        const struct elm_gguf_kv *a = &src->kv[i], *b = &dst->kv[i];
        assert_int_equal(a->key.len, b->key.len);
        assert_memory_equal(a->key.ptr, b->key.ptr, a->key.len);
        assert_int_equal(a->type, b->type);
        assert_int_equal(a->arr_type, b->arr_type);
        assert_int_equal(a->arr_n, b->arr_n);
        assert_int_equal(a->raw_len, b->raw_len);
        if (a->raw_len)
            assert_memory_equal(a->raw, b->raw, a->raw_len);
    }
    for (uint64_t i = 0; i < src->n_tensors; i++) {
        const struct elm_gguf_tensor *a = &src->tensors[i], *b = &dst->tensors[i];
        assert_true(a->name.len == b->name.len && !memcmp(a->name.ptr, b->name.ptr, a->name.len));
        assert_int_equal(a->n_dims, b->n_dims);
        assert_memory_equal(a->ne, b->ne, sizeof a->ne);
        assert_int_equal(a->type, b->type);
        assert_int_equal(a->n_bytes, b->n_bytes);
        assert_memory_equal(elm_gguf_tensor_data(src, a), elm_gguf_tensor_data(dst, b), a->n_bytes);
    }
    /* this file was written by ggml's GGUF writer with the same layout rules */
    if (expect_identical) {
        assert_int_equal(dst->size, src->size);
        assert_memory_equal(dst->base, src->base, src->size);
    }
    elm_gguf_destroy(&dst);
    elm_gguf_destroy(&src);
    unlink(path);
}

static void test_writer_copy_stories(void **state)
{
    ELM_REQUIRE_MODEL(p1, "stories260K.gguf");
    ELM_REQUIRE_MODEL(p2, "vocab/ggml-vocab-llama-spm.gguf");
    (void)p1, (void)p2;
    copy_and_compare("stories260K.gguf", "copy.gguf", true);
    copy_and_compare("vocab/ggml-vocab-llama-spm.gguf", "vocab.gguf", false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_writer_round_trip),
        cmocka_unit_test(test_writer_alignment),
        cmocka_unit_test(test_writer_errors),
        cmocka_unit_test(test_writer_copy_stories),
    };
    return cmocka_run_group_tests(tests, elm_test_gguf_group_setup, elm_test_gguf_group_teardown);
}
