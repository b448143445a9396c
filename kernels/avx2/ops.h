/* ops.h — SIMD versions of the operations around the matmuls (ref: kernels/ref/ops.c): RMS
 * norm, rotary embedding, softmax, the SiLU-gated product, attention scores (kv_dot) and the
 * weighted sum of value rows (kv_mix), plus F16 conversions. Compiled once per variant (see
 * simd.h); included only by kernels/avx2/avx2.c and kernels/avx512/avx512.c.
 *
 * Each function performs the reference's operations in the reference's order, one vector lane
 * per reference lane: the reference was written as lane arrays standing for the registers of
 * llama.cpp's AVX-512 build, so the vector form is the natural one. Where the reference adds
 * in a strictly sequential order (RMS norm's sum of squares in double, softmax's sum of block
 * sums), that chain stays sequential here and only the work around it is vectorised.
 *
 * exp: the reference's exp_lane() evaluates llama.cpp's vector polynomial and scales by 2^n
 * with one rounding (ldexpf). With AVX-512, vscalefps is that operation. With AVX2 the scaling
 * is a multiply by 2^n, exact whenever 2^n and the result are normal floats (-125 <= n <= 127);
 * a block with a lane outside that range (results below 2^-125 or near overflow: rare in
 * softmax and SiLU) is redone by the scalar copy of exp_lane() below.
 */
#ifndef ELM_SIMD_OPS_H
#define ELM_SIMD_OPS_H

#include <math.h>

#include "kernels/avx2/simd.h"

/* ---- exp as the reference computes it -------------------------------------------------------- */

/* A copy of ref/ops.c's exp_lane(), for the lanes the vector code leaves to it. */
static float exp_lane_scalar(float x)
{
    const float shifter = 0x1.8p23f;
    const float z = fmaf(x, 0x1.715476p+0f, shifter);
    const float n = z - shifter;
    if (!(fabsf(n) <= 192.0f))
        return n > 0.0f ? INFINITY : 0.0f;
    const float b = fmaf(-n, 0x1.7f7d1cp-20f, fmaf(-n, 0x1.62e4p-1f, x));
    const float u = b * b;
    const float j = fmaf(
        fmaf(fmaf(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u, fmaf(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)),
        u, fmaf(0x1.ffffecp-1f, b, 1.0f));
    return ldexpf(j, (int)n);
}

/* j * 2^n for integral n, with |n| <= 192; sets *slow when a lane needs exp_lane_scalar */
#ifdef ELM_SIMD_VNNI
ALWAYS_INLINE __m256 scale_pow2(__m256 j, __m256 n, bool *slow)
{
    (void)slow;
    return _mm256_scalef_ps(j, n);
}
#else
ALWAYS_INLINE __m256 scale_pow2(__m256 j, __m256 n, bool *slow)
{
    const __m256 in = _mm256_and_ps(_mm256_cmp_ps(n, _mm256_set1_ps(-125.0f), _CMP_GE_OQ),
                                    _mm256_cmp_ps(n, _mm256_set1_ps(127.0f), _CMP_LE_OQ));
    *slow |= _mm256_movemask_ps(in) != 0xff;
    /* 2^n built from its exponent bits; lanes out of range are redone by the caller */
    const __m256i e =
        _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(j, _mm256_castsi256_ps(e));
}
#endif

/* exp_lane() of eight lanes. Lanes whose |n| > 192 (including x = -inf) give 0 or +inf as the
 * reference does; *slow is set when some other lane must be recomputed by exp_lane_scalar. */
ALWAYS_INLINE __m256 exp8(__m256 x, bool *slow)
{
    const __m256 shifter = _mm256_set1_ps(0x1.8p23f);
    const __m256 z = _mm256_fmadd_ps(x, _mm256_set1_ps(0x1.715476p+0f), shifter);
    const __m256 n = _mm256_sub_ps(z, shifter);
    const __m256 nn = _mm256_sub_ps(_mm256_setzero_ps(), n);
    const __m256 b = _mm256_fmadd_ps(nn, _mm256_set1_ps(0x1.7f7d1cp-20f),
                                     _mm256_fmadd_ps(nn, _mm256_set1_ps(0x1.62e4p-1f), x));
    const __m256 u = _mm256_mul_ps(b, b);
    const __m256 p = _mm256_fmadd_ps(
        _mm256_fmadd_ps(
            _mm256_fmadd_ps(_mm256_set1_ps(0x1.0e4020p-7f), b, _mm256_set1_ps(0x1.573e2ep-5f)), u,
            _mm256_fmadd_ps(_mm256_set1_ps(0x1.555e66p-3f), b, _mm256_set1_ps(0x1.fffdb6p-2f))),
        u, _mm256_fmadd_ps(_mm256_set1_ps(0x1.ffffecp-1f), b, _mm256_set1_ps(1.0f)));
    /* |n| <= 192 (false for NaN and for n = -inf): the polynomial; else 0 or +inf */
    const __m256 absn = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), n);
    const __m256 ok = _mm256_cmp_ps(absn, _mm256_set1_ps(192.0f), _CMP_LE_OQ);
    const __m256 big =
        _mm256_and_ps(_mm256_cmp_ps(n, _mm256_setzero_ps(), _CMP_GT_OQ), _mm256_set1_ps(INFINITY));
    /* n is zeroed in the other lanes, so that only lanes of the polynomial's range can ask for
     * the scalar path */
    const __m256 r = scale_pow2(p, _mm256_and_ps(ok, n), slow);
    return _mm256_blendv_ps(big, r, ok);
}

/* e[0..16) = exp_lane(x[i] - mx) as the reference's softmax block computes it */
ALWAYS_INLINE void exp16_shifted(const float *x, float mx, __m256 *lo, __m256 *hi)
{
    bool slow = false;
    const __m256 m = _mm256_set1_ps(mx);
    *lo = exp8(_mm256_sub_ps(_mm256_loadu_ps(x), m), &slow);
    *hi = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + 8), m), &slow);
    if (slow) {
        float e[16];
        for (int l = 0; l < 16; l++)
            e[l] = exp_lane_scalar(x[l] - mx);
        *lo = _mm256_loadu_ps(e);
        *hi = _mm256_loadu_ps(e + 8);
    }
}

/* ---- softmax --------------------------------------------------------------------------------- */

static void simd_softmax(float *x, int64_t n)
{
    __m256 vm = _mm256_set1_ps(-INFINITY);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        vm = _mm256_max_ps(vm, _mm256_loadu_ps(x + i));
    float mx = -INFINITY;
    float lanes[8];
    _mm256_storeu_ps(lanes, vm);
    for (int l = 0; l < 8; l++)
        mx = fmaxf(mx, lanes[l]);
    for (; i < n; i++)
        mx = fmaxf(mx, x[i]);
    /* blocks of 16 folded as a register, block sums added in double in order; a short last
     * block is padded with -inf, whose exp is 0 and changes no sum */
    double sum = 0.0;
    for (i = 0; i < n; i += 16) {
        float buf[16];
        float *p = x + i;
        if (n - i < 16) {
            for (int l = 0; l < 16; l++)
                buf[l] = i + l < n ? x[i + l] : -INFINITY;
            p = buf;
        }
        __m256 lo, hi;
        exp16_shifted(p, mx, &lo, &hi);
        _mm256_storeu_ps(p, lo);
        _mm256_storeu_ps(p + 8, hi);
        if (p == buf)
            memcpy(x + i, buf, (size_t)(n - i) * sizeof *x);
        sum += (double)hsum16_ps(lo, hi);
    }
    const __m256 inv = _mm256_set1_ps((float)(1.0 / sum));
    for (i = 0; i + 8 <= n; i += 8)
        _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), inv));
    for (; i < n; i++)
        x[i] *= _mm256_cvtss_f32(inv);
}

/* ---- SiLU-gated product ---------------------------------------------------------------------- */

static void simd_silu_mul(float *g, const float *u, int64_t n)
{
    const int64_t nv = n - n % 16;
    const __m256 one = _mm256_set1_ps(1.0f);
    for (int64_t i = 0; i < nv; i += 16) {
        /* exp(0 - g), 16 lanes, then g / (1 + e) * u: a division and a product, as the ref */
        float neg[16];
        const __m256 g0 = _mm256_loadu_ps(g + i), g1 = _mm256_loadu_ps(g + i + 8);
        _mm256_storeu_ps(neg, _mm256_sub_ps(_mm256_setzero_ps(), g0));
        _mm256_storeu_ps(neg + 8, _mm256_sub_ps(_mm256_setzero_ps(), g1));
        __m256 e0, e1;
        exp16_shifted(neg, 0.0f, &e0, &e1); /* x - 0 is x, also for x = -0 */
        _mm256_storeu_ps(g + i, _mm256_mul_ps(_mm256_div_ps(g0, _mm256_add_ps(one, e0)),
                                              _mm256_loadu_ps(u + i)));
        _mm256_storeu_ps(g + i + 8, _mm256_mul_ps(_mm256_div_ps(g1, _mm256_add_ps(one, e1)),
                                                  _mm256_loadu_ps(u + i + 8)));
    }
    for (int64_t i = nv; i < n; i++) /* the reference's tail: libm expf */
        g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

/* ---- RMS norm -------------------------------------------------------------------------------- */

static void simd_rmsnorm(float *y, const float *x, const float *g, int64_t n, float eps)
{
    /* the squares are rounded in float, eight at a time; their sum in double stays in order */
    double ss = 0.0;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const __m256 v = _mm256_loadu_ps(x + i);
        const __m256 sq = _mm256_mul_ps(v, v);
        const __m256d a = _mm256_cvtps_pd(_mm256_castps256_ps128(sq));
        const __m256d b = _mm256_cvtps_pd(_mm256_extractf128_ps(sq, 1));
        double d[8];
        _mm256_storeu_pd(d, a);
        _mm256_storeu_pd(d + 4, b);
        for (int l = 0; l < 8; l++)
            ss += d[l];
    }
    for (; i < n; i++)
        ss += (double)(x[i] * x[i]);
    const float mean = (float)(ss / (double)n);
    const float scale = 1.0f / sqrtf(mean + eps);
    const __m256 vs = _mm256_set1_ps(scale);
    for (i = 0; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), vs),
                                              _mm256_loadu_ps(g + i)));
    for (; i < n; i++)
        y[i] = (x[i] * scale) * g[i];
}

/* ---- rotary embedding ------------------------------------------------------------------------ */

/* cs holds (cos, sin) pairs: eight pairs -> a vector of cosines and one of sines */
ALWAYS_INLINE void load_cs8(const float *cs, __m256 *c, __m256 *s)
{
    const __m256 a = _mm256_loadu_ps(cs), b = _mm256_loadu_ps(cs + 8);
    /* shuffle_ps works per 128-bit half: [c0 c1 c4 c5 | c2 c3 c6 c7] -> fix with a permute */
    const __m256i order = _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7);
    *c = _mm256_permutevar8x32_ps(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)), order);
    *s = _mm256_permutevar8x32_ps(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1)), order);
}

/* x0 c - x1 s and x0 s + x1 c with the first product of each fused, as the reference */
ALWAYS_INLINE void rotate8(__m256 x0, __m256 x1, __m256 c, __m256 s, __m256 *o0, __m256 *o1)
{
    *o0 = _mm256_fmsub_ps(x0, c, _mm256_mul_ps(x1, s));
    *o1 = _mm256_fmadd_ps(x0, s, _mm256_mul_ps(x1, c));
}

static void simd_rope(float *x, int n_rot, const float *cs, bool neox)
{
    const int half = n_rot / 2;
    int i = 0;
    for (; i + 8 <= half; i += 8) {
        __m256 c, s, o0, o1;
        load_cs8(cs + 2 * i, &c, &s);
        if (neox) {
            rotate8(_mm256_loadu_ps(x + i), _mm256_loadu_ps(x + half + i), c, s, &o0, &o1);
            _mm256_storeu_ps(x + i, o0);
            _mm256_storeu_ps(x + half + i, o1);
        } else {
            __m256 x0, x1;
            load_cs8(x + 2 * i, &x0, &x1); /* the same de-interleave: evens, odds */
            rotate8(x0, x1, c, s, &o0, &o1);
            /* interleave back: [a0 b0 a1 b1 ...] */
            const __m256 lo = _mm256_unpacklo_ps(o0, o1), hi = _mm256_unpackhi_ps(o0, o1);
            _mm256_storeu_ps(x + 2 * i, _mm256_permute2f128_ps(lo, hi, 0x20));
            _mm256_storeu_ps(x + 2 * i + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
        }
    }
    for (; i < half; i++) {
        const int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
        const float c = cs[2 * i], s = cs[2 * i + 1];
        const float x0 = x[a], x1 = x[b];
        x[a] = fmaf(x0, c, -(x1 * s));
        x[b] = fmaf(x0, s, x1 * c);
    }
}

/* ---- F16 conversions ------------------------------------------------------------------------- */

static void f16_to_float(const void *src, float *dst, int64_t n)
{
    const uint16_t *h = src;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(h + i))));
    for (; i < n; i++)
        dst[i] = h2f(h[i]);
}

static void f16_from_float(const float *src, void *dst, int64_t n)
{
    uint16_t *h = dst;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128((__m128i *)(h + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; i++)
        h[i] = f2h(src[i]);
}

/* ---- attention: scores ----------------------------------------------------------------------- */

/* F32: four 16-lane accumulators per 64 elements (each as two 8-lane halves), folded
 * (a0 + a2) + (a1 + a3) then as a register; the tail past the last 64 as the reference adds
 * it (rounded products in order, the last n % 8 fused). */
static void simd_kv_dot_f32(int64_t n, float *s, const void *k, const void *q)
{
    const float *x = k, *y = q;
    __m256 acc[8];
    for (int j = 0; j < 8; j++)
        acc[j] = _mm256_setzero_ps();
    const int64_t np = n - n % 64;
    for (int64_t i = 0; i < np; i += 64)
        UNROLL for (int j = 0; j < 8; j++) acc[j] =
            _mm256_fmadd_ps(_mm256_loadu_ps(x + i + 8 * j), _mm256_loadu_ps(y + i + 8 * j), acc[j]);
    /* accumulator j's lanes 0..7 are acc[2j], lanes 8..15 acc[2j+1] */
    const __m256 lo = _mm256_add_ps(_mm256_add_ps(acc[0], acc[4]), _mm256_add_ps(acc[2], acc[6]));
    const __m256 hi = _mm256_add_ps(_mm256_add_ps(acc[1], acc[5]), _mm256_add_ps(acc[3], acc[7]));
    float sum = hsum16_ps(lo, hi);
    const int64_t nf = n - n % 8;
    int64_t i = np;
    for (; i < nf; i++)
        sum += x[i] * y[i];
    for (; i < n; i++)
        sum = fmaf(x[i], y[i], sum);
    *s = sum;
}

/* F16: 16 lanes, lane l a fused chain over elements l, l + 16, ...; a partial last block only
 * advances its first lanes (scalar: a padded lane could turn a -0 into +0). */
/* The 16 lanes over the whole blocks of 16 (i0 returns where the partial block starts). With
 * AVX-512 a block is one 512-bit conversion and one fma per operand. */
#ifdef ELM_SIMD_VNNI
ALWAYS_INLINE void f16_lanes(const uint16_t *x, const uint16_t *y, int64_t n, __m256 *lo,
                             __m256 *hi, int64_t *i0)
{
    __m512 acc = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        acc = _mm512_fmadd_ps(_mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(x + i))),
                              _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(y + i))), acc);
    *lo = _mm512_castps512_ps256(acc);
    *hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc), 1));
    *i0 = i;
}
#else
ALWAYS_INLINE void f16_lanes(const uint16_t *x, const uint16_t *y, int64_t n, __m256 *lo,
                             __m256 *hi, int64_t *i0)
{
    __m256 a = _mm256_setzero_ps(), b = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256i u = _mm256_loadu_si256((const __m256i *)(x + i));
        const __m256i v = _mm256_loadu_si256((const __m256i *)(y + i));
        a = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm256_castsi256_si128(u)),
                            _mm256_cvtph_ps(_mm256_castsi256_si128(v)), a);
        b = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm256_extracti128_si256(u, 1)),
                            _mm256_cvtph_ps(_mm256_extracti128_si256(v, 1)), b);
    }
    *lo = a;
    *hi = b;
    *i0 = i;
}
#endif

static void simd_kv_dot_f16(int64_t n, float *s, const void *k, const void *q)
{
    const uint16_t *x = k, *y = q;
    __m256 lo, hi;
    int64_t i;
    f16_lanes(x, y, n, &lo, &hi, &i);
    if (i < n) {
        float lane[16];
        _mm256_storeu_ps(lane, lo);
        _mm256_storeu_ps(lane + 8, hi);
        for (int l = 0; i + l < n; l++)
            lane[l] = fmaf(h2f(x[i + l]), h2f(y[i + l]), lane[l]);
        lo = _mm256_loadu_ps(lane);
        hi = _mm256_loadu_ps(lane + 8);
    }
    *s = hsum16_ps(lo, hi);
}

/* ---- attention: scores of several positions ------------------------------------------------ */

/* kv_dots for an F16 cache (kernels.h): the scores of whole groups of positions at once, with
 * the query converted once and one accumulator per position. elm_hsum16 is a halving tree
 * (lane l + l+8, then l + l+4, then l + l+2, then the last pair); the fold below runs that tree
 * for every position of a group together, each add pairing the same two lanes of one position
 * as kv_dot does, so a score keeps kv_dot's bits. The tree leaves slot c + G/4 * r in lane
 * 4c + r, so slot j accumulates position kvd_pos(j) and the result lands in position order.
 * Positions past the last whole group, and rows whose length is not a multiple of 16 (kv_dot
 * then has a partial block) or above KVD_MAX, take kv_dot one by one. */
#define KVD_MAX 512 /* longest head converted on the stack */

#ifdef ELM_SIMD_VNNI
#define KVD_GROUP 16
static inline int kvd_pos(int j)
{
    return 4 * (j % 4) + j / 4;
}

/* Sixteen elements from i of a row: F16, or F32 when the rows were converted beforehand
 * (kv_dots_group, kv_group.h; the conversion is exact, so the products are the same). */
ALWAYS_INLINE __m512 kvd_load16(const char *row, int64_t i, const bool f32)
{
    if (f32)
        return _mm512_loadu_ps((const float *)row + i);
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(row + 2 * i)));
}

ALWAYS_INLINE void kvd_block(int64_t n, float *s, const char *k, int64_t k_stride, const float *qf,
                             const bool f32)
{
    __m512 A[16];
    UNROLL for (int j = 0; j < 16; j++) A[j] = _mm512_setzero_ps();
    for (int64_t i = 0; i < n; i += 16) {
        const __m512 q = _mm512_loadu_ps(qf + i);
        UNROLL for (int j = 0; j < 16; j++) A[j] =
            _mm512_fmadd_ps(kvd_load16(k + kvd_pos(j) * k_stride, i, f32), q, A[j]);
    }
    __m512 X[8], Y[4], Z[2];
    UNROLL for (int j = 0; j < 8; j++) /* lane l + lane l+8: [h(2j) | h(2j+1)] */
        X[j] = _mm512_add_ps(_mm512_shuffle_f32x4(A[2 * j], A[2 * j + 1], 0x44),
                             _mm512_shuffle_f32x4(A[2 * j], A[2 * j + 1], 0xEE));
    UNROLL for (int j = 0; j < 4; j++) /* l + l+4: four positions' 4 lanes */
        Y[j] = _mm512_add_ps(_mm512_shuffle_f32x4(X[2 * j], X[2 * j + 1], 0x88),
                             _mm512_shuffle_f32x4(X[2 * j], X[2 * j + 1], 0xDD));
    UNROLL for (int j = 0; j < 2; j++) /* l + l+2 */
        Z[j] = _mm512_add_ps(_mm512_shuffle_ps(Y[2 * j], Y[2 * j + 1], 0x44),
                             _mm512_shuffle_ps(Y[2 * j], Y[2 * j + 1], 0xEE));
    _mm512_storeu_ps(
        s, _mm512_add_ps(_mm512_shuffle_ps(Z[0], Z[1], 0x88), _mm512_shuffle_ps(Z[0], Z[1], 0xDD)));
}
#else
#define KVD_GROUP 8
static inline int kvd_pos(int j)
{
    return 4 * (j % 2) + j / 2;
}

/* With 16 registers the low and high 8 lanes of the positions' accumulators are summed in two
 * walks over the row (the first add of elm_hsum16 is lo + hi). */
ALWAYS_INLINE __m256 kvd_load8(const char *row, int64_t i, const bool f32)
{
    if (f32)
        return _mm256_loadu_ps((const float *)row + i);
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(row + 2 * i)));
}

ALWAYS_INLINE void kvd_block(int64_t n, float *s, const char *k, int64_t k_stride, const float *qf,
                             const bool f32)
{
    __m256 L[8], H[8];
    UNROLL for (int j = 0; j < 8; j++) L[j] = H[j] = _mm256_setzero_ps();
    for (int64_t i = 0; i < n; i += 16) {
        const __m256 q = _mm256_loadu_ps(qf + i);
        UNROLL for (int j = 0; j < 8; j++) L[j] =
            _mm256_fmadd_ps(kvd_load8(k + kvd_pos(j) * k_stride, i, f32), q, L[j]);
    }
    for (int64_t i = 8; i < n; i += 16) {
        const __m256 q = _mm256_loadu_ps(qf + i);
        UNROLL for (int j = 0; j < 8; j++) H[j] =
            _mm256_fmadd_ps(kvd_load8(k + kvd_pos(j) * k_stride, i, f32), q, H[j]);
    }
    __m256 Y[4], Z[2];
    UNROLL for (int j = 0; j < 8; j++) L[j] = _mm256_add_ps(L[j], H[j]);
    UNROLL for (int j = 0; j < 4; j++) /* l + l+4: [r(2j) | r(2j+1)] */
        Y[j] = _mm256_add_ps(_mm256_permute2f128_ps(L[2 * j], L[2 * j + 1], 0x20),
                             _mm256_permute2f128_ps(L[2 * j], L[2 * j + 1], 0x31));
    UNROLL for (int j = 0; j < 2; j++) /* l + l+2 */
        Z[j] = _mm256_add_ps(_mm256_shuffle_ps(Y[2 * j], Y[2 * j + 1], 0x44),
                             _mm256_shuffle_ps(Y[2 * j], Y[2 * j + 1], 0xEE));
    _mm256_storeu_ps(
        s, _mm256_add_ps(_mm256_shuffle_ps(Z[0], Z[1], 0x88), _mm256_shuffle_ps(Z[0], Z[1], 0xDD)));
}
#endif

/* the scores of KVD_GROUP positions of an F16 cache */
static void kv_dots_group(int64_t n, float *s, const char *k, int64_t k_stride, const float *qf)
{
    kvd_block(n, s, k, k_stride, qf, false);
}

static void simd_kv_dots_f16(int64_t n, int64_t np, float *s, const void *k, int64_t k_stride,
                             const void *q)
{
    const char *kb = k;
    int64_t i = 0;
    if (n % 16 == 0 && n <= KVD_MAX && np >= KVD_GROUP) {
        float qf[KVD_MAX];
        f16_to_float(q, qf, n);
        for (; i + KVD_GROUP <= np; i += KVD_GROUP)
            kv_dots_group(n, s + i, kb + i * k_stride, k_stride, qf);
    }
    for (; i < np; i++)
        simd_kv_dot_f16(n, s + i, kb + i * k_stride, q);
}

/* ---- attention: weighted sum of value rows --------------------------------------------------- */

/* The reference keeps, for each output d, 16 lanes over the positions (lane p % 16 a fused
 * chain) in the caller's buffer lanes[16][hd]. Here a vector spans eight outputs d..d+7 and
 * there is one vector per lane: position p advances vector p % 16. With 32 registers all 16
 * fit at once; with 16 registers the positions are walked twice, lanes 0..7 then 8..15. The
 * lanes are loaded from the buffer and stored back once per call and block of outputs, so a
 * paged cache pays that per page. */
#ifdef ELM_SIMD_VNNI
#define MIX_LANES 16
#else
#define MIX_LANES 8
#endif
#define MIX_CHUNK 256 /* positions whose weights are prepared at once (a multiple of 16) */

enum mix_kind { MIX_F32, MIX_F16, MIX_Q8_0 };

/* Eight values d..d+7 of a cache row (d a multiple of 8). Q8_0: d * q is exact in float, so
 * this equals the reference's per-element dequantization. */
ALWAYS_INLINE __m256 mix_load(const char *row, int64_t d, const enum mix_kind kind)
{
    if (kind == MIX_F16)
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)row + d)));
    if (kind == MIX_Q8_0) {
        const char *b = row + (d / 32) * 34;
        const __m128i q = _mm_loadl_epi64((const __m128i *)(b + 2 + d % 32));
        return _mm256_mul_ps(_mm256_set1_ps(h2f(load_u16(b))),
                             _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)));
    }
    return _mm256_loadu_ps((const float *)row + d);
}

ALWAYS_INLINE float mix_scalar(const char *row, int64_t d, const enum mix_kind kind)
{
    if (kind == MIX_F16)
        return h2f(load_u16(row + 2 * d));
    if (kind == MIX_Q8_0) {
        const char *b = row + (d / 32) * 34;
        return h2f(load_u16(b)) * (float)(int8_t)b[2 + d % 32];
    }
    float x;
    memcpy(&x, row + 4 * d, sizeof x);
    return x;
}

/* With AVX-512 the outputs are taken 16 at a time first: one 512-bit vector per lane spans
 * outputs d..d+15, so a position costs one conversion, one broadcast and one fma per 16 outputs
 * instead of per 8 (each output's lanes are the same fused chains). Returns the first output
 * left to the 8-wide loop. */
#ifdef ELM_SIMD_VNNI
ALWAYS_INLINE __m512 mix_load16(const char *row, int64_t d, const enum mix_kind kind)
{
    if (kind == MIX_F16)
        return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)row + d)));
    if (kind == MIX_Q8_0) { /* d % 16 == 0: the 16 values lie in one block */
        const char *b = row + (d / 32) * 34;
        const __m128i q = _mm_loadu_si128((const __m128i *)(b + 2 + d % 32));
        return _mm512_mul_ps(_mm512_set1_ps(h2f(load_u16(b))),
                             _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(q)));
    }
    return _mm512_loadu_ps((const float *)row + d);
}

ALWAYS_INLINE int64_t mix_wide(int64_t m, int64_t hd, float *lanes, const float *wr, const char *vb,
                               int64_t v_stride, const enum mix_kind kind)
{
    int64_t d = 0;
    for (; d + 16 <= hd; d += 16) {
        __m512 B[16];
        UNROLL for (int l = 0; l < 16; l++) B[l] = _mm512_loadu_ps(lanes + l * hd + d);
        int64_t i = 0;
        for (; i + 16 <= m; i += 16)
            UNROLL for (int l = 0; l < 16; l++) B[l] = _mm512_fmadd_ps(
                mix_load16(vb + (i + l) * v_stride, d, kind), _mm512_set1_ps(wr[i + l]), B[l]);
        UNROLL for (int l = 0; l < 16; l++) if (i + l < m) B[l] = _mm512_fmadd_ps(
            mix_load16(vb + (i + l) * v_stride, d, kind), _mm512_set1_ps(wr[i + l]), B[l]);
        UNROLL for (int l = 0; l < 16; l++) _mm512_storeu_ps(lanes + l * hd + d, B[l]);
    }
    return d;
}
#else
ALWAYS_INLINE int64_t mix_wide(int64_t m, int64_t hd, float *lanes, const float *wr, const char *vb,
                               int64_t v_stride, const enum mix_kind kind)
{
    (void)m, (void)hd, (void)lanes, (void)wr, (void)vb, (void)v_stride, (void)kind;
    return 0;
}
#endif

/* wr[0..m) = the weights w as the products take them: rounded to half for an F16 cache */
ALWAYS_INLINE void mix_weights(float *wr, const float *w, int64_t m, const enum mix_kind kind)
{
    int64_t i = 0;
    if (kind == MIX_F16) {
        for (; i + 8 <= m; i += 8)
            _mm256_storeu_ps(wr + i, _mm256_cvtph_ps(_mm256_cvtps_ph(_mm256_loadu_ps(w + i),
                                                                     _MM_FROUND_TO_NEAREST_INT)));
        for (; i < m; i++)
            wr[i] = h2f(f2h(w[i]));
    } else {
        memcpy(wr, w, (size_t)m * sizeof *wr);
    }
}

ALWAYS_INLINE void kv_mix_impl(int64_t n, int64_t hd, float *lanes, const float *w, const void *v,
                               int64_t v_stride, const enum mix_kind kind)
{
    float wr[MIX_CHUNK];
    for (int64_t p0 = 0; p0 < n; p0 += MIX_CHUNK) {
        const int64_t m = n - p0 < MIX_CHUNK ? n - p0 : MIX_CHUNK;
        mix_weights(wr, w + p0, m, kind);
        int64_t i;
        const char *vb = (const char *)v + p0 * v_stride;
        int64_t d = mix_wide(m, hd, lanes, wr, vb, v_stride, kind);
        for (; d + 8 <= hd; d += 8) {
            for (int pass = 0; pass < 16 / MIX_LANES; pass++) {
                float *lp = lanes + (int64_t)pass * MIX_LANES * hd + d;
                __m256 B[MIX_LANES];
                UNROLL for (int l = 0; l < MIX_LANES; l++) B[l] = _mm256_loadu_ps(lp + l * hd);
                i = (int64_t)pass * MIX_LANES;
                for (; i + 16 <= m; i += 16)
                    UNROLL for (int l = 0; l < MIX_LANES; l++) B[l] =
                        _mm256_fmadd_ps(mix_load(vb + (i + l) * v_stride, d, kind),
                                        _mm256_set1_ps(wr[i + l]), B[l]);
                /* a constant index keeps B in registers (a variable one spilled it) */
                UNROLL for (int l = 0; l < MIX_LANES; l++) if (i + l < m) B[l] = _mm256_fmadd_ps(
                    mix_load(vb + (i + l) * v_stride, d, kind), _mm256_set1_ps(wr[i + l]), B[l]);
                UNROLL for (int l = 0; l < MIX_LANES; l++) _mm256_storeu_ps(lp + l * hd, B[l]);
            }
        }
        for (; d < hd; d++) /* outputs past the last eight: the reference's loop */
            for (i = 0; i < m; i++) {
                float *lane = lanes + (i % 16) * hd + d; /* p0 is a multiple of 16 */
                *lane = fmaf(mix_scalar(vb + i * v_stride, d, kind), wr[i], *lane);
            }
    }
}

static void simd_kv_mix_f32(int64_t n, int64_t hd, float *lanes, const float *w, const void *v,
                            int64_t v_stride)
{
    kv_mix_impl(n, hd, lanes, w, v, v_stride, MIX_F32);
}

static void simd_kv_mix_f16(int64_t n, int64_t hd, float *lanes, const float *w, const void *v,
                            int64_t v_stride)
{
    kv_mix_impl(n, hd, lanes, w, v, v_stride, MIX_F16);
}

static void simd_kv_mix_q8_0(int64_t n, int64_t hd, float *lanes, const float *w, const void *v,
                             int64_t v_stride)
{
    kv_mix_impl(n, hd, lanes, w, v, v_stride, MIX_Q8_0);
}

/* The fold across lanes is elementwise here: h_l = A_l + A_{l+8}, then
 * ((h0+h4) + (h2+h6)) + ((h1+h5) + (h3+h7)), the reference's elm_hsum16. */
static void simd_kv_fold(int64_t hd, const float *lanes, float *out)
{
    int64_t d = 0;
    for (; d + 8 <= hd; d += 8) {
        __m256 h[8];
        for (int l = 0; l < 8; l++)
            h[l] = _mm256_add_ps(_mm256_loadu_ps(lanes + l * hd + d),
                                 _mm256_loadu_ps(lanes + (l + 8) * hd + d));
        const __m256 r0 = _mm256_add_ps(h[0], h[4]), r1 = _mm256_add_ps(h[1], h[5]);
        const __m256 r2 = _mm256_add_ps(h[2], h[6]), r3 = _mm256_add_ps(h[3], h[7]);
        _mm256_storeu_ps(out + d, _mm256_add_ps(_mm256_add_ps(r0, r2), _mm256_add_ps(r1, r3)));
    }
    for (; d < hd; d++) {
        float h8[8];
        for (int l = 0; l < 8; l++)
            h8[l] = lanes[l * hd + d] + lanes[(l + 8) * hd + d];
        const float r0 = h8[0] + h8[4], r1 = h8[1] + h8[5], r2 = h8[2] + h8[6], r3 = h8[3] + h8[7];
        out[d] = (r0 + r2) + (r1 + r3);
    }
}

#endif
