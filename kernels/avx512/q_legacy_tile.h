/* q_legacy_tile.h — the avx512 variant's prefill tiles of Q8_0, Q5_0, Q4_1 and Q5_1: one output
 * per 32-bit lane (lanes.h).
 *
 * The reference (elm_ref_q8_0_vec_dot) keeps eight float lanes per output: lane k advances by
 * fma(d_w * d_a, (float)(the integer products of elements 4k..4k+3), lane) once per block, and
 * the eight fold as elm_hsum8 at the end. Here each of those lanes is a zmm of 16 outputs:
 * vector k of a block holds the 16 rows' weight bytes 4k..4k+3, and one vpdpbusd against the
 * token's 4 activation bytes (broadcast) gives the exact integer of lane k for all 16 rows.
 * vpdpbusd multiplies unsigned by signed bytes, so the weights are stored as x + 128 and the
 * chain starts at -128 * (the sum of the 4 activation bytes), made per block and token.
 * A block costs 8 vpdpbusd, 8 conversions and 8 fma per 16 outputs. Q5_0 is the same with
 * its 5-bit weights (0..31) and a start of -16 * the sum; Q4_1 and Q5_1 have unsigned weights
 * and add the reference's scalar chain fma(m_w, s_a, summs) per block, added after the fold.
 * Included only by kernels/avx512/avx512.c, after q_legacy.h and lanes.h.
 */
#ifndef ELM_AVX512_Q_LEGACY_TILE_H
#define ELM_AVX512_Q_LEGACY_TILE_H

#include "kernels/avx2/q_legacy.h"
#include "kernels/avx512/lanes.h"

/* One block of a panel: sub-panel s, lane l = row 16 s + ln_row(l). */
struct q80l_block {
    __m512i w[LN_S][8]; /* vector k: weights 4k..4k+3 as unsigned bytes (plus the bias) */
    __m512 d[LN_S];     /* the rows' scales */
    __m512 m[LN_S];     /* Q4_1, Q5_1: the rows' offsets */
};

/* KIND: 8 Q8_0, 50 Q5_0, 41 Q4_1, 51 Q5_1. The bias of the stored weights: lane k's chain
 * starts at -bias * (the sum of the 4 activation bytes). */
#define Q80L_BIAS(KIND) ((KIND) == 8 ? 128 : (KIND) == 50 ? 16 : 0)
#define Q80L_MIN(KIND)  ((KIND) == 41 || (KIND) == 51)

ALWAYS_INLINE size_t q80l_bytes(const int KIND)
{
    return KIND == 8    ? sizeof(struct elm_block_q8_0)
           : KIND == 50 ? sizeof(struct elm_block_q5_0)
           : KIND == 41 ? sizeof(struct elm_block_q4_1)
                        : sizeof(struct elm_block_q5_1);
}

/* Bit 4 of each byte of lane k's weights: bits 4k..4k+3 of the rows' qh. */
ALWAYS_INLINE __m512i q80l_high(__m512i qh, int k)
{
    __m512i h = _mm512_setzero_si512();
    for (int i = 0; i < 4; i++)
        h = _mm512_or_si512(h, _mm512_slli_epi32(_mm512_and_si512(_mm512_srli_epi32(qh, 4 * k + i),
                                                                  _mm512_set1_epi32(1)),
                                                 8 * i + 4));
    return h;
}

ALWAYS_INLINE void q80l_unpack(uint8_t *panel, const uint8_t *w, size_t ws, int nr, int64_t nb,
                               const int KIND)
{
    struct q80l_block *o = (struct q80l_block *)panel;
    const size_t bb = q80l_bytes(KIND);
    const __m512i bias = _mm512_set1_epi8((char)0x80), m4 = _mm512_set1_epi8(0x0f);
    for (int sp = 0; sp < LN_S; sp++) {
        struct ln_rowset rs;
        ln_rows(&rs, w, ws, nr, sp, bb);
        for (int64_t b = 0; b < nb; b++) {
            __m512i v[4];
            if (KIND == 8) {
                UNROLL for (int h = 0; h < 2; h++)
                {
                    ln_gather4(&rs, b, offsetof(struct elm_block_q8_0, qs) + 16 * (size_t)h, v);
                    UNROLL for (int d = 0; d < 4; d++)
                        _mm512_store_si512(&o[b].w[sp][4 * h + d], _mm512_xor_si512(v[d], bias));
                }
            } else {
                /* byte j holds element j (low nibble) and j + 16 (high); bit 4 of element j is
                 * bit j of qh */
                const size_t qs = KIND == 50   ? offsetof(struct elm_block_q5_0, qs)
                                  : KIND == 41 ? offsetof(struct elm_block_q4_1, qs)
                                               : offsetof(struct elm_block_q5_1, qs);
                ln_gather4(&rs, b, qs, v);
                __m512i qh[4] = {_mm512_setzero_si512()};
                if (KIND != 41)
                    ln_gather4(&rs, b,
                               KIND == 50 ? offsetof(struct elm_block_q5_0, qh)
                                          : offsetof(struct elm_block_q5_1, qh),
                               qh);
                for (int k = 0; k < 8; k++) {
                    __m512i q = _mm512_and_si512(k < 4 ? v[k] : _mm512_srli_epi32(v[k - 4], 4), m4);
                    if (KIND != 41)
                        q = _mm512_or_si512(q, q80l_high(qh[0], k));
                    _mm512_store_si512(&o[b].w[sp][k], q);
                }
                if (Q80L_MIN(KIND))
                    _mm512_store_ps(&o[b].m[sp], ln_gather_f16(&rs, b, 2));
            }
            _mm512_store_ps(&o[b].d[sp], ln_gather_f16(&rs, b, 0));
        }
    }
}

/* Blocks per chunk of q80l_run: the chunk's weights (Q80L_CB * 1.25 KiB), scales and
 * corrections stay in L1 while the eight lanes pass over it. */
#define Q80L_CB 8

/* NT tokens against the unpacked panel. An output has eight float lanes, so NT * LN_S * 8
 * accumulators would not fit the 32 registers (the compiler spilled them: a load and a store
 * around every fma). Instead the lanes take turns: for a chunk of blocks, lane k's NT * LN_S
 * accumulators are loaded into registers, advanced block after block (the reference's order
 * for that lane) and stored back, then lane k + 1's. The per-block products d_w * d_a and the
 * chain starts are made once per chunk into small arrays the inner loop reads as memory
 * operands. */
ALWAYS_INLINE void q80l_run(const struct q80l_block *p, int64_t nb, const uint8_t *a, size_t as,
                            float *y, int64_t ys, int nr, const int NT, const int KIND)
{
    __m512 acc[8][LN_T][LN_S], summs[LN_T][LN_S];
    __m512 d[Q80L_CB][LN_T][LN_S];
    int32_t corr[Q80L_CB][LN_T][8];
    UNROLL for (int t = 0; t < NT; t++) UNROLL for (int s = 0; s < LN_S; s++)
    {
        UNROLL for (int k = 0; k < 8; k++) acc[k][t][s] = _mm512_setzero_ps();
        summs[t][s] = _mm512_setzero_ps();
    }
    const int bias = Q80L_BIAS(KIND);
    /* the activation blocks: Q8_0, or Q8_1 (d, s, qs) for Q4_1 and Q5_1 */
    const size_t ab =
        Q80L_MIN(KIND) ? sizeof(struct elm_block_q8_1) : sizeof(struct elm_block_q8_0);
    const size_t aq =
        Q80L_MIN(KIND) ? offsetof(struct elm_block_q8_1, qs) : offsetof(struct elm_block_q8_0, qs);
    const __m256i mb = _mm256_set1_epi8((char)bias);
    for (int64_t b0 = 0; b0 < nb; b0 += Q80L_CB) {
        const int cb = nb - b0 < Q80L_CB ? (int)(nb - b0) : Q80L_CB;
        for (int j = 0; j < cb; j++) {
            const struct q80l_block *pw = &p[b0 + j];
            UNROLL for (int t = 0; t < NT; t++)
            {
                const uint8_t *v = a + (size_t)t * as + (size_t)(b0 + j) * ab;
                if (bias) {
                    /* -bias * sum of each 4 bytes: bias as the unsigned operand, negated */
                    const __m256i s =
                        _mm256_dpbusd_epi32(_mm256_setzero_si256(), mb, loadu256(v + aq));
                    _mm256_storeu_si256((__m256i *)corr[j][t],
                                        _mm256_sub_epi32(_mm256_setzero_si256(), s));
                }
                const __m512 da = _mm512_set1_ps(h2f(load_u16(v)));
                UNROLL for (int s2 = 0; s2 < LN_S; s2++) d[j][t][s2] = _mm512_mul_ps(pw->d[s2], da);
                if (Q80L_MIN(KIND)) {
                    /* summs = fmaf(m_w, s_a, summs), as the reference */
                    const __m512 sa = _mm512_set1_ps(h2f(load_u16(v + 2)));
                    UNROLL for (int s2 = 0; s2 < LN_S; s2++) summs[t][s2] =
                        _mm512_fmadd_ps(pw->m[s2], sa, summs[t][s2]);
                }
            }
        }
        for (int k = 0; k < 8; k++) {
            __m512 r[LN_T][LN_S];
            UNROLL for (int t = 0; t < NT; t++) UNROLL for (int s = 0; s < LN_S; s++) r[t][s] =
                acc[k][t][s];
            for (int j = 0; j < cb; j++) {
                __m512i wk[LN_S];
                UNROLL for (int s = 0; s < LN_S; s++) wk[s] = _mm512_load_si512(&p[b0 + j].w[s][k]);
                const uint8_t *q = a + (size_t)(b0 + j) * ab + aq + 4 * (size_t)k;
                UNROLL for (int t = 0; t < NT; t++)
                {
                    const __m512i c =
                        bias ? _mm512_set1_epi32(corr[j][t][k]) : _mm512_setzero_si512();
                    const __m512i av = _mm512_set1_epi32((int32_t)load_u32(q + (size_t)t * as));
                    UNROLL for (int s = 0; s < LN_S; s++)
                    {
                        const __m512i i = _mm512_dpbusd_epi32(c, wk[s], av);
                        /* lane = fmaf(d_w * d_a, (float)isum, lane), as the reference */
                        r[t][s] = _mm512_fmadd_ps(d[j][t][s], _mm512_cvtepi32_ps(i), r[t][s]);
                    }
                }
            }
            UNROLL for (int t = 0; t < NT; t++) UNROLL for (int s = 0; s < LN_S; s++) acc[k][t][s] =
                r[t][s];
        }
    }
    UNROLL for (int t = 0; t < NT; t++) UNROLL for (int s = 0; s < LN_S; s++)
    {
        __m512 lanes[8];
        UNROLL for (int k = 0; k < 8; k++) lanes[k] = acc[k][t][s];
        ln_store(y + t * ys, nr, s,
                 Q80L_MIN(KIND) ? _mm512_add_ps(ln_hsum8(lanes), summs[t][s]) : ln_hsum8(lanes));
    }
}

ALWAYS_INLINE void q80l_tile(int64_t n, const void *w, size_t ws, int nr, const void *a, size_t as,
                             int nt, float *y, int64_t ys, int stream, const int KIND,
                             elm_tile_fn shared, ln_unpack_fn unpack)
{
    const int64_t nb = n / ELM_QK;
    const uint8_t *p = NULL;
    if (nt >= LN_MIN_T && nr <= LN_R)
        p = ln_panel(200 + KIND, w, ws, nr, nb, sizeof(struct q80l_block), stream, unpack, NULL);
    if (p == NULL) {
        elm_tile_in_panels(shared, LEG_R, LEG_T, n, w, ws, nr, a, as, nt, y, ys, stream);
        return;
    }
    const struct q80l_block *pb = (const struct q80l_block *)p;
#define RUN(T) q80l_run(pb, nb, a, as, y, ys, nr, T, KIND)
    ELM_TILE_FOR_T(nt, RUN);
#undef RUN
}

/* The elm_tile_fn of each type: nr <= LN_R and nt <= LN_T with several tokens (one token: a
 * whole row chunk, for the shared tile). */
#define DEFINE_Q80L(name, K, shared)                                                               \
    static void q80l_unpack_##K(uint8_t *panel, const uint8_t *w, size_t ws, int nr, int64_t nb,   \
                                const uint8_t *pf)                                                 \
    {                                                                                              \
        (void)pf; /* these tiles do not prefetch */                                                \
        q80l_unpack(panel, w, ws, nr, nb, K);                                                      \
    }                                                                                              \
    static void name(int64_t n, const void *w, size_t ws, int nr, const void *a, size_t as,        \
                     int nt, float *y, int64_t ys, int stream)                                     \
    {                                                                                              \
        q80l_tile(n, w, ws, nr, a, as, nt, y, ys, stream, K, shared, q80l_unpack_##K);             \
    }

DEFINE_Q80L(q8_0_tile_lanes, 8, q8_0_tile)
DEFINE_Q80L(q5_0_tile_lanes, 50, q5_0_tile)
DEFINE_Q80L(q4_1_tile_lanes, 41, q4_1_tile)
DEFINE_Q80L(q5_1_tile_lanes, 51, q5_1_tile)

#endif
