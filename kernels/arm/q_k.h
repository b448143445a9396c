/* q_k.h — NEON kernels of the K-quants: the Q8_K activation quantizer and the dot products of
 * Q2_K ... Q6_K weights against Q8_K activations. Compiled once per ARM variant (simd.h);
 * included only by the variant files.
 *
 * The float part is the reference's (kernels/ref/q_k.c): eight float lanes, lane k the integer
 * products of elements 4k..4k+3 of every run of 32 elements, each run's 16-element halves scaled
 * by their group's scale (an exact int32 sum over the 8 runs), then one fused multiply-add per
 * super-block. dot16 leaves lanes 0..3 for the first 16 elements of a run and 4..7 for the
 * second 16, so each run is two dot16 and two integer multiply-adds by its two scales (struct
 * k_lanes). The minimum terms go where the reference puts them: the same lanes first (Q2_K),
 * four lanes of their own (Q4_K) or a scalar chain (Q5_K).
 */
#ifndef ELM_ARM_Q_K_H
#define ELM_ARM_Q_K_H

#include "kernels/arm/simd.h"
#include "kernels/blocks.h"
#include "kernels/ref/ref.h"

/* ---- Q8_K activations ------------------------------------------------------------------------ */

static void q8_k_from_float(const float *src, void *dst, int64_t n)
{
    struct elm_block_q8_k *y = dst;
    for (int64_t i = 0; i < n / ELM_QK_K; i++) {
        const float *x = src + i * ELM_QK_K;
        float32x4_t mx = vdupq_n_f32(0.0f);
        UNROLL for (int j = 0; j < ELM_QK_K; j += 4) mx =
            vmaxq_f32(mx, vabsq_f32(vld1q_f32(x + j)));
        const float amax = vmaxvq_f32(mx);
        if (amax == 0.0f) {
            memset(&y[i], 0, sizeof y[i]);
            continue;
        }
        /* the signed value of the first element of largest magnitude, as the reference picks */
        int first = 0;
        while (fabsf(x[first]) != amax)
            first++;
        const float iscale = -127.0f / x[first];
        const int32x4_t top = vdupq_n_s32(127);
        for (int j = 0; j < ELM_QK_K; j += 16) {
            int16x8_t h[2];
            UNROLL for (int k = 0; k < 2; k++)
            {
                const float *p = x + j + 8 * k;
                const int32x4_t a =
                    vminq_s32(vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(p), iscale)), top);
                const int32x4_t b =
                    vminq_s32(vcvtnq_s32_f32(vmulq_n_f32(vld1q_f32(p + 4), iscale)), top);
                h[k] = vcombine_s16(vqmovn_s32(a), vqmovn_s32(b));
            }
            const int8x16_t q = vcombine_s8(vqmovn_s16(h[0]), vqmovn_s16(h[1]));
            vst1q_s8(y[i].qs + j, q);
            y[i].bsums[j / 16] = (int16_t)vaddlvq_s8(q);
        }
        y[i].d = 1 / iscale;
    }
}

/* ---- the lanes of one super-block ------------------------------------------------------------ */

/* A super-block's integer lanes, lane k = sum over the 8 runs r of sc(r, k) * D(r, k) (ilo: the
 * runs' first 16 elements, ihi: the second 16, each with its group's scale); the scales are
 * taken by lane from vectors made once per super-block, not moved into a register per run.
 * With SDOT each run's dot16 goes into a running total T_r = D_0 + ... + D_r instead of a
 * zeroed register of its own, and sum_r sc_r D_r = sum_r (sc_r - sc_{r+1}) T_r with sc_8 = 0
 * (summation by parts): exact in int32, so the lanes are the reference's. Without SDOT, dot16
 * ends with an add that a zero accumulator drops, so there each D_r is scaled by sc_r itself. */
#ifdef __ARM_FEATURE_DOTPROD
#define K_BY_PARTS 1
#else
#define K_BY_PARTS 0
#endif
struct k_lanes {
    int32x4_t ilo, ihi;       /* the lanes */
    int32x4_t tlo, thi;       /* K_BY_PARTS: the running dot16 totals */
    int32x4_t clo[2], chi[2]; /* per run (0..3, 4..7): sc_r - sc_{r+1}, or sc_r */
};

/* The factors of the 8 runs' scales s (runs 0..3, 4..7) for run_lanes. */
ALWAYS_INLINE void k_factors(int32x4_t s0, int32x4_t s1, int32x4_t c[2])
{
    c[0] = K_BY_PARTS ? vsubq_s32(s0, vextq_s32(s0, s1, 1)) : s0;
    c[1] = K_BY_PARTS ? vsubq_s32(s1, vextq_s32(s1, vdupq_n_s32(0), 1)) : s1;
}

/* Starts a super-block's lanes; the scales of the runs' first and second 16 elements as int32
 * (slo, shi: runs 0..3 and 4..7 each). */
ALWAYS_INLINE void k_lanes_init(struct k_lanes *l, const int32x4_t slo[2], const int32x4_t shi[2])
{
    l->ilo = l->ihi = l->tlo = l->thi = vdupq_n_s32(0);
    k_factors(slo[0], slo[1], l->clo);
    k_factors(shi[0], shi[1], l->chi);
}

/* Run r's 32 weights (w0: elements 0..15, w1: 16..31) against its activations qa. */
ALWAYS_INLINE void run_lanes(struct k_lanes *l, int r, int8x16_t w0, int8x16_t w1, const int8_t *qa)
{
    const int32x4_t z = vdupq_n_s32(0);
    const int32x4_t dlo = dot16(K_BY_PARTS ? l->tlo : z, w0, vld1q_s8(qa));
    const int32x4_t dhi = dot16(K_BY_PARTS ? l->thi : z, w1, vld1q_s8(qa + 16));
    l->tlo = dlo;
    l->thi = dhi;
    l->ilo = vmlaq_laneq_s32(l->ilo, dlo, l->clo[r / 4], r % 4);
    l->ihi = vmlaq_laneq_s32(l->ihi, dhi, l->chi[r / 4], r % 4);
}

/* 8 unsigned byte scales as int32 (runs 0..3, 4..7). */
ALWAYS_INLINE void k_scales_u8(uint8x8_t b, int32x4_t s[2])
{
    const uint16x8_t h = vmovl_u8(b);
    s[0] = vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(h)));
    s[1] = vreinterpretq_s32_u32(vmovl_high_u16(h));
}

/* 8 signed byte scales as int32 (runs 0..3, 4..7). */
ALWAYS_INLINE void k_scales_s8(int8x8_t b, int32x4_t s[2])
{
    const int16x8_t h = vmovl_s8(b);
    s[0] = vmovl_s16(vget_low_s16(h));
    s[1] = vmovl_high_s16(h);
}

/* The 2-bit field of Q2_K/Q3_K for run r (0..7): bits 2 (r % 4) of qs[32 (r / 4) + i]. */
ALWAYS_INLINE void q2_run(const uint8_t *qs, int r, uint8x16_t *q0, uint8x16_t *q1)
{
    const int8x16_t sh = vdupq_n_s8((int8_t) - (2 * (r % 4)));
    const uint8x16_t three = vdupq_n_u8(3);
    *q0 = vandq_u8(vshlq_u8(vld1q_u8(qs + 32 * (r / 4)), sh), three);
    *q1 = vandq_u8(vshlq_u8(vld1q_u8(qs + 32 * (r / 4) + 16), sh), three);
}

/* Bit r of each of the 32 bytes of m (Q3_K's hmask, Q5_K's qh) as `val` or 0. */
ALWAYS_INLINE void bit_run(const uint8_t *m, int r, uint8_t val, uint8x16_t *b0, uint8x16_t *b1)
{
    const uint8x16_t bit = vdupq_n_u8((uint8_t)(1u << r)), v = vdupq_n_u8(val);
    *b0 = vandq_u8(vtstq_u8(vld1q_u8(m), bit), v);
    *b1 = vandq_u8(vtstq_u8(vld1q_u8(m + 16), bit), v);
}

/* The 4-bit field of Q4_K/Q5_K for sub-block r: low nibbles of qs[32 (r / 2) ..] for even r. */
ALWAYS_INLINE void q4_run(const uint8_t *qs, int r, uint8x16_t *q0, uint8x16_t *q1)
{
    const uint8x16_t a = vld1q_u8(qs + 32 * (r / 2)), b = vld1q_u8(qs + 32 * (r / 2) + 16);
    const uint8x16_t m = vdupq_n_u8(0x0f);
    *q0 = r % 2 ? vshrq_n_u8(a, 4) : vandq_u8(a, m);
    *q1 = r % 2 ? vshrq_n_u8(b, 4) : vandq_u8(b, m);
}

#define S8(u) vreinterpretq_s8_u8(u)

/* ---- Q2_K ------------------------------------------------------------------------------------ */

static void q2_k_vec_dot(int64_t n, float *s, const void *w, const void *a)
{
    const struct elm_block_q2_k *x = w;
    const struct elm_block_q8_k *y = a;
    float32x4_t lo = vdupq_n_f32(0.0f), hi = lo;
    for (int64_t i = 0; i < n / ELM_QK_K; i++) {
        const float d = y[i].d * h2f(x[i].d);
        const float dmin = -(y[i].d * h2f(x[i].dmin));
        int32_t mins[8];
        for (int k = 0; k < 8; k++)
            mins[k] = (x[i].scales[2 * k] >> 4) * y[i].bsums[2 * k] +
                      (x[i].scales[2 * k + 1] >> 4) * y[i].bsums[2 * k + 1];
        lo = fma_lanes(lo, vld1q_s32(mins), dmin);
        hi = fma_lanes(hi, vld1q_s32(mins + 4), dmin);
        /* group 2r's scale for the first 16 elements of run r, 2r + 1's for the second */
        const uint8x8x2_t g = vld2_u8(x[i].scales);
        int32x4_t slo[2], shi[2];
        k_scales_u8(vand_u8(g.val[0], vdup_n_u8(0x0f)), slo);
        k_scales_u8(vand_u8(g.val[1], vdup_n_u8(0x0f)), shi);
        struct k_lanes l;
        k_lanes_init(&l, slo, shi);
        UNROLL for (int r = 0; r < 8; r++)
        {
            uint8x16_t q0, q1;
            q2_run(x[i].qs, r, &q0, &q1);
            run_lanes(&l, r, S8(q0), S8(q1), y[i].qs + 32 * r);
        }
        lo = fma_lanes(lo, l.ilo, d);
        hi = fma_lanes(hi, l.ihi, d);
    }
    *s = hsum8_f32(lo, hi);
}

/* ---- Q3_K ------------------------------------------------------------------------------------ */

static void q3_k_vec_dot(int64_t n, float *s, const void *w, const void *a)
{
    const struct elm_block_q3_k *x = w;
    const struct elm_block_q8_k *y = a;
    float32x4_t lo = vdupq_n_f32(0.0f), hi = lo;
    for (int64_t i = 0; i < n / ELM_QK_K; i++) {
        uint32_t sw[4];
        elm_k3_scale_words(x[i].scales, sw);
        /* from the general registers (four stores read back as one vector would stall) */
        const uint32x4_t su = vcombine_u32(vcreate_u32((uint64_t)sw[1] << 32 | sw[0]),
                                           vcreate_u32((uint64_t)sw[3] << 32 | sw[2]));
        const int8x16_t sc = vsubq_s8(vreinterpretq_s8_u32(su), vdupq_n_s8(32));
        int32x4_t slo[2], shi[2]; /* groups 2r and 2r + 1 */
        k_scales_s8(vget_low_s8(vuzp1q_s8(sc, sc)), slo);
        k_scales_s8(vget_low_s8(vuzp2q_s8(sc, sc)), shi);
        struct k_lanes l;
        k_lanes_init(&l, slo, shi);
        UNROLL for (int r = 0; r < 8; r++)
        {
            uint8x16_t q0, q1, h0, h1;
            q2_run(x[i].qs, r, &q0, &q1);
            /* q - 4 where the high bit is clear: q - 4 + (4 where set) */
            bit_run(x[i].hmask, r, 4, &h0, &h1);
            const int8x16_t four = vdupq_n_s8(4);
            run_lanes(&l, r, vsubq_s8(S8(vorrq_u8(q0, h0)), four),
                      vsubq_s8(S8(vorrq_u8(q1, h1)), four), y[i].qs + 32 * r);
        }
        const float d = y[i].d * h2f(x[i].d);
        lo = fma_lanes(lo, l.ilo, d);
        hi = fma_lanes(hi, l.ihi, d);
    }
    *s = hsum8_f32(lo, hi);
}

/* ---- Q4_K and Q5_K --------------------------------------------------------------------------- */

/* The eight 6-bit scales and the four minimum lanes of a Q4_K/Q5_K super-block (ref: q_k.c's
 * k4_min_lanes; integers, exact). The 12 packed bytes as three words: scale and minimum j < 4
 * are the low 6 bits of bytes j and 4 + j; for j >= 4 the low (scales) or high (minimums)
 * nibble of byte 4 + j, with bits 4..5 from the top 2 bits of byte j - 4 (scales) or j
 * (minimums) — elm_k4_scale_min for all eight at once. Minimum lane k is
 * m[2k] * (sum of sub-block 2k's activations) + m[2k + 1] * (...2k + 1): pairwise adds of
 * bsums (16-element sums, each within +-2032) and widening products. */
ALWAYS_INLINE int32x4_t k4_scales_mins(const uint8_t *packed, const int16_t *bsums, uint8_t sc[8])
{
    const uint32_t u0 = load_u32(packed), u1 = load_u32(packed + 4), u2 = load_u32(packed + 8);
    const uint32_t low6 = 0x3f3f3f3fu, low4 = 0x0f0f0f0fu, top2 = 0x03030303u;
    const uint32_t s[2] = {u0 & low6, (u2 & low4) | (((u0 >> 6) & top2) << 4)};
    const uint32_t m[2] = {u1 & low6, ((u2 >> 4) & low4) | (((u1 >> 6) & top2) << 4)};
    memcpy(sc, s, 8);
    const int16x8_t mins = vreinterpretq_s16_u16(vmovl_u8(vld1_u8((const uint8_t *)m)));
    const int16x8_t sums = vpaddq_s16(vld1q_s16(bsums), vld1q_s16(bsums + 8)); /* sub-blocks */
    const int32x4_t p0 = vmull_s16(vget_low_s16(mins), vget_low_s16(sums));
    const int32x4_t p1 = vmull_high_s16(mins, sums);
    return vpaddq_s32(p0, p1);
}

/* The integer lanes of one Q4_K (FIVE false) or Q5_K super-block: one scale per run of 32. */
ALWAYS_INLINE void k45_lanes(const uint8_t *qs, const uint8_t *qh, const int8_t *qa,
                             const uint8_t sc[8], int32x4_t *ilo, int32x4_t *ihi, const bool FIVE)
{
    int32x4_t s[2];
    k_scales_u8(vld1_u8(sc), s);
    struct k_lanes l;
    k_lanes_init(&l, s, s);
    UNROLL for (int r = 0; r < 8; r++)
    {
        uint8x16_t q0, q1;
        q4_run(qs, r, &q0, &q1);
        if (FIVE) {
            uint8x16_t h0, h1;
            bit_run(qh, r, 0x10, &h0, &h1);
            q0 = vorrq_u8(q0, h0);
            q1 = vorrq_u8(q1, h1);
        }
        run_lanes(&l, r, S8(q0), S8(q1), qa + 32 * r);
    }
    *ilo = l.ilo;
    *ihi = l.ihi;
}

static void q4_k_vec_dot(int64_t n, float *s, const void *w, const void *a)
{
    const struct elm_block_q4_k *x = w;
    const struct elm_block_q8_k *y = a;
    float32x4_t lo = vdupq_n_f32(0.0f), hi = lo, accm = lo;
    for (int64_t i = 0; i < n / ELM_QK_K; i++) {
        const float d = y[i].d * h2f(x[i].d);
        const float dmin = -(y[i].d * h2f(x[i].dmin));
        uint8_t sc[8];
        accm = fma_lanes(accm, k4_scales_mins(x[i].scales, y[i].bsums, sc), dmin);
        int32x4_t ilo, ihi;
        k45_lanes(x[i].qs, NULL, y[i].qs, sc, &ilo, &ihi, false);
        lo = fma_lanes(lo, ilo, d);
        hi = fma_lanes(hi, ihi, d);
    }
    *s = hsum8_f32(lo, hi) + hsum4_f32(accm);
}

static void q5_k_vec_dot(int64_t n, float *s, const void *w, const void *a)
{
    const struct elm_block_q5_k *x = w;
    const struct elm_block_q8_k *y = a;
    float32x4_t lo = vdupq_n_f32(0.0f), hi = lo;
    float summs = 0.0f;
    for (int64_t i = 0; i < n / ELM_QK_K; i++) {
        const float d = y[i].d * h2f(x[i].d);
        const float dmin = -(y[i].d * h2f(x[i].dmin));
        uint8_t sc[8];
        const int32_t mins = vaddvq_s32(k4_scales_mins(x[i].scales, y[i].bsums, sc)); /* exact */
        summs = fmaf(dmin, (float)mins, summs);
        int32x4_t ilo, ihi;
        k45_lanes(x[i].qs, x[i].qh, y[i].qs, sc, &ilo, &ihi, true);
        lo = fma_lanes(lo, ilo, d);
        hi = fma_lanes(hi, ihi, d);
    }
    *s = hsum8_f32(lo, hi) + summs;
}

/* ---- Q6_K ------------------------------------------------------------------------------------ */

static void q6_k_vec_dot(int64_t n, float *s, const void *w, const void *a)
{
    const struct elm_block_q6_k *x = w;
    const struct elm_block_q8_k *y = a;
    const uint8x16_t m4 = vdupq_n_u8(0x0f), m3 = vdupq_n_u8(3);
    const int8x16_t off = vdupq_n_s8(32);
    float32x4_t lo = vdupq_n_f32(0.0f), hi = lo;
    for (int64_t i = 0; i < n / ELM_QK_K; i++) {
        const int8x8x2_t g = vld2_s8(x[i].scales);
        int32x4_t slo[2], shi[2];
        k_scales_s8(g.val[0], slo);
        k_scales_s8(g.val[1], shi);
        struct k_lanes l;
        k_lanes_init(&l, slo, shi);
        /* run r = 4h + t: low nibbles of ql[64h + 32 (t % 2) ..] (high nibbles for t >= 2),
         * top bits 2t of qh[32h ..] */
        UNROLL for (int r = 0; r < 8; r++)
        {
            const int h = r / 4, t = r % 4;
            const uint8_t *ql = x[i].ql + 64 * h + 32 * (t % 2), *qh = x[i].qh + 32 * h;
            uint8x16_t l0 = vld1q_u8(ql), l1 = vld1q_u8(ql + 16);
            l0 = t < 2 ? vandq_u8(l0, m4) : vshrq_n_u8(l0, 4);
            l1 = t < 2 ? vandq_u8(l1, m4) : vshrq_n_u8(l1, 4);
            const int8x16_t sh = vdupq_n_s8((int8_t) - (2 * t));
            const uint8x16_t h0 = vandq_u8(vshlq_u8(vld1q_u8(qh), sh), m3);
            const uint8x16_t h1 = vandq_u8(vshlq_u8(vld1q_u8(qh + 16), sh), m3);
            const int8x16_t w0 = vsubq_s8(S8(vorrq_u8(l0, vshlq_n_u8(h0, 4))), off);
            const int8x16_t w1 = vsubq_s8(S8(vorrq_u8(l1, vshlq_n_u8(h1, 4))), off);
            run_lanes(&l, r, w0, w1, y[i].qs + 32 * r);
        }
        const float d = y[i].d * h2f(x[i].d);
        lo = fma_lanes(lo, l.ilo, d);
        hi = fma_lanes(hi, l.ihi, d);
    }
    *s = hsum8_f32(lo, hi);
}

#undef S8

#endif
