/* float.h — NEON conversions of the F16 type (rows of weights, the F16 KV cache). Compiled once
 * per ARM variant (simd.h). FCVTL/FCVTN convert exactly like kernels/fp16.h (round to nearest
 * even; NaN payloads aside). The F32/F16/BF16 dot products stay the reference's: it adds the
 * products one by one in double, a chain no vector shortens for a single row (the x86 variants
 * win only in their multi-row tiles, which the ARM variants do not have yet). */
#ifndef ELM_ARM_FLOAT_H
#define ELM_ARM_FLOAT_H

#include "kernels/arm/simd.h"
#include "kernels/fp16.h"

static void f16_to_float(const void *src, float *dst, int64_t n)
{
    const uint16_t *h = src;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const float16x8_t v = vreinterpretq_f16_u16(vld1q_u16(h + i));
        vst1q_f32(dst + i, vcvt_f32_f16(vget_low_f16(v)));
        vst1q_f32(dst + i + 4, vcvt_high_f32_f16(v));
    }
    for (; i < n; i++)
        dst[i] = elm_fp16_to_f32(h[i]);
}

static void f16_from_float(const float *src, void *dst, int64_t n)
{
    uint16_t *h = dst;
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const float16x4_t lo = vcvt_f16_f32(vld1q_f32(src + i));
        const float16x8_t v = vcvt_high_f16_f32(lo, vld1q_f32(src + i + 4));
        vst1q_u16(h + i, vreinterpretq_u16_f16(v));
    }
    for (; i < n; i++)
        h[i] = elm_f32_to_fp16(src[i]);
}

#endif
