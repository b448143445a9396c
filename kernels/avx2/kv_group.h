/* kv_group.h — attention over the cache for the query heads of a GQA group at once
 * (kernels.h kv_dots_group, kv_mix_group). Compiled once per variant after ops.h, whose
 * kv_dots and kv_mix they must match bit for bit; included only by kernels/avx2/avx2.c and
 * kernels/avx512/avx512.c. The heads of a group read the same K and V rows, so each row is
 * converted from F16 (or dequantized from Q8_0) once for all of them instead of once per head;
 * the conversion is exact, so every product and every sum is the one kv_dot or kv_mix makes.
 *
 * Scores: KVD_GROUP rows at a time are converted to F32 and ops.h's kvd_block runs on them for
 * each head (heads in blocks of KVDG_HEADS, whose queries are converted once).
 *
 * Weighted sum: per position and 8 outputs (16 with AVX-512) one conversion, then a broadcast
 * and an fma per head; AVX-512 takes two blocks of 16 outputs at once where the head has them
 * (one broadcast for both, and twice the accumulator chains that hid the fma latency). Each
 * head keeps kv_mix's chains: lane l of output d advances through positions l, l + 16, ... in
 * order, so the loops run lane by lane with the heads' accumulators of one lane and output block
 * in registers (heads in blocks of 8, 4 and 2: the registers an AVX2 build has), and one lane's
 * rows stay in L1 while its output blocks are walked. The lanes are loaded and stored once per
 * MIX_CHUNK positions rather than once per page as kv_mix per page does. A single head left over
 * takes kv_mix page by page.
 */
#ifndef ELM_SIMD_KV_GROUP_H
#define ELM_SIMD_KV_GROUP_H

#include "kernels/avx2/ops.h"

/* ---- scores ---------------------------------------------------------------------------------- */

#define KVDG_HEADS 8 /* queries converted at once */

static void simd_kv_dots_group_f16(int64_t g, int64_t n, int64_t np, float *s, int64_t s_stride,
                                   const void *k, int64_t k_stride, const void *q, int64_t q_stride)
{
    const char *kb = k, *qb = q;
    if (g < 2 || n % 16 || n > KVD_MAX || np < KVD_GROUP) { /* nothing shared: kv_dots per head */
        for (int64_t j = 0; j < g; j++)
            simd_kv_dots_f16(n, np, s + j * s_stride, k, k_stride, qb + j * q_stride);
        return;
    }
    float qf[KVDG_HEADS * KVD_MAX], kf[KVD_GROUP * KVD_MAX];
    const int64_t nb = np - np % KVD_GROUP; /* positions in whole groups */
    for (int64_t h = 0; h < g; h += KVDG_HEADS) {
        const int64_t gh = g - h < KVDG_HEADS ? g - h : KVDG_HEADS;
        for (int64_t j = 0; j < gh; j++)
            f16_to_float(qb + (h + j) * q_stride, qf + j * n, n);
        for (int64_t i = 0; i < nb; i += KVD_GROUP) {
            /* inline (n % 16 == 0): a call per row of 64 values cost as much as its converts */
            for (int r = 0; r < KVD_GROUP; r++) {
                const char *row = kb + (i + r) * k_stride;
                for (int64_t e = 0; e < n; e += 8)
                    _mm256_storeu_ps(kf + r * n + e, _mm256_cvtph_ps(_mm_loadu_si128(
                                                         (const __m128i *)(row + 2 * e))));
            }
            for (int64_t j = 0; j < gh; j++)
                kvd_block(n, s + (h + j) * s_stride + i, (const char *)kf,
                          n * (int64_t)sizeof(float), qf + j * n, true);
        }
        for (int64_t j = 0; j < gh; j++) /* the positions past the last whole group */
            for (int64_t i = nb; i < np; i++)
                simd_kv_dot_f16(n, s + (h + j) * s_stride + i, kb + i * k_stride,
                                qb + (h + j) * q_stride);
    }
}

/* ---- weighted sum ------------------------------------------------------------------------------
 */

#define MIXG_HEADS 8 /* most heads whose accumulators are registers at once */

/* Lane l of heads 0..G-1 over the positions l, l + 16, ... < m of the chunk: rows[i] is
 * position i's row, wr + j * MIX_CHUNK head j's weights, lanes + j * 16 * hd its lanes. */
ALWAYS_INLINE void mixg_lane(const int G, int64_t m, int l, int64_t hd, float *lanes,
                             const float *wr, const char *const *rows, const enum mix_kind kind)
{
    const int64_t hs = 16 * hd; /* from one head's lanes to the next's */
    float *lp = lanes + l * hd;
    int64_t d = 0;
#ifdef ELM_SIMD_VNNI
    /* two blocks of 16 outputs at once: 2 G accumulator chains in flight instead of G, and one
     * broadcast of a head's weight for both */
    for (; d + 32 <= hd; d += 32) {
        __m512 B[MIXG_HEADS], C[MIXG_HEADS];
        UNROLL for (int j = 0; j < G; j++)
        {
            B[j] = _mm512_loadu_ps(lp + j * hs + d);
            C[j] = _mm512_loadu_ps(lp + j * hs + d + 16);
        }
        for (int64_t i = l; i < m; i += 16) {
            const __m512 x = mix_load16(rows[i], d, kind), y = mix_load16(rows[i], d + 16, kind);
            UNROLL for (int j = 0; j < G; j++)
            {
                const __m512 wv = _mm512_set1_ps(wr[j * MIX_CHUNK + i]);
                B[j] = _mm512_fmadd_ps(x, wv, B[j]);
                C[j] = _mm512_fmadd_ps(y, wv, C[j]);
            }
        }
        UNROLL for (int j = 0; j < G; j++)
        {
            _mm512_storeu_ps(lp + j * hs + d, B[j]);
            _mm512_storeu_ps(lp + j * hs + d + 16, C[j]);
        }
    }
    for (; d + 16 <= hd; d += 16) {
        __m512 B[MIXG_HEADS];
        UNROLL for (int j = 0; j < G; j++) B[j] = _mm512_loadu_ps(lp + j * hs + d);
        for (int64_t i = l; i < m; i += 16) {
            const __m512 x = mix_load16(rows[i], d, kind);
            UNROLL for (int j = 0; j < G; j++) B[j] =
                _mm512_fmadd_ps(x, _mm512_set1_ps(wr[j * MIX_CHUNK + i]), B[j]);
        }
        UNROLL for (int j = 0; j < G; j++) _mm512_storeu_ps(lp + j * hs + d, B[j]);
    }
#endif
    for (; d + 8 <= hd; d += 8) {
        __m256 B[MIXG_HEADS];
        UNROLL for (int j = 0; j < G; j++) B[j] = _mm256_loadu_ps(lp + j * hs + d);
        for (int64_t i = l; i < m; i += 16) {
            const __m256 x = mix_load(rows[i], d, kind);
            UNROLL for (int j = 0; j < G; j++) B[j] =
                _mm256_fmadd_ps(x, _mm256_set1_ps(wr[j * MIX_CHUNK + i]), B[j]);
        }
        UNROLL for (int j = 0; j < G; j++) _mm256_storeu_ps(lp + j * hs + d, B[j]);
    }
    for (; d < hd; d++) /* outputs past the last eight: the reference's loop */
        for (int64_t i = l; i < m; i += 16) {
            const float x = mix_scalar(rows[i], d, kind);
            for (int j = 0; j < G; j++)
                lp[j * hs + d] = fmaf(x, wr[j * MIX_CHUNK + i], lp[j * hs + d]);
        }
}

/* G heads (a constant after inlining) over all n positions, MIX_CHUNK at a time. */
ALWAYS_INLINE void mixg_heads(const int G, int64_t n, int64_t hd, float *lanes, const float *w,
                              int64_t w_stride, const void *const *v, int64_t page,
                              int64_t v_stride, const enum mix_kind kind)
{
    float wr[MIXG_HEADS * MIX_CHUNK];
    const char *rows[MIX_CHUNK];
    for (int64_t p0 = 0; p0 < n; p0 += MIX_CHUNK) { /* p0 % 16 == 0: lane i % 16 is p's */
        const int64_t m = n - p0 < MIX_CHUNK ? n - p0 : MIX_CHUNK;
        for (int j = 0; j < G; j++)
            mix_weights(wr + j * MIX_CHUNK, w + j * w_stride + p0, m, kind);
        for (int64_t i = 0; i < m; i++)
            rows[i] = (const char *)v[(p0 + i) / page] + (p0 + i) % page * v_stride;
        for (int l = 0; l < 16 && l < m; l++)
            mixg_lane(G, m, l, hd, lanes, wr, rows, kind);
    }
}

ALWAYS_INLINE void kv_mix_group_impl(int64_t g, int64_t n, int64_t hd, float *lanes, const float *w,
                                     int64_t w_stride, const void *const *v, int64_t page,
                                     int64_t v_stride, const enum mix_kind kind)
{
    for (int64_t h = 0; h < g;) {
        float *lh = lanes + h * 16 * hd;
        const float *wh = w + h * w_stride;
        const int64_t left = g - h;
        if (left >= 8) {
            mixg_heads(8, n, hd, lh, wh, w_stride, v, page, v_stride, kind);
            h += 8;
        } else if (left >= 4) {
            mixg_heads(4, n, hd, lh, wh, w_stride, v, page, v_stride, kind);
            h += 4;
        } else if (left >= 2) {
            mixg_heads(2, n, hd, lh, wh, w_stride, v, page, v_stride, kind);
            h += 2;
        } else { /* one head gains nothing from the sharing: kv_mix's 16 lanes per pass */
            for (int64_t p0 = 0; p0 < n; p0 += page)
                kv_mix_impl(n - p0 < page ? n - p0 : page, hd, lh, wh + p0, v[p0 / page], v_stride,
                            kind);
            h += 1;
        }
    }
}

static void simd_kv_mix_group_f32(int64_t g, int64_t n, int64_t hd, float *lanes, const float *w,
                                  int64_t w_stride, const void *const *v, int64_t page,
                                  int64_t v_stride)
{
    kv_mix_group_impl(g, n, hd, lanes, w, w_stride, v, page, v_stride, MIX_F32);
}

static void simd_kv_mix_group_f16(int64_t g, int64_t n, int64_t hd, float *lanes, const float *w,
                                  int64_t w_stride, const void *const *v, int64_t page,
                                  int64_t v_stride)
{
    kv_mix_group_impl(g, n, hd, lanes, w, w_stride, v, page, v_stride, MIX_F16);
}

static void simd_kv_mix_group_q8_0(int64_t g, int64_t n, int64_t hd, float *lanes, const float *w,
                                   int64_t w_stride, const void *const *v, int64_t page,
                                   int64_t v_stride)
{
    kv_mix_group_impl(g, n, hd, lanes, w, w_stride, v, page, v_stride, MIX_Q8_0);
}

#endif
