/* fp16.h — IEEE half and bfloat16 conversions with ggml-compatible rounding
 * (round to nearest even; NaN stays NaN). Scalar: the SIMD files use the ISA instructions. */
#ifndef ELM_FP16_H
#define ELM_FP16_H

#include <stdint.h>
#include <string.h>

static inline uint32_t elm_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float elm_bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline float elm_fp16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t man = h & 0x3ff;
    if (exp == 0x1f)
        return elm_bits_f32(sign | 0x7f800000 | (man << 13));
    if (exp == 0) {
        if (man == 0)
            return elm_bits_f32(sign);
        /* subnormal: value = man * 2^-24 */
        float f = (float)man * (1.0f / 16777216.0f);
        return sign ? -f : f;
    }
    return elm_bits_f32(sign | ((exp + 112) << 23) | (man << 13));
}

static inline uint16_t elm_f32_to_fp16(float f)
{
    uint32_t x = elm_f32_bits(f);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t ax = x & 0x7fffffff;
    if (ax > 0x7f800000) /* NaN */
        return (uint16_t)(sign | 0x7e00);
    if (ax >= 0x477ff000) /* rounds to >= 65520: infinity */
        return (uint16_t)(sign | 0x7c00);
    if (ax < 0x38800000) { /* below the smallest normal half: subnormal or zero */
        if (ax < 0x33000000) /* < 2^-25 rounds to zero */
            return (uint16_t)sign;
        uint32_t e = ax >> 23;
        uint32_t m = (ax & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e; /* 14..24 */
        uint32_t h = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1)))
            h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((ax >> 13) - (112u << 10));
    uint32_t rem = ax & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1)))
        h++;
    return (uint16_t)(sign | h);
}

static inline float elm_bf16_to_f32(uint16_t h)
{
    return elm_bits_f32((uint32_t)h << 16);
}

static inline uint16_t elm_f32_to_bf16(float f)
{
    uint32_t u = elm_f32_bits(f);
    if ((u & 0x7fffffff) > 0x7f800000) /* NaN: keep it quiet */
        return (uint16_t)((u >> 16) | 64);
    return (uint16_t)((u + (0x7fff + ((u >> 16) & 1))) >> 16);
}

#endif
