/* tile.h — matmul tiles of the ARM variants (kernels/tiles.h) for Q4_0 and Q8_0 weights: four
 * weight rows against one to four activation rows per call, each weight block unpacked once
 * for all tokens and each activation block loaded once for the four rows. Compiled once per
 * ARM variant (simd.h); included only by the variant files, after q_legacy.h.
 *
 * Every output gets exactly the operations of the variant's vec_dot (q_legacy.h), in the same
 * order, so a tile's bits are vec_dot's whatever the shape:
 *   - Q4_0 is one fused chain per output over whole-block integer sums. The tile keeps four
 *     outputs' chains in one float32x4_t (four rows of one token): the four blocks' integer
 *     sums are gathered into one vector by pairwise adds (exact), and one vfmaq advances the
 *     four chains, each lane fmaf(isum, d_w * d_a, sum) as vec_dot computes it.
 *   - Q8_0 keeps the reference's eight lanes per output (two float32x4_t), as vec_dot does;
 *     the tile only shares the loads.
 *   - i8mm: SMMLA multiplies a 2x8 block of weight bytes (two rows) by a 2x8 block of
 *     activation bytes (two tokens) into the 2x2 integer dot products, eight byte products per
 *     lane. Eight products merge two of the reference's four-element lanes, so SMMLA cannot
 *     serve the lane-structured types (Q8_0, Q4_1, Q5_x, the K-quants: their lanes would have
 *     to be summed separately, leaving SMMLA no better than SDOT); Q4_0 sums whole blocks, so
 *     four SMMLA give the four (row, token) block sums of a 2x2 pair at once, half the
 *     instructions of eight SDOT. With one token (decode) the second token column would be
 *     wasted, so decode keeps SDOT.
 * The `stream` hint of tiles.h is not used: four sequential row streams are what the ARM cores'
 * hardware prefetchers follow without help.
 */
#ifndef ELM_ARM_TILE_H
#define ELM_ARM_TILE_H

#include "kernels/arm/q_legacy.h"
#include "kernels/arm/simd.h"
#include "kernels/blocks.h"
#include "kernels/tiles.h"

#define ARM_TILE_R 4 /* rows per tile: one float32x4_t of Q4_0 chains */
#define Q40_TILE_T 4 /* tokens per Q4_0 tile (i8mm: two SMMLA token pairs) */
#define Q80_TILE_T 2 /* tokens per Q8_0 tile: 4 rows x 2 tokens x 2 = 16 lane accumulators */

/* Block b of row r of a weight (or activation) matrix whose rows are `stride` bytes apart. */
#define ROW_BLK(type, base, stride, r, b)                                                          \
    ((const struct type *)((base) + (size_t)(r) * (stride)) + (b))

/* Q4_0 weights of one block as signed bytes: elements 0..15 in *w0, 16..31 in *w1. */
ALWAYS_INLINE void q4_0_signed(const struct elm_block_q4_0 *x, int8x16_t *w0, int8x16_t *w1)
{
    uint8x16_t lo, hi;
    unpack_nibbles16(x->qs, &lo, &hi);
    *w0 = vsubq_s8(vreinterpretq_s8_u8(lo), vdupq_n_s8(8));
    *w1 = vsubq_s8(vreinterpretq_s8_u8(hi), vdupq_n_s8(8));
}

/* The Q4_0 blocks b of four rows: signed quants and scales (as floats, lane = row). */
ALWAYS_INLINE float32x4_t q4_0_rows4_block(const uint8_t *w, size_t ws, int64_t b, int8x16_t *w0,
                                           int8x16_t *w1)
{
    float d[ARM_TILE_R];
    UNROLL for (int r = 0; r < ARM_TILE_R; r++)
    {
        const struct elm_block_q4_0 *x = ROW_BLK(elm_block_q4_0, w, ws, r, b);
        q4_0_signed(x, &w0[r], &w1[r]);
        d[r] = h2f(x->d);
    }
    return vld1q_f32(d);
}

/* Four rows x NT tokens (NT a compile-time 1..4), SDOT or its NEON equivalent (dot16). */
ALWAYS_INLINE void q4_0_rows4(int64_t n, const uint8_t *w, size_t ws, const uint8_t *a, size_t as,
                              float *y, int64_t ys, const int NT)
{
    float32x4_t acc[Q40_TILE_T];
    UNROLL for (int t = 0; t < NT; t++) acc[t] = vdupq_n_f32(0.0f);
    for (int64_t b = 0; b < n / ELM_QK; b++) {
        int8x16_t w0[ARM_TILE_R], w1[ARM_TILE_R];
        const float32x4_t dw = q4_0_rows4_block(w, ws, b, w0, w1);
        UNROLL for (int t = 0; t < NT; t++)
        {
            const struct elm_block_q8_0 *yb = ROW_BLK(elm_block_q8_0, a, as, t, b);
            const int8x16_t a0 = vld1q_s8(yb->qs), a1 = vld1q_s8(yb->qs + 16);
            int32x4_t p[ARM_TILE_R];
            UNROLL for (int r = 0; r < ARM_TILE_R; r++) p[r] =
                dot16(dot16(vdupq_n_s32(0), w0[r], a0), w1[r], a1);
            /* lane r = the whole-block sum of row r (vec_dot's vaddvq), exact */
            const int32x4_t isum = vpaddq_s32(vpaddq_s32(p[0], p[1]), vpaddq_s32(p[2], p[3]));
            acc[t] = vfmaq_f32(acc[t], vcvtq_f32_s32(isum), vmulq_n_f32(dw, h2f(yb->d)));
        }
    }
    UNROLL for (int t = 0; t < NT; t++) vst1q_f32(y + t * ys, acc[t]);
}

/* Four rows x NT tokens (NT a compile-time 1..2) of Q8_0, vec_dot's eight lanes per output. */
ALWAYS_INLINE void q8_0_rows4(int64_t n, const uint8_t *w, size_t ws, const uint8_t *a, size_t as,
                              float *y, int64_t ys, const int NT)
{
    float32x4_t lo[ARM_TILE_R][Q80_TILE_T], hi[ARM_TILE_R][Q80_TILE_T];
    UNROLL for (int r = 0; r < ARM_TILE_R; r++) UNROLL for (int t = 0; t < NT; t++)
    {
        lo[r][t] = vdupq_n_f32(0.0f);
        hi[r][t] = lo[r][t];
    }
    for (int64_t b = 0; b < n / ELM_QK; b++) {
        int8x16_t w0[ARM_TILE_R], w1[ARM_TILE_R];
        float dw[ARM_TILE_R];
        UNROLL for (int r = 0; r < ARM_TILE_R; r++)
        {
            const struct elm_block_q8_0 *x = ROW_BLK(elm_block_q8_0, w, ws, r, b);
            w0[r] = vld1q_s8(x->qs);
            w1[r] = vld1q_s8(x->qs + 16);
            dw[r] = h2f(x->d);
        }
        UNROLL for (int t = 0; t < NT; t++)
        {
            const struct elm_block_q8_0 *yb = ROW_BLK(elm_block_q8_0, a, as, t, b);
            const float da = h2f(yb->d);
            UNROLL for (int r = 0; r < ARM_TILE_R; r++)
                block_lanes(&lo[r][t], &hi[r][t], dw[r] * da, w0[r], w1[r], yb->qs);
        }
    }
    UNROLL for (int r = 0; r < ARM_TILE_R; r++) UNROLL for (int t = 0; t < NT; t++) y[t * ys + r] =
        hsum8_f32(lo[r][t], hi[r][t]);
}

/* ---- i8mm: Q4_0 by SMMLA --------------------------------------------------------------------- */

#ifdef __ARM_FEATURE_MATMUL_INT8
/* Two 16-byte rows as the 2x8 operands of SMMLA: *lo = (x[0..8), y[0..8)), *hi = (x[8..16),
 * y[8..16)). */
ALWAYS_INLINE void pair_rows(int8x16_t x, int8x16_t y, int8x16_t *lo, int8x16_t *hi)
{
    const int64x2_t a = vreinterpretq_s64_s8(x), b = vreinterpretq_s64_s8(y);
    *lo = vreinterpretq_s8_s64(vzip1q_s64(a, b));
    *hi = vreinterpretq_s8_s64(vzip2q_s64(a, b));
}

/* Four rows x NP token pairs (NP a compile-time 1..2). acc[q][p] holds, for rows 2q, 2q+1 and
 * tokens 2p, 2p+1, the chains (r0 t0, r0 t1, r1 t0, r1 t1): SMMLA's output order. */
ALWAYS_INLINE void q4_0_rows4_mm(int64_t n, const uint8_t *w, size_t ws, const uint8_t *a,
                                 size_t as, float *y, int64_t ys, const int NP)
{
    float32x4_t acc[2][2];
    UNROLL for (int q = 0; q < 2; q++) UNROLL for (int p = 0; p < NP; p++) acc[q][p] =
        vdupq_n_f32(0.0f);
    for (int64_t b = 0; b < n / ELM_QK; b++) {
        int8x16_t w0[ARM_TILE_R], w1[ARM_TILE_R], wm[2][4];
        const float32x4_t dw = q4_0_rows4_block(w, ws, b, w0, w1);
        UNROLL for (int q = 0; q < 2; q++)
        {
            pair_rows(w0[2 * q], w0[2 * q + 1], &wm[q][0], &wm[q][1]);
            pair_rows(w1[2 * q], w1[2 * q + 1], &wm[q][2], &wm[q][3]);
        }
        /* row scales per SMMLA lane: (d0, d0, d1, d1) and (d2, d2, d3, d3) */
        const float32x4_t dr[2] = {vzip1q_f32(dw, dw), vzip2q_f32(dw, dw)};
        UNROLL for (int p = 0; p < NP; p++)
        {
            const struct elm_block_q8_0 *y0 = ROW_BLK(elm_block_q8_0, a, as, 2 * p, b);
            const struct elm_block_q8_0 *y1 = ROW_BLK(elm_block_q8_0, a, as, 2 * p + 1, b);
            int8x16_t am[4];
            pair_rows(vld1q_s8(y0->qs), vld1q_s8(y1->qs), &am[0], &am[1]);
            pair_rows(vld1q_s8(y0->qs + 16), vld1q_s8(y1->qs + 16), &am[2], &am[3]);
            /* token scales per lane: (e0, e1, e0, e1) */
            const float32x2_t e = {h2f(y0->d), h2f(y1->d)};
            const float32x4_t da = vcombine_f32(e, e);
            UNROLL for (int q = 0; q < 2; q++)
            {
                int32x4_t c = vmmlaq_s32(vdupq_n_s32(0), wm[q][0], am[0]);
                UNROLL for (int k = 1; k < 4; k++) c = vmmlaq_s32(c, wm[q][k], am[k]);
                /* each lane fmaf(isum, d_w * d_a, chain), as vec_dot */
                acc[q][p] = vfmaq_f32(acc[q][p], vcvtq_f32_s32(c), vmulq_f32(dr[q], da));
            }
        }
    }
    UNROLL for (int q = 0; q < 2; q++) UNROLL for (int p = 0; p < NP; p++)
    {
        float v[4];
        vst1q_f32(v, acc[q][p]);
        y[2 * p * ys + 2 * q] = v[0];
        y[(2 * p + 1) * ys + 2 * q] = v[1];
        y[2 * p * ys + 2 * q + 1] = v[2];
        y[(2 * p + 1) * ys + 2 * q + 1] = v[3];
    }
}

/* Token pairs by SMMLA (two pairs per pass over the weights), an odd last token by SDOT. */
ALWAYS_INLINE void q4_0_tile_rows4(int64_t n, const uint8_t *w, size_t ws, const uint8_t *a,
                                   size_t as, int nt, float *y, int64_t ys)
{
    int t = 0;
    for (; t + 4 <= nt; t += 4)
        q4_0_rows4_mm(n, w, ws, a + (size_t)t * as, as, y + t * ys, ys, 2);
    if (t + 2 <= nt) {
        q4_0_rows4_mm(n, w, ws, a + (size_t)t * as, as, y + t * ys, ys, 1);
        t += 2;
    }
    if (t < nt)
        q4_0_rows4(n, w, ws, a + (size_t)t * as, as, y + t * ys, ys, 1);
}
#else
/* Without i8mm: one pass over the weights for all nt <= 4 tokens. */
ALWAYS_INLINE void q4_0_tile_rows4(int64_t n, const uint8_t *w, size_t ws, const uint8_t *a,
                                   size_t as, int nt, float *y, int64_t ys)
{
    switch (nt) {
    case 1:
        q4_0_rows4(n, w, ws, a, as, y, ys, 1);
        break;
    case 2:
        q4_0_rows4(n, w, ws, a, as, y, ys, 2);
        break;
    case 3:
        q4_0_rows4(n, w, ws, a, as, y, ys, 3);
        break;
    default:
        q4_0_rows4(n, w, ws, a, as, y, ys, 4);
        break;
    }
}
#endif

/* ---- the elm_tile_fn of each type ------------------------------------------------------------ */

/* Rows that do not fill a tile: vec_dot per element (its bits by definition). */
ALWAYS_INLINE void rows_by_vec_dot(void (*dot)(int64_t, float *, const void *, const void *),
                                   int64_t n, const uint8_t *w, size_t ws, int r0, int nr,
                                   const uint8_t *a, size_t as, int nt, float *y, int64_t ys)
{
    for (int r = r0; r < nr; r++)
        for (int t = 0; t < nt; t++)
            dot(n, &y[t * ys + r], w + (size_t)r * ws, a + (size_t)t * as);
}

static void q4_0_tile(int64_t n, const void *w, size_t ws, int nr, const void *a, size_t as, int nt,
                      float *y, int64_t ys, int stream)
{
    (void)stream;
    const uint8_t *wb = w, *ab = a;
    int r = 0;
    for (; r + ARM_TILE_R <= nr; r += ARM_TILE_R)
        q4_0_tile_rows4(n, wb + (size_t)r * ws, ws, ab, as, nt, y + r, ys);
    rows_by_vec_dot(q4_0_vec_dot, n, wb, ws, r, nr, ab, as, nt, y, ys);
}

static void q8_0_tile(int64_t n, const void *w, size_t ws, int nr, const void *a, size_t as, int nt,
                      float *y, int64_t ys, int stream)
{
    (void)stream;
    const uint8_t *wb = w, *ab = a;
    int r = 0;
    for (; r + ARM_TILE_R <= nr; r += ARM_TILE_R) {
        if (nt == 1)
            q8_0_rows4(n, wb + (size_t)r * ws, ws, ab, as, y + r, ys, 1);
        else
            q8_0_rows4(n, wb + (size_t)r * ws, ws, ab, as, y + r, ys, 2);
    }
    rows_by_vec_dot(q8_0_vec_dot, n, wb, ws, r, nr, ab, as, nt, y, ys);
}

#endif
