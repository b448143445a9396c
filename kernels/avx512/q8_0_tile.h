/* q8_0_tile.h — the avx512 variant's Q8_0 prefill tile: one output per 32-bit lane (lanes.h).
 *
 * The reference (elm_ref_q8_0_vec_dot) keeps eight float lanes per output: lane k advances by
 * fma(d_w * d_a, (float)(the integer products of elements 4k..4k+3), lane) once per block, and
 * the eight fold as elm_hsum8 at the end. Here each of those lanes is a zmm of 16 outputs:
 * vector k of a block holds the 16 rows' weight bytes 4k..4k+3, and one vpdpbusd against the
 * token's 4 activation bytes (broadcast) gives the exact integer of lane k for all 16 rows.
 * vpdpbusd multiplies unsigned by signed bytes, so the weights are stored as x + 128 and the
 * chain starts at -128 * (the sum of the 4 activation bytes), made per block and token.
 * A block costs 8 vpdpbusd, 8 conversions and 8 fma per 16 outputs.
 * Included only by kernels/avx512/avx512.c, after q_legacy.h and lanes.h.
 */
#ifndef ELM_AVX512_Q8_0_TILE_H
#define ELM_AVX512_Q8_0_TILE_H

#include "kernels/avx2/q_legacy.h"
#include "kernels/avx512/lanes.h"

/* One block of a panel: sub-panel s, lane l = row 16 s + ln_row(l). */
struct q80l_block {
    __m512i w[LN_S][8]; /* vector k: weight bytes 4k..4k+3, plus 128 */
    __m512 d[LN_S];     /* the rows' scales */
};

static void q80l_unpack(uint8_t *panel, const uint8_t *w, size_t ws, int nr, int64_t nb)
{
    static const struct elm_block_q8_0 zero;
    struct q80l_block *o = (struct q80l_block *)panel;
    const __m512i bias = _mm512_set1_epi8((char)0x80);
    for (int sp = 0; sp < LN_S; sp++) {
        const uint8_t *base[16];
        size_t step[16];
        ln_rows(w, ws, nr, sp, sizeof zero, &zero, base, step);
        for (int64_t b = 0; b < nb; b++) {
            __m512i v[4];
            UNROLL for (int h = 0; h < 2; h++)
            {
                ln_gather4(base, step, b, offsetof(struct elm_block_q8_0, qs) + 16 * (size_t)h, v);
                UNROLL for (int d = 0; d < 4; d++)
                    _mm512_store_si512(&o[b].w[sp][4 * h + d], _mm512_xor_si512(v[d], bias));
            }
            _mm512_store_ps(&o[b].d[sp], ln_gather_f16(base, step, b, 0));
        }
    }
}

/* NT tokens against the unpacked panel. */
ALWAYS_INLINE void q80l_run(const struct q80l_block *p, int64_t nb, const uint8_t *a, size_t as,
                            float *y, int64_t ys, int nr, const int NT)
{
    __m512 acc[LN_T][LN_S][8];
    UNROLL for (int t = 0; t < NT; t++) UNROLL for (int s = 0; s < LN_S; s++)
        UNROLL for (int k = 0; k < 8; k++) acc[t][s][k] = _mm512_setzero_ps();
    const __m256i m128 = _mm256_set1_epi8((char)0x80);
    for (int64_t b = 0; b < nb; b++) {
        int32_t corr[LN_T][8];
        __m512 d[LN_T][LN_S];
        const int8_t *q[LN_T];
        UNROLL for (int t = 0; t < NT; t++)
        {
            const struct elm_block_q8_0 *v =
                (const struct elm_block_q8_0 *)(a + (size_t)t * as) + b;
            q[t] = v->qs;
            /* -128 * sum of each 4 bytes: (-128) as unsigned 128 times the bytes, negated */
            const __m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), m128, loadu256(v->qs));
            _mm256_storeu_si256((__m256i *)corr[t], _mm256_sub_epi32(_mm256_setzero_si256(), s));
            const __m512 da = _mm512_set1_ps(h2f(v->d));
            UNROLL for (int s2 = 0; s2 < LN_S; s2++) d[t][s2] = _mm512_mul_ps(p[b].d[s2], da);
        }
        UNROLL for (int k = 0; k < 8; k++)
        {
            __m512i wk[LN_S];
            UNROLL for (int s = 0; s < LN_S; s++) wk[s] = _mm512_load_si512(&p[b].w[s][k]);
            UNROLL for (int t = 0; t < NT; t++)
            {
                const __m512i c = _mm512_set1_epi32(corr[t][k]);
                const __m512i av = _mm512_set1_epi32((int32_t)load_u32(q[t] + 4 * k));
                UNROLL for (int s = 0; s < LN_S; s++)
                {
                    const __m512i i = _mm512_dpbusd_epi32(c, wk[s], av);
                    /* lane = fmaf(d_w * d_a, (float)isum, lane), as the reference */
                    acc[t][s][k] = _mm512_fmadd_ps(d[t][s], _mm512_cvtepi32_ps(i), acc[t][s][k]);
                }
            }
        }
    }
    UNROLL for (int t = 0; t < NT; t++) UNROLL for (int s = 0; s < LN_S; s++)
        ln_store(y + t * ys, nr, s, ln_hsum8(acc[t][s]));
}

/* The elm_tile_fn of the avx512 Q8_0 entry: nr <= LN_R and nt <= LN_T with several tokens
 * (one token: a whole row chunk, for the shared tile). */
static void q8_0_tile_lanes(int64_t n, const void *w, size_t ws, int nr, const void *a, size_t as,
                            int nt, float *y, int64_t ys, int stream)
{
    const int64_t nb = n / ELM_QK;
    const uint8_t *p = NULL;
    if (nt >= LN_MIN_T && nr <= LN_R)
        p = ln_panel(ELM_TYPE_Q8_0, w, ws, nr, nb, sizeof(struct q80l_block), stream, q80l_unpack);
    if (p == NULL) {
        ln_fallback(q8_0_tile, LEG_R, LEG_T, n, w, ws, nr, a, as, nt, y, ys, stream);
        return;
    }
    const struct q80l_block *pb = (const struct q80l_block *)p;
    switch (nt) {
    case 3:
        q80l_run(pb, nb, a, as, y, ys, nr, 3);
        break;
    case 4:
        q80l_run(pb, nb, a, as, y, ys, nr, 4);
        break;
    case 5:
        q80l_run(pb, nb, a, as, y, ys, nr, 5);
        break;
    case 6:
        q80l_run(pb, nb, a, as, y, ys, nr, 6);
        break;
    case 7:
        q80l_run(pb, nb, a, as, y, ys, nr, 7);
        break;
    default:
        q80l_run(pb, nb, a, as, y, ys, nr, 8);
        break;
    }
}

#endif
