/* iq4_tile.h — the avx512 variant's prefill tiles of IQ4_NL and IQ4_XS: one output per 32-bit
 * lane (lanes.h).
 *
 * IQ4_NL's reference (elm_ref_iq4_nl_vec_dot) is Q8_0's chain with table values for weights:
 * eight float lanes, lane k advanced by fma(d_w * d_a, (float)(integer sum of elements
 * 4k..4k+3), lane) per block, folded by elm_hsum8. So its panel is a Q8_0 lane panel
 * (q_legacy_tile.h's struct q80l_block, weights stored as value + 128) made by a table shuffle
 * at unpack time, and q80l_run multiplies it, bit for bit as for Q8_0.
 *
 * IQ4_XS's reference sums each lane as an exact integer over the whole 256-element block,
 * sum over sub-blocks of ls * (the sub-block's 4 products), and converts once per block:
 * fma(d_w * d_a, (float)lane, acc). Multiplying the integer by ls per sub-block would cost a
 * vpmulld (two uops) per lane and sub-block; instead the unpack stores ls * value as int16
 * (|ls * value| <= 32 * 127 fits), the activations are widened to int16 per block, and
 * vpdpwssd adds two exact products per lane at a time: 16 per lane and block, all integer, so
 * the order does not matter and the sum is the reference's. A block costs 128 vpdpwssd, 8
 * conversions and 8 fma per 16 outputs and token (IQ4_NL: 64 + 64 + 64 per 256 elements). The
 * int16 panel is 16.1 KiB per block of 32 rows: rows longer than 23 blocks (5888 columns) take
 * the shared tile. Included only by kernels/avx512/avx512.c, after iq4.h and q_legacy_tile.h.
 */
#ifndef ELM_AVX512_IQ4_TILE_H
#define ELM_AVX512_IQ4_TILE_H

#include "kernels/avx2/iq4.h"
#include "kernels/avx512/lanes.h"
#include "kernels/avx512/q_legacy_tile.h"

/* The panel keys of ln_panel (lanes.h): apart from q_k_tile.h's 100s and q_legacy_tile.h's
 * 200s. */
#define IQ4L_KEY_NL 300
#define IQ4L_KEY_XS 301

/* The 16 table values + 128 (as unsigned bytes: value ^ 0x80), in every 128-bit lane. */
ALWAYS_INLINE __m512i iq4l_table_biased(void)
{
    const __m128i t = _mm_loadu_si128((const __m128i *)iq4_table);
    return _mm512_broadcast_i32x4(_mm_xor_si128(t, _mm_set1_epi8((char)0x80)));
}

/* Vector k (elements 4k..4k+3) of a block's 4-bit indices, from the gathered 16 qs bytes v:
 * byte j holds element j (low nibble) and j + 16 (high), as Q4_0. */
ALWAYS_INLINE __m512i iq4l_index(const __m512i v[4], int k)
{
    const __m512i m4 = _mm512_set1_epi8(0x0f);
    return _mm512_and_si512(k < 4 ? v[k] : _mm512_srli_epi32(v[k - 4], 4), m4);
}

static void iq4l_nl_unpack(uint8_t *panel, const uint8_t *w, size_t ws, int nr, int64_t nb,
                           const uint8_t *pf)
{
    (void)pf; /* these tiles do not prefetch */
    struct q80l_block *o = (struct q80l_block *)panel;
    const __m512i table = iq4l_table_biased();
    for (int sp = 0; sp < LN_S; sp++) {
        struct ln_rowset rs;
        ln_rows(&rs, w, ws, nr, sp, sizeof(struct elm_block_iq4_nl));
        for (int64_t b = 0; b < nb; b++) {
            __m512i v[4];
            ln_gather4(&rs, b, offsetof(struct elm_block_iq4_nl, qs), v);
            UNROLL for (int k = 0; k < 8; k++)
                _mm512_store_si512(&o[b].w[sp][k], _mm512_shuffle_epi8(table, iq4l_index(v, k)));
            _mm512_store_ps(&o[b].d[sp], ln_gather_f16(&rs, b, 0));
        }
    }
}

/* The elm_tile_fn of IQ4_NL: nr <= LN_R and nt <= LN_T with several tokens (one token: a whole
 * row chunk, for the shared tile). */
static void iq4_nl_tile_lanes(int64_t n, const void *w, size_t ws, int nr, const void *a, size_t as,
                              int nt, float *y, int64_t ys, int stream)
{
    const int64_t nb = n / ELM_QK;
    const uint8_t *p = NULL;
    if (nt >= LN_MIN_T && nr <= LN_R)
        p = ln_panel(IQ4L_KEY_NL, w, ws, nr, nb, sizeof(struct q80l_block), stream, iq4l_nl_unpack,
                     NULL);
    if (p == NULL) {
        elm_tile_in_panels(iq4_nl_tile, LEG_R, LEG_T, n, w, ws, nr, a, as, nt, y, ys, stream);
        return;
    }
    const struct q80l_block *pb = (const struct q80l_block *)p;
    /* the Q8_0 chain: bias 128, Q8_0 activations */
#define RUN(T) q80l_run(pb, nb, (const uint8_t *)a, as, y, ys, nr, T, 8)
    ELM_TILE_FOR_T(nt, RUN);
#undef RUN
}

/* One IQ4_XS block of a panel: w[s][k][j][h], lane l = row 16 s + ln_row(l), holds ls_j times
 * the values of elements 4k + 2h and 4k + 2h + 1 of sub-block j, as two int16. */
struct iq4l_xs_block {
    __m512i w[LN_S][8][8][2];
    __m512 d[LN_S]; /* the rows' fp16 scales */
};

static void iq4l_xs_unpack(uint8_t *panel, const uint8_t *w, size_t ws, int nr, int64_t nb,
                           const uint8_t *pf)
{
    (void)pf; /* these tiles do not prefetch */
    struct iq4l_xs_block *o = (struct iq4l_xs_block *)panel;
    const __m512i table = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)iq4_table));
    const __m512i lo16 = _mm512_set1_epi32(0xffff);
    for (int sp = 0; sp < LN_S; sp++) {
        struct ln_rowset rs;
        ln_rows(&rs, w, ws, nr, sp, sizeof(struct elm_block_iq4_xs));
        for (int64_t b = 0; b < nb; b++) {
            for (int j = 0; j < 8; j++) {
                int32_t ls[16];
                UNROLL for (int l = 0; l < 16; l++)
                {
                    const int r = ln_row(l);
                    ls[l] = iq4_xs_ls((const struct elm_block_iq4_xs *)ln_block(&rs, r, b), j);
                }
                /* ls in both int16 halves of each lane */
                const __m512i l32 = _mm512_loadu_si512(ls);
                const __m512i l16 =
                    _mm512_or_si512(_mm512_and_si512(l32, lo16), _mm512_slli_epi32(l32, 16));
                __m512i v[4];
                ln_gather4(&rs, b, offsetof(struct elm_block_iq4_xs, qs) + 16 * (size_t)j, v);
                UNROLL for (int k = 0; k < 8; k++)
                {
                    /* bytes e0..e3 of each lane: the signed values of elements 4k..4k+3 */
                    const __m512i x = _mm512_shuffle_epi8(table, iq4l_index(v, k));
                    /* int16 words: even = (e0, e2), odd = (e1, e3), sign-extended */
                    const __m512i even = _mm512_srai_epi16(_mm512_slli_epi16(x, 8), 8);
                    const __m512i odd = _mm512_srai_epi16(x, 8);
                    /* h = 0: (e0, e1); h = 1: (e2, e3) */
                    const __m512i h0 =
                        _mm512_or_si512(_mm512_and_si512(even, lo16), _mm512_slli_epi32(odd, 16));
                    const __m512i h1 = _mm512_or_si512(_mm512_srli_epi32(even, 16),
                                                       _mm512_andnot_si512(lo16, odd));
                    _mm512_store_si512(&o[b].w[sp][k][j][0], _mm512_mullo_epi16(h0, l16));
                    _mm512_store_si512(&o[b].w[sp][k][j][1], _mm512_mullo_epi16(h1, l16));
                }
            }
            _mm512_store_ps(&o[b].d[sp], ln_gather_f16(&rs, b, 0));
        }
    }
}

/* NT tokens against the unpacked IQ4_XS panel. Per block: the tokens' activations widened to
 * int16 and the products d_w * d_a, then lane by lane the NT * LN_S integer sums in registers
 * (32 vpdpwssd each) and one fma into the lane's float accumulator. */
ALWAYS_INLINE void iq4l_xs_run(const struct iq4l_xs_block *p, int64_t nb, const uint8_t *a,
                               size_t as, float *y, int64_t ys, int nr, const int NT)
{
    __m512 acc[8][LN_T][LN_S];
    __m512 d[LN_T][LN_S];
    int16_t a16[LN_T][ELM_QK_K] __attribute__((aligned(64)));
    UNROLL for (int k = 0; k < 8; k++) UNROLL for (int t = 0; t < NT; t++)
        UNROLL for (int s = 0; s < LN_S; s++) acc[k][t][s] = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        UNROLL for (int t = 0; t < NT; t++)
        {
            const struct elm_block_q8_k *v =
                (const struct elm_block_q8_k *)(a + (size_t)t * as) + b;
            UNROLL for (int c = 0; c < ELM_QK_K / 32; c++)
                _mm512_store_si512(&a16[t][32 * c], _mm512_cvtepi8_epi16(loadu256(v->qs + 32 * c)));
            /* the reference's fp16(d_w) * d_a */
            const __m512 da = _mm512_set1_ps(v->d);
            UNROLL for (int s = 0; s < LN_S; s++) d[t][s] = _mm512_mul_ps(p[b].d[s], da);
        }
        for (int k = 0; k < 8; k++) {
            __m512i r[LN_T][LN_S];
            UNROLL for (int t = 0; t < NT; t++) UNROLL for (int s = 0; s < LN_S; s++) r[t][s] =
                _mm512_setzero_si512();
            for (int j = 0; j < 8; j++) {
                UNROLL for (int h = 0; h < 2; h++)
                {
                    __m512i wk[LN_S];
                    UNROLL for (int s = 0; s < LN_S; s++) wk[s] =
                        _mm512_load_si512(&p[b].w[s][k][j][h]);
                    UNROLL for (int t = 0; t < NT; t++)
                    {
                        const __m512i av =
                            _mm512_set1_epi32((int32_t)load_u32(&a16[t][32 * j + 4 * k + 2 * h]));
                        UNROLL for (int s = 0; s < LN_S; s++) r[t][s] =
                            _mm512_dpwssd_epi32(r[t][s], wk[s], av);
                    }
                }
            }
            /* acc = fmaf(d_w * d_a, (float)lane, acc), as the reference */
            UNROLL for (int t = 0; t < NT; t++) UNROLL for (int s = 0; s < LN_S; s++) acc[k][t][s] =
                _mm512_fmadd_ps(d[t][s], _mm512_cvtepi32_ps(r[t][s]), acc[k][t][s]);
        }
    }
    UNROLL for (int t = 0; t < NT; t++) UNROLL for (int s = 0; s < LN_S; s++)
    {
        __m512 lanes[8];
        UNROLL for (int k = 0; k < 8; k++) lanes[k] = acc[k][t][s];
        ln_store(y + t * ys, nr, s, ln_hsum8(lanes));
    }
}

/* The elm_tile_fn of IQ4_XS, as IQ4_NL's. */
static void iq4_xs_tile_lanes(int64_t n, const void *w, size_t ws, int nr, const void *a, size_t as,
                              int nt, float *y, int64_t ys, int stream)
{
    const int64_t nb = n / ELM_QK_K;
    const uint8_t *p = NULL;
    if (nt >= LN_MIN_T && nr <= LN_R)
        p = ln_panel(IQ4L_KEY_XS, w, ws, nr, nb, sizeof(struct iq4l_xs_block), stream,
                     iq4l_xs_unpack, NULL);
    if (p == NULL) {
        elm_tile_in_panels(iq4_xs_tile, LEG_R, LEG_T, n, w, ws, nr, a, as, nt, y, ys, stream);
        return;
    }
    const struct iq4l_xs_block *pb = (const struct iq4l_xs_block *)p;
#define RUN(T) iq4l_xs_run(pb, nb, (const uint8_t *)a, as, y, ys, nr, T)
    ELM_TILE_FOR_T(nt, RUN);
#undef RUN
}

#endif
