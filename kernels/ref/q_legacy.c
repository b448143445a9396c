/* q_legacy.c — reference kernels for ggml's 32-element block types: Q4_0, Q4_1, Q5_0, Q5_1,
 * Q8_0 (weights) and Q8_0, Q8_1 (activations).
 *
 * Weight quantizers reproduce ggml's *_ref functions operation for operation (same scale
 * formula, same float expressions, same rounding), so that a file elm quantizes is byte-identical
 * to what llama-quantize writes without an importance matrix.
 *
 * Activation quantizers reproduce what ggml's x86 build runs (quantize_row_q8_0/_q8_1 with AVX):
 * the scale is stored as fp16(amax / 127) but the values are multiplied by 127 / amax and rounded
 * half to even, which differs from the portable ggml code (x * (1/d), rounded half away from
 * zero) in a few elements per thousand. The reference outputs elm is checked against were
 * computed that way, so that is the rule here.
 *
 * Dot products (weight block x Q8_0/Q8_1 block): an exact integer sum per block, scaled by the
 * product of the two block scales, accumulated in float in block order.
 */
#include <float.h>
#include <math.h>

#include "kernels/blocks.h"
#include "kernels/fp16.h"
#include "kernels/ref/ref.h"

#define HALF (ELM_QK / 2)

/* Sign-preserving largest magnitude of a block: the element whose |x| is largest (the first one
 * on ties), returned with its sign, because Q4_0/Q5_0 map that element to the extreme -8/-16. */
static float signed_absmax(const float *x)
{
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < ELM_QK; j++) {
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    return max;
}

static void block_min_max(const float *x, float *min, float *max)
{
    float lo = FLT_MAX, hi = -FLT_MAX;
    for (int j = 0; j < ELM_QK; j++) {
        if (x[j] < lo)
            lo = x[j];
        if (x[j] > hi)
            hi = x[j];
    }
    *min = lo;
    *max = hi;
}

/* The 5th bit of each Q5 quant: element j is bit j of the little-endian 32-bit qh. */
static uint32_t load_qh(const uint8_t qh[4])
{
    return (uint32_t)qh[0] | (uint32_t)qh[1] << 8 | (uint32_t)qh[2] << 16 | (uint32_t)qh[3] << 24;
}

static void store_qh(uint8_t qh[4], uint32_t v)
{
    for (int i = 0; i < 4; i++)
        qh[i] = (uint8_t)(v >> (8 * i));
}

static inline int min_int(int a, int b)
{
    return a < b ? a : b;
}

/* ---- Q4_0: x = d * (q - 8) --------------------------------------------------------------- */

void elm_ref_q4_0_from_float(const float *src, void *dst, int64_t n)
{
    struct elm_block_q4_0 *y = dst;
    for (int64_t i = 0; i < n / ELM_QK; i++) {
        const float *x = src + i * ELM_QK;
        /* the largest-magnitude element becomes -8 exactly; its opposite would need +8, which
         * does not exist, so the sign choice matters */
        const float d = signed_absmax(x) / -8;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = elm_f32_to_fp16(d);
        for (int j = 0; j < HALF; j++) {
            /* +8.5 then truncation = round half up into 0..16; 16 can only come from rounding
             * error at the extreme and is clamped */
            int q0 = min_int(15, (int)(x[j] * id + 8.5f));
            int q1 = min_int(15, (int)(x[j + HALF] * id + 8.5f));
            y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

void elm_ref_q4_0_to_float(const void *src, float *dst, int64_t n)
{
    const struct elm_block_q4_0 *x = src;
    for (int64_t i = 0; i < n / ELM_QK; i++) {
        const float d = elm_fp16_to_f32(x[i].d);
        float *y = dst + i * ELM_QK;
        for (int j = 0; j < HALF; j++) {
            y[j] = (float)((x[i].qs[j] & 0x0f) - 8) * d;
            y[j + HALF] = (float)((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}

void elm_ref_q4_0_vec_dot(int64_t n, float *s, const void *w, const void *a)
{
    const struct elm_block_q4_0 *x = w;
    const struct elm_block_q8_0 *y = a;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / ELM_QK; i++) {
        int32_t isum = 0;
        for (int j = 0; j < HALF; j++) {
            isum += ((x[i].qs[j] & 0x0f) - 8) * y[i].qs[j];
            isum += ((x[i].qs[j] >> 4) - 8) * y[i].qs[j + HALF];
        }
        sum += (float)isum * (elm_fp16_to_f32(x[i].d) * elm_fp16_to_f32(y[i].d));
    }
    *s = sum;
}

/* ---- Q4_1: x = d * q + m ----------------------------------------------------------------- */

void elm_ref_q4_1_from_float(const float *src, void *dst, int64_t n)
{
    struct elm_block_q4_1 *y = dst;
    for (int64_t i = 0; i < n / ELM_QK; i++) {
        const float *x = src + i * ELM_QK;
        float min, max;
        block_min_max(x, &min, &max);
        const float d = (max - min) / 15;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = elm_f32_to_fp16(d);
        y[i].m = elm_f32_to_fp16(min);
        for (int j = 0; j < HALF; j++) {
            int q0 = min_int(15, (int)((x[j] - min) * id + 0.5f));
            int q1 = min_int(15, (int)((x[j + HALF] - min) * id + 0.5f));
            y[i].qs[j] = (uint8_t)(q0 | (q1 << 4));
        }
    }
}

void elm_ref_q4_1_to_float(const void *src, float *dst, int64_t n)
{
    const struct elm_block_q4_1 *x = src;
    for (int64_t i = 0; i < n / ELM_QK; i++) {
        const float d = elm_fp16_to_f32(x[i].d);
        const float m = elm_fp16_to_f32(x[i].m);
        float *y = dst + i * ELM_QK;
        for (int j = 0; j < HALF; j++) {
            y[j] = (float)(x[i].qs[j] & 0x0f) * d + m;
            y[j + HALF] = (float)(x[i].qs[j] >> 4) * d + m;
        }
    }
}

void elm_ref_q4_1_vec_dot(int64_t n, float *s, const void *w, const void *a)
{
    const struct elm_block_q4_1 *x = w;
    const struct elm_block_q8_1 *y = a;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / ELM_QK; i++) {
        int32_t isum = 0;
        for (int j = 0; j < HALF; j++) {
            isum += (x[i].qs[j] & 0x0f) * y[i].qs[j];
            isum += (x[i].qs[j] >> 4) * y[i].qs[j + HALF];
        }
        /* sum(x*y) = dx*dy*sum(q*qy) + m*dy*sum(qy); the activation block carries dy*sum(qy)
         * as s, so the offset costs one multiply */
        sum += (elm_fp16_to_f32(x[i].d) * elm_fp16_to_f32(y[i].d)) * (float)isum +
               elm_fp16_to_f32(x[i].m) * elm_fp16_to_f32(y[i].s);
    }
    *s = sum;
}

/* ---- Q5_0: x = d * (q - 16) -------------------------------------------------------------- */

void elm_ref_q5_0_from_float(const float *src, void *dst, int64_t n)
{
    struct elm_block_q5_0 *y = dst;
    for (int64_t i = 0; i < n / ELM_QK; i++) {
        const float *x = src + i * ELM_QK;
        const float d = signed_absmax(x) / -16;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = elm_f32_to_fp16(d);
        uint32_t qh = 0;
        for (int j = 0; j < HALF; j++) {
            int q0 = min_int(31, (int)(x[j] * id + 16.5f));
            int q1 = min_int(31, (int)(x[j + HALF] * id + 16.5f));
            y[i].qs[j] = (uint8_t)((q0 & 0x0f) | ((q1 & 0x0f) << 4));
            qh |= (uint32_t)(q0 >> 4) << j;
            qh |= (uint32_t)(q1 >> 4) << (j + HALF);
        }
        store_qh(y[i].qh, qh);
    }
}

void elm_ref_q5_0_to_float(const void *src, float *dst, int64_t n)
{
    const struct elm_block_q5_0 *x = src;
    for (int64_t i = 0; i < n / ELM_QK; i++) {
        const float d = elm_fp16_to_f32(x[i].d);
        const uint32_t qh = load_qh(x[i].qh);
        float *y = dst + i * ELM_QK;
        for (int j = 0; j < HALF; j++) {
            int q0 = (x[i].qs[j] & 0x0f) | (int)(((qh >> j) & 1) << 4);
            int q1 = (x[i].qs[j] >> 4) | (int)(((qh >> (j + HALF)) & 1) << 4);
            y[j] = (float)(q0 - 16) * d;
            y[j + HALF] = (float)(q1 - 16) * d;
        }
    }
}

void elm_ref_q5_0_vec_dot(int64_t n, float *s, const void *w, const void *a)
{
    const struct elm_block_q5_0 *x = w;
    const struct elm_block_q8_0 *y = a;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / ELM_QK; i++) {
        const uint32_t qh = load_qh(x[i].qh);
        int32_t isum = 0;
        for (int j = 0; j < HALF; j++) {
            int q0 = (x[i].qs[j] & 0x0f) | (int)(((qh >> j) & 1) << 4);
            int q1 = (x[i].qs[j] >> 4) | (int)(((qh >> (j + HALF)) & 1) << 4);
            isum += (q0 - 16) * y[i].qs[j] + (q1 - 16) * y[i].qs[j + HALF];
        }
        sum += (float)isum * (elm_fp16_to_f32(x[i].d) * elm_fp16_to_f32(y[i].d));
    }
    *s = sum;
}

/* ---- Q5_1: x = d * q + m ----------------------------------------------------------------- */

void elm_ref_q5_1_from_float(const float *src, void *dst, int64_t n)
{
    struct elm_block_q5_1 *y = dst;
    for (int64_t i = 0; i < n / ELM_QK; i++) {
        const float *x = src + i * ELM_QK;
        float min, max;
        block_min_max(x, &min, &max);
        const float d = (max - min) / 31;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = elm_f32_to_fp16(d);
        y[i].m = elm_f32_to_fp16(min);
        uint32_t qh = 0;
        for (int j = 0; j < HALF; j++) {
            /* no clamp here in ggml; (x - min) * id + 0.5 stays below 32 */
            int q0 = (uint8_t)((x[j] - min) * id + 0.5f);
            int q1 = (uint8_t)((x[j + HALF] - min) * id + 0.5f);
            y[i].qs[j] = (uint8_t)((q0 & 0x0f) | ((q1 & 0x0f) << 4));
            qh |= (uint32_t)((q0 >> 4) & 1) << j;
            qh |= (uint32_t)((q1 >> 4) & 1) << (j + HALF);
        }
        store_qh(y[i].qh, qh);
    }
}

void elm_ref_q5_1_to_float(const void *src, float *dst, int64_t n)
{
    const struct elm_block_q5_1 *x = src;
    for (int64_t i = 0; i < n / ELM_QK; i++) {
        const float d = elm_fp16_to_f32(x[i].d);
        const float m = elm_fp16_to_f32(x[i].m);
        const uint32_t qh = load_qh(x[i].qh);
        float *y = dst + i * ELM_QK;
        for (int j = 0; j < HALF; j++) {
            int q0 = (x[i].qs[j] & 0x0f) | (int)(((qh >> j) & 1) << 4);
            int q1 = (x[i].qs[j] >> 4) | (int)(((qh >> (j + HALF)) & 1) << 4);
            y[j] = (float)q0 * d + m;
            y[j + HALF] = (float)q1 * d + m;
        }
    }
}

void elm_ref_q5_1_vec_dot(int64_t n, float *s, const void *w, const void *a)
{
    const struct elm_block_q5_1 *x = w;
    const struct elm_block_q8_1 *y = a;
    float sum = 0.0f;
    for (int64_t i = 0; i < n / ELM_QK; i++) {
        const uint32_t qh = load_qh(x[i].qh);
        int32_t isum = 0;
        for (int j = 0; j < HALF; j++) {
            int q0 = (x[i].qs[j] & 0x0f) | (int)(((qh >> j) & 1) << 4);
            int q1 = (x[i].qs[j] >> 4) | (int)(((qh >> (j + HALF)) & 1) << 4);
            isum += q0 * y[i].qs[j] + q1 * y[i].qs[j + HALF];
        }
        sum += (elm_fp16_to_f32(x[i].d) * elm_fp16_to_f32(y[i].d)) * (float)isum +
               elm_fp16_to_f32(x[i].m) * elm_fp16_to_f32(y[i].s);
    }
    *s = sum;
}

/* ---- Q8_0: x = d * q --------------------------------------------------------------------- */

static float block_absmax(const float *x)
{
    float amax = 0.0f;
    for (int j = 0; j < ELM_QK; j++)
        amax = fmaxf(amax, fabsf(x[j]));
    return amax;
}

/* x * (127/amax) rounded half to even into int8. The product can exceed 127 by an ulp; the
 * clamp (which the SIMD pack instructions do by saturation) keeps the conversion defined. */
static int8_t act_round(float v)
{
    if (v > 127.0f)
        v = 127.0f;
    if (v < -128.0f)
        v = -128.0f;
    return (int8_t)elm_round_even(v);
}

void elm_ref_q8_0_from_float(const float *src, void *dst, int64_t n)
{
    struct elm_block_q8_0 *y = dst;
    for (int64_t i = 0; i < n / ELM_QK; i++) {
        const float *x = src + i * ELM_QK;
        const float amax = block_absmax(x);
        const float mul = amax != 0.0f ? 127.0f / amax : 0.0f;
        y[i].d = elm_f32_to_fp16(amax / 127.0f);
        for (int j = 0; j < ELM_QK; j++)
            y[i].qs[j] = act_round(x[j] * mul);
    }
}

void elm_ref_q8_0_quantize_weights(const float *src, void *dst, int64_t n)
{
    struct elm_block_q8_0 *y = dst;
    for (int64_t i = 0; i < n / ELM_QK; i++) {
        const float *x = src + i * ELM_QK;
        const float d = block_absmax(x) / 127;
        const float id = d != 0.0f ? 1.0f / d : 0.0f;
        y[i].d = elm_f32_to_fp16(d);
        for (int j = 0; j < ELM_QK; j++)
            y[i].qs[j] = (int8_t)roundf(x[j] * id); /* ties away from zero, as ggml's ref */
    }
}

void elm_ref_q8_0_to_float(const void *src, float *dst, int64_t n)
{
    const struct elm_block_q8_0 *x = src;
    for (int64_t i = 0; i < n / ELM_QK; i++) {
        const float d = elm_fp16_to_f32(x[i].d);
        for (int j = 0; j < ELM_QK; j++)
            dst[i * ELM_QK + j] = (float)x[i].qs[j] * d;
    }
}

void elm_ref_q8_0_vec_dot(int64_t n, float *s, const void *w, const void *a)
{
    const struct elm_block_q8_0 *x = w;
    const struct elm_block_q8_0 *y = a;
    float acc[8] = {0};
    for (int64_t i = 0; i < n / ELM_QK; i++) {
        float d = elm_fp16_to_f32(x[i].d) * elm_fp16_to_f32(y[i].d);
        for (int l = 0; l < 8; l++) {
            int32_t p = 0;
            for (int j = 4 * l; j < 4 * l + 4; j++)
                p += x[i].qs[j] * y[i].qs[j];
            acc[l] = fmaf(d, (float)p, acc[l]);
        }
    }
    float r0 = acc[0] + acc[4], r1 = acc[1] + acc[5], r2 = acc[2] + acc[6], r3 = acc[3] + acc[7];
    r0 = r0 + r2; r1 = r1 + r3;
    *s = r0 + r1;
}

/* ---- Q8_1 (activations for Q4_1/Q5_1): Q8_0 plus s = d * sum(q) -------------------------- */

void elm_ref_q8_1_from_float(const float *src, void *dst, int64_t n)
{
    struct elm_block_q8_1 *y = dst;
    for (int64_t i = 0; i < n / ELM_QK; i++) {
        const float *x = src + i * ELM_QK;
        const float amax = block_absmax(x);
        const float d = amax / 127.0f;
        const float mul = amax != 0.0f ? 127.0f / amax : 0.0f;
        int32_t qsum = 0;
        for (int j = 0; j < ELM_QK; j++) {
            y[i].qs[j] = act_round(x[j] * mul);
            qsum += y[i].qs[j];
        }
        y[i].d = elm_f32_to_fp16(d);
        /* s uses the unrounded float d, not fp16(d): that is what ggml stores */
        y[i].s = elm_f32_to_fp16(d * (float)qsum);
    }
}

void elm_ref_q8_1_to_float(const void *src, float *dst, int64_t n)
{
    const struct elm_block_q8_1 *x = src;
    for (int64_t i = 0; i < n / ELM_QK; i++) {
        const float d = elm_fp16_to_f32(x[i].d);
        for (int j = 0; j < ELM_QK; j++)
            dst[i * ELM_QK + j] = (float)x[i].qs[j] * d;
    }
}
