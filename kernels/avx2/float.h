/* float.h — SIMD vec_dot and matmul tiles for unquantized weights (F32, F16, BF16) against F32
 * activations. Compiled once per variant (see simd.h); included only by kernels/avx2/avx2.c
 * and kernels/avx512/avx512.c.
 *
 * The reference (kernels/ref/float.c) rounds each product w[i] * a[i] to float and adds the
 * products to a double in element order. That order is one dependent chain per output, which
 * no vector can shorten; what a vector can do is run several outputs' chains side by side.
 * So the tiles take four rows at a time: eight columns of the four rows are multiplied with
 * the activations in float (eight products per instruction), transposed so that a vector holds
 * one column's four products, widened to double, and added column after column into a vector
 * of four row sums: lane r is exactly the reference's chain for row r. Two such quads (eight
 * rows) keep two chains in flight per token. A single row (vec_dot, leftover rows) adds its
 * widened products one by one.
 */
#ifndef ELM_SIMD_FLOAT_H
#define ELM_SIMD_FLOAT_H

#include "kernels/avx2/q_legacy.h"
#include "kernels/avx2/simd.h"

#define FLT_R 8
#define FLT_T 2
/* one token: also two quads; four (16 rows) ran at half the speed, even with 32 registers */
#define FLT_R_GEMV 8
#define FLT_MR     (FLT_R_GEMV > FLT_R ? FLT_R_GEMV : FLT_R)

/* Eight weights of row base + i as floats: KIND 0 = F32, 1 = F16, 2 = BF16. */
ALWAYS_INLINE __m256 wload8(const uint8_t *row, int64_t i, const int KIND)
{
    if (KIND == 0)
        return _mm256_loadu_ps((const float *)row + i);
    const __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)row + i));
    if (KIND == 1)
        return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

ALWAYS_INLINE float wload1(const uint8_t *row, int64_t i, const int KIND)
{
    if (KIND == 0)
        return ((const float *)row)[i];
    const uint16_t h = ((const uint16_t *)row)[i];
    if (KIND == 1)
        return h2f(h);
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* acc (lane r = row r's running double sum) + the products of columns i..i+7 of rows p0..p3,
 * added one column at a time. */
ALWAYS_INLINE __m256d quad8(__m256d acc, __m256 p0, __m256 p1, __m256 p2, __m256 p3)
{
    /* 4x4 transposes within each 128-bit half: tc holds column c (low) and c + 4 (high) */
    const __m256 t0 = _mm256_unpacklo_ps(p0, p1), t1 = _mm256_unpackhi_ps(p0, p1);
    const __m256 t2 = _mm256_unpacklo_ps(p2, p3), t3 = _mm256_unpackhi_ps(p2, p3);
    const __m256 c0 =
        _mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(t0), _mm256_castps_pd(t2)));
    const __m256 c1 =
        _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(t0), _mm256_castps_pd(t2)));
    const __m256 c2 =
        _mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(t1), _mm256_castps_pd(t3)));
    const __m256 c3 =
        _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(t1), _mm256_castps_pd(t3)));
    acc = _mm256_add_pd(acc, _mm256_cvtps_pd(_mm256_castps256_ps128(c0)));
    acc = _mm256_add_pd(acc, _mm256_cvtps_pd(_mm256_castps256_ps128(c1)));
    acc = _mm256_add_pd(acc, _mm256_cvtps_pd(_mm256_castps256_ps128(c2)));
    acc = _mm256_add_pd(acc, _mm256_cvtps_pd(_mm256_castps256_ps128(c3)));
    acc = _mm256_add_pd(acc, _mm256_cvtps_pd(_mm256_extractf128_ps(c0, 1)));
    acc = _mm256_add_pd(acc, _mm256_cvtps_pd(_mm256_extractf128_ps(c1, 1)));
    acc = _mm256_add_pd(acc, _mm256_cvtps_pd(_mm256_extractf128_ps(c2, 1)));
    return _mm256_add_pd(acc, _mm256_cvtps_pd(_mm256_extractf128_ps(c3, 1)));
}

/* NR = 4 or 8 (quads), or 1 (one chain of scalar adds). */
ALWAYS_INLINE void flt_impl(TILE_ARGS, const int NR, const int NT, const int KIND)
{
    const int64_t n8 = n - n % 8;
    const size_t esz = KIND == 0 ? 4 : 2;
    if (NR == 1) {
        UNROLL for (int t = 0; t < NT; t++)
        {
            const float *yv = (const float *)(a + (size_t)t * as);
            double sum = 0.0;
            for (int64_t i = 0; i < n8; i += 8) {
                const __m256 p = _mm256_mul_ps(wload8(w, i, KIND), _mm256_loadu_ps(yv + i));
                double d[8];
                _mm256_storeu_pd(d, _mm256_cvtps_pd(_mm256_castps256_ps128(p)));
                _mm256_storeu_pd(d + 4, _mm256_cvtps_pd(_mm256_extractf128_ps(p, 1)));
                UNROLL for (int l = 0; l < 8; l++) sum += d[l];
            }
            for (int64_t i = n8; i < n; i++)
                sum += (double)(wload1(w, i, KIND) * yv[i]);
            y[t * ys] = (float)sum;
        }
        return;
    }
    enum { MQ = FLT_MR / 4 };
    const int NQ = NR / 4;
    __m256d acc[MQ][FLT_T];
    UNROLL for (int q = 0; q < NQ; q++)
    {
        UNROLL for (int t = 0; t < NT; t++) acc[q][t] = _mm256_setzero_pd();
    }
    for (int64_t i = 0; i < n8; i += 8) {
        if (pf && i % (64 / esz) == 0) /* a line of the next rows per line of these */
            UNROLL for (int r = 0; r < NR; r++)
                _mm_prefetch((const char *)(pf + (size_t)r * ws + (size_t)i * esz), _MM_HINT_T0);
        __m256 wv[FLT_MR];
        UNROLL for (int r = 0; r < NR; r++) wv[r] = wload8(w + (size_t)r * ws, i, KIND);
        UNROLL for (int t = 0; t < NT; t++)
        {
            const __m256 yv = _mm256_loadu_ps((const float *)(a + (size_t)t * as) + i);
            UNROLL for (int q = 0; q < NQ; q++) acc[q][t] =
                quad8(acc[q][t], _mm256_mul_ps(wv[4 * q], yv), _mm256_mul_ps(wv[4 * q + 1], yv),
                      _mm256_mul_ps(wv[4 * q + 2], yv), _mm256_mul_ps(wv[4 * q + 3], yv));
        }
    }
    UNROLL for (int q = 0; q < NQ; q++)
    {
        UNROLL for (int t = 0; t < NT; t++)
        {
            double s[4];
            _mm256_storeu_pd(s, acc[q][t]);
            const float *yv = (const float *)(a + (size_t)t * as);
            for (int r = 0; r < 4; r++) {
                const uint8_t *row = w + (size_t)(4 * q + r) * ws;
                for (int64_t i = n8; i < n; i++)
                    s[r] += (double)(wload1(row, i, KIND) * yv[i]);
                y[t * ys + 4 * q + r] = (float)s[r];
            }
        }
    }
}

#define f32_impl(...)  flt_impl(__VA_ARGS__, 0)
#define f16_impl(...)  flt_impl(__VA_ARGS__, 1)
#define bf16_impl(...) flt_impl(__VA_ARGS__, 2)

DEFINE_TILE(f32_tile, f32_impl, FLT_R, FLT_T, FLT_R_GEMV)
DEFINE_TILE(f16_tile, f16_impl, FLT_R, FLT_T, FLT_R_GEMV)
DEFINE_TILE(bf16_tile, bf16_impl, FLT_R, FLT_T, FLT_R_GEMV)

static void f32_vec_dot(int64_t n, float *s, const void *w, const void *a)
{
    f32_impl(n, w, 0, a, 0, s, 0, NULL, 1, 1);
}

static void f16_vec_dot(int64_t n, float *s, const void *w, const void *a)
{
    f16_impl(n, w, 0, a, 0, s, 0, NULL, 1, 1);
}

static void bf16_vec_dot(int64_t n, float *s, const void *w, const void *a)
{
    bf16_impl(n, w, 0, a, 0, s, 0, NULL, 1, 1);
}

#endif
