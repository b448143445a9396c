/* q_k.h — SIMD kernels for the K-quants: vec_dot and matmul tiles for Q2_K ... Q6_K against
 * Q8_K activations, their dequantization, and the Q8_K activation quantizer. Compiled once per
 * variant (see simd.h); included only by kernels/avx2/avx2.c and kernels/avx512/avx512.c.
 *
 * The float arithmetic is the reference's (kernels/ref/q_k.c): eight float lanes per output,
 * lane k holding, for every run of 32 elements of a super-block, the scaled integer products
 * of elements 4k..4k+3 — which is exactly what vpmaddubsw (pairs) followed by vpmaddwd with a
 * vector of the run's scales (quads, times the scale of their 16-element half) produces. The
 * eight runs are summed in int32 (exact), then one fma(d_a * d_w, lane, acc) per super-block.
 * The minimum terms: Q2_K in the same lanes, first; Q4_K in four lanes of their own, folded
 * as a 128-bit register and added last; Q5_K one scalar fused chain, added last.
 *
 * Weights with an offset (Q6_K's q - 32, Q3_K's q + 4 h - 4 with h its high bit) are held as the
 * unsigned q (q + 4 h) and their pair sums corrected by the offset's, one vpmaddubsw per token
 * and run for all rows: exact int16 differences, as in llama.cpp; no pair leaves int16.
 */
#ifndef ELM_SIMD_Q_K_H
#define ELM_SIMD_Q_K_H

#include "kernels/avx2/q_legacy.h"
#include "kernels/avx2/simd.h"
#include "kernels/blocks.h"
#include "kernels/ref/ref.h"

/* K tiles hold an int32 and a float accumulator per output: 4 x 2 in 32 registers; with 16,
 * 1 x 8. The float ones are touched once per 256 elements, so spilling them is cheap; one row
 * leaves its 8 int32 chains, two weight registers and the scale picks in registers, and each
 * token's activations are then a memory operand of vpmaddubsw (no load of their own), while a
 * row's unpacking (nibbles, 6-bit scales, minimum terms' scales) is shared by 8 tokens instead
 * of 4. callgrind, elm_matmul, 2048 x 2048, 1 thread, 2 x 4 -> 1 x 8: Q4_K 8 tokens 8.31M ->
 * 6.77M, 64 tokens 66.0M -> 53.5M; Q6_K 8 tokens 9.83M -> 7.73M, 64 tokens 78.1M -> 61.1M;
 * 2 tokens 5% more (Q4_K 2.63M -> 2.77M), 4 tokens 2-6% fewer. (Earlier, 2 x 4 beat 2 x 2:
 * 256 x 2048, 64 tokens, Q4_K 11.1M -> 9.2M, Q6_K 12.7M -> 10.2M, Q3_K 15.0M -> 11.7M.)
 * One token (decode) takes KQ_R_GEMV rows a step: 4 in 32 registers; in 16, 2, since 4 rows'
 * nibbles, scale picks and chains spill (scripts/tile-times.sh's harness, 256 x 2048, 1 thread,
 * best of 40, Zen 5: avx2 4 -> 2 rows Q4_K 11.2 -> 10.2 us, Q5_K 15.4 -> 14.0, Q2_K, Q3_K and
 * Q6_K within 2%; avx512 2 or 8 rows instead of 4: 1-12% slower). */
#ifdef ELM_SIMD_VNNI
#define KQ_R      4
#define KQ_T      2
#define KQ_R_GEMV 4
#else
#define KQ_R      1
#define KQ_T      8
#define KQ_R_GEMV 2
#endif
#define KQ_MR (KQ_R_GEMV > KQ_R ? KQ_R_GEMV : KQ_R)
#define KQ_TP ((KQ_T + 1) / 2) /* token pairs */

/* Unpacks Q4_K/Q5_K's 12-byte scale field: bytes 0..7 the scales, 8..15 the mins (the same
 * values as elm_k4_scale_min). With the field's words u0, u1, u2 the output words are
 * u0 & 0x3f.., (u2 & 0x0f..) | ((u0 >> 6) & 3..) << 4, u1 & 0x3f.., ((u2 >> 4) & 0x0f..) |
 * ((u1 >> 6) & 3..) << 4 (llama.cpp's word arithmetic), done here as four lanes at once: ~9
 * vector instructions where the scalar words took ~30 per row and super-block (a tenth of the
 * 1-row x 8-token tile's non-product work). ((u >> 6) & 0x03..) << 4 is (u >> 2) & 0x30..: the
 * bits shifted in from the next byte are masked off. k4_scales_vec2 unpacks two rows, the 16
 * bytes from each one's field in a 128-bit lane; k4_scales_vec reads 16 bytes at packed: in a
 * block the field is followed by qs (Q4_K) or qh (Q5_K). */
ALWAYS_INLINE __m256i k4_scales_vec2(__m256i u)
{
    const __m256i x = _mm256_shuffle_epi32(u, _MM_SHUFFLE(2, 1, 2, 0)); /* u0 u2 u1 u2 */
    const __m256i y = _mm256_shuffle_epi32(u, _MM_SHUFFLE(1, 1, 0, 0)); /* u0 u0 u1 u1 */
    const __m256i lo =
        _mm256_and_si256(_mm256_srlv_epi32(x, _mm256_setr_epi32(0, 0, 0, 4, 0, 0, 0, 4)),
                         _mm256_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f,
                                           0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f));
    const __m256i hi =
        _mm256_and_si256(_mm256_srli_epi32(y, 2), _mm256_setr_epi32(0, 0x30303030, 0, 0x30303030, 0,
                                                                    0x30303030, 0, 0x30303030));
    return _mm256_or_si256(lo, hi);
}

/* One row's: the same instructions on a 128-bit lane (the other is never read). */
ALWAYS_INLINE __m128i k4_scales_vec(const uint8_t *packed)
{
    const __m128i u = _mm_loadu_si128((const __m128i *)packed);
    return _mm256_castsi256_si128(k4_scales_vec2(_mm256_castsi128_si256(u)));
}

ALWAYS_INLINE void k4_scales(const uint8_t *packed, uint8_t out[16])
{
    _mm_storeu_si128((__m128i *)out, k4_scales_vec(packed));
}

/* Q3_K's 16 six-bit scales, unbiased, as int8 (the values of elm_k3_scales). */
ALWAYS_INLINE __m128i k3_scales(const uint8_t *packed)
{
    uint32_t w[4];
    elm_k3_scale_words(packed, w);
    /* from the general registers: four stores read back as one vector stall the load */
    return _mm_sub_epi8(_mm_set_epi32((int)w[3], (int)w[2], (int)w[1], (int)w[0]),
                        _mm_set1_epi8(32));
}

/* vpshufb index bytes that put int16 e of a 128-bit half into an int16 position */
#define K16_PICK(e) (0x0101 * 2 * (e) + 0x0100)
/* ... and int16 e0, e1 into the low and high int16 of a dword */
#define K16_PICK2(e0, e1) (K16_PICK(e0) | K16_PICK(e1) << 16)

/* ---- Q4_K and Q5_K --------------------------------------------------------------------------- */

/* Q4_K's minimum terms of two slots: tokens t0, t1 of one row (t1 may repeat t0 for an odd last
 * token), or, with one token, rows r0, r1 (r1 may repeat r0). The reference's four lanes per slot
 * (lane k: min[2k] * sum32[2k] + min[2k+1] * sum32[2k+1], fma'd with -(d_a * dmin_w) per
 * super-block) are held as [s0 k0, s0 k1, s1 k0, s1 k1 | s0 k2, s0 k3, s1 k2, s1 k3], so one
 * convert and one fma serve both slots. m0, m1: the slots' min[R] twice per run R, whose vpmaddwd
 * with the slots' 16 bsums b0, b1 gives run R's term in lane R (exact int32, in any order), and
 * vphaddd pairs the runs. scale: each slot's d_a * -dmin_w in its lanes (negation is exact and
 * rounding symmetric, so the bits are the reference's). Per super-block and token pair this
 * replaces, per token, two bsums loads, vphaddw, vpmaddwd, vmulss, a broadcast, convert, fma. */
ALWAYS_INLINE __m256 k4_min_pair(__m256 accm, __m256i m0, __m256i m1, const int16_t *b0,
                                 const int16_t *b1, __m256 scale)
{
    const __m256i l0 = _mm256_madd_epi16(m0, loadu256(b0));
    const __m256i l1 = _mm256_madd_epi16(m1, loadu256(b1));
    return _mm256_fmadd_ps(scale, _mm256_cvtepi32_ps(_mm256_hadd_epi32(l0, l1)), accm);
}

/* The slots' scale of k4_min_pair: x0 in the lanes of slot 0, x1 in those of slot 1. */
ALWAYS_INLINE __m256 k4_min_slots(__m256 x0, __m256 x1)
{
    return _mm256_blend_ps(x0, x1, 0xcc);
}

/* A token pair's operands of its minimum lanes for rows that are kept (k_wide.h, k_pair.h):
 * vphaddw of the two tokens' 16 bsums puts each 128-bit half's sums of 32 side by side, [t0
 * s0..s3, t1 s0..s3 | t0 s4..s7, t1 s4..s7] (|sum32| <= 32 x 128 fits int16), and their d in
 * k4_min_slots. */
struct k4_tpair {
    __m256i s32;
    __m256 da;
};

ALWAYS_INLINE struct k4_tpair k4_tpair_make(const struct elm_block_q8_k *v0,
                                            const struct elm_block_q8_k *v1)
{
    return (struct k4_tpair){
        _mm256_hadd_epi16(loadu256(v0->bsums), loadu256(v1->bsums)),
        k4_min_slots(_mm256_broadcast_ss(&v0->d), _mm256_broadcast_ss(&v1->d))};
}

/* A row's [m0..m3, m0..m3 | m4..m7, m4..m7] (k4_tpair's partner) from sm, its [sc0..sc7 |
 * m0..m7] as int16. */
ALWAYS_INLINE __m256i k4_tpair_mins(__m256i sm)
{
    return _mm256_permute4x64_epi64(sm, _MM_SHUFFLE(3, 3, 2, 2));
}

/* k4_min_pair for a token pair made by k4_tpair_make: vpmaddwd of its sums by the row's mins
 * gives k4_min_pair's layout directly. ndm: the row's -dmin, broadcast. */
ALWAYS_INLINE __m256 k4_min_tpair(__m256 accm, __m256i mins, __m256 ndm, const struct k4_tpair *tp)
{
    return _mm256_fmadd_ps(_mm256_mul_ps(tp->da, ndm),
                           _mm256_cvtepi32_ps(_mm256_madd_epi16(mins, tp->s32)), accm);
}

/* Row r's min[R] twice per run R (k4_min_pair's m), from its unpacked scales sm (k4_scales_vec:
 * the mins are bytes 8..15). */
ALWAYS_INLINE __m256i k4_mins16_v(__m128i sm)
{
    return _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(sm, sm));
}

ALWAYS_INLINE __m256i k4_mins16(const uint8_t sm[16])
{
    return k4_mins16_v(_mm_loadu_si128((const __m128i *)sm));
}

/* Slot h (0 or 1) of a k4_min_pair register, folded as the reference's 128-bit register:
 * (k0 + k2) + (k1 + k3). */
ALWAYS_INLINE float k4_min_fold(__m256 accm, int h)
{
    float q[4];
    _mm_storeu_ps(q, _mm_add_ps(_mm256_castps256_ps128(accm), _mm256_extractf128_ps(accm, 1)));
    return q[2 * h] + q[2 * h + 1];
}

/* Q5_K's minimum term, one fused chain per output (the reference's): the sums of each 32
 * activations as int16, pairs of bsums ... */
ALWAYS_INLINE __m128i k5_sum32(const struct elm_block_q8_k *v)
{
    return _mm_hadd_epi16(_mm_loadu_si128((const __m128i *)v->bsums),
                          _mm_loadu_si128((const __m128i *)v->bsums + 1));
}

/* ... and sum over k of min[2k] * sum32[2k] + min[2k+1] * sum32[2k+1] (m8: the 8 mins, bytes
 * 0..7), an exact int32. */
ALWAYS_INLINE int32_t k5_min_sum(__m128i m8, __m128i sum32)
{
    const __m128i mins = _mm_madd_epi16(_mm_cvtepu8_epi16(m8), sum32);
    const __m128i s2 = _mm_add_epi32(mins, _mm_srli_si128(mins, 8));
    return _mm_cvtsi128_si32(_mm_add_epi32(s2, _mm_srli_si128(s2, 4)));
}

/* One token, NR (KQ_R_GEMV) rows: decode. The products and float steps of q45_k_impl, with
 * less around them per row and super-block, since decode streams the weights no faster than
 * its arithmetic lets it (docs/kernels-perf.md, "Decode: less around the products"): the rows' d
 * and dmin come converted and multiplied by the token's d as one vector; the scale fields are
 * unpacked two rows a register; and each run's scale reaches vpmaddwd / vpdpwssd as a broadcast
 * load from a small table (a load port, not the shuffle port of a vpshufb per run and row). */
ALWAYS_INLINE void q45_k_gemv(int64_t n, const uint8_t *w, size_t ws, const uint8_t *a, float *y,
                              const uint8_t *pf, const int NR, const bool FIVE)
{
    _Static_assert(KQ_R_GEMV % 2 == 0 && KQ_R_GEMV <= 4, "rows in pairs, d and dmin in 8 lanes");
    _Static_assert(offsetof(struct elm_block_q4_k, dmin) == 2 &&
                       offsetof(struct elm_block_q5_k, dmin) == 2 &&
                       offsetof(struct elm_block_q4_k, scales) == 4 &&
                       offsetof(struct elm_block_q5_k, scales) == 4,
                   "q45_k_gemv: d, dmin as a block's first dword, then the scales");
    __m256 acc[KQ_R_GEMV], accm[KQ_R_GEMV / 2];
    float summs[KQ_R_GEMV];
    UNROLL for (int r = 0; r < NR; r++)
    {
        acc[r] = _mm256_setzero_ps();
        summs[r] = 0.0f;
        if (r % 2 == 0)
            accm[r / 2] = _mm256_setzero_ps();
    }
    const size_t bb = FIVE ? sizeof(struct elm_block_q5_k) : sizeof(struct elm_block_q4_k);
    const size_t qs_off =
        FIVE ? offsetof(struct elm_block_q5_k, qs) : offsetof(struct elm_block_q4_k, qs);
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    for (int64_t b = 0; b < n / ELM_QK_K; b++) {
        if (pf)
            prefetch_span(pf + b * NR * bb, NR * bb);
        const struct elm_block_q8_k *v = (const struct elm_block_q8_k *)a + b;
        const uint8_t *xb[KQ_R_GEMV];
        int32_t dd[4] = {0, 0, 0, 0}; /* row r's (d, dmin) in dword r, as f16_rows builds */
        UNROLL for (int r = 0; r < NR; r++)
        {
            xb[r] = w + (size_t)r * ws + (size_t)b * bb;
            dd[r] = (int32_t)load_u32(xb[r]);
        }
        const __m128i hd = _mm_setr_epi32(dd[0], dd[1], dd[2], dd[3]);
        /* d_a * d_w and d_a * dmin_w of row r in lanes 2r, 2r + 1 */
        float dv[8] __attribute__((aligned(32)));
        const float *dq = f16_times(hd, v->d, dv);
        /* run R's scale of row r, twice per dword (vpmaddwd's pair) */
        int32_t sct[KQ_R_GEMV][8] __attribute__((aligned(32)));
        __m128i sm[KQ_R_GEMV];
        UNROLL for (int r = 0; r < NR; r += 2)
        {
            const __m256i s2 = k4_scales_vec2(_mm256_inserti128_si256(
                _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(xb[r] + 4))),
                _mm_loadu_si128((const __m128i *)(xb[r + 1] + 4)), 1));
            sm[r] = _mm256_castsi256_si128(s2);
            sm[r + 1] = _mm256_extracti128_si256(s2, 1);
        }
        UNROLL for (int r = 0; r < NR; r++)
        {
            const __m256i s32 = _mm256_cvtepu8_epi32(sm[r]);
            _mm256_store_si256((__m256i *)sct[r], _mm256_or_si256(s32, _mm256_slli_epi32(s32, 16)));
        }
        const int32_t(*sc)[8] = sct;
        IN_MEMORY(sc);
        if (FIVE) {
            const __m128i bs = k5_sum32(v);
            UNROLL for (int r = 0; r < NR; r++) summs[r] = fmaf(
                -dq[2 * r + 1], (float)k5_min_sum(_mm_unpackhi_epi64(sm[r], sm[r]), bs), summs[r]);
        } else {
            UNROLL for (int r = 0; r < NR; r += 2)
            {
                /* -(d_a * dmin_w): negation is exact, rounding symmetric (q45_k_impl) */
                const __m256 scale = _mm256_xor_ps(
                    _mm256_set1_ps(-0.0f), k4_min_slots(_mm256_broadcast_ss(&dq[2 * r + 1]),
                                                        _mm256_broadcast_ss(&dq[2 * r + 3])));
                accm[r / 2] = k4_min_pair(accm[r / 2], k4_mins16_v(sm[r]), k4_mins16_v(sm[r + 1]),
                                          v->bsums, v->bsums, scale);
            }
        }
        __m256i qh[KQ_R_GEMV], li[KQ_R_GEMV];
        if (FIVE)
            UNROLL for (int r = 0; r < NR; r++) qh[r] =
                loadu256(((const struct elm_block_q5_k *)xb[r])->qh);
        UNROLL for (int j = 0; j < 4; j++)
        { /* 64 elements: runs 2j (low nibbles), 2j+1 (high) */
            const __m256i y0 = loadu256(v->qs + 64 * j);
            const __m256i y1 = loadu256(v->qs + 64 * j + 32);
            UNROLL for (int r = 0; r < NR; r++)
            {
                const __m256i raw = loadu256(xb[r] + qs_off + 32 * j);
                __m256i q0 = _mm256_and_si256(raw, m4);
                __m256i q1 = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
                if (FIVE) {
                    q0 = _mm256_or_si256(q0, bits_move(qh[r], 2 * j, 4, 1));
                    q1 = _mm256_or_si256(q1, bits_move(qh[r], 2 * j + 1, 4, 1));
                }
                const __m256i p0 = _mm256_maddubs_epi16(q0, y0);
                const __m256i sc0 = _mm256_set1_epi32(sc[r][2 * j]);
                li[r] = j ? madd_acc(li[r], p0, sc0) : _mm256_madd_epi16(p0, sc0);
                li[r] = madd_acc(li[r], _mm256_maddubs_epi16(q1, y1),
                                 _mm256_set1_epi32(sc[r][2 * j + 1]));
            }
        }
        UNROLL for (int r = 0; r < NR; r++) acc[r] =
            _mm256_fmadd_ps(_mm256_broadcast_ss(&dq[2 * r]), _mm256_cvtepi32_ps(li[r]), acc[r]);
    }
    UNROLL for (int r = 0; r < NR; r++) y[r] =
        hsum8_ps(acc[r]) + (FIVE ? summs[r] : k4_min_fold(accm[r / 2], r & 1));
}

ALWAYS_INLINE void q45_k_impl(TILE_ARGS, const int NR, const int NT, const bool FIVE)
{
    if (NT == 1 && NR == KQ_R_GEMV) {
        q45_k_gemv(n, w, ws, a, y, pf, NR, FIVE);
        return;
    }
    __m256 acc[KQ_MR][KQ_T];
    __m256 accm[KQ_MR][KQ_TP]; /* Q4_K's minimum lanes of a token pair (k4_min_pair) */
    float summs[KQ_MR][KQ_T];
    UNROLL for (int r = 0; r < NR; r++)
    {
        UNROLL for (int t = 0; t < NT; t++)
        {
            acc[r][t] = _mm256_setzero_ps();
            summs[r][t] = 0.0f;
        }
        UNROLL for (int p = 0; p < KQ_TP; p++) accm[r][p] = _mm256_setzero_ps();
    }
    /* both types start with d, dmin, scales; Q5_K then has qh before qs */
    const size_t bb = FIVE ? sizeof(struct elm_block_q5_k) : sizeof(struct elm_block_q4_k);
    const size_t qs_off =
        FIVE ? offsetof(struct elm_block_q5_k, qs) : offsetof(struct elm_block_q4_k, qs);
    for (int64_t b = 0; b < n / ELM_QK_K; b++) {
        if (pf)
            prefetch_span(pf + b * NR * bb, NR * bb);
        float dw[KQ_MR], dmw[KQ_MR];
        uint8_t sm[KQ_MR][16];
        const uint8_t *xb[KQ_MR];
        __m256i qh[KQ_MR];
        UNROLL for (int r = 0; r < NR; r++)
        {
            xb[r] = w + (size_t)r * ws + (size_t)b * bb;
            const struct elm_block_q4_k *x = (const struct elm_block_q4_k *)xb[r];
            dw[r] = h2f(x->d);
            dmw[r] = h2f(x->dmin);
            k4_scales(x->scales, sm[r]);
            if (FIVE)
                qh[r] = loadu256(((const struct elm_block_q5_k *)xb[r])->qh);
        }
        const struct elm_block_q8_k *v[KQ_T];
        UNROLL for (int t = 0; t < NT; t++) v[t] = BLK(elm_block_q8_k, a, as, t, b);
        if (FIVE) {
            UNROLL for (int t = 0; t < NT; t++)
            {
                const __m128i bs = k5_sum32(v[t]);
                UNROLL for (int r = 0; r < NR; r++)
                {
                    const int32_t tot =
                        k5_min_sum(_mm_loadl_epi64((const __m128i *)(sm[r] + 8)), bs);
                    summs[r][t] = fmaf(-(v[t]->d * dmw[r]), (float)tot, summs[r][t]);
                }
            }
        } else if (NT == 1) { /* rows in pairs: accm[r][0] of even r holds rows r, r + 1 */
            const __m256 da = _mm256_broadcast_ss(&v[0]->d);
            UNROLL for (int r = 0; r < NR; r += 2)
            {
                const int r1 = r + 1 < NR ? r + 1 : r;
                const __m256 scale = _mm256_mul_ps(
                    da, k4_min_slots(_mm256_set1_ps(-dmw[r]), _mm256_set1_ps(-dmw[r1])));
                accm[r][0] = k4_min_pair(accm[r][0], k4_mins16(sm[r]), k4_mins16(sm[r1]),
                                         v[0]->bsums, v[0]->bsums, scale);
            }
        } else {
            UNROLL for (int r = 0; r < NR; r++)
            {
                const __m256i mins16 = k4_mins16(sm[r]);
                const __m256 ndmw = _mm256_set1_ps(-dmw[r]);
                UNROLL for (int p = 0; 2 * p < NT; p++)
                {
                    const struct elm_block_q8_k *v0 = v[2 * p],
                                                *v1 = v[2 * p + 1 < NT ? 2 * p + 1 : 2 * p];
                    const __m256 scale = _mm256_mul_ps(
                        k4_min_slots(_mm256_broadcast_ss(&v0->d), _mm256_broadcast_ss(&v1->d)),
                        ndmw);
                    accm[r][p] =
                        k4_min_pair(accm[r][p], mins16, mins16, v0->bsums, v1->bsums, scale);
                }
            }
        }
        __m256i li[KQ_MR][KQ_T];
        UNROLL for (int r = 0; r < NR; r++)
        {
            UNROLL for (int t = 0; t < NT; t++) li[r][t] = _mm256_setzero_si256();
        }
        /* [sc0..sc7 | sc0..sc7] as int16; run R's scale is picked by one vpshufb */
        __m256i scv[KQ_MR];
        UNROLL for (int r = 0; r < NR; r++) scv[r] =
            _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)sm[r])));
        UNROLL for (int j = 0; j < 4; j++)
        { /* 64 elements: runs 2j (low nibbles), 2j+1 (high) */
            const __m256i pick0 = _mm256_set1_epi16((short)K16_PICK(2 * j));
            const __m256i pick1 = _mm256_set1_epi16((short)K16_PICK(2 * j + 1));
            __m256i q0[KQ_MR], q1[KQ_MR];
            UNROLL for (int r = 0; r < NR; r++)
            {
                const __m256i raw = loadu256(xb[r] + qs_off + 32 * j);
                const __m256i m4 = _mm256_set1_epi8(0x0f);
                q0[r] = _mm256_and_si256(raw, m4);
                q1[r] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), m4);
                if (FIVE) {
                    /* bit R of qh[l] is bit 4 of run R's element l */
                    q0[r] = _mm256_or_si256(q0[r], bits_move(qh[r], 2 * j, 4, 1));
                    q1[r] = _mm256_or_si256(q1[r], bits_move(qh[r], 2 * j + 1, 4, 1));
                }
            }
            UNROLL for (int t = 0; t < NT; t++)
            {
                const __m256i y0 = loadu256(v[t]->qs + 64 * j);
                const __m256i y1 = loadu256(v[t]->qs + 64 * j + 32);
                UNROLL for (int r = 0; r < NR; r++)
                {
                    li[r][t] = madd_acc(li[r][t], _mm256_maddubs_epi16(q0[r], y0),
                                        _mm256_shuffle_epi8(scv[r], pick0));
                    li[r][t] = madd_acc(li[r][t], _mm256_maddubs_epi16(q1[r], y1),
                                        _mm256_shuffle_epi8(scv[r], pick1));
                    KEEP_CHAIN(li[r][t]);
                }
            }
        }
        UNROLL for (int r = 0; r < NR; r++)
        {
            UNROLL for (int t = 0; t < NT; t++)
            {
                const __m256 d = _mm256_set1_ps(v[t]->d * dw[r]);
                acc[r][t] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(li[r][t]), acc[r][t]);
            }
        }
    }
    UNROLL for (int r = 0; r < NR; r++)
    {
        UNROLL for (int t = 0; t < NT; t++) y[t * ys + r] =
            hsum8_ps(acc[r][t]) + (FIVE      ? summs[r][t]
                                   : NT == 1 ? k4_min_fold(accm[r & ~1][0], r & 1)
                                             : k4_min_fold(accm[r][t / 2], t % 2));
    }
}

#define q4_k_impl(...) q45_k_impl(__VA_ARGS__, false)
#define q5_k_impl(...) q45_k_impl(__VA_ARGS__, true)

/* ---- Q6_K, Q2_K, Q3_K: 16 scales of 16 elements ---------------------------------------------- */

/* Run R's 32 quants of a Q6_K block as unsigned bytes 0..63: the low nibbles from ql, bits 2s,
 * 2s + 1 (s = R % 4) of qh as bits 4, 5. */
ALWAYS_INLINE __m256i q6_run_quants(const struct elm_block_q6_k *x, int R)
{
    const int h = R / 4, s = R % 4;
    const __m256i ql = loadu256(x->ql + 64 * h + 32 * (s & 1));
    const __m256i lo =
        _mm256_and_si256(s < 2 ? ql : _mm256_srli_epi16(ql, 4), _mm256_set1_epi8(0x0f));
    return _mm256_or_si256(lo, bits_move(loadu256(x->qh + 32 * h), 2 * s, 4, 2));
}

/* Run R's scales as int16: group 2R's in the low half, 2R + 1's in the high, picked by one
 * vpshufb from scv, the 16 scales eight per register (0..7, 8..15) repeated in both halves. */
ALWAYS_INLINE __m256i k16_run_scales(const __m256i scv[2], int R)
{
    const __m256i pick = _mm256_set_m128i(_mm_set1_epi16((short)K16_PICK((2 * R + 1) % 8)),
                                          _mm_set1_epi16((short)K16_PICK((2 * R) % 8)));
    return _mm256_shuffle_epi8(scv[R / 4], pick);
}

/* Two runs' bytes (or int16 values) in one register: int16 2k of lane k from x's int16 2k
 * (elements 4k, 4k + 1 of its run) and int16 2k + 1 from y's (lo); the same of int16 2k + 1,
 * elements 4k + 2, 4k + 3 (hi). */
ALWAYS_INLINE __m256i k16_pair_lo(__m256i x, __m256i y)
{
    return _mm256_blend_epi16(x, _mm256_slli_epi32(y, 16), 0xAA);
}

ALWAYS_INLINE __m256i k16_pair_hi(__m256i x, __m256i y)
{
    return _mm256_blend_epi16(_mm256_srli_epi32(x, 16), y, 0xAA);
}

/* Runs 2j and 2j + 1's scales paired as k16_pair_lo pairs their bytes: int16 2k of lane k is
 * run 2j's scale of lane k (group 4j + (k >= 4)), int16 2k + 1 run 2j + 1's (scv: as
 * k16_run_scales takes it). */
ALWAYS_INLINE __m256i k16_pair_scales(const __m256i scv[2], int j)
{
    return _mm256_shuffle_epi8(
        scv[j / 2], _mm256_set_m128i(_mm_set1_epi32(K16_PICK2((4 * j + 1) % 8, (4 * j + 3) % 8)),
                                     _mm_set1_epi32(K16_PICK2((4 * j) % 8, (4 * j + 2) % 8))));
}

/* Run R's 32 quants of a Q6_K, Q2_K or Q3_K block at xb as unsigned bytes (KIND 6, 2, 3): Q6_K's
 * q6_run_quants; Q2_K's 2 bits; Q3_K's 2 bits plus 4 * (bit R of hmask[l]), its -4 taken by the
 * caller as Q6_K's -32. */
ALWAYS_INLINE __m256i k16_run_quants(const uint8_t *xb, int R, const int KIND)
{
    if (KIND == 6)
        return q6_run_quants((const void *)xb, R);
    const int h = R / 4, s = R % 4;
    const uint8_t *qs = KIND == 2 ? ((const struct elm_block_q2_k *)xb)->qs
                                  : ((const struct elm_block_q3_k *)xb)->qs;
    const __m256i q = _mm256_and_si256(
        _mm256_srl_epi16(loadu256(qs + 32 * h), _mm_cvtsi32_si128(2 * s)), _mm256_set1_epi8(3));
    if (KIND == 2)
        return q;
    return _mm256_or_si256(
        q, bits_move(loadu256(((const struct elm_block_q3_k *)xb)->hmask), R, 2, 1));
}

#ifdef ELM_SIMD_VNNI
/* One token, NR (KQ_R_GEMV) rows of Q6_K or Q3_K (KIND 6, 3), with VNNI: decode
 * (docs/kernels-perf.md, "Decode: less around the products"). q16_impl's integers and float
 * steps, with less around the products: run R's offset-corrected 4-element sums D come from one
 * vpdpbusd started at the token's -offset * (sum of each 4 activations) instead of a vpmaddubsw
 * and a vpsubw per row (|D| <= 4 x 32 x 128 < 2^15, so D is exact and its high half is its
 * sign), and vpdpwssd scales them by (sc, 0) dwords, picked as k16_run_scales picks; the rows' d
 * come converted and multiplied by the token's as one vector. */
ALWAYS_INLINE void q16_gemv(int64_t n, const uint8_t *w, size_t ws, const uint8_t *a, float *y,
                            const uint8_t *pf, const int NR, const int KIND)
{
    _Static_assert(KQ_R_GEMV <= 8, "the rows' d in one vector");
    const size_t bb = KIND == 6 ? sizeof(struct elm_block_q6_k) : sizeof(struct elm_block_q3_k);
    const size_t d_off =
        KIND == 6 ? offsetof(struct elm_block_q6_k, d) : offsetof(struct elm_block_q3_k, d);
    __m256 acc[KQ_R_GEMV];
    UNROLL for (int r = 0; r < NR; r++) acc[r] = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / ELM_QK_K; b++) {
        if (pf)
            prefetch_span(pf + b * NR * bb, NR * bb);
        const struct elm_block_q8_k *v = (const struct elm_block_q8_k *)a + b;
        const uint8_t *xb[KQ_R_GEMV];
        __m256i scv[KQ_R_GEMV][2], li[KQ_R_GEMV];
        UNROLL for (int r = 0; r < NR; r++)
        {
            xb[r] = w + (size_t)r * ws + (size_t)b * bb;
            const __m256i sc = _mm256_cvtepi8_epi16(
                KIND == 6
                    ? _mm_loadu_si128((const void *)((const struct elm_block_q6_k *)xb[r])->scales)
                    : k3_scales(((const struct elm_block_q3_k *)xb[r])->scales));
            scv[r][0] = _mm256_permute2x128_si256(sc, sc, 0x00);
            scv[r][1] = _mm256_permute2x128_si256(sc, sc, 0x11);
        }
        float dv[8] __attribute__((aligned(32)));
        const float *dq = f16_times(f16_rows(xb, d_off, NR), v->d, dv);
        UNROLL for (int R = 0; R < 8; R++)
        {
            const __m256i ya = loadu256(v->qs + 32 * R);
            const __m256i corr =
                _mm256_sub_epi32(_mm256_setzero_si256(),
                                 _mm256_dpbusd_epi32(_mm256_setzero_si256(),
                                                     _mm256_set1_epi8(KIND == 6 ? 32 : 4), ya));
            /* (sc, 0) per dword: group 2R's in the low half, 2R + 1's in the high */
            const __m256i pick =
                _mm256_set_m128i(_mm_set1_epi32(K16_PICK((2 * R + 1) % 8) | (int)0x80800000),
                                 _mm_set1_epi32(K16_PICK((2 * R) % 8) | (int)0x80800000));
            UNROLL for (int r = 0; r < NR; r++)
            {
                const __m256i D = _mm256_dpbusd_epi32(corr, k16_run_quants(xb[r], R, KIND), ya);
                const __m256i scz = _mm256_shuffle_epi8(scv[r][R / 4], pick);
                li[r] = R ? _mm256_dpwssd_epi32(li[r], D, scz) : _mm256_madd_epi16(D, scz);
            }
        }
        UNROLL for (int r = 0; r < NR; r++) acc[r] =
            _mm256_fmadd_ps(_mm256_broadcast_ss(&dq[r]), _mm256_cvtepi32_ps(li[r]), acc[r]);
    }
    UNROLL for (int r = 0; r < NR; r++) y[r] = hsum8_ps(acc[r]);
}
#endif

/* KIND 6, 2 or 3. Per run R (0..7) the 32 quants as unsigned bytes q, from which Q6_K and
 * Q3_K subtract their offset (32; 4) as pair sums.
 */
ALWAYS_INLINE void q16_impl(TILE_ARGS, const int NR, const int NT, const int KIND)
{
#ifdef ELM_SIMD_VNNI
    if (KIND != 2 && NT == 1 && NR == KQ_R_GEMV) {
        q16_gemv(n, w, ws, a, y, pf, NR, KIND);
        return;
    }
#endif
    const bool Q6 = KIND == 6;
    const size_t bb = Q6          ? sizeof(struct elm_block_q6_k)
                      : KIND == 2 ? sizeof(struct elm_block_q2_k)
                                  : sizeof(struct elm_block_q3_k);
    __m256 acc[KQ_MR][KQ_T];
    UNROLL for (int r = 0; r < NR; r++)
    {
        UNROLL for (int t = 0; t < NT; t++) acc[r][t] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < n / ELM_QK_K; b++) {
        if (pf)
            prefetch_span(pf + b * NR * bb, NR * bb);
        const uint8_t *xb[KQ_MR];
        __m256i sc[KQ_MR]; /* the 16 scales as int16 */
        float dw[KQ_MR], dmw[KQ_MR];
        UNROLL for (int r = 0; r < NR; r++)
        {
            xb[r] = w + (size_t)r * ws + (size_t)b * bb;
            if (Q6) {
                const struct elm_block_q6_k *x = (const void *)xb[r];
                dw[r] = h2f(x->d);
                sc[r] = _mm256_cvtepi8_epi16(_mm_loadu_si128((const void *)x->scales));
            } else if (KIND == 2) {
                const struct elm_block_q2_k *x = (const void *)xb[r];
                dw[r] = h2f(x->d);
                dmw[r] = h2f(x->dmin);
                const __m128i s8 = _mm_loadu_si128((const void *)x->scales);
                sc[r] = _mm256_cvtepu8_epi16(_mm_and_si128(s8, _mm_set1_epi8(0x0f)));
            } else {
                const struct elm_block_q3_k *x = (const void *)xb[r];
                dw[r] = h2f(x->d);
                sc[r] = _mm256_cvtepi8_epi16(k3_scales(x->scales));
            }
        }
        const struct elm_block_q8_k *v[KQ_T];
        UNROLL for (int t = 0; t < NT; t++)
        {
            v[t] = BLK(elm_block_q8_k, a, as, t, b);
            if (KIND == 2) {
                /* the minimum term first, in the same lanes: lane k covers groups 2k, 2k+1 */
                const __m256i bs = loadu256(v[t]->bsums);
                UNROLL for (int r = 0; r < NR; r++)
                {
                    const struct elm_block_q2_k *x = (const void *)xb[r];
                    const __m128i m8 =
                        _mm_and_si128(_mm_srli_epi16(_mm_loadu_si128((const void *)x->scales), 4),
                                      _mm_set1_epi8(0x0f));
                    const __m256i mins = _mm256_madd_epi16(_mm256_cvtepu8_epi16(m8), bs);
                    const __m256 dmin = _mm256_set1_ps(-(v[t]->d * dmw[r]));
                    acc[r][t] = _mm256_fmadd_ps(dmin, _mm256_cvtepi32_ps(mins), acc[r][t]);
                }
            }
        }
        __m256i li[KQ_MR][KQ_T];
        UNROLL for (int r = 0; r < NR; r++)
        {
            UNROLL for (int t = 0; t < NT; t++) li[r][t] = _mm256_setzero_si256();
        }
        /* the 16 scales as int16, eight per register and repeated in both halves; run R's
         * pair is picked by one vpshufb */
        __m256i scv[KQ_MR][2];
        UNROLL for (int r = 0; r < NR; r++)
        {
            scv[r][0] = _mm256_permute2x128_si256(sc[r], sc[r], 0x00);
            scv[r][1] = _mm256_permute2x128_si256(sc[r], sc[r], 0x11);
        }
        UNROLL for (int R = 0; R < 8; R++)
        {
            __m256i q[KQ_MR];
            UNROLL for (int r = 0; r < NR; r++) q[r] = k16_run_quants(xb[r], R, KIND);
            UNROLL for (int t = 0; t < NT; t++)
            {
                const __m256i ya = loadu256(v[t]->qs + 32 * R);
                /* the offset's pair sums, once for all rows: 32 * a (Q6_K), 4 * a (Q3_K) */
                const __m256i off =
                    KIND == 6 || KIND == 3
                        ? _mm256_maddubs_epi16(_mm256_set1_epi8(KIND == 6 ? 32 : 4), ya)
                        : _mm256_setzero_si256();
                UNROLL for (int r = 0; r < NR; r++)
                {
                    __m256i p = _mm256_maddubs_epi16(q[r], ya);
                    if (KIND == 6 || KIND == 3)
                        p = _mm256_sub_epi16(p, off);
                    li[r][t] = madd_acc(li[r][t], p, k16_run_scales(scv[r], R));
                    KEEP_CHAIN(li[r][t]);
                }
            }
        }
        UNROLL for (int r = 0; r < NR; r++)
        {
            UNROLL for (int t = 0; t < NT; t++)
            {
                const __m256 d = _mm256_set1_ps(v[t]->d * dw[r]);
                acc[r][t] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(li[r][t]), acc[r][t]);
            }
        }
    }
    UNROLL for (int r = 0; r < NR; r++)
    {
        UNROLL for (int t = 0; t < NT; t++) y[t * ys + r] = hsum8_ps(acc[r][t]);
    }
}

#define q6_k_impl(...) q16_impl(__VA_ARGS__, 6)
#define q2_k_impl(...) q16_impl(__VA_ARGS__, 2)
#define q3_k_impl(...) q16_impl(__VA_ARGS__, 3)

DEFINE_TILE(q4_k_tile, q4_k_impl, KQ_R, KQ_T, KQ_R_GEMV)
DEFINE_TILE(q5_k_tile, q5_k_impl, KQ_R, KQ_T, KQ_R_GEMV)
DEFINE_TILE(q6_k_tile, q6_k_impl, KQ_R, KQ_T, KQ_R_GEMV)
DEFINE_TILE(q2_k_tile, q2_k_impl, KQ_R, KQ_T, KQ_R_GEMV)
DEFINE_TILE(q3_k_tile, q3_k_impl, KQ_R, KQ_T, KQ_R_GEMV)

#define DEFINE_VEC_DOT(name, impl)                                                                 \
    static void name(int64_t n, float *s, const void *w, const void *a)                            \
    {                                                                                              \
        impl(n, (const uint8_t *)w, 0, (const uint8_t *)a, 0, s, 0, NULL, 1, 1);                   \
    }

DEFINE_VEC_DOT(q4_k_vec_dot, q4_k_impl)
DEFINE_VEC_DOT(q5_k_vec_dot, q5_k_impl)
DEFINE_VEC_DOT(q6_k_vec_dot, q6_k_impl)
DEFINE_VEC_DOT(q2_k_vec_dot, q2_k_impl)
DEFINE_VEC_DOT(q3_k_vec_dot, q3_k_impl)

/* ---- dequantization -------------------------------------------------------------------------- */

/* dst[0..32) from the 32 quants of one run (as int8 bytes) with the reference's expression per
 * 16-element half h: (a_h * q) - b_h when OFFSET, else a_h * q (a_h already the rounded
 * product d * scale, as in the reference). */
ALWAYS_INLINE void run_to_float(__m256i q, float a0, float a1, float b0, float b1, bool offset,
                                float *dst)
{
    UNROLL for (int i = 0; i < 4; i++)
    {
        const __m128i q8 = i < 2 ? _mm256_castsi256_si128(q) : _mm256_extracti128_si256(q, 1);
        const __m256 f =
            _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(i % 2 ? _mm_srli_si128(q8, 8) : q8));
        __m256 v = _mm256_mul_ps(_mm256_set1_ps(i < 2 ? a0 : a1), f);
        if (offset)
            v = _mm256_sub_ps(v, _mm256_set1_ps(i < 2 ? b0 : b1));
        _mm256_storeu_ps(dst + 8 * i, v);
    }
}

static void q4_k_to_float(const void *src, float *dst, int64_t n)
{
    const struct elm_block_q4_k *x = src;
    for (int64_t i = 0; i < n / ELM_QK_K; i++) {
        const float d = h2f(x[i].d), dmin = h2f(x[i].dmin);
        uint8_t sm[16];
        k4_scales(x[i].scales, sm);
        for (int j = 0; j < 4; j++) {
            const __m256i raw = loadu256(x[i].qs + 32 * j), m4 = _mm256_set1_epi8(0x0f);
            const float dl0 = d * (float)sm[2 * j], ml0 = dmin * (float)sm[8 + 2 * j];
            const float dl1 = d * (float)sm[2 * j + 1], ml1 = dmin * (float)sm[9 + 2 * j];
            float *y = dst + i * ELM_QK_K + 64 * j;
            run_to_float(_mm256_and_si256(raw, m4), dl0, dl0, ml0, ml0, true, y);
            run_to_float(_mm256_and_si256(_mm256_srli_epi16(raw, 4), m4), dl1, dl1, ml1, ml1, true,
                         y + 32);
        }
    }
}

static void q5_k_to_float(const void *src, float *dst, int64_t n)
{
    const struct elm_block_q5_k *x = src;
    for (int64_t i = 0; i < n / ELM_QK_K; i++) {
        const float d = h2f(x[i].d), dmin = h2f(x[i].dmin);
        uint8_t sm[16];
        k4_scales(x[i].scales, sm);
        const __m256i qh = loadu256(x[i].qh), one = _mm256_set1_epi8(1);
        for (int j = 0; j < 4; j++) {
            const __m256i raw = loadu256(x[i].qs + 32 * j), m4 = _mm256_set1_epi8(0x0f);
            const __m256i h0 =
                _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * j)), one);
            const __m256i h1 =
                _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * j + 1)), one);
            const __m256i q0 = _mm256_or_si256(_mm256_and_si256(raw, m4), _mm256_slli_epi16(h0, 4));
            const __m256i q1 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(raw, 4), m4),
                                               _mm256_slli_epi16(h1, 4));
            const float dl0 = d * (float)sm[2 * j], ml0 = dmin * (float)sm[8 + 2 * j];
            const float dl1 = d * (float)sm[2 * j + 1], ml1 = dmin * (float)sm[9 + 2 * j];
            float *y = dst + i * ELM_QK_K + 64 * j;
            run_to_float(q0, dl0, dl0, ml0, ml0, true, y);
            run_to_float(q1, dl1, dl1, ml1, ml1, true, y + 32);
        }
    }
}

static void q6_k_to_float(const void *src, float *dst, int64_t n)
{
    const struct elm_block_q6_k *x = src;
    for (int64_t i = 0; i < n / ELM_QK_K; i++) {
        const float d = h2f(x[i].d);
        for (int R = 0; R < 8; R++) {
            const int h = R / 4, s = R % 4;
            const __m256i ql = loadu256(x[i].ql + 64 * h + 32 * (s & 1));
            const __m256i lo =
                _mm256_and_si256(s < 2 ? ql : _mm256_srli_epi16(ql, 4), _mm256_set1_epi8(0x0f));
            const __m256i hi = _mm256_and_si256(
                _mm256_srl_epi16(loadu256(x[i].qh + 32 * h), _mm_cvtsi32_si128(2 * s)),
                _mm256_set1_epi8(3));
            const __m256i q = _mm256_sub_epi8(_mm256_or_si256(lo, _mm256_slli_epi16(hi, 4)),
                                              _mm256_set1_epi8(32));
            run_to_float(q, d * (float)x[i].scales[2 * R], d * (float)x[i].scales[2 * R + 1], 0, 0,
                         false, dst + i * ELM_QK_K + 32 * R);
        }
    }
}

/* ---- Q8_K activation quantization ------------------------------------------------------------ */

/* ggml's quantize_row_q8_K_ref (ref: elm_ref_q8_k_from_float): the signed element of largest
 * magnitude (the first one on ties) maps to -127; values x * (-127 / max) rounded half to even
 * (vcvtps2dq), at most 127; bsums the exact sums of each 16; d = 1 / iscale. */
static void q8_k_from_float(const float *src, void *dst, int64_t n)
{
    struct elm_block_q8_k *y = dst;
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int64_t i = 0; i < n / ELM_QK_K; i++) {
        const float *x = src + i * ELM_QK_K;
        __m256 mx = _mm256_setzero_ps();
        for (int j = 0; j < ELM_QK_K; j += 8)
            mx = _mm256_max_ps(mx, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + j)));
        __m128 m = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        m = _mm_max_ss(m, _mm_movehdup_ps(m));
        const float amax = _mm_cvtss_f32(m);
        if (amax == 0.0f) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        /* the first element whose magnitude is amax, with its sign */
        const __m256 am = _mm256_set1_ps(amax);
        float max = 0.0f;
        for (int j = 0; j < ELM_QK_K; j += 8) {
            const __m256 ax = _mm256_andnot_ps(sign, _mm256_loadu_ps(x + j));
            const int hit = _mm256_movemask_ps(_mm256_cmp_ps(ax, am, _CMP_EQ_OQ));
            if (hit) {
                max = x[j + __builtin_ctz((unsigned)hit)];
                break;
            }
        }
        const float iscale = -127.0f / max;
        const __m256 is = _mm256_set1_ps(iscale);
        __m256i sums[16];
        for (int j = 0; j < ELM_QK_K; j += 32) {
            __m256i q[4];
            UNROLL for (int k = 0; k < 4; k++)
            {
                q[k] = _mm256_cvtps_epi32(_mm256_mul_ps(is, _mm256_loadu_ps(x + j + 8 * k)));
                q[k] = _mm256_min_epi32(q[k], _mm256_set1_epi32(127));
            }
            sums[j / 16] = _mm256_add_epi32(q[0], q[1]);
            sums[j / 16 + 1] = _mm256_add_epi32(q[2], q[3]);
            const __m256i p01 = _mm256_packs_epi32(q[0], q[1]),
                          p23 = _mm256_packs_epi32(q[2], q[3]);
            const __m256i p = _mm256_permutevar8x32_epi32(
                _mm256_packs_epi16(p01, p23), _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
            _mm256_storeu_si256((__m256i *)(y[i].qs + j), p);
        }
        const __m256i s0 =
            hsum8x8_epi32(sums[0], sums[1], sums[2], sums[3], sums[4], sums[5], sums[6], sums[7]);
        const __m256i s1 = hsum8x8_epi32(sums[8], sums[9], sums[10], sums[11], sums[12], sums[13],
                                         sums[14], sums[15]);
        /* packs interleaves 128-bit halves: restore the group order */
        const __m256i bs = _mm256_permute4x64_epi64(_mm256_packs_epi32(s0, s1), 0xd8);
        _mm256_storeu_si256((__m256i *)y[i].bsums, bs);
        y[i].d = 1 / iscale;
    }
}

#endif
