/* test_quant.c — the quantization type table and the scalar reference kernels (kernels/ref).
 *
 * What is checked, and against what:
 *  (a) block layouts and the type table (ggml's ids, sizes and dot types);
 *  (b) quantize -> dequantize round trips of N(0,1) data for every weight type: each element
 *      within the rounding bound of its format's definition (half a step of its stored grid);
 *  (c) real files: dequantized Q8_0 of stories260K against its F32 source, and every quantized
 *      tensor of the zoo against zoo-llama/zoo-qwen2 F32; then elm's own quantizer run on the
 *      F32 source must reproduce llama-quantize's bytes, block for block;
 *  (d) every vec_dot against a double-precision dot of the dequantized operands;
 *  (e) elm_matmul gives bit-identical results for 1 or 7 tokens and for 1 or 2 threads.
 * The operations around the matmuls and the dispatch table ((f) and "dispatch") are in
 * test_ops.c.
 *
 * The GGUF files are read with a small reader local to this test rather than engine/gguf.c:
 * the legacy stories260K Q8_0 file has a tensor whose rows are not whole blocks, which the
 * engine's loader rejects on purpose, and the kernel tests should not depend on loader policy.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/pool.h"
#include "kernels/blocks.h"
#include "kernels/fp16.h"
#include "kernels/kernels.h"
#include "tests/common/elm_test.h"
#include "tests/common/quant_data.h"

/* ---- a minimal GGUF (v2/v3) tensor index ------------------------------------------------- */

struct tinfo {
    char name[96];
    uint32_t type;
    int64_t ne0, nelem;
    uint64_t offset;
};

struct gfile {
    uint8_t *buf;
    size_t len;
    size_t data; /* start of the tensor data section */
    int n;
    struct tinfo *t;
};

struct cursor {
    const uint8_t *p, *end;
    bool bad;
};

static uint64_t rd(struct cursor *c, int bytes)
{
    uint64_t v = 0;
    if (c->bad || (size_t)(c->end - c->p) < (size_t)bytes) {
        c->bad = true;
        return 0;
    }
    for (int i = 0; i < bytes; i++)
        v |= (uint64_t)c->p[i] << (8 * i);
    c->p += bytes;
    return v;
}

static void cur_skip(struct cursor *c, uint64_t n)
{
    if (c->bad || (uint64_t)(c->end - c->p) < n)
        c->bad = true;
    else
        c->p += n;
}

static const int scalar_size[13] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

static void skip_value(struct cursor *c, uint32_t type, uint32_t *align_out, bool is_align)
{
    if (type == 8) { /* string */
        cur_skip(c, rd(c, 8));
    } else if (type == 9) { /* array: element type, count, elements (no nesting in our files) */
        uint32_t et = (uint32_t)rd(c, 4);
        uint64_t n = rd(c, 8);
        for (uint64_t i = 0; i < n && !c->bad; i++)
            skip_value(c, et, NULL, false);
    } else if (type < 13 && scalar_size[type] > 0) {
        uint64_t v = rd(c, scalar_size[type]);
        if (is_align && align_out)
            *align_out = (uint32_t)v;
    } else {
        c->bad = true;
    }
}

static bool gfile_open(struct gfile *g, const char *path)
{
    memset(g, 0, sizeof *g);
    g->buf = (uint8_t *)elm_test_read_file(path, &g->len);
    if (!g->buf)
        return false;
    struct cursor c = {g->buf, g->buf + g->len, false};
    if (rd(&c, 4) != 0x46554747u) /* "GGUF" */
        return false;
    uint32_t version = (uint32_t)rd(&c, 4);
    if (version < 2)
        return false;
    uint64_t nt = rd(&c, 8), nkv = rd(&c, 8);
    uint32_t align = 32;
    for (uint64_t i = 0; i < nkv && !c.bad; i++) {
        uint64_t klen = rd(&c, 8);
        const char *key = (const char *)c.p;
        cur_skip(&c, klen);
        bool is_align = !c.bad && klen == 17 && memcmp(key, "general.alignment", 17) == 0;
        skip_value(&c, (uint32_t)rd(&c, 4), &align, is_align);
    }
    if (c.bad || nt > 100000)
        return false;
    g->n = (int)nt;
    g->t = elm_test_xmalloc(sizeof *g->t * (nt ? nt : 1));
    for (int i = 0; i < g->n && !c.bad; i++) {
        struct tinfo *t = &g->t[i];
        uint64_t nlen = rd(&c, 8);
        if (nlen >= sizeof t->name)
            return false;
        const uint8_t *name = c.p;
        cur_skip(&c, nlen);
        if (c.bad)
            return false;
        memcpy(t->name, name, nlen);
        t->name[nlen] = 0;
        uint32_t nd = (uint32_t)rd(&c, 4);
        t->nelem = 1;
        for (uint32_t d = 0; d < nd && d < 4; d++) {
            int64_t ne = (int64_t)rd(&c, 8);
            if (d == 0)
                t->ne0 = ne;
            t->nelem *= ne;
        }
        t->type = (uint32_t)rd(&c, 4);
        t->offset = rd(&c, 8);
    }
    if (c.bad)
        return false;
    size_t pos = (size_t)(c.p - g->buf);
    g->data = (pos + align - 1) / align * align;
    return true;
}

static void gfile_close(struct gfile *g)
{
    free(g->buf);
    free(g->t);
    memset(g, 0, sizeof *g);
}

/* The tensor's info and bytes, after checking they lie inside the file. */
static const struct tinfo *gfile_find(const struct gfile *g, const char *name, const void **data)
{
    for (int i = 0; i < g->n; i++) {
        const struct tinfo *t = &g->t[i];
        if (strcmp(t->name, name) != 0)
            continue;
        const struct elm_type_info *ti = elm_type_get(t->type);
        assert_non_null(ti);
        size_t bytes = (size_t)(t->nelem / ti->block) * (size_t)ti->block_bytes;
        assert_true(g->data + t->offset + bytes <= g->len);
        *data = g->buf + g->data + t->offset;
        return t;
    }
    return NULL;
}

/* ---- (a) layouts and the type table ------------------------------------------------------ */

static void test_type_table(void **state)
{
    (void)state;
    static const struct {
        enum elm_type t;
        const char *name;
        int block, bytes;
        enum elm_type dot;
        bool quantized, weight;
        size_t struct_size;
    } want[] = {
        {ELM_TYPE_F32, "f32", 1, 4, ELM_TYPE_F32, false, true, 4},
        {ELM_TYPE_F16, "f16", 1, 2, ELM_TYPE_F32, false, true, 2},
        {ELM_TYPE_BF16, "bf16", 1, 2, ELM_TYPE_F32, false, true, 2},
        {ELM_TYPE_Q4_0, "q4_0", 32, 18, ELM_TYPE_Q8_0, true, true, sizeof(struct elm_block_q4_0)},
        {ELM_TYPE_Q4_1, "q4_1", 32, 20, ELM_TYPE_Q8_1, true, true, sizeof(struct elm_block_q4_1)},
        {ELM_TYPE_Q5_0, "q5_0", 32, 22, ELM_TYPE_Q8_0, true, true, sizeof(struct elm_block_q5_0)},
        {ELM_TYPE_Q5_1, "q5_1", 32, 24, ELM_TYPE_Q8_1, true, true, sizeof(struct elm_block_q5_1)},
        {ELM_TYPE_Q8_0, "q8_0", 32, 34, ELM_TYPE_Q8_0, true, true, sizeof(struct elm_block_q8_0)},
        {ELM_TYPE_Q8_1, "q8_1", 32, 36, ELM_TYPE_Q8_1, true, false, sizeof(struct elm_block_q8_1)},
        {ELM_TYPE_Q2_K, "q2_k", 256, 84, ELM_TYPE_Q8_K, true, true, sizeof(struct elm_block_q2_k)},
        {ELM_TYPE_Q3_K, "q3_k", 256, 110, ELM_TYPE_Q8_K, true, true, sizeof(struct elm_block_q3_k)},
        {ELM_TYPE_Q4_K, "q4_k", 256, 144, ELM_TYPE_Q8_K, true, true, sizeof(struct elm_block_q4_k)},
        {ELM_TYPE_Q5_K, "q5_k", 256, 176, ELM_TYPE_Q8_K, true, true, sizeof(struct elm_block_q5_k)},
        {ELM_TYPE_Q6_K, "q6_k", 256, 210, ELM_TYPE_Q8_K, true, true, sizeof(struct elm_block_q6_k)},
        {ELM_TYPE_Q8_K, "q8_k", 256, 292, ELM_TYPE_Q8_K, true, false,
         sizeof(struct elm_block_q8_k)},
        {ELM_TYPE_IQ4_NL, "iq4_nl", 32, 18, ELM_TYPE_Q8_0, true, true,
         sizeof(struct elm_block_iq4_nl)},
        {ELM_TYPE_IQ4_XS, "iq4_xs", 256, 136, ELM_TYPE_Q8_K, true, true,
         sizeof(struct elm_block_iq4_xs)},
    };
    int known = 0;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const struct elm_type_info *ti = elm_type_get(want[i].t);
        assert_non_null(ti);
        assert_string_equal(ti->name, want[i].name);
        assert_int_equal(ti->block, want[i].block);
        assert_int_equal(ti->block_bytes, want[i].bytes);
        assert_int_equal(ti->block_bytes, (int)want[i].struct_size);
        assert_int_equal(ti->dot_type, want[i].dot);
        assert_int_equal(ti->quantized, want[i].quantized);
        assert_int_equal(ti->is_weight, want[i].weight);
        assert_int_equal(elm_type_from_name(want[i].name), want[i].t);
        assert_int_equal(elm_row_bytes(want[i].t, 4096),
                         (size_t)(4096 / want[i].block) * want[i].bytes);
    }
    for (uint32_t id = 0; id < ELM_TYPE_COUNT + 10; id++)
        known += elm_type_get(id) != NULL;
    assert_int_equal(known, 17);
    assert_null(elm_type_get(4)); /* ggml's removed Q4_2 */
    assert_null(elm_type_get(ELM_TYPE_COUNT));
    assert_null(elm_type_get(UINT32_MAX));
    assert_int_equal(elm_type_from_name("Q4_K"), ELM_TYPE_Q4_K);
    assert_int_equal(elm_type_from_name("iq2_xxs"), -1);
    assert_int_equal(elm_type_from_name(NULL), -1);
}

/* ---- (b) round trips --------------------------------------------------------------------- */

/* ---- the grid a quantized element lies on ---------------------------------------------------
 * Every weight format stores, per (sub-)block, a step d and an offset: element values are
 * d * l + off for integers l in [lo, hi]. ggml's reference quantizers (what llama-quantize runs
 * without an importance matrix) pick l by rounding to nearest and clamping to [lo, hi], so the
 * format's definition bounds each element's error: once x is clamped into the grid's range, it
 * is at most half a step from its decoded value. What differs per family is which scale the
 * rounding used:
 *  - legacy types (Q4_0 ... Q8_0) round with the unrounded d (and min) and then store them as
 *    fp16, which moves the decoded value by |l| |d - fp16(d)| + |min - fp16(min)|, each at most
 *    2^-11 relative (half an fp16 ulp); the grid is taken at its widest |l| = qmax;
 *  - K-quants fit their scales, store them, and then round every element again against the
 *    stored scales (ggml's quantize_row_q*_K_ref), so only float rounding of (x + dm) / d
 *    remains, a few 2^-24 relative.
 * Both get 2^-20 of the magnitudes involved for float rounding (several ulps of margin). */
struct grid {
    double d, off, scale_err;
    int lo, hi;
};

static double h2d(uint16_t h)
{
    return (double)elm_fp16_to_f32(h);
}

/* The 6-bit scale and min of sub-block j of a Q4_K/Q5_K block (ggml's get_scale_min_k4). */
static void k4_scale_min(const uint8_t *q, int j, int *sc, int *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* The 6-bit scale of sub-block j of a Q3_K block: low 4 bits in byte j (j < 8) or the high
 * nibble of byte j - 8, high 2 bits in byte 8 + j % 4 at bit 2 * (j / 4); stored offset by 32. */
static int k3_scale(const uint8_t *s, int j)
{
    int low = j < 8 ? s[j] & 0x0f : s[j - 8] >> 4;
    return (low | (((s[8 + j % 4] >> (2 * (j / 4))) & 3) << 4)) - 32;
}

static struct grid legacy_grid(uint16_t d, const uint16_t *m, int lo, int hi)
{
    const int qmax = -lo > hi ? -lo : hi;
    struct grid g = {h2d(d), m ? h2d(*m) : 0.0, 0.0, lo, hi};
    g.scale_err = (qmax * fabs(g.d) + fabs(g.off)) * 0x1.004p-11;
    return g;
}

/* The grid of element i of a row of type t (a weight type other than F32/F16/BF16). */
static struct grid grid_of(enum elm_type t, const void *row, int64_t i)
{
    const int64_t b = i / 256, j16 = (i % 256) / 16, j32 = (i % 256) / 32;
    int sc, m;
    switch (t) {
    case ELM_TYPE_Q8_0:
        return legacy_grid(((const struct elm_block_q8_0 *)row)[i / 32].d, NULL, -127, 127);
    case ELM_TYPE_Q4_0:
        return legacy_grid(((const struct elm_block_q4_0 *)row)[i / 32].d, NULL, -8, 7);
    case ELM_TYPE_Q5_0:
        return legacy_grid(((const struct elm_block_q5_0 *)row)[i / 32].d, NULL, -16, 15);
    case ELM_TYPE_Q4_1: {
        const struct elm_block_q4_1 *q = (const struct elm_block_q4_1 *)row + i / 32;
        return legacy_grid(q->d, &q->m, 0, 15);
    }
    case ELM_TYPE_Q5_1: {
        const struct elm_block_q5_1 *q = (const struct elm_block_q5_1 *)row + i / 32;
        return legacy_grid(q->d, &q->m, 0, 31);
    }
    case ELM_TYPE_Q2_K: {
        const struct elm_block_q2_k *q = (const struct elm_block_q2_k *)row + b;
        sc = q->scales[j16];
        return (struct grid){h2d(q->d) * (sc & 15), -h2d(q->dmin) * (sc >> 4), 0.0, 0, 3};
    }
    case ELM_TYPE_Q3_K: {
        const struct elm_block_q3_k *q = (const struct elm_block_q3_k *)row + b;
        return (struct grid){h2d(q->d) * k3_scale(q->scales, (int)j16), 0.0, 0.0, -4, 3};
    }
    case ELM_TYPE_Q4_K: {
        const struct elm_block_q4_k *q = (const struct elm_block_q4_k *)row + b;
        k4_scale_min(q->scales, (int)j32, &sc, &m);
        return (struct grid){h2d(q->d) * sc, -h2d(q->dmin) * m, 0.0, 0, 15};
    }
    case ELM_TYPE_Q5_K: {
        const struct elm_block_q5_k *q = (const struct elm_block_q5_k *)row + b;
        k4_scale_min(q->scales, (int)j32, &sc, &m);
        return (struct grid){h2d(q->d) * sc, -h2d(q->dmin) * m, 0.0, 0, 31};
    }
    case ELM_TYPE_Q6_K: {
        const struct elm_block_q6_k *q = (const struct elm_block_q6_k *)row + b;
        return (struct grid){h2d(q->d) * q->scales[j16], 0.0, 0.0, -32, 31};
    }
    default:
        fail_msg("no grid for type %d", t);
        return (struct grid){0};
    }
}

/* The largest error the format allows for x decoded as an element of grid g. */
static double grid_err(const struct grid *g, double x, double y)
{
    double a = g->lo * g->d + g->off, b = g->hi * g->d + g->off;
    double c = fmin(fmax(x, fmin(a, b)), fmax(a, b));
    const int qmax = -g->lo > g->hi ? -g->lo : g->hi;
    double slack = g->scale_err + 0x1p-20 * (fabs(x) + fabs(g->off) + qmax * fabs(g->d));
    return fabs(c - y) - (fabs(g->d) / 2 + slack);
}

/* Checks every element of x (n values, quantized by elm_quantize_row into q and decoded into y)
 * against its format's bound (above; F16/BF16: round to nearest, half an ulp of 11 or 8
 * significant bits, or half the smallest fp16 subnormal). Returns the number of violations and
 * prints the first. */
static long check_rounding(enum elm_type t, const float *x, const void *q, const float *y,
                           int64_t n)
{
    long bad = 0;
    for (int64_t i = 0; i < n; i++) {
        double over;
        if (t == ELM_TYPE_F32)
            over = x[i] == y[i] ? -1.0 : 1.0;
        else if (t == ELM_TYPE_F16)
            over = fabs((double)x[i] - y[i]) - fmax(fabs(x[i]) * 0x1p-11, 0x1p-25);
        else if (t == ELM_TYPE_BF16)
            over = fabs((double)x[i] - y[i]) - fabs(x[i]) * 0x1p-8;
        else {
            struct grid g = grid_of(t, q, i);
            over = grid_err(&g, x[i], y[i]);
        }
        if (over > 0 && bad++ == 0)
            print_message("%s element %lld: %.9g decoded as %.9g, %.3g over the bound\n",
                          elm_type_get(t)->name, (long long)i, (double)x[i], (double)y[i], over);
    }
    return bad;
}

static double rmse(const float *a, const float *b, int64_t n)
{
    double s = 0.0;
    for (int64_t i = 0; i < n; i++)
        s += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return sqrt(s / (double)n);
}

static void test_round_trip(void **state)
{
    (void)state;
    const int64_t n = 65536;
    float *x = elm_test_xmalloc(n * sizeof *x), *y = elm_test_xmalloc(n * sizeof *y);
    void *q = elm_test_xmalloc(n * sizeof(float));
    elm_test_fill_normal(x, n, 1);
    long over = 0;
    for (size_t i = 0; i < ELM_TEST_N_WEIGHT_TYPES; i++) {
        enum elm_type t = elm_test_weight_types[i];
        assert_int_equal(elm_quantize_row(t, x, q, n), 0);
        elm_kernels_ref.to_float[t](q, y, n);
        long bad = check_rounding(t, x, q, y, n);
        print_message("round trip %-5s RMSE %.6f, %ld elements over their bound\n",
                      elm_type_get(t)->name, rmse(x, y, n), bad);
        over += bad;
        /* from_float agrees with the weight quantizer for every type but Q8_0 */
        if (t != ELM_TYPE_Q8_0) {
            void *q2 = elm_test_xmalloc(n * sizeof(float));
            elm_kernels_ref.from_float[t](x, q2, n);
            assert_memory_equal(q, q2, elm_row_bytes(t, n));
            free(q2);
        }
    }
    assert_int_equal(over, 0);
    /* a zero block quantizes to zeros and decodes to exact zeros */
    memset(x, 0, 256 * sizeof *x);
    for (size_t i = 0; i < ELM_TEST_N_WEIGHT_TYPES; i++) {
        enum elm_type t = elm_test_weight_types[i];
        assert_int_equal(elm_quantize_row(t, x, q, 256), 0);
        elm_kernels_ref.to_float[t](q, y, 256);
        for (int j = 0; j < 256; j++)
            assert_true(y[j] == 0.0f);
    }
    assert_int_equal(elm_quantize_row(ELM_TYPE_Q8_K, x, q, 256), -EINVAL);
    assert_int_equal(elm_quantize_row(ELM_TYPE_Q4_K, x, q, 100), -EINVAL);
    free(x);
    free(y);
    free(q);
}

/* Activation formats: values and sums as ggml's x86 build produces them. */
static void test_activation_quant(void **state)
{
    (void)state;
    const int64_t n = 4096;
    float *x = elm_test_xmalloc(n * sizeof *x), *y = elm_test_xmalloc(n * sizeof *y);
    struct elm_block_q8_1 *q1 = elm_test_xmalloc(elm_row_bytes(ELM_TYPE_Q8_1, n));
    struct elm_block_q8_k *qk = elm_test_xmalloc(elm_row_bytes(ELM_TYPE_Q8_K, n));
    elm_test_fill_normal(x, n, 2);

    elm_kernels_ref.from_float[ELM_TYPE_Q8_1](x, q1, n);
    for (int64_t b = 0; b < n / 32; b++) {
        int sum = 0, amax_q = 0;
        for (int j = 0; j < 32; j++) {
            sum += q1[b].qs[j];
            amax_q = abs(q1[b].qs[j]) > amax_q ? abs(q1[b].qs[j]) : amax_q;
        }
        assert_int_equal(amax_q, 127); /* the largest element maps to +-127 */
        /* s is fp16(d * sum) with the unrounded d, d is stored as fp16(d): each rounding is
         * half an fp16 ulp, 2^-11 relative (or 2^-25 absolute below the normal range) */
        const double d = h2d(q1[b].d), want = d * sum;
        assert_true(fabs(h2d(q1[b].s) - want) <= fabs(want) * 0x1.004p-10 + 0x1p-25);
    }
    /* exact half-way values round to even: x = 2.5 * amax/127 must give 2 */
    float h[32] = {127.0f, 2.5f, -2.5f, 3.5f};
    struct elm_block_q8_0 q0;
    elm_kernels_ref.from_float[ELM_TYPE_Q8_0](h, &q0, 32);
    assert_int_equal(q0.qs[0], 127);
    assert_int_equal(q0.qs[1], 2);
    assert_int_equal(q0.qs[2], -2);
    assert_int_equal(q0.qs[3], 4);
    /* ... while the weight quantizer (ggml's ref: roundf) rounds them away from zero */
    assert_int_equal(elm_quantize_row(ELM_TYPE_Q8_0, h, &q0, 32), 0);
    assert_int_equal(q0.qs[1], 3);
    assert_int_equal(q0.qs[2], -3);

    elm_kernels_ref.from_float[ELM_TYPE_Q8_K](x, qk, n);
    elm_kernels_ref.to_float[ELM_TYPE_Q8_K](qk, y, n);
    for (int64_t b = 0; b < n / 256; b++) {
        int amax_q = 0;
        for (int g = 0; g < 16; g++) {
            int sum = 0;
            for (int l = 0; l < 16; l++) {
                sum += qk[b].qs[16 * g + l];
                amax_q = abs(qk[b].qs[16 * g + l]) > amax_q ? abs(qk[b].qs[16 * g + l]) : amax_q;
            }
            assert_int_equal(qk[b].bsums[g], sum);
        }
        assert_int_equal(amax_q, 127); /* -127/max: the signed largest maps to -127 */
    }
    /* Q8_K keeps d = 1/iscale as a float and rounds x * iscale to nearest: each element is
     * within half a step of its value, plus float rounding of |q| <= 127 steps (2^-24 each) */
    print_message("q8_k activation round trip RMSE %.6f\n", rmse(x, y, n));
    for (int64_t i = 0; i < n; i++)
        assert_true(fabs((double)x[i] - y[i]) <= fabs(qk[i / 256].d) * (0.5 + 128 * 0x1p-22));
    free(x);
    free(y);
    free(q1);
    free(qk);
}

/* ---- (c) real files ---------------------------------------------------------------------- */

/* stories260K: the Q8_0 file's blocks against the F32 file's weights. Every 2-D tensor is
 * compared over its flat element sequence: the file's five ffn_down tensors (rows of 172, not a
 * whole number of blocks) were quantized as one flat run of blocks, and the others are the same
 * whether read flat or by rows. */
static void test_stories_q8_0(void **state)
{
    (void)state;
    ELM_REQUIRE_MODEL(pq, "tinyllamas-stories-260k-q8_0.gguf");
    ELM_REQUIRE_MODEL(pf, "stories260K.gguf");
    struct gfile gq, gf;
    assert_true(gfile_open(&gq, pq));
    assert_true(gfile_open(&gf, pf));
    long blocks = 0, same_w = 0, same_act = 0, tensors = 0, over = 0;
    double max_err = 0.0;
    for (int i = 0; i < gq.n; i++) {
        const struct tinfo *tq = &gq.t[i];
        if (tq->type != ELM_TYPE_Q8_0)
            continue;
        const void *dq, *df;
        const struct tinfo *tf = gfile_find(&gf, tq->name, &df);
        assert_non_null(tf);
        gfile_find(&gq, tq->name, &dq);
        assert_int_equal(tf->type, ELM_TYPE_F32);
        assert_int_equal(tf->nelem, tq->nelem);
        assert_int_equal(tq->nelem % 32, 0);
        const int64_t n = tq->nelem;
        float *src = elm_test_xmalloc(n * sizeof *src), *deq = elm_test_xmalloc(n * sizeof *deq);
        struct elm_block_q8_0 *mine = elm_test_xmalloc(elm_row_bytes(ELM_TYPE_Q8_0, n));
        struct elm_block_q8_0 *act = elm_test_xmalloc(elm_row_bytes(ELM_TYPE_Q8_0, n));
        memcpy(src, df, n * sizeof *src);
        elm_kernels_ref.to_float[ELM_TYPE_Q8_0](dq, deq, n);
        for (int64_t j = 0; j < n; j++)
            max_err = fmax(max_err, fabs((double)deq[j] - src[j]));
        over += check_rounding(ELM_TYPE_Q8_0, src, dq, deq, n);
        assert_int_equal(elm_quantize_row(ELM_TYPE_Q8_0, src, mine, n), 0);
        elm_kernels_ref.from_float[ELM_TYPE_Q8_0](src, act, n);
        const struct elm_block_q8_0 *file = dq;
        for (int64_t b = 0; b < n / 32; b++) {
            same_w += memcmp(&file[b], &mine[b], sizeof mine[b]) == 0;
            same_act += memcmp(&file[b], &act[b], sizeof act[b]) == 0;
        }
        blocks += n / 32;
        tensors++;
        free(src);
        free(deq);
        free(mine);
        free(act);
    }
    print_message("stories260K Q8_0: %ld tensors, %ld blocks; max |dequant - f32| %.6f; "
                  "weight quantizer matches %ld/%ld blocks, activation quantizer %ld/%ld\n",
                  tensors, blocks, max_err, same_w, blocks, same_act, blocks);
    assert_int_equal(tensors, 37);
    assert_int_equal(blocks, 9128);
    /* the models README's largest error, 0.0072, is half a step of the coarsest block; checked
     * per element against each block's own step (check_rounding) rather than as one figure */
    assert_int_equal(over, 0);
    assert_int_equal(same_w, blocks);
    gfile_close(&gq);
    gfile_close(&gf);
}

struct match_count {
    long blocks[ELM_TYPE_COUNT];
    long same[ELM_TYPE_COUNT];
    long q8_0_act_same; /* Q8_0 blocks that the activation rounding would also reproduce */
};

/* Returns false (checking nothing) when the file is missing. */
static bool check_zoo_file(const char *model, const char *name, const struct gfile *gf,
                           struct match_count *mc)
{
    char rel[160];
    snprintf(rel, sizeof rel, "zoo/%s", name);
    const char *path = elm_test_model_path(rel);
    if (!path) {
        print_message("%s not found\n", rel);
        return false;
    }
    struct gfile gq;
    assert_true(gfile_open(&gq, path));
    struct match_count here = {0};
    for (int i = 0; i < gq.n; i++) {
        const struct tinfo *tq = &gq.t[i];
        const struct elm_type_info *ti = elm_type_get(tq->type);
        assert_non_null(ti);
        if (!ti->quantized)
            continue;
        const void *dq, *df;
        gfile_find(&gq, tq->name, &dq);
        const struct tinfo *tf = gfile_find(gf, tq->name, &df);
        assert_non_null(tf);
        assert_int_equal(tf->type, ELM_TYPE_F32);
        assert_int_equal(tf->nelem, tq->nelem);
        const int64_t n = tq->nelem, rows = n / tq->ne0;
        float *src = elm_test_xmalloc(n * sizeof *src), *deq = elm_test_xmalloc(n * sizeof *deq);
        const size_t row_bytes = elm_row_bytes(tq->type, tq->ne0);
        uint8_t *mine = elm_test_xmalloc(row_bytes * rows);
        memcpy(src, df, n * sizeof *src);
        elm_kernels_ref.to_float[tq->type](dq, deq, n);
        /* the file's blocks decode to within the format's rounding bound of the F32 source */
        if (check_rounding(tq->type, src, dq, deq, n))
            fail_msg("%s %s (%s): elements outside their block's rounding bound", model, tq->name,
                     ti->name);
        /* llama-quantize quantizes row by row */
        for (int64_t r = 0; r < rows; r++)
            assert_int_equal(
                elm_quantize_row(tq->type, src + r * tq->ne0, mine + r * row_bytes, tq->ne0), 0);
        const int64_t nb = n / ti->block;
        for (int64_t b = 0; b < nb; b++) {
            here.same[tq->type] += memcmp((const uint8_t *)dq + b * ti->block_bytes,
                                          mine + b * ti->block_bytes, ti->block_bytes) == 0;
        }
        here.blocks[tq->type] += nb;
        if (tq->type == ELM_TYPE_Q8_0) {
            /* the activation rounding (127/amax, ties to even) on the same rows, for the record */
            for (int64_t r = 0; r < rows; r++)
                elm_kernels_ref.from_float[ELM_TYPE_Q8_0](src + r * tq->ne0, mine + r * row_bytes,
                                                          tq->ne0);
            for (int64_t b = 0; b < nb; b++)
                mc->q8_0_act_same += memcmp((const uint8_t *)dq + b * ti->block_bytes,
                                            mine + b * ti->block_bytes, ti->block_bytes) == 0;
        }
        free(src);
        free(deq);
        free(mine);
    }
    for (int t = 0; t < ELM_TYPE_COUNT; t++) {
        if (!here.blocks[t])
            continue;
        print_message("  %-22s %-5s %6ld/%6ld blocks byte-identical\n", name, elm_type_get(t)->name,
                      here.same[t], here.blocks[t]);
        mc->blocks[t] += here.blocks[t];
        mc->same[t] += here.same[t];
    }
    gfile_close(&gq);
    return true;
}

static void test_zoo(void **state)
{
    (void)state;
    static const char *llama[] = {"q8_0",   "q6_k",      "q5_k_m",    "q5_k-pure", "q5_1",
                                  "q5_0",   "q4_k_m",    "q4_k-pure", "q4_1",      "q4_0",
                                  "q3_k_m", "q3_k-pure", "q2_k",      "q2_k-pure"};
    static const char *qwen2[] = {"q8_0",   "q6_k", "q5_k_m", "q5_0",
                                  "q4_k_m", "q4_0", "q3_k_m", "q2_k"};
    static const struct {
        const char *model;
        const char **variants;
        size_t n;
    } models[] = {
        {"zoo-llama", llama, sizeof llama / sizeof llama[0]},
        {"zoo-qwen2", qwen2, sizeof qwen2 / sizeof qwen2[0]},
    };
    struct match_count mc = {0};
    int files = 0, missing = 0;
    for (size_t m = 0; m < 2; m++) {
        char rel[128];
        snprintf(rel, sizeof rel, "zoo/%s.gguf", models[m].model);
        ELM_REQUIRE_MODEL(pf, rel);
        struct gfile gf;
        assert_true(gfile_open(&gf, pf));
        for (size_t v = 0; v < models[m].n; v++) {
            char name[128];
            snprintf(name, sizeof name, "%s-%s.gguf", models[m].model, models[m].variants[v]);
            if (check_zoo_file(models[m].model, name, &gf, &mc))
                files++;
            else
                missing++;
        }
        gfile_close(&gf);
    }
    print_message("zoo q8_0 with the activation rounding instead: %ld/%ld blocks identical\n",
                  mc.q8_0_act_same, mc.blocks[ELM_TYPE_Q8_0]);
    for (int t = 0; t < ELM_TYPE_COUNT; t++) {
        if (!mc.blocks[t])
            continue;
        print_message("zoo total %-5s %6ld/%6ld blocks byte-identical to llama-quantize\n",
                      elm_type_get(t)->name, mc.same[t], mc.blocks[t]);
        /* the goal and the measured result: every block, for every type */
        assert_int_equal(mc.same[t], mc.blocks[t]);
    }
    if (missing) {
        print_message("SKIP: test_zoo: %d of the zoo's 22 quantized files not found under %s\n",
                      missing, elm_test_models_dir());
        skip();
    }
    /* the zoo README's list: 14 llama files and 8 qwen2 files */
    assert_int_equal(files, 22);
}

/* ---- (d) dot products -------------------------------------------------------------------- */

/* |vec_dot - the format's dot| / M, over 4 random rows of 4096, where the format's dot is the
 * exact (double) sum of the dequantized operands' products, except that Q4_1/Q5_1 take each
 * block's minimum term as m * s with the activation block's stored s (ggml's definition; s is
 * fp16(d * sum q), not exactly the sum of the dequantized activations), and M adds the
 * magnitudes of all the products (scale and minimum parts separately, since they can cancel).
 * Integer block sums are exact, so only float rounding remains: each term is formed with at most
 * ~4 roundings (int to float, scale products, and the reference operands' own dequantization)
 * and any order of summing `terms` of them has depth below terms + 4 (lane folding included),
 * so the error is at most gamma_k = k u / (1 - k u) times M with u = 2^-24 and k = terms + 10
 * (Higham, Accuracy and Stability of Numerical Algorithms, 2nd ed., section 3.1). Terms: one
 * per 32-block for the legacy types, at most one per 16-element sub-block for the K-quants.
 * The float types' reference kernels (ref/float.c) round each product to float once and add
 * in double, then round once more to float: 3 float roundings plus n double ones. A bound from
 * the arithmetic; typical errors are far below it. */
static double dot_bound(enum elm_type t, int64_t n)
{
    const struct elm_type_info *ti = elm_type_get(t);
    if (!ti->quantized) {
        const double ku = 3 * 0x1p-24 + (double)n * 0x1p-53;
        return ku / (1.0 - ku);
    }
    const int64_t per_term = ti->block == 32 ? 32 : 16;
    const double ku = (double)(n / per_term + 10) * 0x1p-24;
    return ku / (1.0 - ku);
}

/* The format's dot of w (type t) and a (its dot type), both dequantized (wd, ad), and M. */
static double format_dot(enum elm_type t, const void *wq, const void *aq, const float *wd,
                         const float *ad, int64_t n, double *mag)
{
    const bool min_s = t == ELM_TYPE_Q4_1 || t == ELM_TYPE_Q5_1;
    const bool has_grid = elm_type_get(t)->quantized;
    double dot = 0.0;
    *mag = 0.0;
    for (int64_t j = 0; j < n; j++) {
        const double off = has_grid ? grid_of(t, wq, j).off : 0.0;
        dot += (double)wd[j] * ad[j];
        *mag += (fabs(wd[j] - off) + fabs(off)) * fabs(ad[j]);
    }
    for (int64_t b = 0; min_s && b < n / 32; b++) {
        const double m = grid_of(t, wq, 32 * b).off;
        const double s = h2d(((const struct elm_block_q8_1 *)aq)[b].s);
        double sum = 0.0;
        for (int j = 0; j < 32; j++)
            sum += ad[32 * b + j];
        dot += m * (s - sum);
        *mag += fabs(m * s);
    }
    return dot;
}

static void test_vec_dot(void **state)
{
    (void)state;
    const int64_t n = 4096;
    float *w = elm_test_xmalloc(n * sizeof *w), *a = elm_test_xmalloc(n * sizeof *a);
    float *wd = elm_test_xmalloc(n * sizeof *wd), *ad = elm_test_xmalloc(n * sizeof *ad);
    void *wq = elm_test_xmalloc(n * sizeof(float)), *aq = elm_test_xmalloc(n * sizeof(float));
    const struct elm_kernels *k = &elm_kernels_ref;
    double worst[ELM_TEST_N_WEIGHT_TYPES] = {0};
    for (int round = 0; round < 4; round++) {
        elm_test_fill_normal(w, n, 100 + round);
        elm_test_fill_normal(a, n, 200 + round);
        if (round == 3) /* a row with an offset: exercises the min terms of Q4_1/Q5_1/Q*_K */
            for (int64_t i = 0; i < n; i++)
                w[i] = 0.3f * w[i] + 0.5f;
        for (size_t i = 0; i < ELM_TEST_N_WEIGHT_TYPES; i++) {
            enum elm_type t = elm_test_weight_types[i], dt = elm_type_get(t)->dot_type;
            assert_int_equal(elm_quantize_row(t, w, wq, n), 0);
            k->from_float[dt](a, aq, n);
            k->to_float[t](wq, wd, n);
            k->to_float[dt](aq, ad, n);
            double mag, exact = format_dot(t, wq, aq, wd, ad, n, &mag);
            float s = NAN;
            k->vec_dot[t](n, &s, wq, aq);
            double rel = fabs(s - exact) / mag;
            worst[i] = fmax(worst[i], rel);
            if (rel > dot_bound(t, n))
                fail_msg("vec_dot %s round %d: %g vs %g (rel %.3g)", elm_type_get(t)->name, round,
                         (double)s, exact, rel);
        }
    }
    for (size_t i = 0; i < ELM_TEST_N_WEIGHT_TYPES; i++)
        print_message("vec_dot %-5s worst rel. error %.2e (bound %.2e)\n",
                      elm_type_get(elm_test_weight_types[i])->name, worst[i],
                      dot_bound(elm_test_weight_types[i], n));
    free(w);
    free(a);
    free(wd);
    free(ad);
    free(wq);
    free(aq);
}

/* ---- (e) matmul determinism -------------------------------------------------------------- */

static void test_matmul_determinism(void **state)
{
    (void)state;
    const int64_t ncols = 512, nrows = 37, ntok = 7;
    float *w = elm_test_xmalloc(ncols * nrows * sizeof *w),
          *x = elm_test_xmalloc(ncols * ntok * sizeof *x);
    void *wq = elm_test_xmalloc(ncols * nrows * sizeof(float));
    void *xq = elm_test_xmalloc(ncols * ntok * sizeof(float));
    float *y7 = elm_test_xmalloc(nrows * ntok * sizeof *y7),
          *y1 = elm_test_xmalloc(nrows * ntok * sizeof *y1);
    float *y2t = elm_test_xmalloc(nrows * ntok * sizeof *y2t);
    const struct elm_kernels *k = elm_kernels_get("ref");
    assert_non_null(k);
    elm_test_fill_normal(w, ncols * nrows, 7);
    elm_test_fill_normal(x, ncols * ntok, 8);
    const int saved_threads = elm_pool_threads();
    for (size_t i = 0; i < ELM_TEST_N_WEIGHT_TYPES; i++) {
        enum elm_type t = elm_test_weight_types[i], dt = elm_type_get(t)->dot_type;
        const size_t wrow = elm_row_bytes(t, ncols), xrow = elm_row_bytes(dt, ncols);
        for (int64_t r = 0; r < nrows; r++)
            assert_int_equal(elm_quantize_row(t, w + r * ncols, (uint8_t *)wq + r * wrow, ncols),
                             0);
        for (int64_t tk = 0; tk < ntok; tk++)
            k->from_float[dt](x + tk * ncols, (uint8_t *)xq + tk * xrow, ncols);

        elm_pool_set_threads(1);
        elm_matmul(k, t, ELM_LAYOUT_ROWS, wq, ncols, nrows, xq, xrow, ntok, y7, nrows);
        for (int64_t tk = 0; tk < ntok; tk++)
            elm_matmul(k, t, ELM_LAYOUT_ROWS, wq, ncols, nrows, (uint8_t *)xq + tk * xrow, xrow, 1,
                       y1 + tk * nrows, nrows);
        elm_pool_set_threads(2);
        elm_matmul(k, t, ELM_LAYOUT_ROWS, wq, ncols, nrows, xq, xrow, ntok, y2t, nrows);
        elm_pool_set_threads(saved_threads);

        assert_memory_equal(y7, y1, nrows * ntok * sizeof *y7);
        assert_memory_equal(y7, y2t, nrows * ntok * sizeof *y7);
        /* and each element is the vec_dot of its row and token */
        float s;
        k->vec_dot[t](ncols, &s, (uint8_t *)wq + 5 * wrow, (uint8_t *)xq + 3 * xrow);
        assert_memory_equal(&s, &y7[3 * nrows + 5], sizeof s);
    }
    free(w);
    free(x);
    free(wq);
    free(xq);
    free(y7);
    free(y1);
    free(y2t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_type_table),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_activation_quant),
        cmocka_unit_test(test_stories_q8_0),
        cmocka_unit_test(test_zoo),
        cmocka_unit_test(test_vec_dot),
        cmocka_unit_test(test_matmul_determinism),
    };
    return _cmocka_run_group_tests("test_quant", tests, sizeof tests / sizeof *tests, NULL, NULL);
}
