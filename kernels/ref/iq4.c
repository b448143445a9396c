/* iq4.c — reference kernels for the non-linear 4-bit types IQ4_NL (32-element blocks) and
 * IQ4_XS (256-element super-blocks of 8 x 32 with 6-bit sub-scales).
 *
 * Both store 4-bit indices into one fixed table of 16 values (ELM_IQ4_VALUES), spaced more
 * densely near zero than a linear grid, where most of a weight row's values are.
 *
 * Quantizer: ggml's quantize_iq4_nl / quantize_iq4_xs, which llama-quantize runs with or without
 * an importance matrix (only the element weights change; there is no separate _ref rounding as
 * for the K-quants). Per 32-block: weights x^2, or imatrix_j * sqrt(sigma2 + x^2) with sigma2 =
 * 2 * mean(x^2) over the (super-)block; a first fit from the largest-magnitude value, then 15
 * trial inverse scales, each value rounded to the nearest table entry, keeping the best weighted
 * least-squares fit. IQ4_XS then quantizes the 8 block scales to 6 bits against one fp16 scale
 * and re-rounds every value with the scale it will be decoded with. The float expressions keep
 * ggml's operand order (this file builds without contraction), so the bytes are llama.cpp's.
 *
 * Dot products (docs/kernels.md): IQ4_NL x Q8_0 as the other 32-element types, eight lanes of
 * 4-element integer sums advanced by fmaf(d_w * d_a, lane, acc) block after block (llama.cpp's
 * tinyBLAS order for batches); IQ4_XS x Q8_K as the K-quants, the lane sums of all 8
 * sub-blocks times their integer sub-scales in one integer, then one fmaf per super-block.
 */
#include <math.h>
#include <string.h>

#include "kernels/blocks.h"
#include "kernels/fp16.h"
#include "kernels/ref/ref.h"

static const int8_t iq4_values[16] = ELM_IQ4_VALUES;

/* A block whose largest magnitude is below this is all zeros (ggml's GROUP_MAX_EPS). */
#define IQ4_EPS 1e-15f
/* Trial inverse scales (k - 127) / max for k = -IQ4_NTRY..IQ4_NTRY (llama-quantize's 7). */
#define IQ4_NTRY 7

/* The table index nearest to x (the lower one on an exact tie of distances, as ggml). */
static int iq4_index(float x)
{
    if (x <= iq4_values[0])
        return 0;
    if (x >= iq4_values[15])
        return 15;
    int lo = 0, hi = 15;
    while (hi - lo > 1) {
        int mid = (lo + hi) / 2;
        if (x < iq4_values[mid])
            hi = mid;
        else
            lo = mid;
    }
    return x - iq4_values[hi - 1] < iq4_values[hi] - x ? hi - 1 : hi;
}

/* Fits one 32-element block: returns its scale d (0 for an all-zero block) and leaves the
 * indices of the best trial in L. weight: the 32 element weights. */
static float iq4_fit_block(const float *xb, const float *weight, uint8_t *L)
{
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < 32; j++) {
        float ax = fabsf(xb[j]);
        if (ax > amax) {
            amax = ax;
            max = xb[j];
        }
    }
    if (amax < IQ4_EPS)
        return 0.0f;
    /* first guess: the largest magnitude onto the table's end, -127 */
    float d = -max / iq4_values[0];
    float id = 1 / d;
    float sumqx = 0.0f, sumq2 = 0.0f;
    for (int j = 0; j < 32; j++) {
        float al = id * xb[j];
        int l = iq4_index(al);
        L[j] = (uint8_t)l;
        float q = iq4_values[l];
        float w = weight[j];
        sumqx += w * q * xb[j];
        sumq2 += w * q * q;
    }
    d = sumqx / sumq2;
    float best = d * sumqx;
    for (int itry = -IQ4_NTRY; itry <= IQ4_NTRY; itry++) {
        id = (itry + iq4_values[0]) / max;
        sumqx = sumq2 = 0.0f;
        for (int j = 0; j < 32; j++) {
            float al = id * xb[j];
            int l = iq4_index(al);
            float q = iq4_values[l];
            float w = weight[j];
            sumqx += w * q * xb[j];
            sumq2 += w * q * q;
        }
        /* ggml keeps the trial's scale but not its indices: the final pass re-rounds anyway */
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
            d = sumqx / sumq2;
            best = d * sumqx;
        }
    }
    return d;
}

/* The weights of block b (32 elements at xb) of a (super-)block whose sigma2 is given. */
static void iq4_weights(const float *xb, const float *qw, float sigma2, float *weight)
{
    for (int j = 0; j < 32; j++)
        weight[j] = qw ? qw[j] * sqrtf(sigma2 + xb[j] * xb[j]) : xb[j] * xb[j];
}

/* sigma2 = 2 * mean(x^2) over n elements, summed in order as ggml. */
static float iq4_sigma2(const float *x, int n)
{
    float s = 0.0f;
    for (int j = 0; j < n; j++)
        s += x[j] * x[j];
    return s * (2.0f / n);
}

/* 32 indices into 16 bytes: element j in the low nibble of byte j, j + 16 in the high one. */
static void iq4_pack(uint8_t *qs, const uint8_t *L)
{
    for (int j = 0; j < 16; j++)
        qs[j] = (uint8_t)(L[j] | (L[j + 16] << 4));
}

void elm_ref_iq4_nl_quantize(const float *src, void *dst, int64_t n, const float *qw)
{
    struct elm_block_iq4_nl *y = dst;
    for (int64_t i = 0; i < n / ELM_QK; i++) {
        const float *x = src + i * ELM_QK;
        float weight[32];
        uint8_t L[32];
        iq4_weights(x, qw ? qw + i * ELM_QK : NULL, iq4_sigma2(x, 32), weight);
        const float d = iq4_fit_block(x, weight, L);
        y[i].d = elm_f32_to_fp16(d);
        /* re-round with the float scale (not the fp16 one stored), as ggml */
        const float id = d != 0.0f ? 1 / d : 0.0f;
        for (int j = 0; j < 32; j++)
            L[j] = (uint8_t)iq4_index(id * x[j]);
        iq4_pack(y[i].qs, L);
    }
}

void elm_ref_iq4_nl_from_float(const float *src, void *dst, int64_t n)
{
    elm_ref_iq4_nl_quantize(src, dst, n, NULL);
}

void elm_ref_iq4_xs_quantize(const float *src, void *dst, int64_t n, const float *qw)
{
    struct elm_block_iq4_xs *y = dst;
    for (int64_t i = 0; i < n / ELM_QK_K; i++) {
        const float *x = src + i * ELM_QK_K;
        const float sigma2 = iq4_sigma2(x, ELM_QK_K);
        float weight[32], scales[8];
        uint8_t L[ELM_QK_K];
        float max_scale = 0.0f, amax_scale = 0.0f;
        for (int b = 0; b < 8; b++) {
            iq4_weights(x + 32 * b, qw ? qw + i * ELM_QK_K + 32 * b : NULL, sigma2, weight);
            scales[b] = iq4_fit_block(x + 32 * b, weight, L + 32 * b);
            if (fabsf(scales[b]) > amax_scale) {
                amax_scale = fabsf(scales[b]);
                max_scale = scales[b];
            }
        }
        /* 6-bit signed sub-scales: the signed largest block scale maps to -32 */
        const float d = -max_scale / 32;
        y[i].d = elm_f32_to_fp16(d);
        y[i].scales_h = 0;
        memset(y[i].scales_l, 0, sizeof y[i].scales_l);
        const float id = d != 0.0f ? 1 / d : 0.0f;
        for (int b = 0; b < 8; b++) {
            int l = elm_round_even(id * scales[b]);
            l = l < -32 ? -32 : l > 31 ? 31 : l;
            const float dl = d * l;
            const float idl = dl != 0.0f ? 1 / dl : 0.0f;
            for (int j = 0; j < 32; j++)
                L[32 * b + j] = (uint8_t)iq4_index(idl * x[32 * b + j]);
            l += 32;
            y[i].scales_l[b / 2] |= (uint8_t)((l & 0x0f) << (4 * (b % 2)));
            y[i].scales_h |= (uint16_t)((l >> 4) << (2 * b));
        }
        for (int b = 0; b < 8; b++)
            iq4_pack(y[i].qs + 16 * b, L + 32 * b);
    }
}

void elm_ref_iq4_xs_from_float(const float *src, void *dst, int64_t n)
{
    elm_ref_iq4_xs_quantize(src, dst, n, NULL);
}

void elm_ref_iq4_nl_to_float(const void *src, float *dst, int64_t n)
{
    const struct elm_block_iq4_nl *x = src;
    for (int64_t i = 0; i < n / ELM_QK; i++) {
        const float d = elm_fp16_to_f32(x[i].d);
        float *y = dst + i * ELM_QK;
        for (int j = 0; j < 16; j++) {
            y[j] = d * iq4_values[x[i].qs[j] & 0x0f];
            y[j + 16] = d * iq4_values[x[i].qs[j] >> 4];
        }
    }
}

/* The 6-bit sub-scale of sub-block b, minus its bias 32. */
static int iq4_xs_scale(const struct elm_block_iq4_xs *x, int b)
{
    int lo = (x->scales_l[b / 2] >> (4 * (b % 2))) & 0x0f;
    int hi = (x->scales_h >> (2 * b)) & 3;
    return (lo | (hi << 4)) - 32;
}

void elm_ref_iq4_xs_to_float(const void *src, float *dst, int64_t n)
{
    const struct elm_block_iq4_xs *x = src;
    for (int64_t i = 0; i < n / ELM_QK_K; i++) {
        const float d = elm_fp16_to_f32(x[i].d);
        for (int b = 0; b < 8; b++) {
            const float dl = d * iq4_xs_scale(&x[i], b);
            const uint8_t *qs = x[i].qs + 16 * b;
            float *y = dst + i * ELM_QK_K + 32 * b;
            for (int j = 0; j < 16; j++) {
                y[j] = dl * iq4_values[qs[j] & 0x0f];
                y[j + 16] = dl * iq4_values[qs[j] >> 4];
            }
        }
    }
}

/* The integer product of element e (0..31) of a 32-element IQ4 run with activation a[e]. */
static inline int iq4_prod(const uint8_t *qs, const int8_t *a, int e)
{
    const int q = e < 16 ? qs[e] & 0x0f : qs[e - 16] >> 4;
    return iq4_values[q] * a[e];
}

void elm_ref_iq4_nl_vec_dot(int64_t n, float *s, const void *w, const void *a)
{
    const struct elm_block_iq4_nl *x = w;
    const struct elm_block_q8_0 *y = a;
    float acc[8] = {0};
    for (int64_t i = 0; i < n / ELM_QK; i++) {
        const float d = elm_fp16_to_f32(x[i].d) * elm_fp16_to_f32(y[i].d);
        for (int l = 0; l < 8; l++) {
            int32_t lane = 0;
            for (int e = 4 * l; e < 4 * l + 4; e++)
                lane += iq4_prod(x[i].qs, y[i].qs, e);
            acc[l] = fmaf(d, (float)lane, acc[l]);
        }
    }
    *s = elm_hsum8(acc);
}

void elm_ref_iq4_xs_vec_dot(int64_t n, float *s, const void *w, const void *a)
{
    const struct elm_block_iq4_xs *x = w;
    const struct elm_block_q8_k *y = a;
    float acc[8] = {0};
    for (int64_t i = 0; i < n / ELM_QK_K; i++) {
        int32_t lane[8] = {0};
        for (int b = 0; b < 8; b++) {
            const int ls = iq4_xs_scale(&x[i], b);
            for (int l = 0; l < 8; l++) {
                int32_t sum = 0;
                for (int e = 4 * l; e < 4 * l + 4; e++)
                    sum += iq4_prod(x[i].qs + 16 * b, y[i].qs + 32 * b, e);
                lane[l] += ls * sum;
            }
        }
        const float d = elm_fp16_to_f32(x[i].d) * y[i].d;
        for (int l = 0; l < 8; l++)
            acc[l] = fmaf(d, (float)lane[l], acc[l]);
    }
    *s = elm_hsum8(acc);
}
