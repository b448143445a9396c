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
 * Dot products (weight block x Q8_0/Q8_1 block) take exact integer sums and add them in float in
 * the order of the x86 build the references came from (docs/kernels.md has the argument):
 *   - Q4_1, Q5_0, Q5_1, Q8_0: eight float lanes, lane l holding the integer dot product of
 *     elements 4l..4l+3 of each block, fmaf(block scale, lane sum, lane) block after block, then
 *     the lanes folded by elm_hsum8; Q4_1/Q5_1 add the offset terms m * s in a separate scalar
 *     fmaf chain, added last.
 *   - Q4_0: one fmaf chain over whole-block integer sums. On x86 llama.cpp repacks Q4_0 matrices
 *     whose row count is a multiple of 8 into interleaved 8-row blocks, whose kernels accumulate
 *     each output that way for one token or many. (Other matrices keep the 8-lane order of
 *     Q4_0's vec_dot; elm does not tell them apart, and every matrix of the zoo repacks.)
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

/* The eight integer lanes of one 32-element block: lane l = prod[4l] + ... + prod[4l + 3], where
 * prod holds the block's integer products in element order. */
static void lane_sums(const int prod[ELM_QK], int32_t lane[8])
{
    for (int l = 0; l < 8; l++)
        lane[l] = prod[4 * l] + prod[4 * l + 1] + prod[4 * l + 2] + prod[4 * l + 3];
}

/* acc[l] = fmaf(d, lane l, acc[l]) for the eight lanes of one block. */
static void lanes_fma(float acc[8], float d, const int prod[ELM_QK])
{
    int32_t lane[8];
    lane_sums(prod, lane);
    for (int l = 0; l < 8; l++)
        acc[l] = fmaf(d, (float)lane[l], acc[l]);
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
        /* the repacked kernels: one fused multiply-add per block, scale = d_w * d_a */
        sum = fmaf((float)isum, elm_fp16_to_f32(x[i].d) * elm_fp16_to_f32(y[i].d), sum);
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
    float acc[8] = {0}, summs = 0.0f;
    for (int64_t i = 0; i < n / ELM_QK; i++) {
        int prod[ELM_QK];
        for (int j = 0; j < HALF; j++) {
            prod[j] = (x[i].qs[j] & 0x0f) * y[i].qs[j];
            prod[j + HALF] = (x[i].qs[j] >> 4) * y[i].qs[j + HALF];
        }
        /* sum(x*y) = dx*dy*sum(q*qy) + m*dy*sum(qy); the activation block carries dy*sum(qy)
         * as s, so the offset costs one multiply (fused into its own running sum) */
        summs = fmaf(elm_fp16_to_f32(x[i].m), elm_fp16_to_f32(y[i].s), summs);
        lanes_fma(acc, elm_fp16_to_f32(x[i].d) * elm_fp16_to_f32(y[i].d), prod);
    }
    *s = elm_hsum8(acc) + summs;
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
    float acc[8] = {0};
    for (int64_t i = 0; i < n / ELM_QK; i++) {
        const uint32_t qh = load_qh(x[i].qh);
        int prod[ELM_QK];
        for (int j = 0; j < HALF; j++) {
            int q0 = (x[i].qs[j] & 0x0f) | (int)(((qh >> j) & 1) << 4);
            int q1 = (x[i].qs[j] >> 4) | (int)(((qh >> (j + HALF)) & 1) << 4);
            prod[j] = (q0 - 16) * y[i].qs[j];
            prod[j + HALF] = (q1 - 16) * y[i].qs[j + HALF];
        }
        lanes_fma(acc, elm_fp16_to_f32(x[i].d) * elm_fp16_to_f32(y[i].d), prod);
    }
    *s = elm_hsum8(acc);
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
    float acc[8] = {0}, summs = 0.0f;
    for (int64_t i = 0; i < n / ELM_QK; i++) {
        const uint32_t qh = load_qh(x[i].qh);
        int prod[ELM_QK];
        for (int j = 0; j < HALF; j++) {
            int q0 = (x[i].qs[j] & 0x0f) | (int)(((qh >> j) & 1) << 4);
            int q1 = (x[i].qs[j] >> 4) | (int)(((qh >> (j + HALF)) & 1) << 4);
            prod[j] = q0 * y[i].qs[j];
            prod[j + HALF] = q1 * y[i].qs[j + HALF];
        }
        summs = fmaf(elm_fp16_to_f32(x[i].m), elm_fp16_to_f32(y[i].s), summs);
        lanes_fma(acc, elm_fp16_to_f32(x[i].d) * elm_fp16_to_f32(y[i].d), prod);
    }
    *s = elm_hsum8(acc) + summs;
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
        int prod[ELM_QK];
        for (int j = 0; j < ELM_QK; j++)
            prod[j] = x[i].qs[j] * y[i].qs[j];
        lanes_fma(acc, elm_fp16_to_f32(x[i].d) * elm_fp16_to_f32(y[i].d), prod);
    }
    *s = elm_hsum8(acc);
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
