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

static void iq4_nl_vec_dot(int64_t n, float *s, const void *w, const void *a)
{
    const struct elm_block_iq4_nl *x = w;
    const struct elm_block_q8_0 *y = a;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / ELM_QK; i++) {
        const __m256i lanes = iq4_lanes(iq4_values32(x[i].qs), y[i].qs);
        const __m256 d = _mm256_set1_ps(h2f(x[i].d) * h2f(y[i].d));
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(lanes), acc);
    }
    *s = hsum8_ps(acc);
}

static void iq4_xs_vec_dot(int64_t n, float *s, const void *w, const void *a)
{
    const struct elm_block_iq4_xs *x = w;
    const struct elm_block_q8_k *y = a;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < n / ELM_QK_K; i++) {
        __m256i sum = _mm256_setzero_si256();
        for (int b = 0; b < 8; b++) {
            const int ls = iq4_xs_ls(&x[i], b);
            const __m256i lanes = iq4_lanes(iq4_values32(x[i].qs + 16 * b), y[i].qs + 32 * b);
            sum = _mm256_add_epi32(sum, _mm256_mullo_epi32(lanes, _mm256_set1_epi32(ls)));
        }
        const __m256 d = _mm256_set1_ps(h2f(x[i].d) * y[i].d);
        acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(sum), acc);
    }
    *s = hsum8_ps(acc);
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
