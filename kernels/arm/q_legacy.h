/* q_legacy.h — NEON kernels of the 32-element block types: the Q8_0/Q8_1 activation
 * quantizers, the dot products of Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0 weights, and the Q4_0/Q8_0
 * dequantizers. Compiled once per ARM variant (simd.h); included only by the variant files.
 *
 * The float part is the reference's (kernels/ref/q_legacy.c): Q4_0 is one fused chain over
 * whole-block integer sums; the others keep eight lanes, lane l the integer dot product of
 * elements 4l..4l+3 of every block, which is what dot16 leaves in each 32-bit lane (lo: elements
 * 0..15, hi: 16..31), advanced by one fused multiply-add per block and folded by hsum8_f32.
 */
#ifndef ELM_ARM_Q_LEGACY_H
#define ELM_ARM_Q_LEGACY_H

#include "kernels/arm/simd.h"
#include "kernels/blocks.h"

/* ---- activation quantizers ------------------------------------------------------------------- */

/* One block of 32 floats as ggml's x86 build rounds it (ref: elm_ref_q8_0_from_float): amax
 * exact (a max), mul = 127 / amax, each x * mul rounded half to even (FCVTNS) and saturated to
 * int8 by the narrowing moves, which is the reference's clamp. */
ALWAYS_INLINE float q8_block(const float *x, int8_t *qs)
{
    float32x4_t v[8];
    float32x4_t mx = vdupq_n_f32(0.0f);
    UNROLL for (int i = 0; i < 8; i++)
    {
        v[i] = vld1q_f32(x + 4 * i);
        mx = vmaxq_f32(mx, vabsq_f32(v[i]));
    }
    const float amax = vmaxvq_f32(mx);
    const float mul = amax != 0.0f ? 127.0f / amax : 0.0f;
    UNROLL for (int i = 0; i < 2; i++)
    {
        int16x8_t h[2];
        UNROLL for (int j = 0; j < 2; j++)
        {
            const int32x4_t a = vcvtnq_s32_f32(vmulq_n_f32(v[4 * i + 2 * j], mul));
            const int32x4_t b = vcvtnq_s32_f32(vmulq_n_f32(v[4 * i + 2 * j + 1], mul));
            h[j] = vcombine_s16(vqmovn_s32(a), vqmovn_s32(b));
        }
        vst1q_s8(qs + 16 * i, vcombine_s8(vqmovn_s16(h[0]), vqmovn_s16(h[1])));
    }
    return amax;
}

static void q8_0_from_float(const float *src, void *dst, int64_t n)
{
    struct elm_block_q8_0 *y = dst;
    for (int64_t i = 0; i < n / ELM_QK; i++) {
        const float amax = q8_block(src + i * ELM_QK, y[i].qs);
        y[i].d = f2h(amax / 127.0f);
    }
}

static void q8_1_from_float(const float *src, void *dst, int64_t n)
{
    struct elm_block_q8_1 *y = dst;
    for (int64_t i = 0; i < n / ELM_QK; i++) {
        const float amax = q8_block(src + i * ELM_QK, y[i].qs);
        const float d = amax / 127.0f;
        const int32_t qsum = vaddlvq_s8(vld1q_s8(y[i].qs)) + vaddlvq_s8(vld1q_s8(y[i].qs + 16));
        y[i].d = f2h(d);
        y[i].s = f2h(d * (float)qsum); /* the unrounded d, as the reference */
    }
}

/* ---- dot products ---------------------------------------------------------------------------- */

/* Q4_0: one fused chain over whole-block integer sums, as the reference. */
static void q4_0_vec_dot(int64_t n, float *s, const void *w, const void *a)
{
    const struct elm_block_q4_0 *x = w;
    const struct elm_block_q8_0 *y = a;
    const int8x16_t eight = vdupq_n_s8(8);
    float sum = 0.0f;
    for (int64_t i = 0; i < n / ELM_QK; i++) {
        uint8x16_t lo, hi;
        unpack_nibbles16(x[i].qs, &lo, &hi);
        int32x4_t p =
            dot16(vdupq_n_s32(0), vsubq_s8(vreinterpretq_s8_u8(lo), eight), vld1q_s8(y[i].qs));
        p = dot16(p, vsubq_s8(vreinterpretq_s8_u8(hi), eight), vld1q_s8(y[i].qs + 16));
        sum = fmaf((float)vaddvq_s32(p), h2f(x[i].d) * h2f(y[i].d), sum);
    }
    *s = sum;
}

/* The 8 lanes of one block: lo = lanes 0..3 (elements 0..15), hi = lanes 4..7 (16..31). */
ALWAYS_INLINE void block_lanes(float32x4_t *lo, float32x4_t *hi, float d, int8x16_t w0,
                               int8x16_t w1, const int8_t *qa)
{
    *lo = fma_lanes(*lo, dot16(vdupq_n_s32(0), w0, vld1q_s8(qa)), d);
    *hi = fma_lanes(*hi, dot16(vdupq_n_s32(0), w1, vld1q_s8(qa + 16)), d);
}

static void q8_0_vec_dot(int64_t n, float *s, const void *w, const void *a)
{
    const struct elm_block_q8_0 *x = w;
    const struct elm_block_q8_0 *y = a;
    float32x4_t lo = vdupq_n_f32(0.0f), hi = lo;
    for (int64_t i = 0; i < n / ELM_QK; i++)
        block_lanes(&lo, &hi, h2f(x[i].d) * h2f(y[i].d), vld1q_s8(x[i].qs), vld1q_s8(x[i].qs + 16),
                    y[i].qs);
    *s = hsum8_f32(lo, hi);
}

static void q4_1_vec_dot(int64_t n, float *s, const void *w, const void *a)
{
    const struct elm_block_q4_1 *x = w;
    const struct elm_block_q8_1 *y = a;
    float32x4_t lo = vdupq_n_f32(0.0f), hi = lo;
    float summs = 0.0f;
    for (int64_t i = 0; i < n / ELM_QK; i++) {
        uint8x16_t q0, q1;
        unpack_nibbles16(x[i].qs, &q0, &q1);
        summs = fmaf(h2f(x[i].m), h2f(y[i].s), summs);
        block_lanes(&lo, &hi, h2f(x[i].d) * h2f(y[i].d), vreinterpretq_s8_u8(q0),
                    vreinterpretq_s8_u8(q1), y[i].qs);
    }
    *s = hsum8_f32(lo, hi) + summs;
}

/* The 32 five-bit quants of a Q5 block, low nibbles | bit j of qh << 4: elements 0..15 in q0,
 * 16..31 in q1. */
ALWAYS_INLINE void q5_quants(const uint8_t *qs, const uint8_t *qh, uint8x16_t *q0, uint8x16_t *q1)
{
    const uint32_t bits = load_u32(qh);
    unpack_nibbles16(qs, q0, q1);
    *q0 = vorrq_u8(*q0, bytes_from_bits16(bits, 0x10));
    *q1 = vorrq_u8(*q1, bytes_from_bits16(bits >> 16, 0x10));
}

static void q5_0_vec_dot(int64_t n, float *s, const void *w, const void *a)
{
    const struct elm_block_q5_0 *x = w;
    const struct elm_block_q8_0 *y = a;
    const int8x16_t sixteen = vdupq_n_s8(16);
    float32x4_t lo = vdupq_n_f32(0.0f), hi = lo;
    for (int64_t i = 0; i < n / ELM_QK; i++) {
        uint8x16_t q0, q1;
        q5_quants(x[i].qs, x[i].qh, &q0, &q1);
        block_lanes(&lo, &hi, h2f(x[i].d) * h2f(y[i].d), vsubq_s8(vreinterpretq_s8_u8(q0), sixteen),
                    vsubq_s8(vreinterpretq_s8_u8(q1), sixteen), y[i].qs);
    }
    *s = hsum8_f32(lo, hi);
}

static void q5_1_vec_dot(int64_t n, float *s, const void *w, const void *a)
{
    const struct elm_block_q5_1 *x = w;
    const struct elm_block_q8_1 *y = a;
    float32x4_t lo = vdupq_n_f32(0.0f), hi = lo;
    float summs = 0.0f;
    for (int64_t i = 0; i < n / ELM_QK; i++) {
        uint8x16_t q0, q1;
        q5_quants(x[i].qs, x[i].qh, &q0, &q1);
        summs = fmaf(h2f(x[i].m), h2f(y[i].s), summs);
        block_lanes(&lo, &hi, h2f(x[i].d) * h2f(y[i].d), vreinterpretq_s8_u8(q0),
                    vreinterpretq_s8_u8(q1), y[i].qs);
    }
    *s = hsum8_f32(lo, hi) + summs;
}

/* ---- dequantization -------------------------------------------------------------------------- */

/* dst[0..16) = (float)q[j] * d: the reference's expression, one rounding each. */
ALWAYS_INLINE void bytes_to_float16(int8x16_t q, float d, float *dst)
{
    const int16x8_t h0 = vmovl_s8(vget_low_s8(q)), h1 = vmovl_high_s8(q);
    vst1q_f32(dst, vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(h0))), d));
    vst1q_f32(dst + 4, vmulq_n_f32(vcvtq_f32_s32(vmovl_high_s16(h0)), d));
    vst1q_f32(dst + 8, vmulq_n_f32(vcvtq_f32_s32(vmovl_s16(vget_low_s16(h1))), d));
    vst1q_f32(dst + 12, vmulq_n_f32(vcvtq_f32_s32(vmovl_high_s16(h1)), d));
}

static void q4_0_to_float(const void *src, float *dst, int64_t n)
{
    const struct elm_block_q4_0 *x = src;
    const int8x16_t eight = vdupq_n_s8(8);
    for (int64_t i = 0; i < n / ELM_QK; i++) {
        uint8x16_t lo, hi;
        unpack_nibbles16(x[i].qs, &lo, &hi);
        const float d = h2f(x[i].d);
        bytes_to_float16(vsubq_s8(vreinterpretq_s8_u8(lo), eight), d, dst + i * ELM_QK);
        bytes_to_float16(vsubq_s8(vreinterpretq_s8_u8(hi), eight), d, dst + i * ELM_QK + 16);
    }
}

static void q8_0_to_float(const void *src, float *dst, int64_t n)
{
    const struct elm_block_q8_0 *x = src;
    for (int64_t i = 0; i < n / ELM_QK; i++) {
        const float d = h2f(x[i].d);
        bytes_to_float16(vld1q_s8(x[i].qs), d, dst + i * ELM_QK);
        bytes_to_float16(vld1q_s8(x[i].qs + 16), d, dst + i * ELM_QK + 16);
    }
}

#endif
