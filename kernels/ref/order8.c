/* order8.c — the operations whose last bits depend on the vector width, in the order llama.cpp
 * computes them when built for AVX2 only (256-bit registers, 8 floats), for
 * ELM_ORDER_AVX2 (kernels.h). ops.c has the default, AVX-512 (16 floats) order.
 *
 * What differs from ops.c, read off llama.cpp c392e50 (ggml-cpu.c, llamafile/sgemm.cpp):
 * - exp: the 256-bit version of the polynomial leaves the final "+ 1" out of the polynomial and
 *   scales by 2^n with one fused multiply-add, k * p + k, instead of scaling p + 1; its
 *   over/underflow path starts at |n| > 126 and splits the scale in two;
 * - softmax: blocks of 8, each folded as a 256-bit register (elm_hsum8), added in double;
 * - SiLU: blocks of 8, the rest through libm's expf;
 * - attention with an F16 cache (both products) and the weighted sum of an F32 cache: the tiled
 *   matmul keeps 8 lanes per output, folded by elm_hsum8;
 * - K·Q with an F32 cache (ggml_vec_dot_f32): four 8-lane accumulators over each 32 elements,
 *   folded pairwise and then by the SSE3 horizontal adds (hsum8_hadd below).
 * Everything else (matmuls, norms, rotary embedding) is the same on both builds.
 * Plain scalar C, so the order gives the same bits on every machine elm runs on.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels/fp16.h"
#include "kernels/kernels.h"
#include "kernels/ref/ref.h"

#define LANES 8 /* floats in a 256-bit register */

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float float_of(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* One lane of the 256-bit exp: the reduction of ops.c's exp_lane, then
 * p(b) - 1 = b c1 + u (...) with u = b^2 and the result k * (p - 1) + k, k = 2^n built in the
 * exponent bits of z. For |n| > 126 the scale is applied as two factors (s2 * p) * s1, and
 * |n| > 192 saturates to s1 * s1 (0 or infinity); -inf gives 0. */
static float exp8_lane(float x)
{
    const float shifter = 0x1.8p23f;
    const float z = fmaf(x, 0x1.715476p+0f, shifter);
    const float n = z - shifter;
    const float b = fmaf(-n, 0x1.7f7d1cp-20f, fmaf(-n, 0x1.62e4p-1f, x));
    const uint32_t e = bits_of(z) << 23;
    const float k = float_of(e + bits_of(1.0f));
    const float u = b * b;
    const float j = fmaf(
        fmaf(fmaf(0x1.0e4020p-7f, b, 0x1.573e2ep-5f), u, fmaf(0x1.555e66p-3f, b, 0x1.fffdb6p-2f)),
        u, 0x1.ffffecp-1f * b);
    if (!(fabsf(n) > 126.0f))
        return fmaf(k, j, k);
    const uint32_t g = n <= 0.0f ? 0x82000000u : 0u;
    const float s1 = float_of(g + 0x7f000000u), s2 = float_of(e - g);
    if (fabsf(n) > 192.0f)
        return s1 * s1;
    return fmaf(s2, j, s2) * s1;
}

/* The F32 dot's fold (GGML_F32x8_REDUCE): the halves added lane by lane, then two horizontal
 * adds, which pair neighbouring lanes: ((t0 + t1) + (t2 + t3)) with t_i = a_i + a_(i+4). */
static float hsum8_hadd(const float a[8])
{
    const float t0 = a[0] + a[4], t1 = a[1] + a[5], t2 = a[2] + a[6], t3 = a[3] + a[7];
    return (t0 + t1) + (t2 + t3);
}

void elm_ref8_softmax(float *x, int64_t n)
{
    float mx = -INFINITY;
    for (int64_t i = 0; i < n; i++)
        mx = fmaxf(mx, x[i]);
    /* as ops.c, in blocks of 8: a short last block stands for masked positions (exp 0) */
    double sum = 0.0;
    for (int64_t i = 0; i < n; i += LANES) {
        float e[LANES] = {0};
        for (int l = 0; l < LANES && i + l < n; l++)
            e[l] = x[i + l] = exp8_lane(x[i + l] - mx);
        sum += (double)elm_hsum8(e);
    }
    const float inv = (float)(1.0 / sum);
    for (int64_t i = 0; i < n; i++)
        x[i] *= inv;
}

void elm_ref8_silu_mul(float *g, const float *u, int64_t n)
{
    const int64_t nv = n - n % LANES;
    for (int64_t i = 0; i < n; i++) {
        const float e = i < nv ? exp8_lane(0.0f - g[i]) : expf(-g[i]);
        g[i] = g[i] / (1.0f + e) * u[i];
    }
}

/* ggml_vec_dot_f32 with 256-bit registers: element 32i + 8j + l into accumulator j, lane l;
 * (acc0 + acc2) + (acc1 + acc3), hsum8_hadd; the elements past the last 32 as ops.c's tail. */
void elm_ref8_kv_dot_f32(int64_t n, float *s, const void *k, const void *q)
{
    const float *x = k, *y = q;
    float acc[4][LANES] = {{0}};
    const int64_t np = n - n % 32;
    for (int64_t i = 0; i < np; i += 32)
        for (int j = 0; j < 4; j++)
            for (int l = 0; l < LANES; l++)
                acc[j][l] = fmaf(x[i + LANES * j + l], y[i + LANES * j + l], acc[j][l]);
    float lane[LANES];
    for (int l = 0; l < LANES; l++)
        lane[l] = (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]);
    float sum = hsum8_hadd(lane);
    const int64_t nf = n - n % 8;
    int64_t i = np;
    for (; i < nf; i++)
        sum += x[i] * y[i];
    for (; i < n; i++)
        sum = fmaf(x[i], y[i], sum);
    *s = sum;
}

void elm_ref8_kv_dot_f16(int64_t n, float *s, const void *k, const void *q)
{
    const uint16_t *x = k, *y = q;
    float lane[LANES] = {0};
    for (int64_t i = 0; i < n; i++)
        lane[i % LANES] = fmaf(elm_fp16_to_f32(x[i]), elm_fp16_to_f32(y[i]), lane[i % LANES]);
    *s = elm_hsum8(lane);
}

/* kv_mix with 8 lanes: lanes[l * hd + d] for l < 8, position p into lane p % 8 (ops.c) */
void elm_ref8_kv_mix_f32(int64_t n, int64_t hd, float *lanes, const float *w, const void *v,
                         int64_t v_stride)
{
    elm_ref_kv_mix_f32_lanes(LANES, n, hd, lanes, w, v, v_stride);
}

void elm_ref8_kv_mix_f16(int64_t n, int64_t hd, float *lanes, const float *w, const void *v,
                         int64_t v_stride)
{
    elm_ref_kv_mix_f16_lanes(LANES, n, hd, lanes, w, v, v_stride);
}

void elm_ref8_kv_mix_q8_0(int64_t n, int64_t hd, float *lanes, const float *w, const void *v,
                          int64_t v_stride)
{
    elm_ref_kv_mix_q8_0_lanes(LANES, n, hd, lanes, w, v, v_stride);
}

void elm_ref8_kv_fold(int64_t hd, const float *lanes, float *out)
{
    for (int64_t d = 0; d < hd; d++) {
        float lane[LANES];
        for (int l = 0; l < LANES; l++)
            lane[l] = lanes[l * hd + d];
        out[d] = elm_hsum8(lane);
    }
}

void elm_kernels_with_order(struct elm_kernels *dst, const struct elm_kernels *base,
                            enum elm_order order)
{
    *dst = *base;
    if (order != ELM_ORDER_AVX2)
        return;
    dst->softmax = elm_ref8_softmax;
    dst->silu_mul = elm_ref8_silu_mul;
    dst->kv_dot[ELM_TYPE_F32] = elm_ref8_kv_dot_f32;
    dst->kv_dot[ELM_TYPE_F16] = elm_ref8_kv_dot_f16;
    for (int t = 0; t < ELM_TYPE_COUNT; t++) { /* they were the base's kv_dot's and kv_mix's */
        dst->kv_dots[t] = NULL;
        dst->kv_dots_group[t] = NULL;
        dst->kv_mix_group[t] = NULL;
    }
    dst->kv_mix[ELM_TYPE_F32] = elm_ref8_kv_mix_f32;
    dst->kv_mix[ELM_TYPE_F16] = elm_ref8_kv_mix_f16;
    dst->kv_mix[ELM_TYPE_Q8_0] = elm_ref8_kv_mix_q8_0;
    dst->kv_fold = elm_ref8_kv_fold;
}
