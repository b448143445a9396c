/* simd.h — building blocks shared by the ARM64 kernel variants (neon, dotprod, i8mm).
 *
 * As kernels/avx2/ does for AVX2 and AVX-512, the kernels of the three ARM variants are written
 * once, in the headers of this folder, and compiled three times: kernels/arm/neon.c for
 * ARMv8.0-A (Advanced SIMD only), kernels/arm/dotprod.c with +dotprod (sdot) and
 * kernels/arm/i8mm.c with +dotprod+i8mm. The float part of every kernel is the reference's
 * (kernels/ref, docs/kernels.md): the reference's 8 float lanes are two float32x4_t registers,
 * lo = lanes 0..3 and hi = lanes 4..7, advanced by vfmaq_f32 where the reference calls fmaf and
 * folded in the reference's order. What the ISA changes is only the exact integer part: sdot
 * sums four byte products per 32-bit lane in one instruction, which is exactly a reference lane
 * (elements 4l..4l+3); without dotprod the same integers come from widening multiplies and
 * pairwise adds. The choice is made here, once, by the compiler's feature macros, so that no
 * function body needs an #if.
 *
 * Everything here is static inline: each variant's translation unit gets its own copy, compiled
 * for its own -march, and nothing leaks between variants.
 */
#ifndef ELM_ARM_SIMD_H
#define ELM_ARM_SIMD_H

#include <arm_neon.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define ALWAYS_INLINE static inline __attribute__((always_inline))
#define UNROLL        _Pragma("GCC unroll 16")

/* ---- scalars --------------------------------------------------------------------------------- */

/* fp16 -> float by the FCVT instruction: exact, like elm_fp16_to_f32 (NaN payloads aside). */
ALWAYS_INLINE float h2f(uint16_t h)
{
    __fp16 f;
    memcpy(&f, &h, sizeof f);
    return (float)f;
}

/* float -> fp16 by FCVT in the default rounding mode (nearest even): elm_f32_to_fp16 for every
 * non-NaN value. */
ALWAYS_INLINE uint16_t f2h(float f)
{
    const __fp16 h = (__fp16)f;
    uint16_t u;
    memcpy(&u, &h, sizeof u);
    return u;
}

/* ---- float folds, in the reference's order (ref.h) ------------------------------------------- */

/* elm_hsum8 of lanes 0..3 in lo and 4..7 in hi: ((a0+a4) + (a2+a6)) + ((a1+a5) + (a3+a7)) */
ALWAYS_INLINE float hsum8_f32(float32x4_t lo, float32x4_t hi)
{
    const float32x4_t r = vaddq_f32(lo, hi);
    const float32x2_t t = vadd_f32(vget_low_f32(r), vget_high_f32(r));
    return vget_lane_f32(t, 0) + vget_lane_f32(t, 1);
}

/* Four lanes folded as a 128-bit register: (a0+a2) + (a1+a3). */
ALWAYS_INLINE float hsum4_f32(float32x4_t r)
{
    const float32x2_t t = vadd_f32(vget_low_f32(r), vget_high_f32(r));
    return vget_lane_f32(t, 0) + vget_lane_f32(t, 1);
}

/* acc + d * (float)lane, fused, in each of the four lanes: the reference's
 * acc[l] = fmaf(d, (float)lane[l], acc[l]). */
ALWAYS_INLINE float32x4_t fma_lanes(float32x4_t acc, int32x4_t lane, float d)
{
    return vfmaq_n_f32(acc, vcvtq_f32_s32(lane), d);
}

/* ---- exact integer sums ---------------------------------------------------------------------- */

/* acc + in lane l the sum of the four products a[4l..4l+3] * b[4l..4l+3] (signed bytes): one
 * reference lane per 32-bit lane. With dotprod one sdot; without, products widened to int16
 * (|a * b| <= 2^14 fits) and added pairwise twice. */
#ifdef __ARM_FEATURE_DOTPROD
ALWAYS_INLINE int32x4_t dot16(int32x4_t acc, int8x16_t a, int8x16_t b)
{
    return vdotq_s32(acc, a, b);
}
#else
ALWAYS_INLINE int32x4_t dot16(int32x4_t acc, int8x16_t a, int8x16_t b)
{
    const int16x8_t p0 = vmull_s8(vget_low_s8(a), vget_low_s8(b));
    const int16x8_t p1 = vmull_high_s8(a, b);
    return vaddq_s32(acc, vpaddq_s32(vpaddlq_s16(p0), vpaddlq_s16(p1)));
}
#endif

/* 16 packed nibbles -> low nibbles (elements 0..15) and high nibbles (16..31) as bytes. */
ALWAYS_INLINE void unpack_nibbles16(const uint8_t *qs, uint8x16_t *lo, uint8x16_t *hi)
{
    const uint8x16_t q = vld1q_u8(qs);
    *lo = vandq_u8(q, vdupq_n_u8(0x0f));
    *hi = vshrq_n_u8(q, 4);
}

/* 16 bytes, one per bit of the 16-bit x: `val` where the bit is set, else 0 (byte j <- bit j). */
ALWAYS_INLINE uint8x16_t bytes_from_bits16(uint32_t x, uint8_t val)
{
    static const uint8_t bit[16] = {1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t b = vcombine_u8(vdup_n_u8((uint8_t)x), vdup_n_u8((uint8_t)(x >> 8)));
    return vandq_u8(vtstq_u8(b, vld1q_u8(bit)), vdupq_n_u8(val));
}

ALWAYS_INLINE uint32_t load_u32(const void *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

#endif
