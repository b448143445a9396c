/* test_simd.c — every SIMD kernel variant the CPU supports against the scalar reference.
 *
 * The expectation is exactness: the reference reproduces llama.cpp's float arithmetic bit for
 * bit (docs/kernels.md) and a variant that differed in one last bit would stop reproducing the
 * zoo references, so every variant must give the reference's bits. The tolerance table below
 * names each kernel's tolerance, in units in the last place; every one is 0 (bit-identical),
 * and a test fails on the first differing output with both values and the shape.
 *
 * What is compared, on seeded random data and odd shapes (one block, a few blocks, rows that are
 * not a multiple of any tile, rows with an offset for the minimum terms, all-zero blocks):
 *  - from_float (activation and weight quantizers the variant provides): the bytes;
 *  - to_float of every type: the floats;
 *  - vec_dot of every weight type: the float;
 *  - elm_matmul through the variant (its tiles) for 1..64 tokens (every count to 9, the tile
 *    edges beyond), 1 and 2 threads: every element equal to the reference vec_dot of its row
 *    and token;
 *  - the operations (rmsnorm, rope, softmax, silu_mul; kv_dot, kv_mix and kv_fold for F32,
 *    F16 and Q8_0 caches, kv_mix also over runs of positions with its lanes carried, as the
 *    paged cache calls it).
 * A variant the CPU cannot run (or the other architecture's: avx2/avx512 on ARM64, neon/dotprod/
 * i8mm on x86-64) is reported as skipped, never as passed.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/pool.h"
#include "kernels/blocks.h"
#include "kernels/fp16.h"
#include "kernels/kernels.h"
#include "kernels/tiles.h"
#include "tests/common/elm_test.h"
#include "tests/common/variants.h"

static const enum elm_type weight_types[] = {
    ELM_TYPE_F32,  ELM_TYPE_F16,  ELM_TYPE_BF16, ELM_TYPE_Q4_0,   ELM_TYPE_Q4_1,
    ELM_TYPE_Q5_0, ELM_TYPE_Q5_1, ELM_TYPE_Q8_0, ELM_TYPE_Q2_K,   ELM_TYPE_Q3_K,
    ELM_TYPE_Q4_K, ELM_TYPE_Q5_K, ELM_TYPE_Q6_K, ELM_TYPE_IQ4_NL, ELM_TYPE_IQ4_XS,
};
#define N_WEIGHT_TYPES (sizeof weight_types / sizeof weight_types[0])

/* Tolerances in ulps, per kernel family. All 0: bit-identical to the reference (see above). */
static const struct {
    const char *kernel;
    int ulps;
} tolerance[] = {
    {"from_float", 0}, {"to_float", 0}, {"vec_dot", 0},  {"matmul", 0}, {"rmsnorm", 0},
    {"rope", 0},       {"softmax", 0},  {"silu_mul", 0}, {"kv_dot", 0}, {"kv_mix", 0},
};

static int tol_of(const char *kernel)
{
    for (size_t i = 0; i < sizeof tolerance / sizeof *tolerance; i++)
        if (!strcmp(tolerance[i].kernel, kernel))
            return tolerance[i].ulps;
    fail_msg("no tolerance named for %s", kernel);
    return 0;
}

/* Distance in ulps between two floats of the same sign (large when signs differ). */
static int64_t ulps(float a, float b)
{
    int32_t ia, ib;
    memcpy(&ia, &a, 4);
    memcpy(&ib, &b, 4);
    if (ia == ib)
        return 0;
    if ((ia < 0) != (ib < 0))
        return INT64_MAX;
    return llabs((int64_t)ia - (int64_t)ib);
}

static void expect_floats(const char *kernel, const char *what, const float *got, const float *want,
                          int64_t n)
{
    const int tol = tol_of(kernel);
    for (int64_t i = 0; i < n; i++) {
        if (isnan(got[i]) && isnan(want[i]))
            continue;
        if (ulps(got[i], want[i]) > tol)
            fail_msg("%s %s: element %lld is %.9g (0x%08x), reference %.9g (0x%08x)", kernel, what,
                     (long long)i, (double)got[i], elm_f32_bits(got[i]), (double)want[i],
                     elm_f32_bits(want[i]));
    }
}

/* ---- data ------------------------------------------------------------------------------------ */

static uint64_t rng_state;

static uint64_t rng_next(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double rng_uniform(void)
{
    return ((double)(rng_next() >> 11) + 0.5) / 9007199254740992.0;
}

/* N(0,1) data with some texture: kind 1 adds an offset (minimum terms), kind 2 zeroes the first
 * 64 elements and plants repeated maxima of both signs (ties in the amax searches), kind 3
 * scales blocks by wildly different powers of two. */
static void fill(float *x, int64_t n, uint64_t seed, int kind)
{
    rng_state = seed * 7919 + 17;
    for (int64_t i = 0; i < n; i++) {
        double r = sqrt(-2.0 * log(rng_uniform())), t = 2.0 * M_PI * rng_uniform();
        x[i] = (float)(r * cos(t));
        if (kind == 1)
            x[i] = 0.3f * x[i] + 0.7f;
        if (kind == 3)
            x[i] = ldexpf(x[i], (int)((i / 32) % 13) - 6);
    }
    if (kind == 2) {
        for (int64_t i = 0; i < n && i < 64; i++)
            x[i] = 0.0f;
        for (int64_t i = 64; i + 40 < n; i += 97) {
            x[i] = 3.5f;
            x[i + 7] = -3.5f;
            x[i + 40] = 3.5f;
        }
    }
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    assert_non_null(p);
    return p;
}

/* One case per variant of the dispatch table but ref (tests/common/variants.h): skipped, with
 * the reason, when this CPU cannot run it. */
static const struct elm_kernels *variant_or_skip(void **state)
{
    return elm_test_variant(state);
}

static const int64_t block_counts[] = {1, 2, 3, 8, 17, 40};
#define N_BLOCK_COUNTS (sizeof block_counts / sizeof block_counts[0])
#define MAX_N          (40 * 256)

/* ---- quantizers and dequantizers ------------------------------------------------------------- */

static void test_convert(void **state)
{
    const struct elm_kernels *k = variant_or_skip(state), *ref = &elm_kernels_ref;
    float *x = xmalloc(MAX_N * sizeof *x), *got = xmalloc(MAX_N * sizeof *got);
    float *want = xmalloc(MAX_N * sizeof *want);
    uint8_t *q1 = xmalloc(MAX_N * 4), *q2 = xmalloc(MAX_N * 4);
    int checked = 0;
    for (int t = 0; t < ELM_TYPE_COUNT; t++) {
        const struct elm_type_info *ti = elm_type_get((uint32_t)t);
        if (!ti)
            continue;
        for (size_t c = 0; c < N_BLOCK_COUNTS; c++) {
            const int64_t n = block_counts[c] * (ti->block == 1 ? 32 : ti->block);
            if (n > MAX_N)
                continue;
            for (int kind = 0; kind < 4; kind++) {
                char what[96];
                snprintf(what, sizeof what, "%s n=%lld data %d", ti->name, (long long)n, kind);
                fill(x, n, (uint64_t)(t * 100 + c * 10 + kind), kind);
                const size_t bytes = elm_row_bytes((enum elm_type)t, n);
                if (ref->from_float[t]) {
                    memset(q1, 0xa5, bytes);
                    memset(q2, 0x5a, bytes);
                    ref->from_float[t](x, q1, n);
                    k->from_float[t](x, q2, n);
                    if (memcmp(q1, q2, bytes) != 0) {
                        size_t i = 0;
                        while (q1[i] == q2[i])
                            i++;
                        fail_msg("from_float %s: byte %zu is 0x%02x, reference 0x%02x", what, i,
                                 q2[i], q1[i]);
                    }
                } else {
                    /* a type with no quantizer (none today): dequantize bytes from ref's q8 */
                    continue;
                }
                ref->to_float[t](q1, want, n);
                k->to_float[t](q1, got, n);
                expect_floats("to_float", what, got, want, n);
                checked++;
            }
        }
    }
    print_message("%s: from_float and to_float bit-identical on %d (type, shape, data) cases\n",
                  k->name, checked);
    free(x);
    free(got);
    free(want);
    free(q1);
    free(q2);
}

/* ---- dot products ---------------------------------------------------------------------------- */

/* Weights of type t for n columns (elm_quantize_row, the reference quantizer) and reference
 * activations in its dot type. */
static void make_operands(enum elm_type t, int64_t n, uint64_t seed, int kind, void *wq, void *aq,
                          float *scratch)
{
    const enum elm_type dt = elm_type_get(t)->dot_type;
    fill(scratch, n, seed, kind);
    assert_int_equal(elm_quantize_row(t, scratch, wq, n), 0);
    fill(scratch, n, seed + 1000, kind == 1 ? 0 : kind);
    elm_kernels_ref.from_float[dt](scratch, aq, n);
}

static void test_vec_dot(void **state)
{
    const struct elm_kernels *k = variant_or_skip(state), *ref = &elm_kernels_ref;
    float *scratch = xmalloc(MAX_N * sizeof *scratch);
    void *wq = xmalloc(MAX_N * 4), *aq = xmalloc(MAX_N * 4);
    int checked = 0;
    for (size_t i = 0; i < N_WEIGHT_TYPES; i++) {
        const enum elm_type t = weight_types[i];
        const struct elm_type_info *ti = elm_type_get(t);
        for (size_t c = 0; c < N_BLOCK_COUNTS; c++) {
            const int64_t n = block_counts[c] * (ti->block == 1 ? 32 : ti->block);
            if (n > MAX_N)
                continue;
            for (int kind = 0; kind < 4; kind++) {
                for (int rep = 0; rep < 3; rep++) {
                    make_operands(t, n, (uint64_t)(1000 * i + 100 * c + 10 * kind + rep), kind, wq,
                                  aq, scratch);
                    float want = NAN, got = NAN;
                    ref->vec_dot[t](n, &want, wq, aq);
                    k->vec_dot[t](n, &got, wq, aq);
                    char what[96];
                    snprintf(what, sizeof what, "%s n=%lld data %d rep %d", ti->name, (long long)n,
                             kind, rep);
                    expect_floats("vec_dot", what, &got, &want, 1);
                    checked++;
                }
            }
        }
    }
    print_message("%s: vec_dot bit-identical to ref on %d cases (every weight type)\n", k->name,
                  checked);
    free(scratch);
    free(wq);
    free(aq);
}

/* ---- matmul ---------------------------------------------------------------------------------- */

/* The token counts check_matmul tries: every one up to 20; beyond (up to 64), every one up to 9
 * and then the edges of the tiles' token groups (4, 8) and of two and four groups of 16, so a
 * 64-token product costs a few of its size rather than 64. */
static int64_t next_ntok(int64_t ntok, int64_t maxtok)
{
    static const int64_t wide[] = {12, 16, 17, 31, 32, 33, 48, 63, 64};
    if (maxtok <= 20 || ntok < 9)
        return ntok + 1;
    for (size_t i = 0; i < sizeof wide / sizeof *wide; i++)
        if (wide[i] > ntok)
            return wide[i] <= maxtok ? wide[i] : maxtok + 1;
    return maxtok + 1;
}

/* passes > 1: weights and activations are quantized again, from other data, into the same
 * buffers and the product checked again (a tile that keeps unpacked weights or prepared
 * activations between calls must not reuse them in another product). */
static void check_matmul(const struct elm_kernels *k, enum elm_type t, int64_t ncols, int64_t nrows,
                         int64_t maxtok, uint64_t seed, int passes)
{
    const struct elm_type_info *ti = elm_type_get(t);
    const enum elm_type dt = ti->dot_type;
    const size_t wrow = elm_row_bytes(t, ncols), xrow = elm_row_bytes(dt, ncols);
    float *scratch = xmalloc((size_t)ncols * sizeof *scratch);
    uint8_t *wq = xmalloc(wrow * (size_t)nrows), *xq = xmalloc(xrow * (size_t)maxtok);
    float *want = xmalloc((size_t)(nrows * maxtok) * sizeof *want);
    float *got = xmalloc((size_t)(nrows * maxtok) * sizeof *got);
    /* a variant that reads its weights packed (kernels.h, enum elm_layout) gets both: the
     * file's rows, and a copy packed in place (its last nrows % 8 rows unpacked) */
    const enum elm_layout packed = elm_matmul_layout(k, t);
    uint8_t *wp = packed != ELM_LAYOUT_ROWS ? xmalloc(wrow * (size_t)nrows) : NULL;
    const int saved = elm_pool_threads();
    for (int pass = 0; pass < passes; pass++) {
        for (int64_t tk = 0; tk < maxtok; tk++) {
            fill(scratch, ncols, seed + 10000 * (uint64_t)pass + 5000 + (uint64_t)tk,
                 (tk + pass) % 3 == 2 ? 3 : 0);
            elm_kernels_ref.from_float[dt](scratch, xq + (size_t)tk * xrow, ncols);
        }
        for (int64_t r = 0; r < nrows; r++) {
            fill(scratch, ncols, seed + 10000 * (uint64_t)pass + (uint64_t)r,
                 (int)((r + pass) % 4));
            assert_int_equal(elm_quantize_row(t, scratch, wq + (size_t)r * wrow, ncols), 0);
            /* a file may hold Q8_0 quants of -128, which the quantizer never makes: every third
             * row gets some (the kernels' unsigned-times-signed tricks must keep them exact) */
            if (t == ELM_TYPE_Q8_0 && r % 3 == 1)
                for (int64_t b = 0; b < ncols / 32; b++)
                    for (int i = (int)(b % 5); i < 32; i += 7)
                        ((struct elm_block_q8_0 *)(wq + (size_t)r * wrow))[b].qs[i] = INT8_MIN;
        }
        for (int64_t tk = 0; tk < maxtok; tk++)
            for (int64_t r = 0; r < nrows; r++)
                elm_kernels_ref.vec_dot[t](ncols, &want[tk * nrows + r], wq + (size_t)r * wrow,
                                           xq + (size_t)tk * xrow);
        if (wp) {
            memcpy(wp, wq, wrow * (size_t)nrows);
            assert_int_equal(elm_pack_weights(packed, t, wp, wp, ncols, nrows), 0);
        }
        for (int threads = 1; threads <= 2; threads++) {
            elm_pool_set_threads(threads);
            for (int64_t ntok = 1; ntok <= maxtok; ntok = next_ntok(ntok, maxtok)) {
                for (int layout = 0; layout < (wp ? 2 : 1); layout++) {
                    memset(got, 0xff, (size_t)(nrows * ntok) * sizeof *got);
                    elm_matmul(k, t, layout ? packed : ELM_LAYOUT_ROWS, layout ? wp : wq, ncols,
                               nrows, xq, xrow, ntok, got, nrows);
                    char what[128];
                    snprintf(what, sizeof what,
                             "%s %s%s %lld x %lld, %lld tokens, %d threads, pass %d", k->name,
                             ti->name, layout ? " packed" : "", (long long)nrows, (long long)ncols,
                             (long long)ntok, threads, pass);
                    expect_floats("matmul", what, got, want, nrows * ntok);
                }
            }
        }
    }
    free(wp);
    elm_pool_set_threads(saved);
    free(scratch);
    free(wq);
    free(xq);
    free(want);
    free(got);
}

static void test_matmul(void **state)
{
    const struct elm_kernels *k = variant_or_skip(state);
    /* (rows, blocks): one row, one block; rows that no tile divides; enough work for threads */
    static const int64_t shapes[][2] = {{1, 1}, {3, 2}, {13, 1}, {37, 3}, {67, 8}, {130, 16}};
    for (size_t i = 0; i < N_WEIGHT_TYPES; i++) {
        const enum elm_type t = weight_types[i];
        const int64_t blk = elm_type_get(t)->block == 1 ? 32 : elm_type_get(t)->block;
        /* without a tile elm_matmul is the variant's vec_dot per element (checked above) in
         * code shared by every variant: two small shapes show that the variant's table is the
         * one used, the large ones would only repeat the reference's set-up (minutes under
         * emulation, where the ARM variants' tile-less types are tested) */
        const bool tiled = elm_tile_find(t, k->vec_dot[t]) != NULL;
        for (size_t s = tiled ? 0 : 1; s < (tiled ? sizeof shapes / sizeof *shapes : 3); s++)
            check_matmul(k, t, shapes[s][1] * blk, shapes[s][0], 9, 77 + s, 1);
        /* batches up to 64 (prefill chunks, full token tiles and ragged ones) on one shape */
        if (tiled)
            check_matmul(k, t, 3 * blk, 37, 64, 177, 1);
    }
    print_message("%s: elm_matmul bit-identical to ref vec_dot, 1..64 tokens, 1 and 2 threads\n",
                  k->name);
    /* Q4_0 prefill: several token tiles per panel (the avx2 and avx512 tiles keep unpacked panels
     * between them), token chunks of a few tokens (rows of 256 blocks, which the avx512 tile
     * keeps four panels of, and one block more, which take its whole buffer; rows of 1024
     * blocks), rows as long as the avx2 or avx512 buffer and one block longer, panels of 8 or 16
     * rows and a partial one, weights rewritten in place between products; rows longer than the
     * avx2 tile's kept token tiles (4096 blocks), which packed weights take a chunk at a time. Only
     * a variant with a Q4_0 tile has that machinery; without one elm_matmul is its vec_dot per
     * element, checked above (and these shapes cost minutes under emulation). */
    if (elm_tile_find(ELM_TYPE_Q4_0, k->vec_dot[ELM_TYPE_Q4_0]) == NULL) {
        print_message("%s: no Q4_0 tile, the prefill shapes are not repeated\n", k->name);
        return;
    }
    static const int64_t q40[][3] = {{37, 16, 20}, {37, 256, 20},  {21, 257, 20},  {29, 512, 12},
                                     {23, 513, 9}, {37, 1024, 20}, {21, 1025, 13}, {13, 4097, 9}};
    /* The avx512 tile feeds its multiply-adds in one of three ways (kernels.h, enum elm_feed):
     * every one this CPU runs, the first loop's Q4_0 shapes again for those it did not choose
     * (whole tiles of 16 tokens go to AMX under ELM_FEED_AMX: the counts 16-20 and those to 64
     * take them, beside ragged tiles that take the vector tile). */
    static const char *const feed_name[] = {"split", "by loads", "AMX"};
    const enum elm_feed cpu = elm_kernels_feed();
    const bool feeds = strcmp(k->name, "avx512") == 0;
    for (int f = 0; f < (feeds ? 3 : 1); f++) {
        const enum elm_feed feed = feeds ? (enum elm_feed)f : cpu;
        if (elm_kernels_set_feed(feed) != 0) {
            assert_int_equal(feed, ELM_FEED_AMX); /* the two vector feeds run everywhere */
            print_message("%s: no AMX for this process, its Q4_0 tile not tested\n", k->name);
            continue;
        }
        if (feed != cpu) {
            for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
                check_matmul(k, ELM_TYPE_Q4_0, shapes[s][1] * 32, shapes[s][0], 9, 77 + s, 1);
            check_matmul(k, ELM_TYPE_Q4_0, 3 * 32, 37, 64, 177, 1);
        }
        for (size_t s = 0; s < sizeof q40 / sizeof *q40; s++)
            check_matmul(k, ELM_TYPE_Q4_0, q40[s][1] * 32, q40[s][0], q40[s][2], 91 + s, 2);
        print_message("%s: Q4_0 elm_matmul bit-identical to ref vec_dot, up to 20 tokens%s%s\n",
                      k->name, feeds ? ", feed " : "", feeds ? feed_name[feed] : "");
    }
    assert_int_equal(elm_kernels_set_feed(cpu), 0);
    /* The other tiles that keep an unpacked panel (avx512's legacy and K-quant tiles, 32-row
     * panels in a 384 KiB buffer): several token tiles per panel, a partial panel, rows as long
     * as the buffer holds and one block longer, weights rewritten in place between products. */
    static const struct {
        enum elm_type t;
        int64_t rows, blocks, toks;
    } kept[] = {{ELM_TYPE_Q8_0, 37, 307, 20},   {ELM_TYPE_Q8_0, 21, 308, 11},
                {ELM_TYPE_Q5_0, 37, 307, 20},   {ELM_TYPE_Q4_1, 37, 307, 20},
                {ELM_TYPE_Q5_1, 21, 308, 11},   {ELM_TYPE_Q2_K, 37, 34, 20},
                {ELM_TYPE_Q3_K, 37, 34, 20},    {ELM_TYPE_Q4_K, 37, 34, 20},
                {ELM_TYPE_Q4_K, 21, 35, 11},    {ELM_TYPE_Q5_K, 37, 34, 20},
                {ELM_TYPE_Q6_K, 37, 34, 20},    {ELM_TYPE_Q6_K, 21, 35, 11},
                {ELM_TYPE_IQ4_NL, 37, 307, 20}, {ELM_TYPE_IQ4_NL, 21, 308, 11},
                {ELM_TYPE_IQ4_XS, 37, 23, 20},  {ELM_TYPE_IQ4_XS, 21, 24, 11}};
    int nkept = 0;
    for (size_t s = 0; s < sizeof kept / sizeof *kept; s++) {
        const struct elm_tile_kernel *tk = elm_tile_find(kept[s].t, k->vec_dot[kept[s].t]);
        if (tk == NULL || tk->rows < 32)
            continue;
        check_matmul(k, kept[s].t, kept[s].blocks * elm_type_get(kept[s].t)->block, kept[s].rows,
                     kept[s].toks, 191 + s, 2);
        nkept++;
    }
    print_message("%s: %d prefill shapes of the 32-row panel tiles bit-identical\n", k->name,
                  nkept);
    /* The avx2 Q8_0/Q5_0/Q4_1/Q5_1/IQ4_NL/IQ4_XS, Q4_K and Q6_K tiles (kernels/avx2/q8_0_wide.h,
     * k_wide.h) keep 8- and 4-row panels in 352- and 64-block buffers: several token tiles per
     * panel, partial panels, rows as long as the buffer holds and one longer (IQ4_XS: one
     * super-block), weights rewritten in place between products; 17 super-blocks end in a
     * partial chunk of k_wide.h's run (8 blocks). */
    if (strcmp(k->name, "avx2") == 0) {
        check_matmul(k, ELM_TYPE_Q8_0, 352 * 32, 37, 20, 211, 2);
        check_matmul(k, ELM_TYPE_Q8_0, 353 * 32, 21, 11, 212, 2);
        check_matmul(k, ELM_TYPE_Q5_0, 352 * 32, 21, 11, 215, 2);
        check_matmul(k, ELM_TYPE_Q4_1, 353 * 32, 37, 20, 216, 2);
        check_matmul(k, ELM_TYPE_Q4_1, 352 * 32, 21, 11, 217, 2);
        check_matmul(k, ELM_TYPE_Q5_1, 352 * 32, 37, 20, 218, 2);
        check_matmul(k, ELM_TYPE_Q5_1, 353 * 32, 21, 11, 219, 2);
        check_matmul(k, ELM_TYPE_IQ4_NL, 352 * 32, 21, 11, 220, 2);
        check_matmul(k, ELM_TYPE_IQ4_NL, 353 * 32, 37, 20, 221, 2);
        check_matmul(k, ELM_TYPE_IQ4_XS, 44 * 256, 37, 20, 222, 2);
        check_matmul(k, ELM_TYPE_IQ4_XS, 45 * 256, 21, 11, 223, 2);
        check_matmul(k, ELM_TYPE_Q4_K, 64 * 256, 37, 20, 224, 2);
        check_matmul(k, ELM_TYPE_Q4_K, 17 * 256, 21, 11, 225, 2);
        check_matmul(k, ELM_TYPE_Q4_K, 65 * 256, 21, 13, 226, 2);
        check_matmul(k, ELM_TYPE_Q6_K, 64 * 256, 37, 20, 213, 2);
        check_matmul(k, ELM_TYPE_Q6_K, 65 * 256, 21, 13, 214, 2);
        check_matmul(k, ELM_TYPE_Q6_K, 17 * 256, 37, 20, 227, 2);
        print_message(
            "%s: Q8_0, Q5_0, Q4_1, Q5_1, IQ4_NL, IQ4_XS, Q4_K and Q6_K prefill shapes of the panel "
            "tiles bit-identical\n",
            k->name);
    }
}

/* ---- operations ------------------------------------------------------------------------------ */

/* kv_mix_group against the reference kv_mix run head by head and page by page (pages of 32,
 * as the cache holds them, given in reverse order so that a kernel reading them as one run
 * would fail; the reversed pages of 268 positions fit the 300 rows): group sizes that take every
 * block of heads (8, 4, 2 and a single head left), outputs past the last whole vector, a first page
 * partly outside a sliding window (weights 0) and a partial last page. base/stride: the value rows
 * of cache type t. */
static void check_kv_mix_group(const struct elm_kernels *k, enum elm_type t, const char *base,
                               int64_t stride, int64_t max_hd)
{
    enum { PAGE = 32, MAXG = 15, MAXN = 268, MAXHD = 128 };
    static const int64_t gs[] = {1, 2, 3, 7, 8, 15};
    static const int64_t npos[] = {1, 5, 16, 33, 100, 268};
    static const int64_t hds[] = {8, 24, 32, 64, 96, 128};
    const struct elm_kernels *ref = &elm_kernels_ref;
    float *w = xmalloc(MAXG * MAXN * sizeof *w);
    float *l1 = xmalloc(MAXG * 16 * MAXHD * sizeof *l1),
          *l2 = xmalloc(MAXG * 16 * MAXHD * sizeof *l2);
    const void *pages[(MAXN + PAGE - 1) / PAGE];
    char what[160];
    for (size_t a = 0; a < sizeof gs / sizeof *gs; a++)
        for (size_t b = 0; b < sizeof npos / sizeof *npos; b++)
            for (size_t c = 0; c < sizeof hds / sizeof *hds; c++) {
                const int64_t g = gs[a], n = npos[b], hd = hds[c];
                if (hd > max_hd || (t == ELM_TYPE_Q8_0 && hd % 32))
                    continue;
                const int64_t np = (n + PAGE - 1) / PAGE;
                for (int64_t p = 0; p < np; p++)
                    pages[p] = base + (np - 1 - p) * PAGE * stride;
                for (int64_t j = 0; j < g; j++) {
                    fill(w + j * MAXN, n, 90 + (uint64_t)(j + g * n), 0);
                    ref->softmax(w + j * MAXN, n);
                    for (int64_t p = 0; p < n && p < 7; p++) /* the window's masked start */
                        w[j * MAXN + p] = 0.0f;
                }
                memset(l1, 0, (size_t)(g * 16 * hd) * sizeof *l1);
                for (int64_t j = 0; j < g; j++)
                    for (int64_t p0 = 0; p0 < n; p0 += PAGE)
                        ref->kv_mix[t](n - p0 < PAGE ? n - p0 : PAGE, hd, l1 + j * 16 * hd,
                                       w + j * MAXN + p0, pages[p0 / PAGE], stride);
                memset(l2, 0, (size_t)(g * 16 * hd) * sizeof *l2);
                k->kv_mix_group[t](g, n, hd, l2, w, MAXN, pages, PAGE, stride);
                snprintf(what, sizeof what, "%s kv_mix_group %s g=%lld n=%lld hd=%lld", k->name,
                         elm_type_get(t)->name, (long long)g, (long long)n, (long long)hd);
                expect_floats("kv_mix", what, l2, l1, g * 16 * hd);
            }
    free(w);
    free(l1);
    free(l2);
}

static void test_ops(void **state)
{
    const struct elm_kernels *k = variant_or_skip(state), *ref = &elm_kernels_ref;
    enum { N = 5632 + 13, HD = 128, NPOS = 300, STRIDE = 264 };
    float *x = xmalloc(N * sizeof *x), *g = xmalloc(N * sizeof *g);
    float *y1 = xmalloc(N * sizeof *y1), *y2 = xmalloc(N * sizeof *y2);
    char what[64];
    static const int64_t lens[] = {1, 7, 16, 33, 64, 100, 256, 768, 2048, 5632, N};
    for (size_t i = 0; i < sizeof lens / sizeof *lens; i++) {
        /* data 3 spreads values over 2^-6..2^6: exp's results reach subnormals and overflow */
        for (int kind = 0; kind <= 3; kind += 3) {
            const int64_t n = lens[i];
            snprintf(what, sizeof what, "n=%lld data %d", (long long)n, kind);
            fill(x, n, 40 + i, kind);
            fill(g, n, 50 + i, 1);
            ref->rmsnorm(y1, x, g, n, 1e-5f);
            k->rmsnorm(y2, x, g, n, 1e-5f);
            expect_floats("rmsnorm", what, y2, y1, n);

            for (int64_t j = 0; j < n; j++)
                x[j] *= 6.0f; /* reaches deep into exp's range */
            memcpy(y1, x, n * sizeof *x);
            memcpy(y2, x, n * sizeof *x);
            ref->softmax(y1, n);
            k->softmax(y2, n);
            expect_floats("softmax", what, y2, y1, n);

            memcpy(y1, x, n * sizeof *x);
            memcpy(y2, x, n * sizeof *x);
            ref->silu_mul(y1, g, n);
            k->silu_mul(y2, g, n);
            expect_floats("silu_mul", what, y2, y1, n);
        }
    }
    /* softmax over masked-looking scores (-inf) and huge ranges */
    for (int64_t j = 0; j < 100; j++)
        x[j] = j % 5 == 0 ? -INFINITY : (float)(j * 3) - 150.0f;
    memcpy(y1, x, 100 * sizeof *x);
    memcpy(y2, x, 100 * sizeof *x);
    ref->softmax(y1, 100);
    k->softmax(y2, 100);
    expect_floats("softmax", "with -inf", y2, y1, 100);

    float cs[HD];
    for (int n_rot = 2; n_rot <= HD; n_rot *= 2) {
        ref->rope_table(cs, n_rot, 777, 10000.0f, 1.0f);
        for (int neox = 0; neox < 2; neox++) {
            fill(x, HD, (uint64_t)(n_rot + neox), 0);
            memcpy(y1, x, HD * sizeof *x);
            memcpy(y2, x, HD * sizeof *x);
            ref->rope(y1, n_rot, cs, neox);
            k->rope(y2, n_rot, cs, neox);
            snprintf(what, sizeof what, "n_rot=%d neox=%d", n_rot, neox);
            expect_floats("rope", what, y2, y1, HD);
        }
        float cs2[HD];
        k->rope_table(cs2, n_rot, 777, 10000.0f, 1.0f);
        expect_floats("rope", "table", cs2, cs, n_rot);
    }

    float *v = xmalloc(NPOS * STRIDE * sizeof *v), *w = xmalloc(NPOS * sizeof *w);
    uint16_t *vh = xmalloc(NPOS * STRIDE * sizeof *vh), *qh = xmalloc(HD * sizeof *qh);
    fill(v, NPOS * STRIDE, 61, 0);
    for (int64_t j = 0; j < NPOS * STRIDE; j++)
        vh[j] = elm_f32_to_fp16(v[j]);
    fill(x, HD, 62, 0);
    for (int j = 0; j < HD; j++)
        qh[j] = elm_f32_to_fp16(x[j]);
    static const int64_t dims[] = {1, 8, 16, 40, 64, 80, 96, 100, 128};
    for (size_t i = 0; i < sizeof dims / sizeof *dims; i++) {
        const int64_t n = dims[i];
        float s1, s2;
        snprintf(what, sizeof what, "f32 n=%lld", (long long)n);
        ref->kv_dot[ELM_TYPE_F32](n, &s1, v + 3, x);
        k->kv_dot[ELM_TYPE_F32](n, &s2, v + 3, x);
        expect_floats("kv_dot", what, &s2, &s1, 1);
        snprintf(what, sizeof what, "f16 n=%lld", (long long)n);
        ref->kv_dot[ELM_TYPE_F16](n, &s1, vh + 3, qh);
        k->kv_dot[ELM_TYPE_F16](n, &s2, vh + 3, qh);
        expect_floats("kv_dot", what, &s2, &s1, 1);
    }
    /* kv_dots: every score of a run of rows as kv_dot gives it, for runs that fill no group,
     * whole groups and groups plus a tail, and rows with a partial block (kv_dot per row) */
    static const int64_t nps[] = {1, 7, 8, 16, 17, 31, 32};
    static const int64_t kdims[] = {16, 40, 64, 128};
    for (size_t i = 0; i < sizeof kdims / sizeof *kdims; i++) {
        for (size_t j = 0; j < sizeof nps / sizeof *nps; j++) {
            const int64_t n = kdims[i], np = nps[j];
            if (!k->kv_dots[ELM_TYPE_F16])
                continue;
            float s1[32], s2[32];
            for (int64_t p = 0; p < np; p++)
                ref->kv_dot[ELM_TYPE_F16](n, &s1[p], vh + 3 + p * STRIDE, qh);
            k->kv_dots[ELM_TYPE_F16](n, np, s2, vh + 3, STRIDE * 2, qh);
            snprintf(what, sizeof what, "kv_dots f16 n=%lld np=%lld", (long long)n, (long long)np);
            expect_floats("kv_dot", what, s2, s1, np);
        }
    }
    /* kv_dots_group: each head's scores as kv_dot gives them, for head counts that fill a
     * block of queries, more than one and a single head, over the same runs and dims */
    static const int64_t dgs[] = {1, 2, 8, 11};
    uint16_t *qg = xmalloc(11 * HD * sizeof *qg);
    for (int64_t j = 0; j < 11 * HD; j++)
        qg[j] = elm_f32_to_fp16(v[(NPOS - 12) * STRIDE + j]); /* rows the scores do not read */
    for (size_t i = 0; i < sizeof kdims / sizeof *kdims && k->kv_dots_group[ELM_TYPE_F16]; i++)
        for (size_t j = 0; j < sizeof nps / sizeof *nps; j++)
            for (size_t a = 0; a < sizeof dgs / sizeof *dgs; a++) {
                const int64_t n = kdims[i], np = nps[j], g = dgs[a];
                float s1[11 * 32], s2[11 * 32];
                for (int64_t h = 0; h < g; h++)
                    for (int64_t p = 0; p < np; p++)
                        ref->kv_dot[ELM_TYPE_F16](n, &s1[h * 32 + p], vh + 3 + p * STRIDE,
                                                  qg + h * HD);
                k->kv_dots_group[ELM_TYPE_F16](g, n, np, s2, 32, vh + 3, STRIDE * 2, qg, HD * 2);
                for (int64_t h = 0; h < g; h++) {
                    snprintf(what, sizeof what, "dots_group g=%lld n=%lld np=%lld h=%lld",
                             (long long)g, (long long)n, (long long)np, (long long)h);
                    expect_floats("kv_dot", what, s2 + h * 32, s1 + h * 32, np);
                }
            }
    free(qg);
    /* Q8_0 cache rows: 256 values (8 blocks) per position, quantized as the cache stores them */
    enum { QROW = 8 * 34 };
    uint8_t *vq = xmalloc(NPOS * QROW), *qq = xmalloc(HD / 32 * 34);
    for (int p = 0; p < NPOS; p++)
        ref->from_float[ELM_TYPE_Q8_0](v + p * STRIDE, vq + p * QROW, 256);
    ref->from_float[ELM_TYPE_Q8_0](x, qq, HD);
    for (int64_t n = 32; n <= HD; n += 32) {
        float s1, s2;
        snprintf(what, sizeof what, "q8_0 n=%lld", (long long)n);
        ref->kv_dot[ELM_TYPE_Q8_0](n, &s1, vq + 2 * 34, qq);
        k->kv_dot[ELM_TYPE_Q8_0](n, &s2, vq + 2 * 34, qq);
        expect_floats("kv_dot", what, &s2, &s1, 1);
    }
    /* kv_mix: the reference over all positions in one call is the oracle; the variant must
     * give its bits in one call and with the lanes carried over runs, as a paged cache calls
     * it: pages of 32, and runs of 16 and 48 (any multiple of 16 but the last) */
    static const int64_t npos[] = {1, 5, 16, 17, 33, 64, 100, 300};
    static const int64_t hds[] = {8, 24, 32, 64, 96, 128};
    static const int64_t runs[] = {0, 32, 16, 48};
    float *lanes = xmalloc(16 * HD * sizeof *lanes);
    for (size_t i = 0; i < sizeof npos / sizeof *npos; i++) {
        for (size_t h = 0; h < sizeof hds / sizeof *hds; h++) {
            const int64_t n = npos[i], hd = hds[h];
            fill(w, n, 70 + i, 0);
            ref->softmax(w, n);
            for (int ty = 0; ty < 3; ty++) {
                const enum elm_type t = ty == 0   ? ELM_TYPE_F32
                                        : ty == 1 ? ELM_TYPE_F16
                                                  : ELM_TYPE_Q8_0;
                if (t == ELM_TYPE_Q8_0 && hd % 32)
                    continue;
                const char *base = t == ELM_TYPE_F32   ? (const char *)(v + 8)
                                   : t == ELM_TYPE_F16 ? (const char *)(vh + 8)
                                                       : (const char *)(vq + 34);
                const int64_t stride = t == ELM_TYPE_F32   ? STRIDE * 4
                                       : t == ELM_TYPE_F16 ? STRIDE * 2
                                                           : QROW;
                memset(lanes, 0, 16 * HD * sizeof *lanes);
                ref->kv_mix[t](n, hd, lanes, w, base, stride);
                ref->kv_fold(hd, lanes, y1);
                for (size_t r = 0; r < sizeof runs / sizeof *runs; r++) {
                    for (int which = 0; which < 2; which++) {
                        const struct elm_kernels *kk = which ? k : ref;
                        memset(lanes, 0, 16 * HD * sizeof *lanes);
                        const int64_t run = runs[r] ? runs[r] : n;
                        for (int64_t p0 = 0; p0 < n; p0 += run)
                            kk->kv_mix[t](n - p0 < run ? n - p0 : run, hd, lanes, w + p0,
                                          base + p0 * stride, stride);
                        kk->kv_fold(hd, lanes, y2);
                        snprintf(what, sizeof what, "%s %s n=%lld hd=%lld run %lld", kk->name,
                                 elm_type_get(t)->name, (long long)n, (long long)hd,
                                 (long long)run);
                        expect_floats("kv_mix", what, y2, y1, hd);
                    }
                }
            }
        }
    }
    free(lanes);
    /* the group kernels, where the variant has them: the value rows at the offsets kv_mix
     * takes them from above */
    if (k->kv_mix_group[ELM_TYPE_F32])
        check_kv_mix_group(k, ELM_TYPE_F32, (const char *)(v + 8), STRIDE * 4, HD);
    if (k->kv_mix_group[ELM_TYPE_F16])
        check_kv_mix_group(k, ELM_TYPE_F16, (const char *)(vh + 8), STRIDE * 2, HD);
    if (k->kv_mix_group[ELM_TYPE_Q8_0])
        check_kv_mix_group(k, ELM_TYPE_Q8_0, (const char *)(vq + 34), QROW, 7 * 32);
    free(vq);
    free(qq);
    print_message(
        "%s: rmsnorm, softmax, silu_mul, rope, kv_dot, kv_mix(_group) bit-identical to ref\n",
        k->name);
    free(v);
    free(w);
    free(vh);
    free(qh);
    free(x);
    free(g);
    free(y1);
    free(y2);
}

int main(void)
{
    struct CMUnitTest tests[64];
    size_t n = 0;
    elm_test_add_variant_cases(tests, &n, 64, "test_convert", test_convert, false);
    elm_test_add_variant_cases(tests, &n, 64, "test_vec_dot", test_vec_dot, false);
    elm_test_add_variant_cases(tests, &n, 64, "test_matmul", test_matmul, false);
    elm_test_add_variant_cases(tests, &n, 64, "test_ops", test_ops, false);
    return _cmocka_run_group_tests("test_simd", tests, n, NULL, NULL);
}
