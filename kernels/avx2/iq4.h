/* iq4.h — IQ4_NL x Q8_0 and IQ4_XS x Q8_K dot products and their dequantizers, for the avx2
 * and avx512 variants (the reference and the order of every float operation: ref/iq4.c).
 *
 * The 4-bit indices become int8 table values with one byte shuffle (the 16-entry table fits a
 * 128-bit register). Both operands are then signed, so the products go through the usual sign
 * trick: |w| (unsigned) times sign(w) * a (signed), four at a time into each int32 lane by dot4
 * (vpdpbusd with VNNI, else vpmaddubsw + vpmaddwd, whose int16 pair sums cannot saturate:
 * 2 * 127 * 127 < 32767). Lane l holds elements 4l..4l+3 of each 32-element run, as in the
 * reference; the integer sums are exact, the float steps are the reference's fmaf chain.
 */
#ifndef ELM_AVX2_IQ4_H
#define ELM_AVX2_IQ4_H

#include "kernels/avx2/q_legacy.h"
#include "kernels/avx2/simd.h"
#include "kernels/blocks.h"

static const int8_t iq4_table[16] = ELM_IQ4_VALUES;

/* 16 packed indices -> the 32 table values of a run: low nibbles (elements 0..15), then high. */
ALWAYS_INLINE __m256i iq4_values32(const uint8_t *qs)
{
    const __m128i table = _mm_loadu_si128((const __m128i *)iq4_table);
    const __m128i m4 = _mm_set1_epi8(0x0f);
    const __m128i q = _mm_loadu_si128((const __m128i *)qs);
    const __m128i lo = _mm_shuffle_epi8(table, _mm_and_si128(q, m4));
    const __m128i hi = _mm_shuffle_epi8(table, _mm_and_si128(_mm_srli_epi16(q, 4), m4));
    return _mm256_set_m128i(hi, lo);
}

/* The eight int32 lane sums of a run of 32 table values w times 32 activations a. */
ALWAYS_INLINE __m256i iq4_lanes(__m256i w, const int8_t *a)
{
    const __m256i av = loadu256(a);
    return dot4(_mm256_setzero_si256(), _mm256_sign_epi8(w, w), _mm256_sign_epi8(av, w));
}

/* Sub-block b's 6-bit scale minus its bias (blocks.h). */
ALWAYS_INLINE int iq4_xs_ls(const struct elm_block_iq4_xs *x, int b)
{
    const int lo = (x->scales_l[b / 2] >> (4 * (b % 2))) & 0x0f;
    return (lo | (((x->scales_h >> (2 * b)) & 3) << 4)) - 32;
}

/* The tiles: NR rows x NT tokens, each output the vec_dot's chain (the shapes and plumbing of
 * q_legacy.h). A row's |w| and sign source are made once per block (IQ4_XS: per run) for all
 * tokens; the accumulators are the vec_dot's, so the bits are its bits. */
ALWAYS_INLINE void iq4_nl_impl(TILE_ARGS, const int NR, const int NT)
{
    enum { MR = LEG_R_GEMV > LEG_R ? LEG_R_GEMV : LEG_R };
    __m256 acc[MR][LEG_T];
    UNROLL for (int r = 0; r < NR; r++)
    {
        UNROLL for (int t = 0; t < NT; t++) acc[r][t] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < n / ELM_QK; b++) {
        if (pf)
            prefetch_span(pf + b * NR * sizeof(struct elm_block_iq4_nl),
                          NR * sizeof(struct elm_block_iq4_nl));
        __m256i wv[MR], wa[MR];
        float dw[MR];
        UNROLL for (int r = 0; r < NR; r++)
        {
            const struct elm_block_iq4_nl *x = BLK(elm_block_iq4_nl, w, ws, r, b);
            dw[r] = h2f(x->d);
            wv[r] = iq4_values32(x->qs);
            wa[r] = _mm256_sign_epi8(wv[r], wv[r]);
        }
        UNROLL for (int t = 0; t < NT; t++)
        {
            const struct elm_block_q8_0 *v = BLK(elm_block_q8_0, a, as, t, b);
            const float da = h2f(v->d);
            const __m256i av = loadu256(v->qs);
            UNROLL for (int r = 0; r < NR; r++)
            {
                const __m256i lanes =
                    dot4(_mm256_setzero_si256(), wa[r], _mm256_sign_epi8(av, wv[r]));
                acc[r][t] = _mm256_fmadd_ps(_mm256_set1_ps(dw[r] * da), _mm256_cvtepi32_ps(lanes),
                                            acc[r][t]);
            }
        }
    }
    UNROLL for (int r = 0; r < NR; r++)
    {
        UNROLL for (int t = 0; t < NT; t++) y[t * ys + r] = hsum8_ps(acc[r][t]);
    }
}

ALWAYS_INLINE void iq4_xs_impl(TILE_ARGS, const int NR, const int NT)
{
    enum { MR = LEG_R_GEMV > LEG_R ? LEG_R_GEMV : LEG_R };
    __m256 acc[MR][LEG_T];
    UNROLL for (int r = 0; r < NR; r++)
    {
        UNROLL for (int t = 0; t < NT; t++) acc[r][t] = _mm256_setzero_ps();
    }
    for (int64_t i = 0; i < n / ELM_QK_K; i++) {
        if (pf)
            prefetch_span(pf + i * NR * sizeof(struct elm_block_iq4_xs),
                          NR * sizeof(struct elm_block_iq4_xs));
        __m256i sum[MR][LEG_T];
        UNROLL for (int r = 0; r < NR; r++)
        {
            UNROLL for (int t = 0; t < NT; t++) sum[r][t] = _mm256_setzero_si256();
        }
        for (int b = 0; b < 8; b++) {
            __m256i wv[MR], wa[MR], ls[MR];
            UNROLL for (int r = 0; r < NR; r++)
            {
                const struct elm_block_iq4_xs *x = BLK(elm_block_iq4_xs, w, ws, r, i);
                ls[r] = _mm256_set1_epi16((short)iq4_xs_ls(x, b));
                wv[r] = iq4_values32(x->qs + 16 * b);
                wa[r] = _mm256_sign_epi8(wv[r], wv[r]);
            }
            UNROLL for (int t = 0; t < NT; t++)
            {
                const __m256i av = loadu256(BLK(elm_block_q8_k, a, as, t, i)->qs + 32 * b);
                UNROLL for (int r = 0; r < NR; r++)
                {
                    /* the pair sums times (ls, ls): ls times the lane's four products, with
                     * no int32 multiply (vpmulld is two uops) */
                    sum[r][t] = madd_acc(
                        sum[r][t], _mm256_maddubs_epi16(wa[r], _mm256_sign_epi8(av, wv[r])), ls[r]);
                    KEEP_CHAIN(sum[r][t]);
                }
            }
        }
        UNROLL for (int r = 0; r < NR; r++)
        {
            const float dw = h2f(BLK(elm_block_iq4_xs, w, ws, r, i)->d);
            UNROLL for (int t = 0; t < NT; t++)
            {
                const __m256 d = _mm256_set1_ps(dw * BLK(elm_block_q8_k, a, as, t, i)->d);
                acc[r][t] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sum[r][t]), acc[r][t]);
            }
        }
    }
    UNROLL for (int r = 0; r < NR; r++)
    {
        UNROLL for (int t = 0; t < NT; t++) y[t * ys + r] = hsum8_ps(acc[r][t]);
    }
}

DEFINE_TILE(iq4_nl_tile, iq4_nl_impl, LEG_R, LEG_T, LEG_R_GEMV)
DEFINE_TILE(iq4_xs_tile, iq4_xs_impl, LEG_R, LEG_T, LEG_R_GEMV)

static void iq4_nl_vec_dot(int64_t n, float *s, const void *w, const void *a)
{
    iq4_nl_impl(n, w, 0, a, 0, s, 0, NULL, 1, 1);
}

static void iq4_xs_vec_dot(int64_t n, float *s, const void *w, const void *a)
{
    iq4_xs_impl(n, w, 0, a, 0, s, 0, NULL, 1, 1);
}

/* y = d * value: one exact product per element, as the reference. */
ALWAYS_INLINE void iq4_store32(float *y, float d, const uint8_t *qs)
{
    const __m256i v = iq4_values32(qs);
    const __m256 dv = _mm256_set1_ps(d);
    for (int h = 0; h < 4; h++) {
        const __m128i part = h < 2 ? _mm256_castsi256_si128(v) : _mm256_extracti128_si256(v, 1);
        const __m128i bytes = (h % 2) ? _mm_srli_si128(part, 8) : part;
        const __m256 vf = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(bytes));
        _mm256_storeu_ps(y + 8 * h, _mm256_mul_ps(dv, vf));
    }
}

static void iq4_nl_to_float(const void *src, float *dst, int64_t n)
{
    const struct elm_block_iq4_nl *x = src;
    for (int64_t i = 0; i < n / ELM_QK; i++)
        iq4_store32(dst + i * ELM_QK, h2f(x[i].d), x[i].qs);
}

static void iq4_xs_to_float(const void *src, float *dst, int64_t n)
{
    const struct elm_block_iq4_xs *x = src;
    for (int64_t i = 0; i < n / ELM_QK_K; i++) {
        const float d = h2f(x[i].d);
        for (int b = 0; b < 8; b++) {
            iq4_store32(dst + i * ELM_QK_K + 32 * b, d * iq4_xs_ls(&x[i], b), x[i].qs + 16 * b);
        }
    }
}

#endif
